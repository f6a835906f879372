"""FCDM blocks (SemDisDiffAE): ConvNeXt-style depthwise conv, GRN MLP and (scale, gate) AdaLN.

Names and order follow the published ``fcdm_diffae`` code (``dwconv``, ``norm``, ``pwconv1``,
``grn.gamma``/``grn.beta``, ``pwconv2``, encoder ``layer_scale``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .norms import ChannelWiseRMSNorm


class GRN(nn.Module):
    """Global Response Normalization: ``gamma * (x * n) + beta + x``, ``n`` = per-channel spatial L2
    norm divided by its mean over channels (statistics in float32).

    The spatial norm makes every output depend on the whole image, like DiCo's channel attention;
    tiled decoding blends tiles rather than matching an untiled pass exactly.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``; ``gamma``, ``beta`` are ``[1, C, 1, 1]``, zero at init.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma.to(x.dtype), self.beta.to(x.dtype)
        if x.is_contiguous():
            # The published order of operations: bit-for-bit parity in the contiguous layout.
            g = torch.linalg.vector_norm(x, ord=2, dim=(2, 3), keepdim=True).float()
            n = (g / (g.mean(dim=1, keepdim=True) + self.eps)).to(x.dtype)
            return gamma * (x * n) + beta + x
        # Channels-last (the fast default): the same values up to rounding, in one pass over x;
        # vector_norm is several times slower on this layout and the 4C-wide tensor is memory-bound.
        g = x.float().square().sum(dim=(2, 3), keepdim=True).sqrt()
        n = (g / (g.mean(dim=1, keepdim=True) + self.eps)).to(x.dtype)
        return torch.addcmul(beta, x, gamma * n + 1)


class FCDMBlock(nn.Module):
    """``x + gate * pwconv2(GRN(GELU(pwconv1(norm(dwconv(x)) * (1 + scale)))))``.

    Two modes:

    * ``use_external_adaln=False`` (encoder): no modulation; the branch is multiplied by the learned
      per-channel ``layer_scale`` ``[C]`` (initialised to ``layer_scale_init``).
    * ``use_external_adaln=True`` (decoder): ``forward`` takes ``adaln_m`` ``[B, 2*C]`` packed as
      ``(scale, gate)``; the gate is applied raw (AdaLN-Zero: a fresh block is the identity).

    Shapes: ``x`` is ``[B, C, H, W]``; the output has the same shape and dtype.
    """

    def __init__(
        self,
        channels: int,
        mlp_ratio: float = 4.0,
        *,
        depthwise_kernel_size: int = 7,
        use_external_adaln: bool = False,
        norm_eps: float = 1e-6,
        layer_scale_init: float = 1e-3,
    ):
        super().__init__()
        self.channels = channels
        self.use_external_adaln = use_external_adaln
        hidden = max(int(channels * mlp_ratio), 1)
        self.dwconv = nn.Conv2d(
            channels, channels, depthwise_kernel_size, padding=depthwise_kernel_size // 2, groups=channels
        )
        self.norm = ChannelWiseRMSNorm(channels, eps=norm_eps, affine=False)
        self.pwconv1 = nn.Conv2d(channels, hidden, 1)
        self.grn = GRN(hidden)
        self.pwconv2 = nn.Conv2d(hidden, channels, 1)
        if use_external_adaln:
            self.register_parameter("layer_scale", None)
        else:
            self.layer_scale = nn.Parameter(torch.full((channels,), float(layer_scale_init)))

    def forward(self, x: torch.Tensor, adaln_m: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.norm(self.dwconv(x))
        if self.use_external_adaln:
            if adaln_m is None:
                raise ValueError("this FCDMBlock is conditioned: pass adaln_m of shape [B, 2*C]")
            scale, gate = (m[:, :, None, None] for m in adaln_m.to(x.dtype).chunk(2, dim=-1))
            h = h * (1.0 + scale)
        else:
            gate = self.layer_scale.view(1, -1, 1, 1).to(x.dtype)
        h = self.pwconv2(self.grn(F.gelu(self.pwconv1(h))))
        return x + gate * h
