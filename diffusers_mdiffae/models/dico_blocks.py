"""Convolutional blocks of the DiCo family (mDiffAE v1/v2, iRDiffAE).

Names of submodules follow the published ``ir_diffae`` package where it could be read (``conv1``,
``conv2``, ``norm1``, ``norm2``, ConvMLP's ``norm``/``conv_in``/``conv_out``); the rest (``cca.proj``,
``conv3``, ``mlp``, ``gate1``/``gate2``) are guesses, listed in the README's evidence table, and the
checkpoint converter's name rules accept the likely alternatives.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .norms import ChannelWiseRMSNorm


class ConvMLP(nn.Module):
    """Pre-normalised two-layer 1x1-convolution MLP with exact (erf) GELU.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]`` through a ``hidden_channels``-wide middle.
    """

    def __init__(self, channels: int, hidden_channels: int, norm_eps: float = 1e-6):
        super().__init__()
        self.norm = ChannelWiseRMSNorm(channels, eps=norm_eps, affine=False)
        self.conv_in = nn.Conv2d(channels, hidden_channels, 1)
        self.conv_out = nn.Conv2d(hidden_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.gelu(self.conv_in(self.norm(x))))


class CompactChannelAttention(nn.Module):
    """Channel re-weighting from the global average: ``x * sigmoid(W @ mean_hw(x) + b)``.

    The global pool makes every output position depend on the whole image; tiled encode/decode
    therefore blend overlapping tiles rather than expecting exact equality with an untiled pass.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.proj(pooled))


class DiCoBlock(nn.Module):
    """DiCo block: a conv path (1x1 -> depthwise -> SiLU -> CCA -> 1x1) and a GELU MLP, both residual.

    Two modes:

    * ``use_external_adaln=False`` (encoder): each residual branch is multiplied by a learned
      per-channel gate (``gate1``, ``gate2``, shape ``[C]``).
    * ``use_external_adaln=True`` (decoder): ``forward`` takes a packed modulation tensor
      ``adaln_m`` of shape ``[B, 4*C]`` laid out as ``(scale1, gate1, scale2, gate2)``; each branch
      input is ``norm(x) * (1 + scale)`` and its output is multiplied by the raw gate (AdaLN-Zero:
      the projector is zero-initialised, so a fresh block is the identity).

    Shapes: ``x`` is ``[B, C, H, W]``; the output has the same shape and dtype.
    """

    # Layer-scale init for the encoder gates: the block starts close to identity but every
    # parameter receives gradient from the first step (the FCDM sibling's layer_scale uses 1e-3).
    encoder_gate_init = 1e-3

    def __init__(
        self,
        channels: int,
        mlp_ratio: float = 4.0,
        *,
        depthwise_kernel_size: int = 7,
        use_external_adaln: bool = False,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.channels = channels
        self.use_external_adaln = use_external_adaln
        hidden = int(channels * mlp_ratio)
        self.norm1 = ChannelWiseRMSNorm(channels, eps=norm_eps, affine=False)
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(
            channels, channels, depthwise_kernel_size, padding=depthwise_kernel_size // 2, groups=channels
        )
        self.cca = CompactChannelAttention(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.norm2 = ChannelWiseRMSNorm(channels, eps=norm_eps, affine=False)
        self.mlp = ConvMLP(channels, hidden, norm_eps=norm_eps)
        if use_external_adaln:
            self.register_parameter("gate1", None)
            self.register_parameter("gate2", None)
        else:
            self.gate1 = nn.Parameter(torch.full((channels,), self.encoder_gate_init))
            self.gate2 = nn.Parameter(torch.full((channels,), self.encoder_gate_init))

    def _conv_path(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.cca(F.silu(self.conv2(self.conv1(h)))))

    def forward(self, x: torch.Tensor, adaln_m: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.use_external_adaln:
            if adaln_m is None:
                raise ValueError("this DiCoBlock is conditioned: pass adaln_m of shape [B, 4*C]")
            scale1, gate1, scale2, gate2 = (m[:, :, None, None].to(x.dtype) for m in adaln_m.chunk(4, dim=1))
            x = x + gate1 * self._conv_path(self.norm1(x) * (1 + scale1))
            return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2))
        gate1 = self.gate1.view(1, -1, 1, 1).to(x.dtype)
        gate2 = self.gate2.view(1, -1, 1, 1).to(x.dtype)
        x = x + gate1 * self._conv_path(self.norm1(x))
        return x + gate2 * self.mlp(self.norm2(x))
