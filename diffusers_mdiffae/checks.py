"""Input validation with messages that name the problem and the fix."""

from __future__ import annotations

import torch


def _check_tensor(x, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{what} must be a floating-point tensor, got dtype {x.dtype}; "
            "convert integer images with x.float() / 127.5 - 1"
        )
    if x.ndim != 4:
        hint = "; add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{what} must have rank 4 [B, C, H, W], got rank {x.ndim} with shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} has an empty batch (shape {tuple(x.shape)})")


def _check_finite(x: torch.Tensor, what: str) -> None:
    if x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what} contains {bad} NaN or infinite values; clean the input before encoding/decoding")


def check_images(x, in_channels: int, patch_size: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite ``[B, in_channels, H, W]`` float tensor, H, W % p == 0."""
    _check_tensor(x, "images")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"images must have {in_channels} channels in dim 1, got shape {tuple(x.shape)}; "
            "pass NCHW RGB (convert grayscale/RGBA to RGB, permute NHWC with x.permute(0, 3, 1, 2))"
        )
    h, w = x.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(
            f"image height and width must be multiples of {patch_size}, got {h}x{w}; "
            f"pad or crop to {(h // patch_size) * patch_size or patch_size}x{(w // patch_size) * patch_size or patch_size}"
            f" (or {-(-h // patch_size) * patch_size}x{-(-w // patch_size) * patch_size})"
        )
    _check_finite(x, "images")


def check_latents(z, latent_channels: int) -> None:
    """Raise ``ValueError`` unless ``z`` is a finite ``[B, latent_channels, h, w]`` float tensor."""
    _check_tensor(z, "latents")
    if z.shape[1] != latent_channels:
        raise ValueError(
            f"latents must have {latent_channels} channels in dim 1, got shape {tuple(z.shape)}; "
            "were they produced by a different autoencoder?"
        )
    _check_finite(z, "latents")
