"""Variance-preserving diffusion schedule in log-SNR form (float32 throughout).

``x_t = alpha_t * x_0 + sigma_t * eps`` with ``eps ~ N(0, s^2)``, ``alpha^2 + sigma^2 = 1`` and
``logsnr = log(alpha^2 / sigma^2)``. Time ``t`` runs from 0 (clean) to 1 (noise).

The operations and their order follow the published packages' ``vp_diffusion.py`` (read from the
same author's public ``dinac_ae`` sibling), so a decode reproduces theirs to float32 rounding.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

#: Time grids the samplers accept (the published inference configs' ``schedule`` field).
SCHEDULES = ("linear", "cosine")


def alpha_sigma_from_logsnr(logsnr: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``alpha = sqrt(sigmoid(logsnr))``, ``sigma = sqrt(sigmoid(-logsnr))``, in float32."""
    logsnr = logsnr.float()
    return torch.exp(0.5 * torch.nn.functional.logsigmoid(logsnr)), torch.exp(
        0.5 * torch.nn.functional.logsigmoid(-logsnr)
    )


def cosine_interpolated_logsnr(t: torch.Tensor, logsnr_min: float = -10.0, logsnr_max: float = 10.0) -> torch.Tensor:
    """Truncated-cosine schedule ``logsnr(t) = -2 log tan(a t + b)``, float32.

    ``b = atan(exp(-logsnr_max / 2))`` and ``a = atan(exp(-logsnr_min / 2)) - b``, so that
    ``logsnr(0) = logsnr_max`` and ``logsnr(1) = logsnr_min``.
    """
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    t = torch.as_tensor(t).float()
    a_t = torch.tensor(a, dtype=torch.float32, device=t.device)
    b_t = torch.tensor(b, dtype=torch.float32, device=t.device)
    return -2.0 * torch.log(torch.tan(a_t * t + b_t))


def shifted_cosine_interpolated_logsnr(
    t: torch.Tensor,
    logsnr_min: float = -10.0,
    logsnr_max: float = 10.0,
    log_change_high: float = 0.0,
    log_change_low: float = 0.0,
) -> torch.Tensor:
    """SiD2's shifted cosine: the shift moves linearly in ``t`` from ``log_change_high`` to ``log_change_low``.

    ``logsnr(t) = (1 - t) (base(t) + log_change_high) + t (base(t) + log_change_low)``. With both
    changes 0 (the published models) it equals ``base(t)`` up to the rounding of that sum, which
    the published samplers also incur; the expression is kept as they write it.
    """
    t = torch.as_tensor(t).float()
    base = cosine_interpolated_logsnr(t, logsnr_min, logsnr_max)
    return (1.0 - t) * (base + float(log_change_high)) + t * (base + float(log_change_low))


def time_grid(schedule: str, num_steps: int) -> torch.Tensor:
    """Descending times ``[num_steps + 1]`` from 1 to 0 at which a ``num_steps``-evaluation sampler runs.

    ``"linear"`` spaces them evenly in ``t``; ``"cosine"`` as ``0.5 (1 - cos(pi i / n))``, denser
    at both ends.
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    n = num_steps + 1
    if schedule == "linear":
        ascending = torch.linspace(0.0, 1.0, n, dtype=torch.float32)
    elif schedule == "cosine":
        i = torch.arange(n, dtype=torch.float32)
        ascending = 0.5 * (1.0 - torch.cos(math.pi * (i / (n - 1))))
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return torch.flip(ascending, dims=[0])


def broadcast_like(coeff: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample ``[B]`` (or scalar) coefficient to ``[B, 1, 1, 1]`` for NCHW maths."""
    coeff = coeff.reshape(-1)
    return coeff.view(-1, *([1] * (x.ndim - 1)))
