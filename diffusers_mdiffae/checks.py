"""Input validation with messages that name the problem and the fix."""

from __future__ import annotations

from typing import Optional

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


def check_fixed_size_images(x, in_channels: int, image_size: int, size_refusal: Optional[str] = None) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite ``[B, in_channels, image_size, image_size]`` float tensor.

    For models with a fixed input resolution (the 1-D token tokenizers, VMAE): the message says how to
    resize. ``size_refusal`` replaces that message, formatted with ``h``, ``w`` and ``size``.
    """
    _check_tensor(x, "images")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"images must have {in_channels} channels in dim 1, got shape {tuple(x.shape)}; "
            "pass NCHW RGB (convert grayscale/RGBA to RGB, permute NHWC with x.permute(0, 3, 1, 2))"
        )
    h, w = x.shape[-2:]
    if (h, w) != (image_size, image_size):
        if size_refusal is not None:
            raise ValueError(size_refusal.format(h=h, w=w, size=image_size))
        raise ValueError(
            f"image is {h}x{w} but this model takes {image_size}x{image_size}; resize it first "
            f"(e.g. VaeImageProcessor(...).preprocess(image, height={image_size}, width={image_size}) or "
            f"torch.nn.functional.interpolate(x, size=({image_size}, {image_size}), mode='bicubic', antialias=True))"
        )
    _check_finite(x, "images")


def check_token_latents(z, num_tokens: int, width: int) -> None:
    """Raise ``ValueError`` unless ``z`` is a finite ``[B, num_tokens, width]`` float tensor (1-D latent tokens)."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"latents must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise ValueError(f"latents must be a floating-point tensor, got dtype {z.dtype}")
    if z.ndim != 3:
        hint = "; add a batch dimension with z.unsqueeze(0)" if z.ndim == 2 else ""
        raise ValueError(
            f"latents must have rank 3 [B, {num_tokens}, {width}] (1-D tokens), got rank {z.ndim} "
            f"with shape {tuple(z.shape)}{hint}"
        )
    if z.shape[0] == 0:
        raise ValueError(f"latents have an empty batch (shape {tuple(z.shape)})")
    if z.shape[1] != num_tokens:
        raise ValueError(
            f"latents must have {num_tokens} tokens in dim 1, got shape {tuple(z.shape)}; "
            "were they produced by a different tokenizer?"
        )
    if z.shape[2] != width:
        raise ValueError(
            f"latents must have width {width} in dim 2, got shape {tuple(z.shape)}; "
            "were they produced by a different tokenizer?"
        )
    _check_finite(z, "latents")
