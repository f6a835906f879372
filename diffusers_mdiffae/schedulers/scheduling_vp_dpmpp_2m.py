"""DPM-Solver++(2M) for mDiffAE's VP x-prediction decoder (the original ``sampler="dpmpp_2m"``)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from diffusers import SchedulerMixin  # noqa: F401  (diffusers' loader looks it up here)

from .scheduling_vp_ddim import VPDDIMScheduler
from .vp_schedule import broadcast_like


class VPDPMSolverMultistepScheduler(VPDDIMScheduler):
    """Second-order multistep DPM-Solver++ in data (x0) prediction, on the same VP schedule.

    Works in the half log-SNR ``lambda = log(alpha / sigma)``: with ``h = lambda_next - lambda``,
    ``x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D`` where ``D`` is the current
    (guided) ``x0`` on the first step and the second-order extrapolation
    ``(1 + 1/(2r)) x0 - 1/(2r) x0_prev`` (``r = h_prev / h``) afterwards. As in DDIM, the last step
    returns the clean prediction when ``set_alpha_to_one`` (the default). Same configuration as
    :class:`VPDDIMScheduler`; a stateful solver, so call ``set_timesteps`` before every sampling run.
    """

    _prev_x0: Optional[torch.Tensor] = None
    _prev_h: Optional[torch.Tensor] = None

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device, None] = None):
        super().set_timesteps(num_inference_steps, device)
        self._prev_x0, self._prev_h = None, None

    def _half_logsnr(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.logsnr(t)

    def _update(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        t, t_next = t[:1], t_next[:1]
        alpha, sigma = self.alpha_sigma(t)
        alpha_n, sigma_n = self.alpha_sigma(t_next)
        h = self._half_logsnr(t_next) - self._half_logsnr(t)
        d = x0
        if self._prev_x0 is not None:
            r = self._prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self._prev_x0
        self._prev_x0, self._prev_h = x0, h
        return broadcast_like(sigma_n / sigma, x_t) * x_t - broadcast_like(alpha_n * torch.expm1(-h), x_t) * d
