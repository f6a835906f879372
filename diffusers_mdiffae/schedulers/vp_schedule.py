"""Variance-preserving diffusion schedule in log-SNR form (float32 throughout).

``x_t = alpha_t * x_0 + sigma_t * eps`` with ``eps ~ N(0, s^2)``, ``alpha^2 + sigma^2 = 1`` and
``logsnr = log(alpha^2 / sigma^2)``. Time ``t`` runs from 0 (clean) to 1 (noise).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch


def alpha_sigma_from_logsnr(logsnr: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``alpha = sqrt(sigmoid(logsnr))``, ``sigma = sqrt(sigmoid(-logsnr))``, in float32."""
    logsnr = logsnr.float()
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def cosine_interpolated_logsnr(
    t: torch.Tensor, logsnr_min: float = -10.0, logsnr_max: float = 10.0, shift: float = 0.0
) -> torch.Tensor:
    """Truncated-cosine schedule ``logsnr(t) = -2 log tan(a t + b) + shift``.

    ``b = atan(exp(-logsnr_max / 2))`` and ``a = atan(exp(-logsnr_min / 2)) - b``, so that
    ``logsnr(0) = logsnr_max`` and ``logsnr(1) = logsnr_min`` before the shift. ``shift`` is the
    SiD2-style additive log-SNR offset (``2 log(scale)``); 0 for the published models.
    """
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return -2.0 * torch.log(torch.tan(a * t.float() + b)) + shift


def broadcast_like(coeff: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``[B]`` (or scalar) coefficient to ``[B, 1, 1, 1]`` for NCHW maths."""
    coeff = coeff.reshape(-1)
    return coeff.view(-1, *([1] * (x.ndim - 1)))
