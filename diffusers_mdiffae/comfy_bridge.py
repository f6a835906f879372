"""What ComfyUI's VAE machinery needs from mDiffAE, without importing ComfyUI.

ComfyUI's ``comfy.sd.VAE`` calls ``first_stage_model.encode(x)`` and
``first_stage_model.decode(z, **vae_options)`` and expects plain tensors in [-1, 1]; it also
assigns attributes such as ``device`` on that module. :class:`ComfyMDiffAEModule` is that module:
a thin ``nn.Module`` around :class:`AutoencoderMDiffAE` that carries the loader's decode defaults.
The node pack (``comfyui_nodes/``) builds on it; everything here is testable without ComfyUI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from .models.autoencoders.autoencoder_mdiffae import AutoencoderMDiffAE

# Activation memory of a 1-step decode, per latent position, in units of one hidden-MLP activation
# (model_dim * mlp_ratio values). bench/bench_speed.py measured the full mdiffae_v1 at 51-93 KB per
# position in float32 (peak RSS growth from 256 to 1024 and 2048 pixels), i.e. 3.5-6.5 units;
# 6 units plus a few full-resolution image buffers (104 KB) keeps ComfyUI's batch split on the
# safe side.
_ACTIVATION_FACTOR = 6


class ComfyMDiffAEModule(nn.Module):
    """``first_stage_model`` for ComfyUI: tensors in and out, decode defaults stored here.

    Args:
        vae: the autoencoder (kept as a child so ComfyUI's ModelPatcher moves its parameters).
        steps / pdg_strength / seed: decode defaults, used when ComfyUI passes no options (stock
            ``VAEDecode`` and every tiled path). Node-specific settings come in as keyword
            arguments and never change these.
    """

    def __init__(self, vae: AutoencoderMDiffAE, steps: int = 1, pdg_strength: float = 1.0, seed: int = 0):
        super().__init__()
        self.vae = vae.eval()
        self.default_steps = int(steps)
        self.default_pdg_strength = float(pdg_strength)
        self.default_seed = int(seed)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def patch_size(self) -> int:
        return self.vae.config.patch_size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> latents ``[B, C, H/16, W/16]``."""
        return self.vae.encode(x.to(self.vae.dtype)).latent

    def decode(
        self,
        z: torch.Tensor,
        steps: Optional[int] = None,
        pdg_strength: Optional[float] = None,
        seed: Optional[int] = None,
        callback: Optional[Callable[[int, int], None]] = None,
        **_ignored,
    ) -> torch.Tensor:
        """Latents -> ``[B, 3, 16h, 16w]`` in [-1, 1]; every sample is seeded alone (batch-split safe)."""
        return self.vae.decode(
            z.to(self.vae.dtype),
            num_inference_steps=self.default_steps if steps is None else int(steps),
            pdg_strength=self.default_pdg_strength if pdg_strength is None else float(pdg_strength),
            seed=self.default_seed if seed is None else int(seed),
            callback=callback,
        ).sample

    def decode_memory(self, latent_shape, dtype: torch.dtype, pdg: bool = True) -> int:
        """Bytes a decode of ``latent_shape`` ``[B, C, h, w]`` may need (PDG doubles the batch)."""
        b, _, h, w = latent_shape[:4]
        c = self.vae.config
        per_token = int(c.model_dim * c.mlp_ratio) * _ACTIVATION_FACTOR + 6 * c.patch_size**2 * c.in_channels
        return int(b * (2 if pdg else 1) * h * w * per_token * _dtype_size(dtype))

    def encode_memory(self, image_shape, dtype: torch.dtype) -> int:
        """Bytes an encode of ``image_shape`` ``[B, 3, H, W]`` may need."""
        b, _, hh, ww = image_shape[:4]
        p = self.vae.config.patch_size
        return self.decode_memory((b, 0, -(-hh // p), -(-ww // p)), dtype, pdg=False)


def _dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# -- ComfyUI tensor layouts ---------------------------------------------------------------------


def image_to_model(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[B, H, W, C]`` in [0, 1] (alpha dropped) -> ``[B, 3, H, W]`` in [-1, 1]."""
    if images.ndim != 4:
        raise ValueError(f"IMAGE must be [B, H, W, C], got shape {tuple(images.shape)}")
    return images[..., :3].movedim(-1, 1).float() * 2.0 - 1.0


def model_to_image(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> ComfyUI IMAGE ``[B, H, W, 3]`` float32 in [0, 1]."""
    return ((x.float() + 1.0) / 2.0).clamp(0, 1).movedim(1, -1).contiguous()


# -- checkpoints ----------------------------------------------------------------------------------


class NotAnMDiffAECheckpoint(ValueError):
    """The chosen file is not an mDiffAE checkpoint in any layout this package reads."""


def load_any(path: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None) -> AutoencoderMDiffAE:
    """Load an mDiffAE from a diffusers folder, a published snapshot folder, or a file inside either.

    A ``.safetensors`` file next to a ``config.json`` is resolved to its folder; anything else
    (an SD VAE, a LoRA, a file without config) raises :class:`NotAnMDiffAECheckpoint` naming the
    file and what was expected.
    """
    from .conversion.convert import is_original_snapshot
    from .conversion.layouts import CheckpointError
    from .models.hub import convert_original_snapshot

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    config = folder / "config.json"
    if not config.is_file():
        raise NotAnMDiffAECheckpoint(
            f"{p.name} is not an mDiffAE checkpoint: expected a folder with config.json and the weights "
            "(the diffusers layout written by save_pretrained, or a published mdiffae snapshot)"
        )
    try:
        data = json.loads(config.read_text())
    except ValueError:
        raise NotAnMDiffAECheckpoint(f"{config} is not valid JSON") from None
    try:
        if is_original_snapshot(folder):
            return convert_original_snapshot(folder, torch_dtype=torch_dtype)
        if data.get("_class_name") != AutoencoderMDiffAE.__name__:
            raise NotAnMDiffAECheckpoint(
                f"{p.name} is not an mDiffAE checkpoint: its config.json describes "
                f"{data.get('_class_name') or 'an unknown model'} (use the stock VAE Loader for other VAEs)"
            )
        return AutoencoderMDiffAE.from_pretrained(folder, torch_dtype=torch_dtype)
    except CheckpointError as e:
        raise NotAnMDiffAECheckpoint(str(e)) from None
