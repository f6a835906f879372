"""Training checkpoints in safetensors only: model, EMA, optimizer, counters. Nothing is pickled."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_directory, write_error

# Test hook: seconds to sleep half way through writing a checkpoint, so a test can SIGKILL it there.
_PAUSE_ENV = "MDIFFAE_TRAIN_PAUSE_IN_CHECKPOINT"


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
        try:
            model.save_pretrained(tmp / "model")
            if os.environ.get(_PAUSE_ENV):  # test hook: a window in which a kill leaves a half-written checkpoint
                time.sleep(float(os.environ[_PAUSE_ENV]))
            save_file(
                {k: v.contiguous() for k, v in ema.shadow.items()},
                tmp / "ema.safetensors",
                metadata={"decay": str(ema.decay), "num_updates": str(ema.num_updates)},
            )
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, tmp / "optimizer.safetensors", metadata={"meta": json.dumps(meta)})
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
        except Exception as e:  # safetensors' own error type on a full disk: name the checkpoint
            raise write_error(e, folder) from None
    return folder


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be restored (missing or corrupt file); names the folder."""


def _read_checkpoint(folder: Path) -> dict:
    """Everything :func:`save_checkpoint` wrote, read and checked before anything is modified."""
    from safetensors import safe_open

    from .. import AutoencoderMDiffAE  # the package top level, wherever the class lives

    loaded = AutoencoderMDiffAE.from_pretrained(folder / "model")
    ema_file = folder / "ema.safetensors"
    with safe_open(str(ema_file), "pt") as f:
        md = f.metadata() or {}
    shadow = {k: v.float() for k, v in load_file(ema_file).items()}
    opt_file = folder / "optimizer.safetensors"
    with safe_open(str(opt_file), "pt") as f:
        meta = json.loads((f.metadata() or {})["meta"])
    tensors = load_file(opt_file)
    state = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {name: (tensors[f"{pid}.{name}"] if v == "tensor" else v) for name, v in entries.items()}
    trainer_state = json.loads((folder / "trainer_state.json").read_text())
    if not isinstance(trainer_state, dict) or not isinstance(trainer_state.get("step"), int):
        raise ValueError("trainer_state.json has no integer 'step'")
    return {
        "model": loaded.state_dict(),
        "ema": (shadow, float(md["decay"]), int(md["num_updates"])),
        "optimizer": {"state": state, "param_groups": meta["param_groups"]},
        "trainer_state": trainer_state,
    }


def load_checkpoint(folder: Union[str, os.PathLike], model, ema: EMA, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_checkpoint` wrote into existing objects; returns the trainer state.

    Every file is read and checked first; a missing or corrupt one raises :class:`CheckpointError`
    and leaves ``model``, ``ema`` and ``optimizer`` untouched, so the caller can try another
    checkpoint.
    """
    folder = Path(folder)
    try:
        read = _read_checkpoint(folder)
    except Exception as e:  # safetensors, json, diffusers and KeyError all mean "not restorable"
        from ..skipping import reason_of

        raise CheckpointError(f"{folder}: cannot restore checkpoint ({reason_of(e)})") from None
    try:
        model.load_state_dict(read["model"])
        optimizer.load_state_dict(read["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{folder}: does not fit this model/optimizer ({e})") from None
    ema.shadow, ema.decay, ema.num_updates = read["ema"]
    return read["trainer_state"]


def complete_checkpoints(output_dir: Union[str, os.PathLike]) -> List[Path]:
    """Checkpoint folders under ``output_dir/checkpoints`` that finished writing, newest first.

    A folder gets its final ``step_*`` name only when complete (temporaries are dot-names), so this
    lists every checkpoint that could be restored, unless its files were damaged later.
    """
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "trainer_state.json").is_file()
    ]
    return sorted(done, reverse=True)


def latest_checkpoint(output_dir: Union[str, os.PathLike]) -> Optional[Path]:
    """The highest-step complete checkpoint under ``output_dir/checkpoints`` (temporary folders ignored)."""
    done = complete_checkpoints(output_dir)
    return done[0] if done else None


def remove_killed_run_leftovers(output_dir: Union[str, os.PathLike]) -> List[str]:
    """Delete the temporaries a killed run left (checkpoint folders, previews, log); returns their names.

    Only this package's temporary dot-names are touched. Call it before a run starts writing.
    """
    from ..atomic import remove_stale_temporaries

    out = Path(output_dir)
    removed = remove_stale_temporaries(out / "checkpoints", "step_")
    removed += remove_stale_temporaries(out / "previews", "step_")
    removed += remove_stale_temporaries(out, "log.jsonl") + remove_stale_temporaries(out, "final")
    return removed
