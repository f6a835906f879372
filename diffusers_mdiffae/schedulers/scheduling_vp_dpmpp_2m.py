"""DPM-Solver++(2M) for the mDiffAE family's VP x-prediction decoder (the original ``sampler="dpmpp_2m"``)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from diffusers import SchedulerMixin  # noqa: F401  (diffusers' loader looks it up here)

from .scheduling_vp_ddim import VPDDIMScheduler


class VPDPMSolverMultistepScheduler(VPDDIMScheduler):
    """Second-order multistep DPM-Solver++ in data (x0) prediction, on the same VP schedule.

    Works in the half log-SNR ``lambda = log(alpha / sigma)``: with ``h = lambda_next - lambda``
    and ``phi = expm1(-h)``, the first step is
    ``x_next = (sigma_next / sigma) x - alpha_next phi x0``; later steps add the correction
    ``- 0.5 alpha_next phi D1`` with ``D1 = (x0 - x0_prev) / r`` and ``r = h_prev / h``. Like DDIM
    it ends at ``t = 0``. Same configuration as :class:`VPDDIMScheduler`; a stateful solver, so call
    ``set_timesteps`` before every sampling run.
    """

    _prev_x0: Optional[torch.Tensor] = None

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: Union[str, torch.device, None] = None,
        schedule: Optional[str] = None,
        strength: float = 1.0,
    ) -> None:
        super().set_timesteps(num_inference_steps, device, schedule, strength)
        self._prev_x0 = None

    def _update(self, x_t: torch.Tensor, x0: torch.Tensor, i: int) -> torch.Tensor:
        half = 0.5 * self._logsnr
        (sigma,) = self._coefficients(i, x_t, self._sigmas)
        alpha_n, sigma_n = self._coefficients(i + 1, x_t, self._alphas, self._sigmas)
        h = half[i + 1] - half[i]
        phi = torch.expm1(-h).to(x_t.device).expand(x_t.shape[0]).view(-1, *([1] * (x_t.ndim - 1)))
        ratio = sigma_n / sigma
        if self._prev_x0 is None:
            prev = ratio * x_t - alpha_n * phi * x0
        else:
            r = ((half[i] - half[i - 1]) / h).to(x_t.device)
            d1 = (x0 - self._prev_x0) / r
            common = alpha_n * phi
            prev = ratio * x_t - common * x0 - 0.5 * common * d1
        self._prev_x0 = x0
        return prev
