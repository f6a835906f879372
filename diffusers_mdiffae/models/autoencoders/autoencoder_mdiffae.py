"""mDiffAE: a deterministic patch-16 encoder and a VP-diffusion decoder, as a diffusers autoencoder."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from diffusers import ConfigMixin, ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from diffusers.utils.torch_utils import randn_tensor

from ...checks import check_images, check_latents
from ..decoder import MDiffAEDecoder
from ..encoder import MDiffAEEncoder
from ...schedulers.scheduling_vp_ddim import VPDDIMScheduler
from ...schedulers.scheduling_vp_dpmpp_2m import VPDPMSolverMultistepScheduler

SAMPLERS = {"ddim": VPDDIMScheduler, "dpmpp_2m": VPDPMSolverMultistepScheduler}
from ..token_mask import grouped_keep_mask

GeneratorArg = Optional[Union[torch.Generator, List[torch.Generator]]]


@dataclass
class MDiffAEInferenceConfig:
    """Decode settings, named as in the published ``m_diffae`` package.

    Args:
        num_steps: decoder evaluations (DDIM steps). 1 is PSNR-optimal; more steps with PDG sharpen.
        sampler: ``"ddim"`` or ``"dpmpp_2m"`` (DPM-Solver++(2M), better at few multi-step decodes).
        schedule: time grid, ``"linear"`` in t.
        pdg_enabled: apply path-drop guidance.
        pdg_strength: guidance weight when enabled (the mDiffAE v1 card recommends 1.01-1.2).
        seed: seeds the initial noise (and the PDG token mask) of every sample; ``None`` uses the
            model's ``decoder_seed``.
    """

    num_steps: int = 1
    sampler: str = "ddim"
    schedule: str = "linear"
    pdg_enabled: bool = False
    pdg_strength: float = 1.05
    seed: Optional[int] = None


@dataclass
class MDiffAEEncoderOutput(AutoencoderKLOutput):
    """``AutoencoderKLOutput`` that also carries the latents directly.

    Args:
        latent_dist: deterministic ``DiagonalGaussianDistribution`` (std 0): ``sample()`` and
            ``mode()`` both return the latents ``[B, latent_channels, H/16, W/16]``.
        latent: the same latents as a tensor (read by AutoencoderDC-style callers such as Sana).
    """

    latent: Optional[torch.Tensor] = None


def _spans(length: int, tile: int, overlap: int) -> List[Tuple[int, int]]:
    """Fewest windows of size ``tile`` overlapping by at least ``overlap`` that cover ``[0, length)``.

    Starts are spread evenly, so the spare room becomes extra overlap shared by every seam
    instead of one nearly redundant last tile.
    """
    if length <= tile:
        return [(0, length)]
    n = -(-(length - overlap) // max(tile - overlap, 1))
    n = max(n, 2)
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    return [(s, s + tile) for s in starts]


def _ramp(length: int, start: int, end: int, total: int, overlap: int, device) -> torch.Tensor:
    """1-D blending weight of one window: linear ramps over the overlap on interior edges."""
    w = torch.ones(length, device=device)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        n = min(overlap, length)
        if start > 0:
            w[:n] = torch.minimum(w[:n], ramp[:n])
        if end < total:
            w[length - n:] = torch.minimum(w[length - n:], ramp[:n].flip(0))
    return w


class AutoencoderMDiffAE(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""mDiffAE (Masked Diffusion AutoEncoder) with the ``AutoencoderKL`` interface.

    ``encode`` maps images ``[B, 3, H, W]`` in [-1, 1] (H, W multiples of ``patch_size``) to
    deterministic latents ``[B, latent_channels, H/p, W/p]``. ``decode`` reconstructs the image by
    sampling a VP-diffusion decoder conditioned on the latents with :class:`VPDDIMScheduler`; one
    step is the default and is PSNR-optimal, more steps with path-drop guidance (PDG) sharpen.

    The constructor defaults are the published mdiffae_v1 architecture (81,410,624 parameters).
    Sibling models are configurations: mDiffAE v2 is ``decoder_depth=8, decoder_start_blocks=2,
    decoder_end_blocks=2, latent_channels=96, decoder_outer_norms=False, pdg_mode="dual"``.

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
        decoder_outer_norms: the four affine RMSNorms of the v1 decoder (see :class:`MDiffAEDecoder`).
        pdg_mode: ``"token_mask"`` (v1), ``"path_drop"`` (iRDiffAE) or ``"dual"`` (v2).
        pdg_mask_ratio: fraction of latent tokens replaced in the token-mask PDG branch.
        logsnr_min / logsnr_max / pixel_noise_std / logsnr_shift: the VP schedule (scheduler config).
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

    _supports_gradient_checkpointing = True
    _no_split_modules = ["DiCoBlock"]
    _repeated_blocks = ["DiCoBlock"]  # compile_repeated_blocks() compiles each block once per shape
    _skip_layerwise_casting_patterns = ["norm", "mask_feature"]

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
        decoder_outer_norms: bool = True,
        pdg_mode: str = "token_mask",
        pdg_mask_ratio: float = 0.75,
        logsnr_min: float = -10.0,
        logsnr_max: float = 10.0,
        pixel_noise_std: float = 0.558,
        logsnr_shift: float = 0.0,
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

        self.encoder = MDiffAEEncoder(
            in_channels=in_channels, patch_size=patch_size, model_dim=model_dim, depth=encoder_depth,
            latent_channels=latent_channels, mlp_ratio=mlp_ratio, depthwise_kernel_size=depthwise_kernel_size,
            norm_eps=norm_eps,
        )
        self.decoder = MDiffAEDecoder(
            in_channels=in_channels, patch_size=patch_size, model_dim=model_dim, depth=decoder_depth,
            latent_channels=latent_channels, mlp_ratio=mlp_ratio, depthwise_kernel_size=depthwise_kernel_size,
            adaln_rank=adaln_low_rank_rank, start_blocks=decoder_start_blocks, end_blocks=decoder_end_blocks,
            outer_norms=decoder_outer_norms, pdg_mode=pdg_mode, norm_eps=norm_eps,
        )
        # Rebuilt from config, never part of the state dict (diffusers contract rule 11).
        self.scheduler = VPDDIMScheduler(
            logsnr_min=logsnr_min, logsnr_max=logsnr_max, pixel_noise_std=pixel_noise_std,
            logsnr_shift=logsnr_shift, guidance_scale=decoder_pdg_strength,
        )
        self.spatial_compression_ratio = patch_size
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_size = sample_size
        self.tile_overlap_factor = 0.25
        self.use_channels_last_weights()

    def use_channels_last_weights(self) -> "AutoencoderMDiffAE":
        """Store convolution weights channels-last, matching the activations (about 20 % faster on CPU).

        Called on construction and after loading; numerics are unchanged and ``save_pretrained``
        writes the usual contiguous tensors.
        """
        return self.to(memory_format=torch.channels_last)

    # -- tiling configuration -----------------------------------------------------------------

    def enable_tiling(self, tile_sample_min_size: Optional[int] = None, tile_overlap_factor: Optional[float] = None):
        """Encode/decode large images in overlapping tiles, blended linearly in the overlaps.

        Args:
            tile_sample_min_size: tile side in pixels (a multiple of ``patch_size``); images no
                larger than this are processed whole.
            tile_overlap_factor: fraction of a tile shared with its neighbour, in [0, 1).
        """
        p = self.config.patch_size
        if tile_sample_min_size is not None:
            if tile_sample_min_size < p or tile_sample_min_size % p:
                raise ValueError(f"tile_sample_min_size must be a positive multiple of {p}, got {tile_sample_min_size}")
            self.tile_sample_min_size = tile_sample_min_size
        if tile_overlap_factor is not None:
            if not 0.0 <= tile_overlap_factor < 1.0:
                raise ValueError(f"tile_overlap_factor must be in [0, 1), got {tile_overlap_factor}")
            self.tile_overlap_factor = tile_overlap_factor
        self.use_tiling = True

    def _tile_geometry(self) -> Tuple[int, int]:
        tile = max(self.tile_sample_min_size // self.config.patch_size, 1)
        return tile, int(tile * self.tile_overlap_factor)

    def _tiles(self, h: int, w: int) -> Iterator[Tuple[slice, slice, torch.Tensor]]:
        """Latent-grid windows and their blending weights ``[h_tile, w_tile]``."""
        tile, overlap = self._tile_geometry()
        for y0, y1 in _spans(h, tile, overlap):
            wy = _ramp(y1 - y0, y0, y1, h, overlap, "cpu")
            for x0, x1 in _spans(w, tile, overlap):
                wx = _ramp(x1 - x0, x0, x1, w, overlap, "cpu")
                yield slice(y0, y1), slice(x0, x1), wy[:, None] * wx[None, :]

    # -- encoder ------------------------------------------------------------------------------

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        tile, _ = self._tile_geometry()
        if not (self.use_tiling and (h > tile or w > tile)):
            return self.encoder(x.to(self.dtype))
        out = torch.zeros(x.shape[0], self.config.latent_channels, h, w, device=x.device, dtype=torch.float32)
        norm = torch.zeros(1, 1, h, w, device=x.device, dtype=torch.float32)
        for sy, sx, weight in self._tiles(h, w):
            px = x[:, :, sy.start * p: sy.stop * p, sx.start * p: sx.stop * p]
            weight = weight.to(x.device)
            out[:, :, sy, sx] += self.encoder(px.to(self.dtype)).float() * weight
            norm[:, :, sy, sx] += weight
        return (out / norm).to(self.dtype)

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> Union[MDiffAEEncoderOutput, Tuple[DiagonalGaussianDistribution]]:
        """Encode images to latents.

        Args:
            x: ``[B, 3, H, W]`` in [-1, 1], H and W multiples of ``patch_size``.

        Returns:
            :class:`MDiffAEEncoderOutput` whose ``latent_dist`` is deterministic (``mode()`` and
            ``sample(generator)`` both give ``[B, latent_channels, H/p, W/p]``), or
            ``(latent_dist,)`` when ``return_dict=False``.
        """
        check_images(x, self.config.in_channels, self.config.patch_size)
        if self.use_slicing and x.shape[0] > 1:
            z = torch.cat([self._encode(xs) for xs in x.split(1)])
        else:
            z = self._encode(x)
        dist = DiagonalGaussianDistribution(torch.cat([z, torch.zeros_like(z)], dim=1), deterministic=True)
        if not return_dict:
            return (dist,)
        return MDiffAEEncoderOutput(latent_dist=dist, latent=z)

    # -- decoder ------------------------------------------------------------------------------

    def _resolve_settings(
        self,
        inference_config: Optional[MDiffAEInferenceConfig],
        num_inference_steps: Optional[int],
        pdg_strength: Optional[float],
        seed: Optional[int],
        sampler: Optional[str],
    ) -> Tuple[int, float, Optional[int], str]:
        steps = self.config.decoder_num_inference_steps
        strength = self.config.decoder_pdg_strength
        if inference_config is not None:
            sampler = inference_config.sampler if sampler is None else sampler
            if inference_config.schedule != "linear":
                raise ValueError(f"schedule {inference_config.schedule!r} is not implemented; use 'linear'")
            steps = inference_config.num_steps
            strength = inference_config.pdg_strength if inference_config.pdg_enabled else 1.0
            if inference_config.seed is not None:
                seed = inference_config.seed if seed is None else seed
        steps = steps if num_inference_steps is None else num_inference_steps
        strength = strength if pdg_strength is None else pdg_strength
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {steps!r}")
        if not math.isfinite(float(strength)):
            raise ValueError(f"pdg_strength must be finite, got {strength!r}")
        if seed is None:
            seed = self.config.decoder_seed
        sampler = "ddim" if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler {sampler!r} is not implemented; use one of {sorted(SAMPLERS)}")
        return steps, float(strength), seed, sampler

    def _scheduler_for(self, sampler: str) -> VPDDIMScheduler:
        """``self.scheduler`` for its own kind; another solver is built from the same schedule config."""
        cls = SAMPLERS[sampler]
        if type(self.scheduler) is cls:
            return self.scheduler
        return cls.from_config(self.scheduler.config)

    def sampling_state(
        self,
        batch: int,
        h: int,
        w: int,
        generator: GeneratorArg = None,
        seed: Optional[int] = None,
        need_mask: bool = False,
        device: Union[str, torch.device, None] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Unit initial noise ``[B, 3, h*p, w*p]`` (float32) and, for token-mask PDG, the keep-mask.

        Everything random in a decode is drawn here, once, for the whole image, before slicing
        and tiling; so those only change how the work is split, not what is computed.
        ``generator`` (one, or one per sample) wins over ``seed``; with neither, the global RNG.
        """
        device = self.device if device is None else device
        if generator is None and seed is not None:
            generator = [torch.Generator("cpu").manual_seed(int(seed)) for _ in range(batch)]
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch}; pass one per sample")
        p = self.config.patch_size
        shape = (batch, self.config.in_channels, h * p, w * p)
        noise = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=torch.float32)
        mask = None
        if need_mask:
            mask = grouped_keep_mask(batch, h, w, self.config.pdg_mask_ratio, generator=generator, device=device)
        return noise, mask

    def _sample(
        self,
        z: torch.Tensor,
        noise: torch.Tensor,
        keep_mask: Optional[torch.Tensor],
        steps: int,
        strength: float,
        callback: Optional[Callable[[int, int], None]],
        scheduler: VPDDIMScheduler,
    ) -> torch.Tensor:
        """The sampling loop; every schedule/solver/guidance formula lives in the scheduler."""
        decoder = self.decoder
        dtype = self.dtype
        z = z.to(dtype)
        guided = strength != 1.0
        mode = decoder.pdg_mode
        cond = decoder.condition_tokens(z)
        uses_mask = guided and mode in ("token_mask", "dual")
        drop = guided and mode in ("path_drop", "dual")
        uncond = decoder.condition_tokens(z, keep_mask) if uses_mask else cond
        batched = guided and not drop  # token-mask PDG: both branches in one forward
        if batched:
            cond_both = torch.cat([cond, uncond])
        scheduler.set_timesteps(steps, device=z.device)
        x = noise.to(z.device) * scheduler.init_noise_sigma
        b = z.shape[0]
        for i, t in enumerate(scheduler.timesteps):
            tb = t.expand(b)
            x_in = scheduler.scale_model_input(x, t).to(dtype)
            if batched:
                x0, x0_uncond = decoder.denoise(torch.cat([x_in, x_in]), torch.cat([tb, tb]), cond_both).chunk(2)
            else:
                x0 = decoder.denoise(x_in, tb, cond)
                x0_uncond = decoder.denoise(x_in, tb, uncond, drop_middle=drop) if guided else None
            x = scheduler.step(x0, t, x, model_output_uncond=x0_uncond, guidance_scale=strength).prev_sample
            if callback is not None:
                callback(i + 1, steps)
        return x.clamp(-1.0, 1.0)

    def _decode(self, z, noise, mask, steps, strength, callback, scheduler) -> torch.Tensor:
        h, w = z.shape[-2:]
        tile, _ = self._tile_geometry()
        if not (self.use_tiling and (h > tile or w > tile)):
            return self._sample(z, noise, mask, steps, strength, callback, scheduler)
        p = self.config.patch_size
        out = torch.zeros(noise.shape, device=z.device, dtype=torch.float32)
        norm = torch.zeros(1, 1, h * p, w * p, device=z.device, dtype=torch.float32)
        for sy, sx, weight in self._tiles(h, w):
            psy, psx = slice(sy.start * p, sy.stop * p), slice(sx.start * p, sx.stop * p)
            weight = weight.repeat_interleave(p, 0).repeat_interleave(p, 1).to(z.device)
            tile_mask = mask[:, :, sy, sx] if mask is not None else None
            img = self._sample(z[:, :, sy, sx], noise[:, :, psy, psx], tile_mask, steps, strength, callback, scheduler)
            out[:, :, psy, psx] += img * weight
            norm[:, :, psy, psx] += weight
        return out / norm

    @apply_forward_hook
    def decode(
        self,
        z: torch.Tensor,
        height: Optional[int] = None,
        width: Optional[int] = None,
        return_dict: bool = True,
        generator: GeneratorArg = None,
        num_inference_steps: Optional[int] = None,
        pdg_strength: Optional[float] = None,
        seed: Optional[int] = None,
        sampler: Optional[str] = None,
        inference_config: Optional[MDiffAEInferenceConfig] = None,
        callback: Optional[Callable[[int, int], None]] = None,
    ) -> Union[DecoderOutput, Tuple[torch.Tensor]]:
        """Decode latents to images in [-1, 1] by sampling the diffusion decoder.

        Args:
            z: latents ``[B, latent_channels, h, w]`` (as a pipeline passes them: already divided
                by ``scaling_factor`` with ``shift_factor`` added).
            height, width: optional output size in pixels, checked against ``h * p, w * p`` (the
                original ``decode(latents, height=H, width=W)`` signature).
            generator: a ``torch.Generator`` or one per sample for the initial noise.
            num_inference_steps: DDIM steps (default ``config.decoder_num_inference_steps``).
            pdg_strength: path-drop guidance weight, 1.0 = off (default ``config.decoder_pdg_strength``).
            seed: per-sample seed for the noise when no generator is given (default ``config.decoder_seed``).
            sampler: ``"ddim"`` (default) or ``"dpmpp_2m"``.
            inference_config: :class:`MDiffAEInferenceConfig`, the original package's settings object;
                explicit keyword arguments override it.
            callback: called as ``callback(step, num_steps)`` after every DDIM step (of every tile);
                raise from it to interrupt.

        Returns:
            :class:`~diffusers.models.autoencoders.vae.DecoderOutput` with ``sample`` ``[B, 3, h*p, w*p]``
            in the model's dtype, or ``(sample,)`` when ``return_dict=False``.
        """
        check_latents(z, self.config.latent_channels)
        p = self.config.patch_size
        h, w = z.shape[-2:]
        for name, value, expected in (("height", height, h * p), ("width", width, w * p)):
            if value is not None and value != expected:
                raise ValueError(
                    f"{name}={value} does not match the latents: {tuple(z.shape)} decodes to {h * p}x{w * p} "
                    f"(latent grid x {p})"
                )
        steps, strength, seed, sampler = self._resolve_settings(
            inference_config, num_inference_steps, pdg_strength, seed, sampler
        )
        scheduler = self._scheduler_for(sampler)
        need_mask = strength != 1.0 and self.decoder.pdg_mode in ("token_mask", "dual")
        noise, mask = self.sampling_state(z.shape[0], h, w, generator, seed, need_mask, device=z.device)
        if self.use_slicing and z.shape[0] > 1:
            image = torch.cat([
                self._decode(z[i:i + 1], noise[i:i + 1], mask[i:i + 1] if mask is not None else None,
                             steps, strength, callback, scheduler)
                for i in range(z.shape[0])
            ])
        else:
            image = self._decode(z, noise, mask, steps, strength, callback, scheduler)
        image = image.to(self.dtype)
        if not return_dict:
            return (image,)
        return DecoderOutput(sample=image)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: GeneratorArg = None,
    ) -> Union[DecoderOutput, Tuple[torch.Tensor]]:
        """Reconstruct ``sample`` ``[B, 3, H, W]``: encode, then decode with the default settings."""
        dist = self.encode(sample).latent_dist
        z = dist.sample(generator=generator) if sample_posterior else dist.mode()
        return self.decode(z, return_dict=return_dict, generator=generator)

    # -- hub ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """``ModelMixin.from_pretrained``, but strict: any missing, unexpected or mis-shaped tensor raises.

        diffusers only logs missing keys and leaves those parameters on the ``meta`` device (or
        uninitialised); a half-loaded autoencoder would decode garbage, so it is refused here with
        the list of offending tensors. Accepts every ``ModelMixin.from_pretrained`` argument
        (``subfolder``, ``torch_dtype``, ``variant``, ``revision``, ...).

        A folder or Hub repo in the published ``m_diffae`` layout (original ``config.json`` +
        ``model.safetensors``) is recognised and converted on load with
        :func:`diffusers_mdiffae.convert.convert_original_snapshot`.
        """
        from ...conversion.convert import convert_original_snapshot, locate_original_snapshot

        want_info = kwargs.pop("output_loading_info", False)
        hub_kwargs = {k: v for k, v in kwargs.items() if k != "subfolder"}
        original = locate_original_snapshot(pretrained_model_name_or_path, kwargs.get("subfolder"), **hub_kwargs)
        if original is not None:
            # A published (non-diffusers) snapshot: convert it on the fly, strictly.
            model = convert_original_snapshot(original, torch_dtype=kwargs.get("torch_dtype"))
            return (model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}) \
                if want_info else model
        model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        problems = []
        for key in ("missing_keys", "unexpected_keys"):
            names = sorted(info.get(key) or [])
            if names:
                problems.append(f"  {key.replace('_', ' ')} ({len(names)}): " + ", ".join(names))
        if info.get("mismatched_keys"):
            problems.append("  shape mismatches: " + ", ".join(
                f"{k} {list(a)} vs {list(b)}" for k, a, b in info["mismatched_keys"]))
        if info.get("error_msgs"):
            problems.append("  errors: " + "; ".join(map(str, info["error_msgs"])))
        if problems:
            raise ValueError(
                f"checkpoint {pretrained_model_name_or_path} does not match {cls.__name__}(config):\n"
                + "\n".join(problems)
            )
        model.use_channels_last_weights()
        return (model, info) if want_info else model

    def model_card(self) -> str:
        """Markdown model card (YAML front matter + usage) written next to the weights on save."""
        from ...model_card import render_model_card

        return render_model_card(self)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], is_main_process: bool = True, **kwargs):
        """``ModelMixin.save_pretrained`` plus a ``README.md`` model card unless one exists."""
        push = kwargs.pop("push_to_hub", False)
        repo_kwargs = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "token", "create_pr")
                       if k in kwargs}
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        card = os.path.join(save_directory, "README.md")
        if is_main_process and not os.path.exists(card):
            with open(card, "w", encoding="utf-8") as f:
                f.write(self.model_card())
        if push:
            repo_id = repo_kwargs.pop("repo_id", None) or os.path.basename(os.path.normpath(save_directory))
            return self.push_to_hub(repo_id, variant=kwargs.get("variant"), **repo_kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: Optional[str] = None,
        private: Optional[bool] = None,
        token: Optional[str] = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: Optional[str] = None,
        subfolder: Optional[str] = None,
    ):
        """Save to a temporary folder (weights, config, model card) and upload it to the Hub.

        Unlike ``ModelMixin.push_to_hub`` the card is this package's own (``library_name:
        diffusers`` plus mDiffAE tags and usage), so users find how to load the custom class.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, safe_serialization=safe_serialization, variant=variant)
            if subfolder:
                os.remove(os.path.join(tmp, "README.md"))
            return api.upload_folder(
                repo_id=repo_id, folder_path=tmp, path_in_repo=subfolder,
                commit_message=commit_message or "Upload AutoencoderMDiffAE", create_pr=create_pr,
            )

    @torch.no_grad()
    def reconstruct(
        self,
        images: torch.Tensor,
        inference_config: Optional[MDiffAEInferenceConfig] = None,
        generator: GeneratorArg = None,
    ) -> torch.Tensor:
        """Encode and decode (the original package's ``reconstruct``); returns ``[B, 3, H, W]``."""
        z = self.encode(images).latent
        h, w = images.shape[-2:]
        return self.decode(z, height=h, width=w, inference_config=inference_config, generator=generator).sample
