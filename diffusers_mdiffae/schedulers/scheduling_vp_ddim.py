"""Deterministic DDIM for mDiffAE's VP x-prediction decoder, with path-drop guidance (PDG)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from diffusers import ConfigMixin, SchedulerMixin  # noqa: F401  (diffusers' loader looks these up here)
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .vp_schedule import alpha_sigma_from_logsnr, broadcast_like, cosine_interpolated_logsnr


@dataclass
class VPDDIMSchedulerOutput(BaseOutput):
    """Output of :meth:`VPDDIMScheduler.step`.

    Args:
        prev_sample: ``x`` at the next (less noisy) time, float32, ``[B, C, H, W]``.
        pred_original_sample: the (guided) clean-image prediction used for the update, float32.
    """

    prev_sample: torch.Tensor
    pred_original_sample: Optional[torch.Tensor] = None


class VPDDIMScheduler(SchedulerMixin, ConfigMixin):
    """DDIM (eta = 0) on the variance-preserving process of mDiffAE, in continuous time.

    ``x_t = alpha_t x_0 + sigma_t eps`` with ``eps ~ N(0, pixel_noise_std^2)`` and log-SNR given by
    :func:`~diffusers_mdiffae.vp_schedule.cosine_interpolated_logsnr`. Time runs from 1 (noise) to 0
    (clean); ``timesteps`` holds the times in [0, 1] at which the model is evaluated, descending,
    linearly spaced (the published ``schedule="linear"``). The model predicts ``x_0``; ``step``
    recovers ``eps`` from it. All arithmetic is float32 whatever dtype the model runs in.

    Path-drop guidance combines a conditional and a degraded ("unconditional") prediction of the
    same network: ``x0 = x0_uncond + w (x0_cond - x0_uncond)``; ``w = 1`` is no guidance.

    Args:
        logsnr_min: log-SNR at ``t = 1``.
        logsnr_max: log-SNR at ``t = 0``.
        pixel_noise_std: std ``s`` of the pixel-space noise.
        logsnr_shift: additive log-SNR offset (``2 log(scale)``, SiD2 convention). The published
            models are read as unshifted (spec open question 3); kept configurable.
        guidance_scale: default PDG strength ``w`` used by :meth:`step` when an unconditional
            prediction is passed without an explicit scale.
        set_alpha_to_one: the last step returns the clean prediction ``x0`` (alpha = 1) instead of
            the DDIM update to ``t = 0``, where ``sigma`` is still 0.0067. ``x0`` is the MMSE
            estimate, which is what makes the 1-step decode PSNR-optimal.
        num_train_timesteps: length reported by ``len(scheduler)``; time itself is continuous.
    """

    order = 1
    _compatibles: list = []

    @register_to_config
    def __init__(
        self,
        logsnr_min: float = -10.0,
        logsnr_max: float = 10.0,
        pixel_noise_std: float = 0.558,
        logsnr_shift: float = 0.0,
        guidance_scale: float = 1.0,
        set_alpha_to_one: bool = True,
        num_train_timesteps: int = 1000,
    ):
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min ({logsnr_min}) must be below logsnr_max ({logsnr_max})")
        if pixel_noise_std <= 0:
            raise ValueError(f"pixel_noise_std must be positive, got {pixel_noise_std}")
        self.num_inference_steps: Optional[int] = None
        self.timesteps = torch.tensor([1.0])
        self._grid = torch.tensor([1.0, 0.0])

    # -- schedule -----------------------------------------------------------------------------

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        """log-SNR at continuous time ``t`` (float32, same shape)."""
        c = self.config
        return cosine_interpolated_logsnr(torch.as_tensor(t), c.logsnr_min, c.logsnr_max, c.logsnr_shift)

    def alpha_sigma(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` in float32 for continuous time ``t``."""
        return alpha_sigma_from_logsnr(self.logsnr(t))

    @property
    def init_noise_sigma(self) -> float:
        """Std of ``x_1``: ``sigma(1) * pixel_noise_std``, the scale for unit Gaussian noise."""
        return float(self.alpha_sigma(torch.tensor(1.0))[1]) * self.config.pixel_noise_std

    def set_timesteps(self, num_inference_steps: int, device: Union[str, torch.device, None] = None):
        """Evaluate the model at ``num_inference_steps`` times linearly spaced from 1 down to 1/n."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        self.num_inference_steps = num_inference_steps
        self._grid = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float32, device=device)
        self.timesteps = self._grid[:-1]

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """VP DDIM feeds ``x_t`` unscaled."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # -- updates ------------------------------------------------------------------------------

    def _next_time(self, timestep: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)[0].to(self._grid.device)
        idx = int(torch.argmin((self._grid - t).abs()))
        if not torch.isclose(self._grid[idx], t, atol=1e-6) or idx == len(self._grid) - 1:
            raise ValueError(
                f"timestep {float(t):.6f} is not one of this scheduler's timesteps {self.timesteps.tolist()}; "
                "call set_timesteps first"
            )
        return self._grid[idx + 1]

    def combine_guidance(
        self, x0_cond: torch.Tensor, x0_uncond: torch.Tensor, guidance_scale: Optional[float] = None
    ) -> torch.Tensor:
        """PDG in x0 space: ``x0_uncond + w (x0_cond - x0_uncond)``, float32."""
        w = self.config.guidance_scale if guidance_scale is None else guidance_scale
        x0_cond, x0_uncond = x0_cond.float(), x0_uncond.float()
        return x0_uncond + w * (x0_cond - x0_uncond)

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
        """Move ``sample`` from ``timestep`` to the next time of the grid.

        Args:
            model_output: the model's ``x0`` prediction (any float dtype), ``[B, C, H, W]``.
            timestep: the current time, an element of ``self.timesteps``.
            sample: ``x_t``, ``[B, C, H, W]``.
            generator: unused (deterministic DDIM); accepted for pipeline compatibility.
            model_output_uncond: the degraded prediction for path-drop guidance, or None.
            guidance_scale: PDG strength; defaults to ``config.guidance_scale``.
        """
        t_next = self._next_time(timestep)
        t = torch.as_tensor(timestep, dtype=torch.float32, device=sample.device).reshape(-1)
        x_t = sample.float()
        if model_output_uncond is not None:
            x0 = self.combine_guidance(model_output, model_output_uncond, guidance_scale)
        else:
            x0 = model_output.float()
        if float(t_next) == 0.0 and self.config.set_alpha_to_one:
            prev = x0
        else:
            prev = self._update(x_t, x0, t, t_next.to(sample.device).reshape(-1))
        if not return_dict:
            return prev, x0
        return VPDDIMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def _update(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """DDIM: ``alpha_next x0 + sigma_next eps`` with ``eps`` recovered from ``x_t`` and ``x0``."""
        alpha, sigma = self.alpha_sigma(t)
        eps = (x_t - broadcast_like(alpha, x_t) * x0) / broadcast_like(sigma, x_t)
        alpha_n, sigma_n = self.alpha_sigma(t_next)
        return broadcast_like(alpha_n, x_t) * x0 + broadcast_like(sigma_n, x_t) * eps

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """``x_t = alpha_t x_0 + sigma_t * pixel_noise_std * noise`` for unit Gaussian ``noise``.

        ``timesteps`` are continuous times in [0, 1], one per sample (``[B]``) or a scalar.
        """
        t = torch.as_tensor(timesteps, dtype=torch.float32, device=original_samples.device).reshape(-1)
        alpha, sigma = self.alpha_sigma(t)
        x0 = original_samples.float()
        noisy = broadcast_like(alpha, x0) * x0 + broadcast_like(sigma, x0) * self.config.pixel_noise_std * noise.float()
        return noisy.to(original_samples.dtype)
