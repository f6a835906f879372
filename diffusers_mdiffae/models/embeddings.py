"""Patch embedding and the diffusion-time embedding, shared by every family member."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .precision import apply_keeping_float32


class Patchify(nn.Module):
    """Non-overlapping ``p x p`` patches to tokens: a stride-``p`` convolution ``proj`` (weight ``[C, 3, p, p]``).

    Shapes: ``[B, in_channels, H, W] -> [B, model_dim, H/p, W/p]``.
    """

    def __init__(self, in_channels: int, patch_size: int, model_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, model_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def log_spaced_frequencies(half: int, max_period: float = 10000.0) -> torch.Tensor:
    """``exp(-ln(max_period) * k / (half - 1))`` for ``k = 0..half-1``, float32.

    The last frequency is exactly ``1 / max_period``: the published packages divide by
    ``half - 1``, unlike DiT.
    """
    k = torch.arange(half, dtype=torch.float32)
    return torch.exp(-math.log(max_period) * k / max(float(half - 1), 1.0))


class SinusoidalTimeEmbeddingMLP(nn.Module):
    """Sin/cos features of ``t`` in [0, 1] (times ``time_scale``) -> ``proj_in`` -> SiLU -> ``proj_out``.

    The frequency table is the persistent float32 buffer ``freqs`` (it is part of the published
    state dicts). It stays float32 when the module is cast to a half dtype: rounded to float16 the
    angles ``1000 t * freq`` would be off by up to half a radian.

    Shapes: ``t [B] -> [B, dim]``.
    """

    def __init__(
        self,
        dim: int,
        *,
        freq_dim: int = 256,
        hidden_mult: float = 1.0,
        time_scale: float = 1000.0,
        max_period: float = 10000.0,
    ):
        super().__init__()
        if freq_dim < 2 or freq_dim % 2:
            raise ValueError(f"freq_dim must be even and at least 2 (a sine and a cosine half), got {freq_dim}")
        self.freq_dim = freq_dim
        self.time_scale = time_scale
        self.max_period = max_period
        hidden = max(int(round(dim * hidden_mult)), 1)
        self.register_buffer("freqs", log_spaced_frequencies(freq_dim // 2, max_period), persistent=True)
        self.proj_in = nn.Linear(freq_dim, hidden)
        self.act = nn.SiLU()
        self.proj_out = nn.Linear(hidden, dim)

    def _apply(self, fn, recurse: bool = True):
        return apply_keeping_float32(self, super()._apply, fn, recurse, ["freqs"])

    def features(self, t: torch.Tensor) -> torch.Tensor:
        """``[sin(1000 t f), cos(1000 t f)]`` in float32, sin first. Shapes: ``[B] -> [B, freq_dim]``."""
        angles = (t.float() * self.time_scale)[:, None] * self.freqs.float()[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """``dtype`` is the compute dtype; it differs from the weights' under layerwise casting."""
        h = self.proj_in(self.features(t).to(self.proj_in.weight.dtype if dtype is None else dtype))
        h = self.act(h)
        return self.proj_out(h.to(self.proj_out.weight.dtype if dtype is None else dtype))
