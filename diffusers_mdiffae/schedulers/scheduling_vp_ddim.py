"""Deterministic DDIM for mDiffAE's VP x-prediction decoder, with path-drop guidance (PDG)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from diffusers import ConfigMixin, SchedulerMixin  # noqa: F401  (diffusers' loader looks these up here)
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .vp_schedule import (
    SCHEDULES,
    alpha_sigma_from_logsnr,
    broadcast_like,
    shifted_cosine_interpolated_logsnr,
    time_grid,
)


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
    """DDIM (eta = 0) on the variance-preserving process of the mDiffAE family, in continuous time.

    ``x_t = alpha_t x_0 + sigma_t eps`` with ``eps ~ N(0, pixel_noise_std^2)`` and the shifted
    cosine-interpolated log-SNR of :mod:`~diffusers_mdiffae.schedulers.vp_schedule`. Time runs from
    1 (noise) to 0 (clean). ``set_timesteps(n)`` builds a grid of ``n + 1`` times (``"linear"`` or
    ``"cosine"``, optionally scaled by ``strength``); ``timesteps`` holds the first ``n``, at which
    the model is evaluated, and every ``step`` moves to the next grid point, the last one to
    ``t = 0`` itself, as the published samplers do. The model predicts ``x_0``; ``step`` recovers
    ``eps`` from it. All arithmetic is float32 whatever dtype the model runs in.

    Path-drop guidance combines a conditional and a degraded ("unconditional") prediction of the
    same network: ``x0 = x0_uncond + w (x0_cond - x0_uncond)``; ``w = 1`` is no guidance.

    A scheduler holds the state of one sampling run (its grid and position), like every diffusers
    scheduler: use one instance per concurrent run (``from_config(scheduler.config)`` copies it).

    Args:
        logsnr_min: log-SNR at ``t = 1``.
        logsnr_max: log-SNR at ``t = 0``.
        pixel_noise_std: std ``s`` of the pixel-space noise.
        log_change_high / log_change_low: SiD2 log-SNR shifts at ``t = 0`` and ``t = 1`` (0 for the
            published models).
        schedule: default time grid, ``"linear"`` or ``"cosine"``.
        pdg_strength: default PDG strength ``w`` used by :meth:`step` when an unconditional
            prediction is passed without an explicit strength.
        set_alpha_to_one: return the clean prediction ``x0`` on the last step instead of the DDIM
            update to ``t = 0`` (where ``sigma`` is still 0.0067). Off, as in the published samplers.
        num_train_timesteps: length reported by ``len(scheduler)``; time itself is continuous.
    """

    order = 1
    _compatibles = ["VPDDIMScheduler", "VPDPMSolverMultistepScheduler"]

    @register_to_config
    def __init__(
        self,
        logsnr_min: float = -10.0,
        logsnr_max: float = 10.0,
        pixel_noise_std: float = 0.558,
        log_change_high: float = 0.0,
        log_change_low: float = 0.0,
        schedule: str = "linear",
        pdg_strength: float = 1.0,
        set_alpha_to_one: bool = False,
        num_train_timesteps: int = 1000,
    ):
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min ({logsnr_min}) must be below logsnr_max ({logsnr_max})")
        if not pixel_noise_std > 0:
            raise ValueError(f"pixel_noise_std must be positive, got {pixel_noise_std}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.num_inference_steps: Optional[int] = None
        self._step_index: Optional[int] = None
        self._set_grid(torch.tensor([1.0, 0.0]))

    @classmethod
    def _get_compatibles(cls):
        # diffusers resolves compatible names in its own namespace only; ours live in this package.
        import diffusers_mdiffae

        return [getattr(diffusers_mdiffae, name) for name in dict.fromkeys([cls.__name__, *cls._compatibles])]

    # -- schedule -----------------------------------------------------------------------------

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        """log-SNR at continuous time ``t`` (float32, same shape)."""
        c = self.config
        return shifted_cosine_interpolated_logsnr(t, c.logsnr_min, c.logsnr_max, c.log_change_high, c.log_change_low)

    def alpha_sigma(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` in float32 for continuous time ``t``."""
        return alpha_sigma_from_logsnr(self.logsnr(t))

    def _set_grid(self, grid: torch.Tensor) -> None:
        # log-SNR, alpha and sigma of the whole grid in one vectorised call, as the published
        # samplers compute them, so every coefficient rounds the same way.
        self._grid = grid
        self._logsnr = self.logsnr(grid)
        self._alphas, self._sigmas = alpha_sigma_from_logsnr(self._logsnr)
        self.timesteps = grid[:-1]

    @property
    def init_noise_sigma(self) -> float:
        """Std of the initial state for unit Gaussian noise: ``sigma(t_start) * pixel_noise_std``."""
        return float(self._sigmas[0]) * self.config.pixel_noise_std

    @property
    def step_index(self) -> Optional[int]:
        """Index of the next grid interval :meth:`step` will take (None before the first step)."""
        return self._step_index

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: Union[str, torch.device, None] = None,
        schedule: Optional[str] = None,
        strength: float = 1.0,
    ) -> None:
        """Prepare a run of ``num_inference_steps`` model evaluations.

        Args:
            num_inference_steps: model evaluations (the grid has one more point).
            device: where the grid lives.
            schedule: ``"linear"`` or ``"cosine"``; defaults to ``config.schedule``.
            strength: in (0, 1]; the whole grid is scaled by it, so sampling starts at ``t = strength``.
        """
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
        grid = time_grid(schedule or self.config.schedule, num_inference_steps)
        if strength != 1.0:
            grid = grid * float(strength)
        self.num_inference_steps = num_inference_steps
        self._step_index = None
        self._set_grid(grid.to(device))

    def initial_state(self, noise: torch.Tensor) -> torch.Tensor:
        """``x`` at the first grid time from unit Gaussian ``noise`` ``[B, C, H, W]`` (float32).

        ``sigma(t_start) * (pixel_noise_std * noise)``, in that order: there is no image yet, so the
        ``alpha * x0`` term is 0.
        """
        noise = noise.float() * self.config.pixel_noise_std
        t_start = self._grid[0:1].to(noise.device).expand(noise.shape[0])
        _, sigma = alpha_sigma_from_logsnr(self.logsnr(t_start))
        return broadcast_like(sigma, noise) * noise

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """VP DDIM feeds ``x_t`` unscaled."""
        return sample

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # -- updates ------------------------------------------------------------------------------

    def _index_for(self, timestep) -> int:
        if self._step_index is not None:
            return self._step_index
        t = float(torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)[0])
        grid = self._grid.float().cpu()
        idx = int(torch.argmin((grid - t).abs()))
        if abs(float(grid[idx]) - t) > 1e-6 or idx == len(grid) - 1:
            raise ValueError(
                f"timestep {t:.6f} is not one of this scheduler's timesteps {self.timesteps.tolist()}; "
                "call set_timesteps first"
            )
        return idx

    def combine_guidance(
        self, x0_cond: torch.Tensor, x0_uncond: torch.Tensor, pdg_strength: Optional[float] = None
    ) -> torch.Tensor:
        """PDG in x0 space: ``x0_uncond + w (x0_cond - x0_uncond)``, float32."""
        w = self.config.pdg_strength if pdg_strength is None else pdg_strength
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
        pdg_strength: Optional[float] = None,
    ) -> Union[VPDDIMSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """Move ``sample`` from ``timestep`` to the next time of the grid.

        Args:
            model_output: the model's ``x0`` prediction (any float dtype), same shape as ``sample``.
            timestep: the current time, an element of ``self.timesteps`` (steps are taken in order).
            sample: ``x_t``, ``[B, C, H, W]``.
            generator: unused (deterministic DDIM); accepted for pipeline compatibility.
            model_output_uncond: the degraded prediction for path-drop guidance, or None.
            pdg_strength: PDG strength; defaults to ``config.pdg_strength``.
        """
        for name, value in (("model_output", model_output), ("model_output_uncond", model_output_uncond)):
            if value is not None and value.shape != sample.shape:
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)} but sample has {tuple(sample.shape)}; "
                    "they must match (no broadcasting over the batch)"
                )
        i = self._index_for(timestep)
        if i >= len(self._grid) - 1:
            raise ValueError(f"all {self.num_inference_steps} steps are taken; call set_timesteps to start again")
        if model_output_uncond is not None:
            x0 = self.combine_guidance(model_output, model_output_uncond, pdg_strength)
        else:
            x0 = model_output.float()
        if i == len(self._grid) - 2 and self.config.set_alpha_to_one:
            prev = x0
        else:
            prev = self._update(sample.float(), x0, i)
        self._step_index = i + 1
        if not return_dict:
            return prev, x0
        return VPDDIMSchedulerOutput(prev_sample=prev, pred_original_sample=x0)

    def _coefficients(self, i: int, x: torch.Tensor, *tables: torch.Tensor):
        """Entries ``i`` of per-grid tables, expanded to the batch and shaped for ``x``."""
        b = x.shape[0]
        return [broadcast_like(table[i].to(x.device).expand(b), x) for table in tables]

    def _update(self, x_t: torch.Tensor, x0: torch.Tensor, i: int) -> torch.Tensor:
        """DDIM: ``alpha_next x0 + sigma_next eps`` with ``eps = (x_t - alpha x0) / sigma``."""
        alpha, sigma = self._coefficients(i, x_t, self._alphas, self._sigmas)
        alpha_n, sigma_n = self._coefficients(i + 1, x_t, self._alphas, self._sigmas)
        eps = (x_t - alpha * x0) / sigma
        return alpha_n * x0 + sigma_n * eps

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x_t = alpha_t x_0 + sigma_t * pixel_noise_std * noise`` for unit Gaussian ``noise``.

        ``timesteps`` are continuous times in [0, 1], one per sample (``[B]``) or a scalar.
        """
        t = torch.as_tensor(timesteps, dtype=torch.float32, device=original_samples.device).reshape(-1)
        alpha, sigma = self.alpha_sigma(t)
        x0 = original_samples.float()
        noisy = (
            broadcast_like(alpha, x0) * x0 + broadcast_like(sigma, x0) * self.config.pixel_noise_std * noise.float()
        )
        return noisy.to(original_samples.dtype)
