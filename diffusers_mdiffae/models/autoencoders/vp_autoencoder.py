"""What every member of the family shares behind the ``AutoencoderKL`` interface.

A family file (``autoencoder_mdiffae.py``, ``autoencoder_semdis.py``) defines the config and builds
``self.encoder``, ``self.decoder`` and ``self.scheduler``; this base class supplies encode/decode
with slicing, tiling and the published ``decode(latents, height, width, inference_config)``,
``reconstruct``, and strict loading and saving.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from ...checks import check_images, check_latents
from .. import hub
from ..sampling import (
    DecodeSettings,
    GeneratorArg,
    check_seed,
    draw_noise,
    keep_mask,
    make_scheduler,
    resolve_settings,
    run_sampler,
)
from ..tiling import tiles


@dataclass
class MDiffAEEncoderOutput(AutoencoderKLOutput):
    """``AutoencoderKLOutput`` that also carries the default latents directly.

    Args:
        latent_dist: the latent distribution; ``mode()`` is the default latent.
        latent: ``latent_dist.mode()`` as a tensor (read by AutoencoderDC-style callers such as Sana).
    """

    latent: Optional[torch.Tensor] = None


class VPDiffusionAutoencoder(ModelMixin, AutoencoderMixin, ConfigMixin):
    """Base class: a patch encoder and a VP-diffusion decoder sampled by a :class:`VPDDIMScheduler`.

    Subclasses set ``self.encoder``, ``self.decoder``, ``self.scheduler`` and may override
    :meth:`_encode_dist` (the latent distribution of one batch or tile) and
    :meth:`_to_decoder_latents` (e.g. dewhitening).
    """

    _supports_gradient_checkpointing = True
    # diffusers' default inference-config class for ``decode``/``reconstruct`` of this family.
    inference_config_class = None

    def _init_runtime(self, patch_size: int, sample_size: int) -> None:
        self.spatial_compression_ratio = patch_size
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_size = sample_size
        self.tile_overlap_factor = 0.25
        self.use_channels_last()

    def use_channels_last(self, enabled: bool = True):
        """Run convolutions on channels-last weights and activations (the default: about 20 % faster on CPU).

        Channels-last makes every 1x1 convolution one large matrix multiply for oneDNN. It changes
        the summation order, so results differ from a contiguous run at float32 rounding level;
        ``use_channels_last(False)`` reproduces the published packages bit for bit on the CPU.
        ``save_pretrained`` writes the usual contiguous tensors either way.
        """
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.encoder.memory_format = self.decoder.memory_format = fmt
        return self.to(memory_format=fmt)

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
            if (
                isinstance(tile_sample_min_size, bool)
                or not isinstance(tile_sample_min_size, int)
                or tile_sample_min_size < p
                or tile_sample_min_size % p
            ):
                raise ValueError(
                    f"tile_sample_min_size must be a positive multiple of {p}, got {tile_sample_min_size!r}"
                )
            self.tile_sample_min_size = tile_sample_min_size
        if tile_overlap_factor is not None:
            if not 0.0 <= tile_overlap_factor < 1.0:
                raise ValueError(f"tile_overlap_factor must be in [0, 1), got {tile_overlap_factor}")
            self.tile_overlap_factor = tile_overlap_factor
        self.use_tiling = True

    def _tile_geometry(self) -> Tuple[int, int]:
        tile = max(self.tile_sample_min_size // self.config.patch_size, 1)
        return tile, int(tile * self.tile_overlap_factor)

    def _tiled(self, h: int, w: int) -> bool:
        tile, _ = self._tile_geometry()
        return self.use_tiling and (h > tile or w > tile)

    # -- encoder ------------------------------------------------------------------------------

    def _encode_dist(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """The latent distribution of images ``x`` (no tiling). Deterministic by default: std 0."""
        z = self.encoder(x.to(self.dtype))
        return DiagonalGaussianDistribution(torch.cat([z, torch.full_like(z, -30.0)], dim=1), deterministic=True)

    def _encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        p = self.config.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        if not self._tiled(h, w):
            return self._encode_dist(x)
        tile, overlap = self._tile_geometry()
        params = None
        norm = torch.zeros(1, 1, h, w, device=x.device, dtype=torch.float32)
        for sy, sx, weight in tiles(h, w, tile, overlap):
            dist = self._encode_dist(x[:, :, sy.start * p : sy.stop * p, sx.start * p : sx.stop * p])
            if params is None:
                params = torch.zeros(x.shape[0], dist.parameters.shape[1], h, w, device=x.device, dtype=torch.float32)
            weight = weight.to(x.device)
            params[:, :, sy, sx] += dist.parameters.float() * weight
            norm[:, :, sy, sx] += weight
        return self._dist_from_parameters((params / norm).to(self.dtype))

    def _dist_from_parameters(self, parameters: torch.Tensor) -> DiagonalGaussianDistribution:
        """Rebuild a (blended) distribution from its ``parameters`` tensor."""
        return DiagonalGaussianDistribution(parameters, deterministic=True)

    @apply_forward_hook
    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """Encode images ``[B, 3, H, W]`` in [-1, 1] (H, W multiples of ``patch_size``).

        Returns:
            :class:`~diffusers.models.modeling_outputs.AutoencoderKLOutput` whose ``latent_dist``
            gives ``[B, latent_channels, H/p, W/p]`` from ``mode()`` and ``sample(generator)``
            (plus a ``latent`` field holding the mode), or ``(latent_dist,)`` when ``return_dict=False``.
        """
        check_images(x, self.config.in_channels, self.config.patch_size)
        if self.use_slicing and x.shape[0] > 1:
            dist = self._dist_from_parameters(torch.cat([self._encode(s).parameters for s in x.split(1)]))
        else:
            dist = self._encode(x)
        if not return_dict:
            return (dist,)
        return MDiffAEEncoderOutput(latent_dist=dist, latent=dist.mode())

    # -- decoder ------------------------------------------------------------------------------

    def _to_decoder_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents as ``encode`` returns them -> the decoder's conditioning space (identity here)."""
        return z

    def default_decode_settings(self) -> DecodeSettings:
        c = self.config
        w = None if c.decoder_pdg_strength == 1.0 else float(c.decoder_pdg_strength)
        return DecodeSettings(c.decoder_num_inference_steps, "ddim", self.scheduler.config.schedule, w, 1.0)

    def _decode(self, z, noise, generator, settings, callback) -> torch.Tensor:
        h, w = z.shape[-2:]
        p = self.config.patch_size
        mask = None
        if settings.pdg_strength is not None and self.decoder.uses_token_mask:
            mask = keep_mask(generator, z.shape[0], h, w, self.config.pdg_mask_ratio, z.device)

        def sample(zz, nn_, mm):
            scheduler = make_scheduler(self.scheduler, settings.sampler)
            return run_sampler(self.decoder, scheduler, self._to_decoder_latents(zz), nn_, settings, mm, callback)

        if not self._tiled(h, w):
            return sample(z, noise, mask)
        tile, overlap = self._tile_geometry()
        out = torch.zeros(noise.shape, device=z.device, dtype=torch.float32)
        norm = torch.zeros(1, 1, h * p, w * p, device=z.device, dtype=torch.float32)
        for sy, sx, weight in tiles(h, w, tile, overlap):
            psy, psx = slice(sy.start * p, sy.stop * p), slice(sx.start * p, sx.stop * p)
            weight = weight.repeat_interleave(p, 0).repeat_interleave(p, 1).to(z.device)
            tile_mask = mask[:, :, sy, sx] if mask is not None else None
            out[:, :, psy, psx] += sample(z[:, :, sy, sx], noise[:, :, psy, psx], tile_mask) * weight
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
        schedule: Optional[str] = None,
        strength: Optional[float] = None,
        inference_config=None,
        callback: Optional[Callable[[int, int], None]] = None,
    ) -> Union[DecoderOutput, Tuple[torch.Tensor]]:
        """Decode latents to images in [-1, 1] (not clamped, like ``AutoencoderKL``) by sampling the decoder.

        Args:
            z: latents ``[B, latent_channels, h, w]`` (as a pipeline passes them: already divided
                by ``scaling_factor`` with ``shift_factor`` added).
            height, width: optional output size in pixels, checked against ``h * p, w * p`` (the
                published ``decode(latents, height=H, width=W)`` signature).
            generator: a ``torch.Generator`` or one per sample for the initial noise.
            num_inference_steps: decoder evaluations (default ``config.decoder_num_inference_steps``).
            pdg_strength: path-drop guidance weight, 1.0 = off (default ``config.decoder_pdg_strength``).
            seed: per-sample seed for the noise when no generator is given (default ``config.decoder_seed``).
            sampler: ``"ddim"`` (default) or ``"dpmpp_2m"``.
            schedule: ``"linear"`` (default) or ``"cosine"`` time grid.
            strength: in (0, 1]: sampling starts at ``t = strength``.
            inference_config: the published package's settings object (``MDiffAEInferenceConfig``,
                ``FCDMDiffAEInferenceConfig``); its noise is drawn as the published packages draw
                it (one generator for the batch, seeded with its ``seed``). Explicit keyword
                arguments override its fields.
            callback: called as ``callback(step, num_steps)`` after every step (of every tile);
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
        settings = resolve_settings(
            self.default_decode_settings(),
            inference_config,
            num_inference_steps,
            pdg_strength,
            sampler,
            schedule,
            strength,
        )
        seed = check_seed(seed)
        if inference_config is not None:
            seed = check_seed(inference_config.seed, "inference_config.seed") if seed is None else seed
            per_sample = False
        else:
            seed = self.config.decoder_seed if seed is None else seed
            per_sample = True
        shape = (z.shape[0], self.config.in_channels, h * p, w * p)
        noise, gen = draw_noise(shape, generator, seed, per_sample, device=z.device)
        if self.use_slicing and z.shape[0] > 1:
            gens = gen if isinstance(gen, list) else [gen] * z.shape[0]
            image = torch.cat(
                [self._decode(z[i : i + 1], noise[i : i + 1], gens[i], settings, callback) for i in range(z.shape[0])]
            )
        else:
            image = self._decode(z, noise, gen, settings, callback)
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

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, inference_config=None, generator: GeneratorArg = None) -> torch.Tensor:
        """Encode and decode (the published packages' ``reconstruct``); returns ``[B, 3, H, W]``.

        With ``inference_config=None`` the model's pipeline defaults apply (deterministic per-sample noise).
        """
        z = self.encode(images).latent
        h, w = images.shape[-2:]
        return self.decode(z, height=h, width=w, inference_config=inference_config, generator=generator).sample

    # -- hub ----------------------------------------------------------------------------------

    def _validate_init(self, args: dict) -> None:
        hub.validate_config(
            type(self),
            {k: v for k, v in args.items() if k not in ("self", "__class__")},
            source=f"{type(self).__name__} argument",
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """``ModelMixin.from_pretrained``, but strict about everything it only logs.

        Refused with a message naming the problem: any missing, unexpected or mis-shaped tensor,
        NaN or infinite weights, and config keys that are unknown or of the wrong type. Accepts
        every ``ModelMixin.from_pretrained`` argument (``subfolder``, ``torch_dtype``, ``variant``,
        ``revision``, ...).

        A folder or Hub repo in a published layout (original ``config.json`` + ``model.safetensors``:
        mDiffAE v1/v2, iRDiffAE, SemDisDiffAE) is recognised and converted on load, strictly.
        """
        want_info = kwargs.pop("output_loading_info", False)
        hub_kwargs = {k: v for k, v in kwargs.items() if k != "subfolder"}
        original = hub.locate_original_snapshot(pretrained_model_name_or_path, kwargs.get("subfolder"), **hub_kwargs)
        if original is not None:
            model = hub.convert_original_snapshot(original, torch_dtype=kwargs.get("torch_dtype"))
            if not isinstance(model, cls):
                raise ValueError(
                    f"{original} holds a {type(model).__name__}, not a {cls.__name__}; load it with that class"
                )
            info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
            return (model, info) if want_info else model
        # float32 buffers (time frequencies, whitening statistics) stay float32 under a half torch_dtype
        load = super().from_pretrained
        model, info = hub.strict_from_pretrained(cls, load, pretrained_model_name_or_path, kwargs, upcast=True)
        model.use_channels_last()
        return (model, info) if want_info else model

    def model_card(self) -> str:
        """Markdown model card (YAML front matter + usage) written next to the weights on save."""
        from ...model_card import render_model_card

        return render_model_card(self)

    def save_pretrained(self, save_directory: Union[str, os.PathLike], is_main_process: bool = True, **kwargs):
        """``ModelMixin.save_pretrained`` plus a ``README.md`` model card unless one exists."""
        push = kwargs.pop("push_to_hub", False)
        repo_kwargs = {
            k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "token", "create_pr") if k in kwargs
        }
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

        The model card goes through diffusers' ``load_or_create_model_card``: a card already on the
        Hub (perhaps edited there) is kept and only gains this package's tags; a new repo gets this
        package's card, so users find how to load the custom class.
        """
        from diffusers.utils.hub_utils import load_or_create_model_card, populate_model_card
        from huggingface_hub import HfApi

        from ...model_card import CARD_TAGS, render_model_card_body

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, safe_serialization=safe_serialization, variant=variant)
            card_path = os.path.join(tmp, "README.md")
            if subfolder:
                os.remove(card_path)  # the repo's card belongs to the whole repo (e.g. a pipeline)
            else:
                card = load_or_create_model_card(repo_id, token=token, model_description=render_model_card_body(self))
                missing = [t for t in CARD_TAGS if t not in (card.data.tags or [])]
                populate_model_card(card, tags=missing).save(card_path)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                path_in_repo=subfolder,
                commit_message=commit_message or f"Upload {type(self).__name__}",
                create_pr=create_pr,
            )
