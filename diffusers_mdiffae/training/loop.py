"""The training loop, on accelerate: the same call runs on one CPU, one GPU or many."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch

from ..autoencoder_mdiffae import AutoencoderMDiffAE
from .data import ImageFolderCrops, step_generator
from .objective import ObjectiveConfig, diffusion_loss
from .state import EMA, latest_checkpoint, load_checkpoint, save_checkpoint


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


class _LossModule(torch.nn.Module):
    """Wraps the autoencoder so the loss is computed inside ``forward`` (what DDP needs)."""

    def __init__(self, vae: AutoencoderMDiffAE, objective: ObjectiveConfig):
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


def _build_model(cfg: TrainConfig) -> AutoencoderMDiffAE:
    if cfg.init:
        model = AutoencoderMDiffAE.from_pretrained(cfg.init, torch_dtype=torch.float32)
    else:
        torch.manual_seed(cfg.seed)
        model = AutoencoderMDiffAE(**cfg.model_config)
    return model.train()


def _preview(model: AutoencoderMDiffAE, ema: EMA, images: torch.Tensor, path: Path) -> float:
    """Reconstruct fixed crops with the EMA weights, save ``original | reconstruction`` rows; return PSNR."""
    from ..metrics import psnr
    from ..imaging import save_image_atomic, tensor_to_pil

    probe = ema.averaged_model(model)
    with torch.no_grad():
        recon = probe.reconstruct(images)
    grid = torch.cat([torch.cat([a, b], dim=-1) for a, b in zip(images, recon)], dim=-2)
    save_image_atomic(tensor_to_pil(grid), path)
    return psnr(recon, images)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> List[dict]:
    """Run (or resume) training; returns the per-step records of this process's run."""
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
    out = Path(cfg.output_dir)
    data = ImageFolderCrops(cfg.data, crop=cfg.crop, scale_range=(cfg.scale_min, 1.0), exclude=cfg.exclude,
                            log=log if accelerator.is_main_process else (lambda _: None),
                            permute_channels=cfg.permute_channels, color_jitter=cfg.color_jitter)
    model = _build_model(cfg)
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    start, history = 0, []
    resume = latest_checkpoint(out) if cfg.resume == "latest" else (Path(cfg.resume) if cfg.resume else None)
    if resume is not None:
        state = load_checkpoint(resume, model, ema, optimizer)
        start, history = state["step"], state.get("history", [])
        log(f"resumed from {resume} at step {start}")
    elif cfg.resume == "latest":
        log("no checkpoint to resume from; starting at step 0")

    module = _LossModule(model, ObjectiveConfig(**cfg.objective))
    module, optimizer = accelerator.prepare(module, optimizer)
    preview_images = data.batch(min(4, len(data)), step_generator(cfg.seed, -1, 0, 99)).to(accelerator.device)
    world = accelerator.num_processes
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not accelerator.is_main_process,
               desc="train", dynamic_ncols=True)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    t_last, seen = time.perf_counter(), 0
    for step in bar:
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
        seen += cfg.batch_size * world
        record = {"step": step + 1, "loss": float(loss.detach()), "mse": stats["mse"], "lr": optimizer.param_groups[0]["lr"]}
        history.append(record)
        now = time.perf_counter()
        if accelerator.is_main_process:
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{seen / max(now - t_last, 1e-9):.1f}")
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        done = step + 1
        vae = accelerator.unwrap_model(module).vae
        if accelerator.is_main_process and cfg.preview_every and (done % cfg.preview_every == 0 or done == cfg.steps):
            value = _preview(vae, ema, preview_images, out / "previews" / f"step_{done:07d}.png")
            log(f"step {done}: preview PSNR (EMA, 1-step) {value:.2f} dB")
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out / "checkpoints" / f"step_{done:07d}", vae, ema, optimizer.optimizer
                                if hasattr(optimizer, "optimizer") else optimizer,
                                {"step": done, "history": history, "config": asdict(cfg)})
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema.averaged_model(accelerator.unwrap_model(module).vae).save_pretrained(out / "final")
        log(f"saved EMA weights to {out / 'final'}")
    return history
