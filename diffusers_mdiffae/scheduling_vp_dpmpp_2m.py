"""DPM-Solver++(2M) for mDiffAE's VP x-prediction decoder (the original ``sampler="dpmpp_2m"``)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from diffusers import SchedulerMixin  # noqa: F401  (diffusers' loader looks it up here)

from .scheduling_vp_ddim import VPDDIMScheduler, VPDDIMSchedulerOutput
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

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device, None] = None):
        super().set_timesteps(num_inference_steps, device)
        self._prev_x0: Optional[torch.Tensor] = None
        self._prev_h: Optional[torch.Tensor] = None

    def _half_logsnr(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.logsnr(t)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        return_dict: bool = True,
        model_output_uncond: Optional[torch.Tensor] = None,
        guidance_scale: Optional[float] = None,
    ) -> Union[VPDDIMSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """Advance ``sample`` by one solver step; arguments as in :meth:`VPDDIMScheduler.step`."""
        t_next = self._next_time(timestep)
        t = torch.as_tensor(timestep, dtype=torch.float32, device=sample.device).reshape(-1)[:1]
        t_next = t_next.reshape(-1)[:1].to(sample.device)
        x = sample.float()
        if model_output_uncond is not None:
            x0 = self.combine_guidance(model_output, model_output_uncond, guidance_scale)
        else:
            x0 = model_output.float()
        if float(t_next) == 0.0 and self.config.set_alpha_to_one:
            prev = x0
        else:
            alpha, sigma = self.alpha_sigma(t)
            alpha_n, sigma_n = self.alpha_sigma(t_next)
            h = self._half_logsnr(t_next) - self._half_logsnr(t)
            d = x0
            if self._prev_x0 is not None:
                r = self._prev_h / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self._prev_x0
            prev = broadcast_like(sigma_n / sigma, x) * x - broadcast_like(alpha_n * torch.expm1(-h), x) * d
            self._prev_h = h
        self._prev_x0 = x0
        if not return_dict:
            return prev, x0
        return VPDDIMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)
