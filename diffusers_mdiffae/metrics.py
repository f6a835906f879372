"""Image quality metrics on tensors in [-1, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    # broadcasting two differently shaped images would score something else without a word
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"expected two [B, C, H, W] images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2), after clamping to that range."""
    _check_pair(a, b)
    mse = float((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).square().mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11/1.5, K1 0.01, K2 0.03) over channels and positions.

    Inputs ``[B, C, H, W]`` in [-1, 1] are mapped to [0, 1] first; "valid" windows only.
    """
    _check_pair(a, b)
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


def flat_mask(ref: torch.Tensor, window: int = 9, max_std: float = 0.03) -> torch.Tensor:
    """Bool ``[B, 1, H, W]``: pixels whose ``window``-square neighbourhood in ``ref`` (grey) has std below ``max_std``.

    ``max_std`` is in [-1, 1] units (0.03 is about 4/255): sky, walls, out-of-focus backgrounds.
    """
    g = ref.float().mean(dim=1, keepdim=True)
    pad = window // 2
    mean = F.avg_pool2d(g, window, 1, pad, count_include_pad=False)
    var = F.avg_pool2d(g * g, window, 1, pad, count_include_pad=False) - mean * mean
    return var.clamp_min(0).sqrt() < max_std


def seam_contrast(recon: torch.Tensor, ref: torch.Tensor, period: int = 16, max_std: float = 0.03) -> float:
    """How much more the error of ``recon`` steps near ``period``-pixel edges than near square middles.

    The error image ``recon - ref`` (``[B, C, H, W]``, [-1, 1]) is differenced between horizontal
    and vertical neighbours where both pixels are flat in ``ref`` (:func:`flat_mask`). A pair of
    pixels ``(i, i + 1)`` sits at phase ``(i + 1) % period``; the result is the mean absolute step
    at phases ``period - 1, 0, 1`` (across an edge, and one pixel either side, so a one-pixel line
    along the edge counts as well as a step) over the mean at phases ``period / 2 - 1, period / 2,
    period / 2 + 1`` (the squares' middles), both axes pooled. Middles are the reference because an
    upsampler whose own period divides ``period / 2`` (bicubic from 1/4 or 1/8) has the same phases
    there, so it scores about 1, as does a decoder whose squares meet; squares that do not meet
    score above 1. An error that steps near edges only is ``inf``, one that does not step at all is
    1.0; NaN when the image has no flat pairs at edges or middles (nothing to judge).
    """
    if not isinstance(period, int) or period < 4 or period % 2:
        raise ValueError(f"period must be an even integer >= 4, got {period!r}")
    _check_pair(recon, ref)
    e = recon.float() - ref.float()
    flat = flat_mask(ref, max_std=max_std)
    bands = {"edge": (period - 1, 0, 1), "middle": (period // 2 - 1, period // 2, period // 2 + 1)}
    sums = {"edge": 0.0, "middle": 0.0}
    counts = {"edge": 0, "middle": 0}
    for dim in (-1, -2):
        n = e.shape[dim]
        if n < 2:
            continue
        step = (e.narrow(dim, 1, n - 1) - e.narrow(dim, 0, n - 1)).abs().mean(dim=1, keepdim=True)
        both = flat.narrow(dim, 1, n - 1) & flat.narrow(dim, 0, n - 1)
        shape = [1, 1, 1, 1]
        shape[dim] = n - 1
        phase = ((torch.arange(n - 1) + 1) % period).view(shape)
        for name, phases in bands.items():
            where = both & torch.isin(phase, torch.tensor(phases))
            sums[name] += float(step[where].sum())
            counts[name] += int(where.sum())
    if min(counts.values()) == 0:
        return math.nan
    if sums["middle"] == 0:
        return 1.0 if sums["edge"] == 0 else math.inf
    return (sums["edge"] / counts["edge"]) / (sums["middle"] / counts["middle"])
