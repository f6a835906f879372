"""The DiCo family of mDiffAE (v1, v2) and iRDiffAE: a deterministic patch encoder and a VP-diffusion decoder."""

from __future__ import annotations

import math
from typing import Optional, Sequence

from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' pipeline loader looks these up here)
from diffusers.configuration_utils import register_to_config

from ...schedulers.scheduling_vp_ddim import VPDDIMScheduler
from ..decoder import PDG_MODES, Decoder
from ..encoder import Encoder
from ..sampling import MDiffAEInferenceConfig
from .vp_autoencoder import VPDiffusionAutoencoder


def check_common_config(
    in_channels,
    out_channels,
    patch_size,
    block_out_channels,
    latents_mean,
    latents_std,
    decoder_num_inference_steps,
    sample_size,
) -> None:
    """Checks every family member's constructor shares (types are checked by ``validate_config``)."""
    if in_channels != out_channels:
        raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must match")
    if patch_size < 1 or patch_size & (patch_size - 1):
        raise ValueError(f"patch_size must be a power of two, got {patch_size}")
    if 2 ** (len(block_out_channels) - 1) != patch_size:
        raise ValueError(
            f"block_out_channels must have log2(patch_size) + 1 = {int(math.log2(patch_size)) + 1} entries so "
            f"pipelines derive the factor {patch_size}; got {len(block_out_channels)}"
        )
    if latents_mean is not None or latents_std is not None:
        raise ValueError("latents_mean/latents_std must be None: SDXL-family pipelines reshape them to 4 channels")
    if decoder_num_inference_steps < 1:
        raise ValueError(f"decoder_num_inference_steps must be >= 1, got {decoder_num_inference_steps}")
    if sample_size % patch_size:
        raise ValueError(f"sample_size ({sample_size}) must be a multiple of patch_size ({patch_size})")


class AutoencoderMDiffAE(VPDiffusionAutoencoder):
    r"""mDiffAE (Masked Diffusion AutoEncoder) and its DiCo siblings with the ``AutoencoderKL`` interface.

    ``encode`` maps images ``[B, 3, H, W]`` in [-1, 1] (H, W multiples of ``patch_size``) to
    deterministic latents ``[B, latent_channels, H/p, W/p]``. ``decode`` reconstructs the image by
    sampling a VP-diffusion decoder conditioned on the latents with :class:`VPDDIMScheduler`; one
    step is the published models' PSNR-optimal default, more steps with path-drop guidance (PDG)
    sharpen.

    The constructor defaults are the published mdiffae_v1 architecture (81,410,624 parameters).
    The siblings are configurations (the converter sets them from a published ``config.json``):

    * mDiffAE v2: ``decoder_depth=8, decoder_start_blocks=2, decoder_end_blocks=2, latent_channels=96,
      outer_norms=False, pdg_mode="dual"``;
    * iRDiffAE v1: the same with ``latent_channels=128, pdg_mode="path_drop"``.

    Decoding is a deterministic function of the latents unless asked otherwise: without a
    ``generator`` every sample's initial noise comes from a fresh generator seeded with
    ``decoder_seed``, so batch size, slicing and tiling do not change a sample's result. Pass a
    ``torch.Generator`` (or one per sample) to draw other noise; set ``decoder_seed=None`` to use
    the global RNG like ``ConsistencyDecoderVAE``.

    Args:
        in_channels / out_channels: image channels (3).
        patch_size: spatial factor of the latent grid (16).
        model_dim: width of both networks (896).
        encoder_depth / decoder_depth: number of DiCo blocks.
        decoder_start_blocks / decoder_end_blocks: skip-concat decoder split (0/0 = flat, v1).
        latent_channels: bottleneck channels (64).
        mlp_ratio / depthwise_kernel_size / adaln_low_rank_rank: block hyper-parameters.
        outer_norms: the affine RMSNorms of v1 (decoder ``norm_in``, ``latent_norm``, ``norm_out``
            and an affine encoder ``norm_out``; a reading, see the README's evidence table).
        pdg_mode: ``"token_mask"`` (v1), ``"path_drop"`` (iRDiffAE) or ``"dual"`` (v2).
        pdg_mask_ratio: fraction of latent tokens replaced in the token-mask PDG branch.
        logsnr_min / logsnr_max / pixel_noise_std / log_change_high / log_change_low: the VP
            schedule (scheduler config).
        norm_eps: RMSNorm epsilon.
        decoder_num_inference_steps / decoder_pdg_strength / decoder_seed: decode defaults used when
            a caller (every diffusers pipeline) passes none; ``decoder_pdg_strength=1.0`` is off.
        block_out_channels: only its length matters: pipelines compute the spatial factor as
            ``2 ** (len(block_out_channels) - 1)``, so it must have ``log2(patch_size) + 1`` entries.
        sample_size: default tile size in pixels for tiled encode/decode.
        scaling_factor / shift_factor: pipelines use ``z * scaling_factor`` after encode and
            ``z / scaling_factor + shift_factor`` before decode. The latents already have unit RMS
            per position, hence 1.0 / 0.0 (a float, never None: SD3/Flux pipelines add it).
        latents_mean / latents_std: must stay None (SDXL pipelines reshape them to 4 channels).
        force_upcast: False, the decoder runs in float16/bfloat16 with float32 sampler maths.
    """

    _no_split_modules = ["DiCoBlock"]
    _repeated_blocks = ["DiCoBlock"]  # compile_repeated_blocks() compiles each block once per shape
    _skip_layerwise_casting_patterns = ["norm", "mask_feature"]
    inference_config_class = MDiffAEInferenceConfig

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        patch_size: int = 16,
        model_dim: int = 896,
        encoder_depth: int = 4,
        decoder_depth: int = 4,
        decoder_start_blocks: int = 0,
        decoder_end_blocks: int = 0,
        latent_channels: int = 64,
        mlp_ratio: float = 4.0,
        depthwise_kernel_size: int = 7,
        adaln_low_rank_rank: int = 128,
        outer_norms: bool = True,
        pdg_mode: str = "token_mask",
        pdg_mask_ratio: float = 0.75,
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
        if pdg_mode not in PDG_MODES:
            raise ValueError(f"pdg_mode must be one of {PDG_MODES}, got {pdg_mode!r}")
        if not 0.0 <= pdg_mask_ratio < 1.0:
            raise ValueError(f"pdg_mask_ratio must be in [0, 1), got {pdg_mask_ratio}")
        self.encoder = Encoder(
            in_channels=in_channels,
            patch_size=patch_size,
            model_dim=model_dim,
            depth=encoder_depth,
            latent_channels=latent_channels,
            mlp_ratio=mlp_ratio,
            depthwise_kernel_size=depthwise_kernel_size,
            block_type="dico",
            norm_in=True,
            bottleneck_norm=True,
            bottleneck_norm_affine=outer_norms,
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
            block_type="dico",
            outer_norms=outer_norms,
            pdg_mode=pdg_mode,
            norm_eps=norm_eps,
        )
        # Rebuilt from the config, never part of the state dict (like ConsistencyDecoderVAE's).
        self.scheduler = VPDDIMScheduler(
            logsnr_min=logsnr_min,
            logsnr_max=logsnr_max,
            pixel_noise_std=pixel_noise_std,
            log_change_high=log_change_high,
            log_change_low=log_change_low,
            pdg_strength=decoder_pdg_strength,
        )
        self._init_runtime(patch_size, sample_size)
