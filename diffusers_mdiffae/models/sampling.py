"""The VP decode every family member shares: inference settings, initial noise, the sampling loop with PDG.

Two ways to draw the initial noise, both exact functions of a seed:

* per sample (the default for pipelines): every sample has its own CPU generator seeded with the
  same seed, so a sample decodes to the same image whatever the batch it is in, the slicing or the
  tiling;
* per batch (the published packages' ``decode(latents, height, width, inference_config)``): one CPU
  generator seeded with ``inference_config.seed`` draws the whole ``[B, 3, H, W]`` tensor, as their
  ``sample_noise`` does, so decodes reproduce theirs. For a batch of one both draws coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..schedulers.scheduling_vp_ddim import VPDDIMScheduler
from ..schedulers.scheduling_vp_dpmpp_2m import VPDPMSolverMultistepScheduler
from ..schedulers.vp_schedule import SCHEDULES
from .token_mask import grouped_keep_mask

SAMPLERS = {"ddim": VPDDIMScheduler, "dpmpp_2m": VPDPMSolverMultistepScheduler}
GeneratorArg = Optional[Union[torch.Generator, List[torch.Generator]]]


@dataclass
class MDiffAEInferenceConfig:
    """Decode settings of the published DiCo packages (``m_diffae``, ``m_diffae_v2``, ``ir_diffae``), same names.

    Args:
        num_steps: decoder evaluations. 1 is the PSNR-optimal default of the published models.
        sampler: ``"ddim"`` or ``"dpmpp_2m"``.
        schedule: time grid, ``"linear"`` or ``"cosine"``.
        pdg_enabled: apply path-drop guidance.
        pdg_strength: guidance weight when enabled (the mDiffAE v1 card recommends 1.05-1.2).
        strength: in (0, 1]; sampling starts at ``t = strength`` instead of 1.
        seed: seeds one CPU generator for the whole batch's noise; None draws from torch's global RNG.
    """

    num_steps: int = 1
    sampler: str = "ddim"
    schedule: str = "linear"
    pdg_enabled: bool = False
    pdg_strength: float = 1.05
    strength: float = 1.0
    seed: Optional[int] = None


@dataclass
class IRDiffAEInferenceConfig(MDiffAEInferenceConfig):
    """``ir_diffae``'s settings: as :class:`MDiffAEInferenceConfig`, PDG strength 2.0 by default."""

    pdg_strength: float = 2.0


@dataclass
class FCDMDiffAEInferenceConfig:
    """Decode settings of the published ``fcdm_diffae`` (SemDisDiffAE) package, same names.

    Args:
        num_steps: decoder evaluations (1 is PSNR-optimal).
        sampler: ``"ddim"`` or ``"dpmpp_2m"``.
        schedule: ``"linear"`` or ``"cosine"``.
        pdg: apply path-drop guidance (the middle blocks replaced by a learned feature).
        pdg_strength: guidance weight when enabled.
        strength: in (0, 1]; sampling starts at ``t = strength`` instead of 1.
        seed: seeds one CPU generator for the whole batch's noise; None draws from torch's global RNG.
    """

    num_steps: int = 1
    sampler: str = "ddim"
    schedule: str = "linear"
    pdg: bool = False
    pdg_strength: float = 2.0
    strength: float = 1.0
    seed: Optional[int] = None


@dataclass(frozen=True)
class DecodeSettings:
    """Everything one decode depends on besides the latents and the noise."""

    num_steps: int
    sampler: str
    schedule: str
    pdg_strength: Optional[float]  # None: no guidance
    strength: float


def check_seed(seed, what: str = "seed") -> Optional[int]:
    """``seed`` as an int (None passes); refuse floats, bools and strings instead of truncating them."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{what} must be an int or None, got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed < 2**64:
        raise ValueError(f"{what} must be in [0, 2**64), got {seed}")
    return seed


def resolve_settings(
    defaults: DecodeSettings,
    inference_config=None,
    num_inference_steps: Optional[int] = None,
    pdg_strength: Optional[float] = None,
    sampler: Optional[str] = None,
    schedule: Optional[str] = None,
    strength: Optional[float] = None,
) -> DecodeSettings:
    """Model defaults, overridden by a published-style inference config, overridden by keyword arguments.

    A keyword ``pdg_strength`` of 1.0 means no guidance (the diffusers convention); an inference
    config with PDG enabled guides at its strength, 1.0 included, as the published samplers do.
    """
    steps, w, sampler_, schedule_, strength_ = (
        defaults.num_steps,
        defaults.pdg_strength,
        defaults.sampler,
        defaults.schedule,
        defaults.strength,
    )
    if inference_config is not None:
        steps = inference_config.num_steps
        sampler_ = inference_config.sampler
        schedule_ = getattr(inference_config, "schedule", schedule_)
        strength_ = getattr(inference_config, "strength", strength_)
        enabled = getattr(inference_config, "pdg_enabled", getattr(inference_config, "pdg", False))
        w = float(inference_config.pdg_strength) if enabled else None
    if num_inference_steps is not None:
        steps = num_inference_steps
    if pdg_strength is not None:
        if isinstance(pdg_strength, bool) or not isinstance(pdg_strength, (int, float)):
            raise ValueError(f"pdg_strength must be a number, got {pdg_strength!r}")
        w = None if pdg_strength == 1.0 else float(pdg_strength)
    sampler_ = sampler if sampler is not None else sampler_
    schedule_ = schedule if schedule is not None else schedule_
    strength_ = strength if strength is not None else strength_
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"num_inference_steps must be a positive int, got {steps!r}")
    if w is not None and not math.isfinite(w):
        raise ValueError(f"pdg_strength must be finite, got {w!r}")
    if sampler_ not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {sampler_!r}")
    if schedule_ not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule_!r}")
    if isinstance(strength_, bool) or not isinstance(strength_, (int, float)) or not 0.0 < strength_ <= 1.0:
        raise ValueError(f"strength must be a number in (0, 1], got {strength_!r}")
    return DecodeSettings(steps, sampler_, schedule_, w, float(strength_))


def make_scheduler(base: VPDDIMScheduler, sampler: str) -> VPDDIMScheduler:
    """A fresh scheduler of ``sampler``'s kind with ``base``'s schedule: one per decode, so decodes
    running in several threads on one model never share sampler state."""
    return SAMPLERS[sampler].from_config(base.config)


def draw_noise(
    shape: Sequence[int],
    generator: GeneratorArg = None,
    seed: Optional[int] = None,
    per_sample: bool = True,
    device: Union[str, torch.device] = "cpu",
) -> Tuple[torch.Tensor, GeneratorArg]:
    """Unit Gaussian noise ``shape = [B, C, H, W]`` (float32, drawn on the CPU) and the generator(s) used.

    ``generator`` (one, or one per sample) wins over ``seed``; with neither, torch's global RNG.
    With ``per_sample`` each sample gets its own generator seeded with ``seed``; otherwise one
    generator draws the whole batch. Pass the returned generator(s) to :func:`keep_mask` so the
    token-mask PDG pattern continues the same stream(s).
    """
    batch = shape[0]
    if generator is None and seed is not None:
        if per_sample:
            generator = [torch.Generator("cpu").manual_seed(seed) for _ in range(batch)]
        else:
            generator = torch.Generator("cpu").manual_seed(seed)
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for a batch of {batch}; pass one per sample")
    if generator is None:
        noise = torch.randn(tuple(shape), dtype=torch.float32)
    else:
        noise = randn_tensor(tuple(shape), generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    return noise.to(device), generator


def keep_mask(generator: GeneratorArg, batch: int, h: int, w: int, mask_ratio: float, device) -> torch.Tensor:
    """The token-mask PDG keep-mask ``[B, 1, h, w]`` drawn from ``generator`` (continuing its stream)."""
    return grouped_keep_mask(batch, h, w, mask_ratio, generator=generator, device=device)


def run_sampler(
    decoder,
    scheduler: VPDDIMScheduler,
    latents: torch.Tensor,
    noise: torch.Tensor,
    settings: DecodeSettings,
    mask: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """Sample ``x_0`` ``[B, 3, H, W]`` (float32, not clamped) from unit ``noise`` given decoder-space ``latents``.

    Every schedule, solver and guidance formula lives in ``scheduler``; this loop only calls the
    network. With token-mask PDG (and no path drop) both branches run as one batched forward.
    """
    dtype = next(decoder.parameters()).dtype
    z = latents.to(dtype)
    b = z.shape[0]
    w = settings.pdg_strength
    scheduler.set_timesteps(
        settings.num_steps, device=z.device, schedule=settings.schedule, strength=settings.strength
    )
    x = scheduler.initial_state(noise.to(z.device))
    cond = decoder.condition_tokens(z)
    token = w is not None and decoder.uses_token_mask
    drop = w is not None and decoder.uses_path_drop
    uncond = decoder.condition_tokens(z, mask) if token else cond
    batched = token and not drop
    if batched:
        cond_both = torch.cat([cond, uncond])
    for i, t in enumerate(scheduler.timesteps):
        tb = t.to(z.device).expand(b)
        x_in = scheduler.scale_model_input(x, t).to(dtype)
        x0_uncond = None
        if w is None:
            x0 = decoder.denoise(x_in, tb, cond)
        elif batched:
            x0, x0_uncond = decoder.denoise(torch.cat([x_in, x_in]), torch.cat([tb, tb]), cond_both).chunk(2)
        else:
            # The published samplers evaluate the degraded branch first; the order does not change values.
            x0_uncond = decoder.denoise(x_in, tb, uncond, drop_middle_blocks=drop)
            x0 = decoder.denoise(x_in, tb, cond)
        x = scheduler.step(x0, t, x, model_output_uncond=x0_uncond, pdg_strength=w).prev_sample
        if callback is not None:
            callback(i + 1, settings.num_steps)
    return x
