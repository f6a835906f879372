"""SemDisDiffAE (published package ``fcdm_diffae``): FCDM blocks, a VP Gaussian posterior, whitened latents."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' pipeline loader looks these up here)
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.utils.torch_utils import randn_tensor

from ...checks import check_images
from ...schedulers.scheduling_vp_ddim import VPDDIMScheduler
from ..decoder import Decoder
from ..encoder import Encoder
from ..precision import apply_keeping_float32
from ..sampling import FCDMDiffAEInferenceConfig
from .autoencoder_mdiffae import check_common_config
from .vp_autoencoder import VPDiffusionAutoencoder

POSTERIOR_KINDS = ("diagonal_gaussian", "deterministic")
BOTTLENECK_NORM_MODES = ("disabled", "channel_wise")


class VPPosterior(DiagonalGaussianDistribution):
    """The encoder's VP-parameterised diagonal Gaussian, seen in the whitened latent space.

    Raw posterior: ``alpha * mean + sigma * eps`` with ``alpha = sqrt(sigmoid(logsnr))`` and
    ``sigma = sqrt(sigmoid(-logsnr))`` (float32). Whitening by the stored running statistics,
    ``(z - running_mean) / running_std``, is applied to both ``mode()`` (the default latent) and
    ``sample(generator)``; ``mean``/``std``/``logvar`` are the whitened moments, so
    ``DiagonalGaussianDistribution`` users (``kl()``, pipelines) see a consistent distribution.

    Shapes: ``mean``, ``logsnr`` ``[B, L, h, w]``; ``running_mean``, ``running_std`` ``[L]``.
    """

    def __init__(
        self, mean: torch.Tensor, logsnr: torch.Tensor, running_mean: torch.Tensor, running_std: torch.Tensor
    ):
        self.raw_mean, self.logsnr = mean, logsnr
        self.alpha = torch.sigmoid(logsnr.float()).sqrt()
        self.sigma = torch.sigmoid(-logsnr.float()).sqrt()
        self._shift = running_mean.float().to(mean.device).view(1, -1, 1, 1)
        self._scale = running_std.float().to(mean.device).view(1, -1, 1, 1)
        std_w = (self.sigma / self._scale).clamp_min(1e-12)
        super().__init__(torch.cat([self.mode(), 2.0 * torch.log(std_w)], dim=1).to(mean.dtype))

    def whiten(self, z: torch.Tensor) -> torch.Tensor:
        return (z.float() - self._shift) / self._scale

    def mode(self) -> torch.Tensor:
        """``whiten(alpha * mean)``: the published encoder's default output, float32."""
        return self.whiten((self.alpha * self.raw_mean.float()).to(self.raw_mean.dtype))

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``whiten(alpha * mean + sigma * eps)`` with ``eps ~ N(0, I)`` from ``generator`` (float32)."""
        eps = randn_tensor(self.raw_mean.shape, generator=generator, device=self.raw_mean.device, dtype=torch.float32)
        return self.whiten(self.alpha * self.raw_mean.float() + self.sigma * eps)


class AutoencoderSemDisDiffAE(VPDiffusionAutoencoder):
    r"""SemDisDiffAE with the ``AutoencoderKL`` interface: FCDM encoder and decoder, VP posterior, whitened latents.

    ``encode`` maps images ``[B, 3, H, W]`` in [-1, 1] (H, W multiples of 16) to a
    :class:`VPPosterior` over whitened latents ``[B, 128, H/16, W/16]``; its ``mode()`` is the
    default latent. ``decode`` dewhitens the latents with the stored running statistics and samples
    the VP-diffusion decoder (path-drop guidance only). ``encode_posterior`` returns the raw
    ``(mean, logsnr)`` of the published ``FCDMDiffAE.encode_posterior``.

    The constructor defaults are the published ``data-archetype/semdisdiffae`` configuration: patch 16,
    width 896, 4 encoder and 8 decoder FCDM blocks (2 + 4 + 2), 128 latent channels, MLP ratio 4,
    AdaLN rank 128, ``bottleneck_posterior_kind="diagonal_gaussian"``, ``bottleneck_norm_mode="disabled"``:
    88,771,328 parameters (the card's "88.8 M") plus the 128 + 128 whitening statistics and the
    time-frequency table, which are buffers.

    Args:
        bottleneck_posterior_kind: ``"diagonal_gaussian"`` (mean and log-SNR heads) or ``"deterministic"``.
        bottleneck_norm_mode: ``"disabled"`` (published) or ``"channel_wise"`` (a non-affine RMSNorm
            on the posterior mean).
        latent_running_stats_eps: added to the running variance before its square root (the
            semdisdiffae_p32_v2 config's value; the p16 config does not store one).
        Other arguments: as :class:`~diffusers_mdiffae.AutoencoderMDiffAE`.
    """

    _no_split_modules = ["FCDMBlock"]
    _repeated_blocks = ["FCDMBlock"]
    _skip_layerwise_casting_patterns = ["norm", "mask_feature", "grn", "layer_scale"]
    inference_config_class = FCDMDiffAEInferenceConfig

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        patch_size: int = 16,
        model_dim: int = 896,
        encoder_depth: int = 4,
        decoder_depth: int = 8,
        decoder_start_blocks: int = 2,
        decoder_end_blocks: int = 2,
        latent_channels: int = 128,
        mlp_ratio: float = 4.0,
        depthwise_kernel_size: int = 7,
        adaln_low_rank_rank: int = 128,
        bottleneck_posterior_kind: str = "diagonal_gaussian",
        bottleneck_norm_mode: str = "disabled",
        latent_running_stats_eps: float = 1e-4,
        logsnr_min: float = -10.0,
        logsnr_max: float = 10.0,
        pixel_noise_std: float = 0.558,
        log_change_high: float = 0.0,
        log_change_low: float = 0.0,
        norm_eps: float = 1e-6,
        decoder_num_inference_steps: int = 1,
        decoder_pdg_strength: float = 1.0,
        decoder_seed: Optional[int] = 0,
        block_out_channels: Sequence[int] = (896, 896, 896, 896, 896),
        sample_size: int = 512,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
        latents_mean: Optional[Sequence[float]] = None,
        latents_std: Optional[Sequence[float]] = None,
        force_upcast: bool = False,
    ):
        super().__init__()
        self._validate_init(locals())
        check_common_config(
            in_channels,
            out_channels,
            patch_size,
            block_out_channels,
            latents_mean,
            latents_std,
            decoder_num_inference_steps,
            sample_size,
        )
        if bottleneck_posterior_kind not in POSTERIOR_KINDS:
            raise ValueError(
                f"bottleneck_posterior_kind must be one of {POSTERIOR_KINDS}, got {bottleneck_posterior_kind!r}"
            )
        if bottleneck_norm_mode not in BOTTLENECK_NORM_MODES:
            raise ValueError(
                f"bottleneck_norm_mode must be one of {BOTTLENECK_NORM_MODES}, got {bottleneck_norm_mode!r}"
            )
        if not latent_running_stats_eps >= 0:
            raise ValueError(f"latent_running_stats_eps must be >= 0, got {latent_running_stats_eps}")
        self.encoder = Encoder(
            in_channels=in_channels,
            patch_size=patch_size,
            model_dim=model_dim,
            depth=encoder_depth,
            latent_channels=latent_channels,
            mlp_ratio=mlp_ratio,
            depthwise_kernel_size=depthwise_kernel_size,
            block_type="fcdm",
            norm_in=False,
            posterior=bottleneck_posterior_kind == "diagonal_gaussian",
            bottleneck_norm=bottleneck_norm_mode == "channel_wise",
            norm_eps=norm_eps,
        )
        self.decoder = Decoder(
            in_channels=in_channels,
            patch_size=patch_size,
            model_dim=model_dim,
            depth=decoder_depth,
            latent_channels=latent_channels,
            mlp_ratio=mlp_ratio,
            depthwise_kernel_size=depthwise_kernel_size,
            adaln_low_rank_rank=adaln_low_rank_rank,
            start_blocks=decoder_start_blocks,
            end_blocks=decoder_end_blocks,
            block_type="fcdm",
            outer_norms=False,
            pdg_mode="path_drop",
            norm_eps=norm_eps,
        )
        self.register_buffer("latent_norm_running_mean", torch.zeros(latent_channels), persistent=True)
        self.register_buffer("latent_norm_running_var", torch.ones(latent_channels), persistent=True)
        self.scheduler = VPDDIMScheduler(
            logsnr_min=logsnr_min,
            logsnr_max=logsnr_max,
            pixel_noise_std=pixel_noise_std,
            log_change_high=log_change_high,
            log_change_low=log_change_low,
            pdg_strength=decoder_pdg_strength,
        )
        self._init_runtime(patch_size, sample_size)

    def _apply(self, fn, recurse: bool = True):
        return apply_keeping_float32(
            self, super()._apply, fn, recurse, ["latent_norm_running_mean", "latent_norm_running_var"]
        )

    # -- whitening ----------------------------------------------------------------------------

    def latent_stats(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(running_mean, running_std)`` ``[L]`` float32, ``std = sqrt(var + eps)``."""
        mean = self.latent_norm_running_mean.float()
        std = torch.sqrt(self.latent_norm_running_var.float() + float(self.config.latent_running_stats_eps))
        return mean, std

    def whiten(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw encoder latents -> the whitened space ``encode`` returns (float32)."""
        mean, std = self.latent_stats()
        z = latents.float()
        return (z - mean.to(z.device).view(1, -1, 1, 1)) / std.to(z.device).view(1, -1, 1, 1)

    def dewhiten(self, latents: torch.Tensor) -> torch.Tensor:
        """Whitened latents -> the decoder's raw latent scale (float32)."""
        mean, std = self.latent_stats()
        z = latents.float()
        return z * std.to(z.device).view(1, -1, 1, 1) + mean.to(z.device).view(1, -1, 1, 1)

    def _to_decoder_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.dewhiten(z)

    # -- encoder ------------------------------------------------------------------------------

    def _encode_dist(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        if not self.encoder.posterior:
            z = self.whiten(self.encoder(x.to(self.dtype)))
            return DiagonalGaussianDistribution(torch.cat([z, torch.full_like(z, -30.0)], dim=1), deterministic=True)
        mean, logsnr = self.encoder.encode_posterior(x.to(self.dtype))
        return VPPosterior(mean, logsnr, *self.latent_stats())

    def _dist_from_parameters(self, parameters: torch.Tensor) -> DiagonalGaussianDistribution:
        return DiagonalGaussianDistribution(parameters, deterministic=not self.encoder.posterior)

    @torch.no_grad()
    def encode_posterior(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The raw (unwhitened) posterior ``(mean, logsnr)``, each ``[B, L, H/16, W/16]``."""
        check_images(images, self.config.in_channels, self.config.patch_size)
        return self.encoder.encode_posterior(images.to(self.dtype))
