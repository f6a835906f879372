"""Normalisation layers shared by every mDiffAE-family model."""

from __future__ import annotations

import torch
from torch import nn


class ChannelWiseRMSNorm(nn.Module):
    """RMS normalisation over the channel axis of an NCHW tensor, per spatial position.

    The statistics and the multiply are done in float32 whatever the input dtype (the published
    ``ir_diffae``/``m_diffae`` precision path), and the result is cast back to the input dtype.

    Args:
        channels: number of channels ``C``.
        eps: added to the mean square before the reciprocal square root.
        affine: learn a per-channel ``weight`` (ones) and ``bias`` (zeros). Without it the layer has
            no state-dict entries.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.channels = channels
        self.eps = eps
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ms = x.float().square().mean(dim=1, keepdim=True)
        y = x.float() * torch.rsqrt(ms + self.eps)
        if self.weight is not None:
            y = y * self.weight.float().view(1, -1, 1, 1) + self.bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, affine={self.weight is not None}"
