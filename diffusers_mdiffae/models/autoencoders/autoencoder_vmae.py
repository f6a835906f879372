"""LDMAE's VMAE (Variational Masked AutoEncoder): a ViT autoencoder with a spatial diagonal-Gaussian latent.

Re-implemented from the published facts (tests/fixtures/parity/TOKENIZERS_FACTS.md, section 2), with
the tensor names of the published ``vmaef8d16.pth`` so a converted state dict needs no renaming;
parity with the original code is pinned by ``tests/fixtures/parity/vmae.safetensors``
(``tests/test_vmae.py``). The original ``.pth`` pickles are read by
:mod:`diffusers_mdiffae.conversion.vmae_pth`, never with a plain ``torch.load``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ...checks import _check_finite, _check_tensor, check_fixed_size_images
from .. import hub
from ..mae_vit_blocks import MAEBlock, MAEPatchEmbed, SmoothedPixelHead

#: Licence of the original work, repeated in the class docstring and in converted folders' README.
LICENSE_NOTE = (
    "LDMAE's code (github.com/isno0907/ldmae) derives from Meta's MAE, licensed CC BY-NC 4.0 "
    "(non-commercial); the repository has no LICENSE file of its own. The published VMAE weights "
    "(vmaef8d16.pth, a Google Drive link in LDMAE's README) state no licence: treat them as "
    "non-commercial, research-only, and do not redistribute them. This re-implementation contains no "
    "code of the original; the weights keep their own terms."
)


def sincos_table(grid: int, dim: int) -> torch.Tensor:
    """A 2-D sine-cosine position table ``[1, grid*grid, dim]`` (row-major tokens), for fresh models.

    The first half of the channels encodes the column, the second half the row; each half is
    ``[sin(pos * f), cos(pos * f)]`` with ``f_k = 10000 ** (-k / (dim / 4))``. Converted checkpoints
    overwrite the tables with their stored ones (the published ones were resized, see the class).
    """
    if dim % 4:
        return torch.zeros(1, grid * grid, dim)
    quarter = dim // 4
    freqs = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    pos = torch.arange(grid, dtype=torch.float64)
    angles = pos[:, None] * freqs[None]  # [grid, quarter]
    one_d = torch.cat([angles.sin(), angles.cos()], dim=1)  # [grid, dim / 2]
    rows = one_d[:, None, :].expand(grid, grid, dim // 2)
    cols = one_d[None, :, :].expand(grid, grid, dim // 2)
    return torch.cat([cols, rows], dim=-1).reshape(1, grid * grid, dim).float()


class AutoencoderVMAE(ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""LDMAE's VMAE tokenizer with the ``AutoencoderKL`` interface: images <-> a spatial Gaussian latent.

    ``encode`` maps images ``[B, in_chans, img_size, img_size]`` in [-1, 1] to a diffusers
    :class:`~diffusers.models.autoencoders.vae.DiagonalGaussianDistribution` over latents
    ``[B, latent_dim, img_size/p, img_size/p]`` (published: ``[B, 16, 32, 32]`` from 256x256, f8 d16).
    Its ``mode()`` is the mean (what LDMAE's tokenizer evaluation uses); ``sample(generator)`` is
    ``mean + std * randn`` with the log-variance clamped to [-30, 20] (what LDMAE's diffusion
    training sampled from the stored moments). ``decode`` maps such latents back to
    ``[B, in_chans, img_size, img_size]`` in about [-1, 1], unclamped (LDMAE maps to pixels with
    ``clamp(127.5 * x + 128, 0, 255)``).

    Architecture (constructor defaults = the published ``mae_for_ldmae_f8d16_prev`` at 256x256,
    11,191,412 values of which 393,216 are the two position tables): a stride-``patch_size``
    patch embedding plus a position table, ``depth`` pre-norm ViT blocks, LayerNorm, a linear map
    to ``2 * latent_dim`` channels (mean then log-variance), the tokens laid out on the latent grid;
    the decoder maps the latent linearly to ``decoder_embed_dim`` (``from_latent`` then
    ``decoder_embed``), adds its own position table, runs ``decoder_depth`` blocks and LayerNorm,
    predicts a pixel patch per token and smooths the image with one 3x3 convolution. No class token,
    no mask token, no masking at inference.

    Fixed size: the position tables cover exactly ``(img_size / patch_size)**2`` tokens and are
    weights of the checkpoint (the published 256x256 tables were bilinearly resized from a 16x16
    sin-cos grid, then frozen), so other sizes are refused: resize or centre-crop to ``img_size``
    first (LDMAE: ADM centre crop to 256, then ``Normalize(0.5, 0.5)``). Tiling is therefore not
    offered (each tile would be encoded as if it were a whole image); slicing is.

    Latent normalisation: LDMAE's diffusion model sees ``(z - mean_c) / std_c * latent_multiplier``
    with per-channel statistics ``[1, 16, 1, 1]`` computed over up to 10k training latents
    (``latents_stats.pt``, not part of the VAE checkpoint) and ``latent_multiplier = 1.0``. Hence
    ``scaling_factor = 1.0``, ``shift_factor = 0.0``, and ``latents_mean`` / ``latents_std`` (length
    ``latent_dim``, None unless given, e.g. by the converter's ``--latent-stats``) in diffusers'
    SDXL convention: :meth:`normalize_latents` / :meth:`denormalize_latents` apply them. The
    original class stores ``scaling_factor = 0.9654248952865601`` but never uses it; it is not
    carried over.

    Licence: LDMAE's code derives from Meta's MAE, licensed CC BY-NC 4.0 (non-commercial); the
    LDMAE repository has no LICENSE file of its own. The published weights (``vmaef8d16.pth``, a
    Google Drive link in LDMAE's README) state no licence: treat them as non-commercial,
    research-only, and do not redistribute them. This class contains no code of the original.

    Args:
        img_size: input side in pixels (256 published); fixes the token grid.
        patch_size: spatial factor of the latent grid (8).
        in_chans: image channels (3).
        embed_dim / depth / num_heads: encoder width, blocks, heads (192 / 12 / 12).
        decoder_embed_dim / decoder_depth / decoder_num_heads: decoder width (must equal
            ``embed_dim``, as in LDMAE's module), blocks, heads (192 / 12 / 12).
        mlp_ratio: MLP hidden width over model width (4).
        norm_layer_eps: LayerNorm epsilon (1e-6).
        latent_dim: latent channels (16); the encoder head predicts ``2 * latent_dim``.
        scaling_factor / shift_factor: diffusers' latent scaling (1.0 / 0.0, see above).
        latents_mean / latents_std: optional per-channel latent statistics (see above).
        force_upcast: diffusers' flag for half-precision VAEs (False: float16/bfloat16 run as is).
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["MAEBlock"]
    _skip_layerwise_casting_patterns = ["pos_embed", "norm"]

    @register_to_config
    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 8,
        in_chans: int = 3,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 192,
        decoder_depth: int = 12,
        decoder_num_heads: int = 12,
        mlp_ratio: float = 4.0,
        norm_layer_eps: float = 1e-6,
        latent_dim: int = 16,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
        latents_mean: Optional[Sequence[float]] = None,
        latents_std: Optional[Sequence[float]] = None,
        force_upcast: bool = False,
    ):
        super().__init__()
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        hub.validate_config(type(self), args, source=f"{type(self).__name__} argument")
        check_vmae_config(args)
        grid = img_size // patch_size
        self.patch_embed = MAEPatchEmbed(in_chans, embed_dim, patch_size)
        self.pos_embed = nn.Parameter(sincos_table(grid, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(MAEBlock(embed_dim, num_heads, mlp_ratio, norm_layer_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=norm_layer_eps)
        self.to_latent = nn.Linear(embed_dim, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, decoder_embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.decoder_pos_embed = nn.Parameter(sincos_table(grid, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            MAEBlock(decoder_embed_dim, decoder_num_heads, mlp_ratio, norm_layer_eps) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=norm_layer_eps)
        self.decoder_pred = SmoothedPixelHead(decoder_embed_dim, patch_size, in_chans)
        self.spatial_compression_ratio = patch_size
        self.use_slicing = False
        self.use_tiling = False

    # -- shapes -------------------------------------------------------------------------------

    @property
    def latent_channels(self) -> int:
        """Channels of the latent ``encode`` returns (``latent_dim``)."""
        return self.config.latent_dim

    @property
    def latent_grid(self) -> int:
        """Side of the latent grid, ``img_size / patch_size`` (32 published)."""
        return self.config.img_size // self.config.patch_size

    def enable_tiling(self, *args, **kwargs):
        """Refused: the position tables fix the token grid, so there is no sound way to tile."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot tile: its position tables are checkpoint weights for exactly one "
            f"{self.config.img_size}x{self.config.img_size} image, so a tile would be encoded as if it were a whole "
            f"image. Resize or centre-crop inputs to {self.config.img_size}x{self.config.img_size}; use "
            "enable_slicing() to bound memory for large batches."
        )

    # -- encoder ------------------------------------------------------------------------------

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x.to(self.dtype)) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.to_latent(self.norm(tokens))  # [B, h*w, 2C]
        g = self.latent_grid
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], g, g)

    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior's raw parameters ``[B, 2*latent_dim, h, w]``: mean, then log-variance (unclamped).

        This is the original ``_encode``, what LDMAE's feature extraction stores with ``data.sample``.
        """
        check_vmae_images(x, self.config.in_chans, self.config.img_size)
        if self.use_slicing and x.shape[0] > 1:
            return torch.cat([self._moments(s) for s in x.split(1)])
        return self._moments(x)

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> Union[AutoencoderKLOutput, Tuple[DiagonalGaussianDistribution]]:
        """Encode images ``[B, in_chans, img_size, img_size]`` in [-1, 1].

        Returns:
            :class:`~diffusers.models.modeling_outputs.AutoencoderKLOutput` whose ``latent_dist`` (a
            ``DiagonalGaussianDistribution``) gives ``[B, latent_dim, h, w]`` from ``mode()`` (the
            mean) and ``sample(generator)``; ``(latent_dist,)`` when ``return_dict=False``.
        """
        dist = DiagonalGaussianDistribution(self.encode_moments(x))
        if not return_dict:
            return (dist,)
        return AutoencoderKLOutput(latent_dist=dist)

    # -- decoder ------------------------------------------------------------------------------

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        g = self.latent_grid
        tokens = z.to(self.dtype).flatten(2).transpose(1, 2)  # [B, h*w, C]
        tokens = self.decoder_embed(self.from_latent(tokens)) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens), g, g)

    @apply_forward_hook
    def decode(
        self, z: torch.Tensor, return_dict: bool = True, generator: Optional[torch.Generator] = None
    ) -> Union[DecoderOutput, Tuple[torch.Tensor]]:
        """Decode latents ``[B, latent_dim, h, w]`` to images ``[B, in_chans, img_size, img_size]``.

        Deterministic (``generator`` is accepted for the ``AutoencoderKL`` signature and unused). The
        latents are in the encoder's space: undo any pipeline normalisation first
        (:meth:`denormalize_latents`). The output is not clamped.

        Returns:
            :class:`~diffusers.models.autoencoders.vae.DecoderOutput` with ``sample``, or ``(sample,)``
            when ``return_dict=False``.
        """
        check_vmae_latents(z, self.config.latent_dim, self.latent_grid, self.config.patch_size)
        if self.use_slicing and z.shape[0] > 1:
            image = torch.cat([self._decode(s) for s in z.split(1)])
        else:
            image = self._decode(z)
        if not return_dict:
            return (image,)
        return DecoderOutput(sample=image)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: Optional[torch.Generator] = None,
    ) -> Union[DecoderOutput, Tuple[torch.Tensor]]:
        """Reconstruct ``sample``: encode, take the mean (or a posterior sample), decode."""
        dist = self.encode(sample).latent_dist
        z = dist.sample(generator=generator) if sample_posterior else dist.mode()
        return self.decode(z, return_dict=return_dict)

    # -- latent normalisation -----------------------------------------------------------------

    def _latent_stats(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if c.latents_mean is None:
            mean = torch.full((c.latent_dim,), float(c.shift_factor))
            std = torch.ones(c.latent_dim)
        else:
            mean, std = torch.tensor(c.latents_mean), torch.tensor(c.latents_std)
        shape = (1, -1, 1, 1)
        return mean.to(z.device, torch.float32).view(shape), std.to(z.device, torch.float32).view(shape)

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder latents -> the diffusion model's space, as LDMAE: ``(z - mean) / std * scaling_factor``.

        Without ``latents_mean``/``latents_std``: ``(z - shift_factor) * scaling_factor``. Float32.
        """
        mean, std = self._latent_stats(z)
        return (z.float() - mean) / std * float(self.config.scaling_factor)

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`normalize_latents`: ``z * std / scaling_factor + mean`` (float32)."""
        mean, std = self._latent_stats(z)
        return z.float() * std / float(self.config.scaling_factor) + mean

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a diffusers folder strictly, or convert an original LDMAE ``.pth`` on load.

        * A ``.pth``/``.pt`` file, or a folder without a diffusers ``config.json`` holding exactly one
          such file: read safely and converted by
          :func:`~diffusers_mdiffae.conversion.vmae_pth.load_vmae_pth` (weights-only unpickling;
          pickles that would run code are refused). The configuration comes from the tensor shapes
          and the checkpoint's stored ``args``; config keywords (e.g. ``num_heads=12``,
          ``latents_mean=[...]``) override it, and ``torch_dtype`` casts the result.
        * A folder written by ``save_pretrained`` (or a Hub repo): ``ModelMixin.from_pretrained``,
          then refused with a message on any missing, unexpected or mis-shaped tensor, NaN or
          infinite weights, or unknown / mistyped config keys.
        """
        from ...conversion.vmae_pth import find_vmae_pth, load_vmae_pth

        want_info = kwargs.pop("output_loading_info", False)
        pth = find_vmae_pth(pretrained_model_name_or_path, kwargs.get("subfolder"))
        if pth is not None:
            params = set(cls._config_params())
            overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in params}
            torch_dtype = kwargs.pop("torch_dtype", None)
            kwargs.pop("subfolder", None)
            if kwargs:
                raise TypeError(f"unsupported argument(s) for loading a .pth checkpoint: {sorted(kwargs)}")
            model = load_vmae_pth(pth, torch_dtype=torch_dtype, **overrides)
            info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
            return (model, info) if want_info else model
        hint = " folder (pass the original .pth file to convert one)"
        load = super().from_pretrained
        model, info = hub.strict_from_pretrained(cls, load, pretrained_model_name_or_path, kwargs, True, hint)
        return (model, info) if want_info else model

    @classmethod
    def _config_params(cls):
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def save_pretrained(self, save_directory: Union[str, os.PathLike], is_main_process: bool = True, **kwargs):
        """``ModelMixin.save_pretrained`` plus a ``LICENSE_NOTE.md`` stating the original's terms."""
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        note = Path(save_directory) / "LICENSE_NOTE.md"
        if is_main_process and not note.exists():
            from ...atomic import atomic_file

            with atomic_file(note) as tmp:
                tmp.write_text(
                    f"# {type(self).__name__}: licence of the weights\n\n{LICENSE_NOTE}\n", encoding="utf-8"
                )


# -- checks ---------------------------------------------------------------------------------------


def check_vmae_config(c: dict) -> None:
    """Constructor checks beyond the types (``hub.validate_config`` checks those)."""
    for key in (
        "img_size",
        "patch_size",
        "in_chans",
        "embed_dim",
        "depth",
        "num_heads",
        "decoder_embed_dim",
        "decoder_depth",
        "decoder_num_heads",
        "latent_dim",
    ):
        if c[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {c[key]}")
    if c["img_size"] % c["patch_size"]:
        raise ValueError(f"img_size ({c['img_size']}) must be a multiple of patch_size ({c['patch_size']})")
    if c["decoder_embed_dim"] != c["embed_dim"]:
        raise ValueError(
            f"decoder_embed_dim ({c['decoder_embed_dim']}) must equal embed_dim ({c['embed_dim']}): LDMAE's VMAE maps "
            "the latent to decoder_embed_dim and then applies decoder_embed, a Linear(embed_dim, decoder_embed_dim)"
        )
    for width, heads in (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads")):
        if c[width] % c[heads]:
            raise ValueError(f"{width} ({c[width]}) must be divisible by {heads} ({c[heads]})")
    if not c["mlp_ratio"] > 0 or int(c["embed_dim"] * c["mlp_ratio"]) < 1:
        raise ValueError(f"mlp_ratio must be > 0, got {c['mlp_ratio']}")
    if not c["norm_layer_eps"] > 0:
        raise ValueError(f"norm_layer_eps must be > 0, got {c['norm_layer_eps']}")
    if c["scaling_factor"] == 0:
        raise ValueError("scaling_factor must not be 0")
    mean, std = c["latents_mean"], c["latents_std"]
    if (mean is None) != (std is None):
        raise ValueError("latents_mean and latents_std must be given together (or both left None)")
    if mean is not None:
        for name, values in (("latents_mean", mean), ("latents_std", std)):
            if len(values) != c["latent_dim"] or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
            ):
                raise ValueError(f"{name} must hold {c['latent_dim']} finite numbers (one per latent channel)")
        if not all(v > 0 for v in std):
            raise ValueError("latents_std must be > 0 in every channel")


def check_vmae_images(x, in_chans: int, img_size: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite float ``[B, in_chans, img_size, img_size]`` tensor."""
    check_fixed_size_images(
        x,
        in_chans,
        img_size,
        size_refusal="images must be exactly {size}x{size} (the position tables are fixed), got {h}x{w}; "
        "resize or centre-crop first, e.g. torch.nn.functional.interpolate(x, size=({size}, {size}), "
        "mode='bicubic', antialias=True), or crop the centre square and resize it as LDMAE does",
    )


def check_vmae_latents(z, latent_dim: int, grid: int, patch_size: int) -> None:
    """Raise ``ValueError`` unless ``z`` is a finite float ``[B, latent_dim, grid, grid]`` tensor."""
    _check_tensor(z, "latents")
    if z.shape[1] != latent_dim:
        raise ValueError(
            f"latents must have {latent_dim} channels in dim 1, got shape {tuple(z.shape)}; "
            "were they produced by a different autoencoder (or are they the 2x-channel moments? take "
            "DiagonalGaussianDistribution(moments).mode())"
        )
    if tuple(z.shape[-2:]) != (grid, grid):
        raise ValueError(
            f"latents must be on the fixed {grid}x{grid} grid (images of {grid * patch_size}x{grid * patch_size}), "
            f"got {tuple(z.shape[-2:])[0]}x{tuple(z.shape[-2:])[1]}; this model cannot decode other sizes"
        )
    _check_finite(z, "latents")


__all__ = ["AutoencoderVMAE", "LICENSE_NOTE", "check_vmae_images", "check_vmae_latents", "sincos_table"]
