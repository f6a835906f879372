"""Patch (un)shuffling and the diffusion-time embedding."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class Patchify(nn.Module):
    """PixelUnshuffle(p) followed by a 1x1 convolution, as the mDiffAE card describes.

    Equivalent to a ``p x p`` stride-``p`` convolution whose weight ``[C, 3, p, p]`` is reshaped to
    ``[C, 3*p*p, 1, 1]`` (PixelUnshuffle orders channels as ``(c, dy, dx)``); the converter uses that
    identity for checkpoints stored the other way.

    Shapes: ``[B, in_channels, H, W] -> [B, model_dim, H/p, W/p]``.
    """

    def __init__(self, in_channels: int, patch_size: int, model_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.unshuffle = nn.PixelUnshuffle(patch_size)
        self.proj = nn.Conv2d(in_channels * patch_size * patch_size, model_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.unshuffle(x))


class Unpatchify(nn.Module):
    """1x1 convolution to ``out_channels * p * p`` followed by PixelShuffle(p).

    Shapes: ``[B, model_dim, h, w] -> [B, out_channels, h*p, w*p]``.
    """

    def __init__(self, model_dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.proj = nn.Conv2d(model_dim, out_channels * patch_size * patch_size, 1)
        self.shuffle = nn.PixelShuffle(patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.proj(x))


def sinusoidal_features(
    t: torch.Tensor, freq_dim: int = 256, time_scale: float = 1000.0, max_period: float = 10000.0
) -> torch.Tensor:
    """Sin/cos features of continuous time ``t`` (float32), sin first.

    Frequencies are ``exp(-ln(max_period) * k / (half - 1))`` for ``k = 0..half-1``: the last one is
    exactly ``1 / max_period`` (the published packages divide by ``half - 1``, unlike DiT).

    Shapes: ``t [B] -> [B, freq_dim]``.
    """
    half = freq_dim // 2
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / max(half - 1, 1))
    args = t.float()[:, None] * time_scale * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class SinusoidalTimeEmbeddingMLP(nn.Module):
    """Sinusoidal features of ``t`` in [0, 1] -> Linear -> SiLU -> Linear.

    The frequency table is recomputed on every call (not a buffer), so it never enters the state
    dict and survives meta-device construction.

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
        self.freq_dim = freq_dim
        self.time_scale = time_scale
        self.max_period = max_period
        hidden = int(dim * hidden_mult)
        self.linear_1 = nn.Linear(freq_dim, hidden)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(hidden, dim)

    def forward(self, t: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """``dtype`` is the compute dtype; it differs from the weights' under layerwise casting."""
        feats = sinusoidal_features(t, self.freq_dim, self.time_scale, self.max_period)
        feats = feats.to(self.linear_1.weight.dtype if dtype is None else dtype)
        return self.linear_2(self.act(self.linear_1(feats)))
