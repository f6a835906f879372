"""mDiffAE's training objective (README "Training") as one function of a batch and a generator."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import torch

from ..models.token_mask import grouped_keep_mask


@dataclass
class ObjectiveConfig:
    """Knobs of the loss.

    Args:
        token_mask_prob: fraction of samples whose latent tokens are masked in 2x2 groups (one kept),
            the decoder-side regulariser that replaces REPA in mDiffAE.
        mask_ratio: fraction of tokens replaced by the learned mask feature when masking.
        latent_noise_prob: fraction of samples whose latents are noised, ``(1 - tau) z + tau eps``
            with ``tau ~ Beta(2, 2)`` drawn independently of the pixel timestep.
        sigmoid_bias: SiD2 weighting. SiD2 weights the eps-loss by ``sigmoid(b - logsnr)``; for an
            x0-prediction that is ``exp(b) * sigmoid(logsnr - b)`` times the x0 squared error, so the
            loss here is ``sigmoid(logsnr - b) * mse(x0_hat, x0)`` (the constant dropped). The
            published bias is unknown. The default -8 keeps weight on the pure-noise end (logsnr
            -10, weight 0.12) because that is where the default 1-step decode evaluates the network.
        umd_ratio: UMD's ``r_{t=0}`` (Unified Masked Diffusion): the fraction of samples given the
            noise-free masked step instead of a noisy one, so the loss is
            ``r L_{t=0} + (1 - r) L_{t>0}`` in expectation. 0 (the default) is the objective above
            unchanged, random draws included.
        umd_mask_ratio: fraction of the pixel patches (``patch_size`` squares) blanked to 0 in the
            decoder's input for those samples. UMD masks harder at ``t = 0`` than in its noisy
            steps; here the noisy steps mask no pixels (their latent-token mask stays as above).
        gradient_weight: weight of :func:`gradient_penalty` (the squared error of neighbour
            differences) added to each sample's MSE before the SiD2 weighting; 0 (the default) is
            the published loss. Against the 16-px grid a small decoder leaves in flat regions.

    The ``t = 0`` step reads UMD for a diffusion *decoder*: at ``t = 0`` an unmasked input already
    holds the answer, so the decoder gets the clean image with most patches blanked and must fill
    them from the latent, the same job as its 1-step decode from pure noise.
    """

    token_mask_prob: float = 0.5
    mask_ratio: float = 0.75
    latent_noise_prob: float = 0.1
    sigmoid_bias: float = -8.0
    umd_ratio: float = 0.0
    umd_mask_ratio: float = 0.9
    gradient_weight: float = 0.0

    def __post_init__(self):
        for name in ("token_mask_prob", "latent_noise_prob", "umd_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("mask_ratio", "umd_mask_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        value = self.gradient_weight
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < math.inf):
            raise ValueError(f"gradient_weight must be a finite number >= 0, got {value!r}")


def beta22(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from Beta(2, 2): the median of three uniforms (an order statistic), so it takes a generator."""
    return torch.rand(n, 3, generator=generator).median(dim=1).values


def patch_keep_mask(batch: int, h: int, w: int, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Bool ``[batch, 1, h, w]``: per sample exactly ``max(1, round(h*w*(1 - mask_ratio)))`` True cells, at random.

    MAE's masking: rank one uniform draw per cell and keep the lowest ranks, so every sample hides
    the same number of patches.
    """
    n = h * w
    n_keep = max(1, round(n * (1.0 - mask_ratio)))
    ranks = torch.rand(batch, n, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < n_keep).view(batch, 1, h, w)


def gradient_penalty(error: torch.Tensor) -> torch.Tensor:
    """Per-sample ``[B]`` mean squared finite difference of the error image ``[B, C, H, W]``, both axes summed.

    A step between neighbours that the original does not have is an error of the *difference*.
    Plain MSE barely sees a 1/255 step, and the decoder's output head writes each 16x16 square from
    one token, so such steps line up along the patch edges into a visible grid in flat regions.
    Every neighbour pair counts alike: weighing only the pairs across an edge was tried and taught
    the decoder to draw one-pixel lines beside the edges instead (README, "The bundled checkpoint").
    """
    total = error.new_zeros(error.shape[0])
    for dim in (-1, -2):
        n = error.shape[dim]
        if n > 1:
            step = error.narrow(dim, 1, n - 1) - error.narrow(dim, 0, n - 1)
            total = total + step.square().mean(dim=(1, 2, 3))
    return total


def diffusion_loss(
    model, images: torch.Tensor, generator: torch.Generator, cfg: ObjectiveConfig = ObjectiveConfig()
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Weighted x0-prediction loss of ``model`` (an ``AutoencoderMDiffAE``) on ``images`` in [-1, 1].

    All randomness comes from ``generator`` (CPU), drawn in a fixed order, so a step is reproducible.

    Returns:
        ``(loss, stats)``: the scalar loss to back-propagate and float diagnostics.
    """
    b = images.shape[0]
    device = images.device
    scheduler = model.scheduler
    t = torch.rand(b, generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    noise_latents = torch.rand(b, generator=generator) < cfg.latent_noise_prob
    tau = beta22(b, generator)
    mask_samples = torch.rand(b, generator=generator) < cfg.token_mask_prob
    clean = visible = None
    if cfg.umd_ratio > 0:  # drawn after the others, so umd_ratio=0 keeps every earlier draw
        p = model.config.patch_size
        clean = torch.rand(b, generator=generator) < cfg.umd_ratio
        cells = patch_keep_mask(b, images.shape[-2] // p, images.shape[-1] // p, cfg.umd_mask_ratio, generator)
        visible = cells.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)
        t = torch.where(clean, torch.zeros_like(t), t)

    z = model.encoder(images)
    if bool(noise_latents.any()):
        eps_z = torch.randn(z.shape, generator=generator).to(device, z.dtype)
        mix = torch.where(noise_latents, tau, torch.zeros_like(tau)).to(device, z.dtype).view(-1, 1, 1, 1)
        z = (1 - mix) * z + mix * eps_z
    keep = None
    if bool(mask_samples.any()):
        h, w = z.shape[-2:]
        keep = grouped_keep_mask(b, h, w, cfg.mask_ratio, generator=generator).to(device)
        keep = keep | ~mask_samples.to(device).view(-1, 1, 1, 1)

    t = t.to(device)
    x_t = scheduler.add_noise(images, noise.to(device), t)
    if clean is not None and bool(clean.any()):
        masked = images * visible.to(device, images.dtype)
        x_t = torch.where(clean.to(device).view(-1, 1, 1, 1), masked, x_t)
    x0_hat = model.decoder(x_t, t, z, keep_mask=keep)
    weight = torch.sigmoid(scheduler.logsnr(t) - cfg.sigmoid_bias).to(device)
    error = x0_hat.float() - images.float()
    mse = error.square().mean(dim=(1, 2, 3))
    per_sample = mse
    if cfg.gradient_weight:
        per_sample = mse + cfg.gradient_weight * gradient_penalty(error)
    loss = (weight * per_sample).mean()
    return loss, {"mse": float(mse.detach().mean()), "weighted": float(loss.detach())}
