"""MAETok and SoftVQ-VAE: 1-D latent-token ViT tokenizers (``Hhhhhhao/continuous_tokenizer``) for diffusers.

Both encode an image ``[B, 3, S, S]`` in [-1, 1] at one fixed size ``S`` into ``L`` latent tokens
``[B, L, d]`` and decode them back; they differ only in the bottleneck:

* :class:`AutoencoderMAETok` (the original ``AEModel``): the tokens are ``quant_conv`` of the
  encoder's latent-token states, nothing else.
* :class:`AutoencoderSoftVQ` (the original ``SoftVQModel``): the tokens are soft-quantised,
  ``softmax(cos(z, e) / tau) @ e`` per codebook group (see
  :class:`~diffusers_mdiffae.models.latent_token_vit.SoftVectorQuantizer`).

``from_pretrained`` reads this package's folders and, converted strictly on load, the published
folders (``config.json`` with the ``ModelArgs`` fields + ``model.safetensors``), e.g.
``MAETok/maetok-b-128`` with :class:`AutoencoderMAETok` and ``SoftVQVAE/softvq-bl-64`` with
:class:`AutoencoderSoftVQ`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple, Union

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

from ...checks import check_fixed_size_images, check_token_latents
from .. import hub
from ..latent_token_vit import LatentTokenDecoder, LatentTokenEncoder, SoftVectorQuantizer


class TokenLatentDistribution:
    """The encoder's 1-D tokens as a point distribution (the tokenizers have no posterior noise).

    ``mode()``, ``sample(generator)`` and ``mean`` are all the tokens ``[B, L, d]``; ``std`` is zero
    and ``kl()`` is zero per sample, so ``AutoencoderKL``-style callers work unchanged.
    """

    deterministic = True

    def __init__(self, latents: torch.Tensor):
        self.mean = latents

    @property
    def std(self) -> torch.Tensor:
        return torch.zeros_like(self.mean)

    @property
    def var(self) -> torch.Tensor:
        return torch.zeros_like(self.mean)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The tokens (``generator`` is accepted for the ``AutoencoderKL`` interface and unused)."""
        return self.mean

    def kl(self, other=None) -> torch.Tensor:
        return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)


@dataclass
class LatentTokenEncoderOutput(AutoencoderKLOutput):
    """``AutoencoderKLOutput`` for 1-D tokens.

    Args:
        latent_dist: :class:`TokenLatentDistribution` over the tokens ``[B, L, d]``.
        latent: the tokens themselves.
        pre_quant: SoftVQ only: ``quant_conv`` output before the soft quantiser ``[B, L, d]``; None for MAETok.
    """

    latent: Optional[torch.Tensor] = None
    pre_quant: Optional[torch.Tensor] = None


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class LatentTokenAutoencoder(ModelMixin, AutoencoderMixin, ConfigMixin):
    """Base of :class:`AutoencoderMAETok` and :class:`AutoencoderSoftVQ`: ViT encoder -> tokens -> ViT decoder.

    Subclasses call :meth:`_build` from their ``__init__`` and may override :meth:`_bottleneck`.
    Tiling is refused (1-D tokens have no spatial layout); slicing (one sample at a time) works.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["ViTBlock"]
    _skip_layerwise_casting_patterns = ["norm", "pos_embed", "cls_token", "mask_token", "latent_tokens", "rope"]
    #: the original class ``convert_tokenizer`` maps from (``"maetok"``: AEModel, ``"softvq"``: SoftVQModel)
    _original_kind = None
    #: whether :meth:`_bottleneck` changes the ``quant_conv`` output (then ``encode`` also returns ``pre_quant``)
    _quantized = False

    def _build(self, args: dict) -> None:
        args = {k: v for k, v in args.items() if k not in ("self", "__class__")}
        hub.validate_config(type(self), args, source=f"{type(self).__name__} argument")
        for name in (
            "image_size",
            "enc_patch_size",
            "dec_patch_size",
            "num_latent_tokens",
            "codebook_embed_dim",
            "encoder_embed_dim",
            "encoder_depth",
            "encoder_num_heads",
            "decoder_embed_dim",
            "decoder_depth",
            "decoder_num_heads",
        ):
            _positive_int(name, args[name])
        size = args["image_size"]
        for side in ("enc", "dec"):
            p = args[f"{side}_patch_size"]
            if size % p:
                raise ValueError(f"image_size {size} is not a multiple of {side}_patch_size {p}")
        for side in ("encoder", "decoder"):
            dim, heads = args[f"{side}_embed_dim"], args[f"{side}_num_heads"]
            if dim % heads:
                raise ValueError(f"{side}_embed_dim {dim} is not divisible by {side}_num_heads {heads}")
            if args["use_rope"] and (dim // heads) % 4:
                raise ValueError(f"mixed 2-D RoPE needs the {side} head width divisible by 4, got {dim // heads}")
        if not args["mlp_ratio"] > 0:
            raise ValueError(f"mlp_ratio must be positive, got {args['mlp_ratio']}")
        if not (math.isfinite(args["vq_std"]) and args["vq_std"] > 0):
            raise ValueError(f"vq_std must be positive, got {args['vq_std']}")
        common = {
            "image_size": size,
            "num_latent_tokens": args["num_latent_tokens"],
            "mlp_ratio": args["mlp_ratio"],
            "norm_eps": args["norm_eps"],
            "use_rope": args["use_rope"],
            "rope_theta": args["rope_theta"],
        }
        self.encoder = LatentTokenEncoder(
            patch_size=args["enc_patch_size"],
            dim=args["encoder_embed_dim"],
            depth=args["encoder_depth"],
            num_heads=args["encoder_num_heads"],
            **common,
        )
        self.quant_conv = nn.Linear(args["encoder_embed_dim"], args["codebook_embed_dim"])
        self.post_quant_conv = nn.Linear(args["codebook_embed_dim"], args["decoder_embed_dim"])
        self.decoder = LatentTokenDecoder(
            patch_size=args["dec_patch_size"],
            dim=args["decoder_embed_dim"],
            depth=args["decoder_depth"],
            num_heads=args["decoder_num_heads"],
            **common,
        )
        self.use_slicing = False
        self.use_tiling = False
        # diffusers' convention, latents = (z - shift_factor) * scaling_factor, is the original
        # generators' (z - vq_mean) / vq_std; pipelines read both from the config.
        self.register_to_config(
            scaling_factor=1.0 / args["vq_std"] if args["scaling_factor"] is None else args["scaling_factor"],
            shift_factor=args["vq_mean"] if args["shift_factor"] is None else args["shift_factor"],
        )

    # -- bottleneck ---------------------------------------------------------------------------

    def _bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        """``quant_conv`` output ``[B, L, d]`` -> the tokens ``encode`` returns (identity here)."""
        return h

    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``(z - vq_mean) / vq_std``: the scaling the original SiT/DiT training scripts apply to the tokens."""
        return (latents - self.config.vq_mean) / self.config.vq_std

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``z * vq_std + vq_mean``: undo :meth:`normalize_latents` before :meth:`decode`."""
        return latents * self.config.vq_std + self.config.vq_mean

    # -- tiling / slicing ---------------------------------------------------------------------

    def enable_tiling(self, *args, **kwargs):
        """Refused: the latents are 1-D tokens of the whole image, which cannot be cut into tiles."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot tile: its latents are {self.config.num_latent_tokens} 1-D tokens that "
            "each describe the whole image, so there are no spatial tiles to encode or decode separately; "
            "use enable_slicing() to save memory on large batches, or a smaller batch"
        )

    # -- encode / decode ----------------------------------------------------------------------

    def _encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.quant_conv(self.encoder(x.to(self.dtype)))
        return self._bottleneck(h), h

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> Union[LatentTokenEncoderOutput, Tuple[TokenLatentDistribution]]:
        """Encode images ``[B, 3, image_size, image_size]`` in [-1, 1] into 1-D tokens.

        Returns:
            :class:`LatentTokenEncoderOutput` whose ``latent_dist.mode()`` / ``.sample()`` (and
            ``latent``) are the tokens ``[B, num_latent_tokens, codebook_embed_dim]``, or
            ``(latent_dist,)`` when ``return_dict=False``.
        """
        check_fixed_size_images(x, 3, self.config.image_size)
        if self.use_slicing and x.shape[0] > 1:
            parts = [self._encode(s) for s in x.split(1)]
            z, h = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:
            z, h = self._encode(x)
        dist = TokenLatentDistribution(z)
        if not return_dict:
            return (dist,)
        return LatentTokenEncoderOutput(latent_dist=dist, latent=z, pre_quant=h if self._quantized else None)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z.to(self.dtype)))

    @apply_forward_hook
    def decode(self, z: torch.Tensor, return_dict: bool = True) -> Union[DecoderOutput, Tuple[torch.Tensor]]:
        """Decode tokens ``[B, num_latent_tokens, codebook_embed_dim]`` to images ``[B, 3, image_size, image_size]``.

        The tokens are what :meth:`encode` returns (for SoftVQ: the soft-quantised ones). The images
        are nominally in [-1, 1] and not clamped, like ``AutoencoderKL``.

        Returns:
            :class:`~diffusers.models.autoencoders.vae.DecoderOutput`, or ``(sample,)`` when ``return_dict=False``.
        """
        check_token_latents(z, self.config.num_latent_tokens, self.config.codebook_embed_dim)
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
        """Reconstruct ``sample`` ``[B, 3, S, S]``: encode then decode (``sample_posterior`` changes nothing)."""
        dist = self.encode(sample).latent_dist
        z = dist.sample(generator=generator) if sample_posterior else dist.mode()
        return self.decode(z, return_dict=return_dict)

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, vit_overrides: Optional[Dict[str, Dict[str, int]]] = None, **kwargs
    ):
        """``ModelMixin.from_pretrained``, strict, that also reads the published continuous_tokenizer folders.

        A folder (or Hub repo) whose ``config.json`` holds the original ``ModelArgs`` fields is
        converted on load (see :mod:`diffusers_mdiffae.conversion.tokenizer_layouts`): every
        missing, unexpected or mis-shaped tensor is reported by name, unknown config fields are
        refused. This package's own folders (``save_pretrained``) load strictly too: unknown or
        mistyped config keys, tensor mismatches and NaN/inf weights are errors, not log lines.

        Args:
            vit_overrides: only for original folders made with a modified timm ViT recipe:
                ``{recipe name: {"embed_dim", "depth", "num_heads"}}`` (the parity fixtures record
                theirs in their ``vit_overrides`` metadata). Published checkpoints need none.
            kwargs: as ``ModelMixin.from_pretrained`` (``subfolder``, ``torch_dtype``, ``revision``, ...).
        """
        want_info = kwargs.pop("output_loading_info", False)
        hub_kwargs = {k: v for k, v in kwargs.items() if k != "subfolder"}
        original = hub.locate_original_snapshot(
            pretrained_model_name_or_path,
            kwargs.get("subfolder"),
            detect=hub.is_tokenizer_snapshot,
            with_packages=False,
            **hub_kwargs,
        )
        if original is not None:
            model = hub.convert_tokenizer_snapshot(
                original, cls._original_kind, vit_overrides, torch_dtype=kwargs.get("torch_dtype")
            )
            info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
            return (model, info) if want_info else model
        if vit_overrides is not None:
            raise ValueError(
                "vit_overrides applies only to original continuous_tokenizer folders "
                f"(ModelArgs config.json); {pretrained_model_name_or_path} is not one"
            )
        load = super().from_pretrained
        model, info = hub.strict_from_pretrained(cls, load, pretrained_model_name_or_path, kwargs)
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs):
        """``ModelMixin.save_pretrained`` (safetensors only: ``safe_serialization=False`` is refused)."""
        if kwargs.get("safe_serialization") is False:
            raise ValueError("only safetensors are written (pickle checkpoints are unsafe to load)")
        return super().save_pretrained(save_directory, **kwargs)


class AutoencoderMAETok(LatentTokenAutoencoder):
    r"""MAETok (original ``AEModel``): a ViT encoder reads the image and ``L`` learned latent tokens; the
    latent is ``quant_conv`` of the latent tokens' final states, with no noise or quantisation.

    ``encode``: images ``[B, 3, image_size, image_size]`` in [-1, 1] -> tokens
    ``[B, num_latent_tokens, codebook_embed_dim]``; ``decode``: tokens -> images ``[B, 3, S, S]``.

    The constructor defaults describe MAETok-B-128 as the paper gives it: 256 px, ViT-B encoder and
    decoder (768 wide, 12 blocks, 12 heads), patch 16, 128 tokens, mixed 2-D RoPE. The token width
    ``codebook_embed_dim=12`` is an assumption (the published config.json was not available): load
    the published folder with ``from_pretrained``, which reads the real value.

    Args (the original ``ModelArgs`` names where it has one):
        image_size: the one input size ``S`` (square); other sizes are refused.
        enc_patch_size, dec_patch_size: patch side of the encoder / decoder grid.
        num_latent_tokens: ``L``.
        codebook_embed_dim: token width ``d``.
        encoder_embed_dim, encoder_depth, encoder_num_heads: the encoder ViT (the original takes these
            from its timm recipe name, e.g. ``vit_base_patch14_dinov2.lvd142m`` = 768 / 12 / 12).
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder ViT.
        mlp_ratio: MLP width / model width (4 in every DINOv2 recipe).
        norm_eps: LayerNorm epsilon (1e-6 in the recipes).
        use_rope: mixed 2-D RoPE on the image tokens (the original's ``use_rope`` + ``rope_mixed``;
            the only RoPE the original can run). False: absolute position tables (``use_ape``).
            Either way the encoder adds its absolute table, as the original does.
        rope_theta: base of the initial RoPE frequencies (initialisation only; they are learned).
        vq_mean, vq_std: the token statistics the original generators normalise with; not applied
            by ``encode``/``decode`` (see :meth:`normalize_latents`).
        scaling_factor, shift_factor: what diffusers pipelines apply (``(z - shift) * scale``);
            None derives them from the statistics: ``1 / vq_std`` and ``vq_mean``.
    """

    _original_kind = "maetok"

    @register_to_config
    def __init__(
        self,
        image_size: int = 256,
        enc_patch_size: int = 16,
        dec_patch_size: int = 16,
        num_latent_tokens: int = 128,  # latents are [B, L, d] as upstream, not reshaped to [B, d, L, 1]
        codebook_embed_dim: int = 12,  # assumption, see the class docstring
        # The original names its ViTs by timm recipe; the sizes are explicit here (the converter
        # reads them off the recipe names).
        encoder_embed_dim: int = 768,
        encoder_depth: int = 12,
        encoder_num_heads: int = 12,
        decoder_embed_dim: int = 768,
        decoder_depth: int = 12,
        decoder_num_heads: int = 12,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        use_rope: bool = True,  # = upstream use_rope + rope_mixed; False = use_ape
        rope_theta: float = 10.0,
        # Not applied by encode/decode (upstream leaves it to the generator scripts); pipelines
        # apply them through scaling_factor = 1 / vq_std and shift_factor = vq_mean.
        vq_mean: float = 0.0,
        vq_std: float = 1.0,
        scaling_factor: Optional[float] = None,
        shift_factor: Optional[float] = None,
    ):
        super().__init__()
        self._build(locals())


class AutoencoderSoftVQ(LatentTokenAutoencoder):
    r"""SoftVQ-VAE (original ``SoftVQModel``): MAETok's ViT pair with a soft vector quantiser on the tokens.

    ``encode`` returns the soft-quantised tokens ``[B, num_latent_tokens, codebook_embed_dim]`` (what
    the original ``encode`` returns; the pre-quantiser vector is ``encode(x).pre_quant``);
    ``decode`` takes those tokens.

    The constructor defaults are the published ``SoftVQVAE/softvq-bl-64`` config: 256 px, ViT-B
    encoder, ViT-L decoder (1024 wide, 24 blocks, 16 heads), patch 16, absolute positions, 64 tokens
    of width 32, 4 codebooks of 8192 entries, tau 0.07, L2-normalised codes, ``vq_mean``/``vq_std``
    as published.

    Args:
        codebook_size: entries per codebook.
        num_codebooks: codebooks; token ``t`` uses codebook ``t // (L / num_codebooks)``.
        tau: softmax temperature over the cosine similarities.
        codebook_l2_norm: L2-normalise tokens and codebook rows before the similarities.
        Other arguments: as :class:`AutoencoderMAETok`.
    """

    _original_kind = "softvq"
    _quantized = True

    @register_to_config
    def __init__(
        self,
        image_size: int = 256,
        enc_patch_size: int = 16,
        dec_patch_size: int = 16,
        num_latent_tokens: int = 64,
        codebook_embed_dim: int = 32,
        encoder_embed_dim: int = 768,
        encoder_depth: int = 12,
        encoder_num_heads: int = 12,
        decoder_embed_dim: int = 1024,
        decoder_depth: int = 24,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        use_rope: bool = False,
        rope_theta: float = 10.0,
        vq_mean: float = -0.00077168207,  # as in AutoencoderMAETok
        vq_std: float = 0.07157949,
        scaling_factor: Optional[float] = None,
        shift_factor: Optional[float] = None,
        # Inference-only quantiser: no commitment/entropy losses, no usage statistics
        # (the published quantize.codebook_used buffer is dropped on conversion).
        codebook_size: int = 8192,
        num_codebooks: int = 4,
        tau: float = 0.07,
        codebook_l2_norm: bool = True,
    ):
        super().__init__()
        self._build(locals())
        _positive_int("codebook_size", codebook_size)
        _positive_int("num_codebooks", num_codebooks)
        if num_latent_tokens % num_codebooks:
            raise ValueError(
                f"num_latent_tokens {num_latent_tokens} must be divisible by num_codebooks {num_codebooks} "
                "(each codebook serves a contiguous group of tokens)"
            )
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be positive, got {tau}")
        self.quantize = SoftVectorQuantizer(codebook_size, codebook_embed_dim, num_codebooks, tau, codebook_l2_norm)

    def _bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        return self.quantize(h)
