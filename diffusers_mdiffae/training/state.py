"""Training checkpoints in safetensors only: model, EMA, optimizer, counters. Nothing is pickled."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_directory


class EMA:
    """Exponential moving average of a model's floating-point parameters (float32 shadow copies).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated
    by the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.decay = decay
        self.num_updates = 0
        self.shadow: Dict[str, torch.Tensor] = {
            k: p.detach().float().clone() for k, p in model.named_parameters() if p.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach().float(), 1 - d)
        self.num_updates += 1

    def averaged_model(self, model):
        """A new model of ``model``'s class and config holding the averaged weights (``model`` untouched)."""
        averaged = type(model).from_config(model.config)
        averaged.load_state_dict(model.state_dict())
        self.copy_to(averaged)
        return averaged.eval()

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.shadow:
                p.copy_(self.shadow[k].to(p.dtype))


def _optimizer_tensors(opt: torch.optim.Optimizer):
    state = opt.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, st in state["state"].items():
        meta["state"][str(pid)] = {}
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().contiguous()
                meta["state"][str(pid)][name] = "tensor"
            else:
                meta["state"][str(pid)][name] = value
    return tensors, meta


def save_checkpoint(
    folder: Union[str, os.PathLike], model, ema: EMA, optimizer: torch.optim.Optimizer, trainer_state: dict
) -> Path:
    """Write a complete checkpoint folder atomically (temporary sibling, then rename)."""
    folder = Path(folder)
    with atomic_directory(folder, overwrite=True) as tmp:
        model.save_pretrained(tmp / "model")
        save_file({k: v.contiguous() for k, v in ema.shadow.items()}, tmp / "ema.safetensors",
                  metadata={"decay": str(ema.decay), "num_updates": str(ema.num_updates)})
        tensors, meta = _optimizer_tensors(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors", metadata={"meta": json.dumps(meta)})
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
    return folder


def load_checkpoint(folder: Union[str, os.PathLike], model, ema: EMA, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_checkpoint` wrote into existing objects; returns the trainer state."""
    from .. import AutoencoderMDiffAE

    folder = Path(folder)
    loaded = AutoencoderMDiffAE.from_pretrained(folder / "model")
    model.load_state_dict(loaded.state_dict())
    ema_file = folder / "ema.safetensors"
    ema.shadow = {k: v.float() for k, v in load_file(ema_file).items()}
    from safetensors import safe_open

    with safe_open(ema_file, "pt") as f:
        md = f.metadata()
    ema.decay, ema.num_updates = float(md["decay"]), int(md["num_updates"])
    opt_file = folder / "optimizer.safetensors"
    with safe_open(opt_file, "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    tensors = load_file(opt_file)
    state = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {name: (tensors[f"{pid}.{name}"] if v == "tensor" else v) for name, v in entries.items()}
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return json.loads((folder / "trainer_state.json").read_text())


def latest_checkpoint(output_dir: Union[str, os.PathLike]) -> Optional[Path]:
    """The highest-step complete checkpoint under ``output_dir/checkpoints`` (temporary folders ignored)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "trainer_state.json").is_file())
    return done[-1] if done else None
