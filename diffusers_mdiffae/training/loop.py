"""The training loop, on accelerate: the same call runs on one CPU, one GPU or many."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

import torch

from ..atomic import atomic_directory, atomic_file
from ..skipping import say
from .data import ImageFolderCrops, step_generator
from .objective import ObjectiveConfig, diffusion_loss
from .state import (
    EMA,
    CheckpointError,
    complete_checkpoints,
    load_checkpoint,
    remove_killed_run_leftovers,
    save_checkpoint,
)

if TYPE_CHECKING:
    from .. import AutoencoderMDiffAE


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved with every checkpoint).

    Args:
        data: image folder (recursive).
        output_dir: checkpoints, previews, the final EMA model (``output_dir/final``) and ``log.jsonl``.
        model_config: ``AutoencoderMDiffAE`` arguments for a fresh model (ignored with ``init``).
        init: a pretrained diffusers folder, original snapshot or Hub id to fine-tune.
        resume: a checkpoint folder, or ``"latest"`` for the newest one in ``output_dir``.
        exclude: file names in ``data`` to leave out (held-out images).
    """

    data: str
    output_dir: str
    model_config: dict = field(default_factory=dict)
    init: Optional[str] = None
    resume: Optional[str] = None
    steps: int = 1000
    batch_size: int = 8
    crop: int = 128
    scale_min: float = 0.5
    lr: float = 5e-4
    lr_min_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    preview_every: int = 500
    exclude: List[str] = field(default_factory=list)
    permute_channels: bool = False
    color_jitter: float = 0.0  # see ImageFolderCrops
    objective: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse settings that would crash later or train on garbage, with the field's name."""
        for name, low in (
            ("steps", 1),
            ("batch_size", 1),
            ("warmup_steps", 0),
            ("checkpoint_every", 0),
            ("preview_every", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.crop, int) or self.crop < 16 or self.crop % 16:
            raise ValueError(f"crop must be a positive multiple of 16, got {self.crop!r}")
        for name in ("lr", "ema_decay", "weight_decay", "grad_clip", "scale_min", "lr_min_ratio"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
        if not self.ema_decay < 1:
            raise ValueError(f"ema_decay must be below 1, got {self.ema_decay!r}")
        if not 0 < self.scale_min <= 1:
            raise ValueError(f"scale_min must be in (0, 1], got {self.scale_min!r}")
        if not isinstance(self.model_config, dict):
            raise ValueError(f"model_config must be a dict, got {type(self.model_config).__name__}")


class _LossModule(torch.nn.Module):
    """Wraps the autoencoder so the loss is computed inside ``forward`` (what DDP needs)."""

    def __init__(self, vae: "AutoencoderMDiffAE", objective: ObjectiveConfig):
        super().__init__()
        self.vae = vae
        self.objective = objective

    def forward(self, images, generator):
        return diffusion_loss(self.vae, images, generator, self.objective)


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _build_model(cfg: TrainConfig) -> "AutoencoderMDiffAE":
    from .. import AutoencoderMDiffAE  # the package top level, wherever the class lives

    if cfg.init:
        model = AutoencoderMDiffAE.from_pretrained(cfg.init, torch_dtype=torch.float32)
    else:
        torch.manual_seed(cfg.seed)
        model = AutoencoderMDiffAE(**cfg.model_config)
    return model.train()


def _preview(model: "AutoencoderMDiffAE", ema: EMA, images: torch.Tensor, path: Path) -> float:
    """Reconstruct fixed crops with the EMA weights, save ``original | reconstruction`` rows; return PSNR."""
    from ..imaging import save_image_atomic, tensor_to_pil
    from ..metrics import psnr

    probe = ema.averaged_model(model)
    with torch.no_grad():
        recon = probe.reconstruct(images)
    grid = torch.cat([torch.cat([a, b], dim=-1) for a, b in zip(images, recon)], dim=-2)
    save_image_atomic(tensor_to_pil(grid), path)
    return psnr(recon, images)


def _resume(cfg: TrainConfig, out: Path, model, ema: EMA, optimizer, log) -> tuple:
    """``(start step, history)`` from the checkpoint to resume, falling back past corrupt ones for 'latest'."""
    if not cfg.resume:
        return 0, []
    if cfg.resume != "latest":
        state = load_checkpoint(cfg.resume, model, ema, optimizer)  # an explicit choice: its failure is an error
        log(f"resumed from {cfg.resume} at step {state['step']}")
        return state["step"], state.get("history", [])
    candidates = complete_checkpoints(out)
    for folder in candidates:
        try:
            state = load_checkpoint(folder, model, ema, optimizer)
        except CheckpointError as e:
            log(f"skipping checkpoint {e}; trying the previous one")
            continue
        log(f"resumed from {folder} at step {state['step']}")
        return state["step"], state.get("history", [])
    if candidates:
        raise CheckpointError(
            f"{out / 'checkpoints'}: none of the {len(candidates)} checkpoint(s) can be restored; "
            "pass --resume FOLDER, or start a new --output-dir"
        )
    log("no checkpoint to resume from; starting at step 0")
    return 0, []


def truncate_log(path: Path, last_step: int) -> int:
    """Keep only ``log.jsonl`` records up to ``last_step`` (and readable ones), rewritten atomically.

    A run resumed at step ``k`` repeats steps after ``k``; without this the log would hold them
    twice. Returns how many lines were dropped.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= last_step
        except ValueError:  # a line cut short by a kill
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        with atomic_file(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
    return dropped


def _optimize_step(module, optimizer, accelerator, ema: EMA, data: ImageFolderCrops, step: int, cfg: TrainConfig):
    g = step_generator(cfg.seed, step, accelerator.process_index)
    images = data.batch(cfg.batch_size, g).to(accelerator.device)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * _lr_factor(step, cfg)
    with accelerator.autocast():
        loss, stats = module(images, g)
    accelerator.backward(loss)
    if cfg.grad_clip:
        accelerator.clip_grad_norm_(module.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema.update(accelerator.unwrap_model(module).vae)
    return loss, stats


def _after_step(
    done: int, cfg: TrainConfig, accelerator, module, optimizer, ema: EMA, history, preview_images, out: Path, log
) -> None:
    """Previews and checkpoints due after step ``done``."""
    vae = accelerator.unwrap_model(module).vae
    if accelerator.is_main_process and cfg.preview_every and (done % cfg.preview_every == 0 or done == cfg.steps):
        value = _preview(vae, ema, preview_images, out / "previews" / f"step_{done:07d}.png")
        log(f"step {done}: preview PSNR (EMA, 1-step) {value:.2f} dB")
    if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_checkpoint(
                out / "checkpoints" / f"step_{done:07d}",
                vae,
                ema,
                optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                {"step": done, "history": history, "config": asdict(cfg)},
            )


def train(cfg: TrainConfig, log: Callable[[str], None] = say) -> List[dict]:
    """Run (or resume) training; returns the per-step records of this process's run.

    A restart in the same ``output_dir`` first removes what a killed run left half-written, and
    ``resume="latest"`` skips a checkpoint that cannot be restored (with a message) for the
    previous complete one. ``log.jsonl`` never repeats a step.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    cfg.validate()
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        for name in remove_killed_run_leftovers(out):
            log(f"removed {name}, left by an interrupted run")
    accelerator.wait_for_everyone()
    main_log = log if accelerator.is_main_process else (lambda _: None)
    data = ImageFolderCrops(
        cfg.data,
        crop=cfg.crop,
        scale_range=(cfg.scale_min, 1.0),
        exclude=cfg.exclude,
        log=main_log,
        permute_channels=cfg.permute_channels,
        color_jitter=cfg.color_jitter,
    )
    model = _build_model(cfg)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    start, history = _resume(cfg, out, model, ema, optimizer, main_log)
    if accelerator.is_main_process:
        dropped = truncate_log(out / "log.jsonl", start)
        if dropped:
            log(f"log.jsonl: dropped {dropped} record(s) after step {start} (they are redone now)")

    module = _LossModule(model, ObjectiveConfig(**cfg.objective))
    module, optimizer = accelerator.prepare(module, optimizer)
    preview_images = data.batch(min(4, len(data)), step_generator(cfg.seed, -1, 0, 99)).to(accelerator.device)
    world = accelerator.num_processes
    bar = tqdm(
        range(start, cfg.steps),
        initial=start,
        total=cfg.steps,
        disable=not accelerator.is_main_process,
        desc="train",
        dynamic_ncols=True,
    )
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    t_last, seen = time.perf_counter(), 0
    for step in bar:
        loss, stats = _optimize_step(module, optimizer, accelerator, ema, data, step, cfg)
        seen += cfg.batch_size * world
        record = {
            "step": step + 1,
            "loss": float(loss.detach()),
            "mse": stats["mse"],
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(record)
        if accelerator.is_main_process:
            rate = seen / max(time.perf_counter() - t_last, 1e-9)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{rate:.1f}")
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        _after_step(step + 1, cfg, accelerator, module, optimizer, ema, history, preview_images, out, log)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_directory(out / "final", overwrite=True) as tmp:
            ema.averaged_model(accelerator.unwrap_model(module).vae).save_pretrained(tmp)
        log(f"saved EMA weights to {out / 'final'}")
    return history
