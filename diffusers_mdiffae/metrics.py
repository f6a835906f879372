"""Image quality metrics on tensors in [-1, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2), after clamping to that range."""
    mse = float((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).square().mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11/1.5, K1 0.01, K2 0.03) over channels and positions.

    Inputs ``[B, C, H, W]`` in [-1, 1] are mapped to [0, 1] first; "valid" windows only.
    """
    x, y = (a.float().clamp(-1, 1) + 1) / 2, (b.float().clamp(-1, 1) + 1) / 2
    c = x.shape[1]
    k = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t):
        return F.conv2d(t, kernel, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())
