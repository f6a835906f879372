"""The published MAETok / SoftVQ-VAE layout (``Hhhhhhao/continuous_tokenizer``): config and tensor names.

Pure transforms of (config dict, state dict); :mod:`diffusers_mdiffae.models.hub` builds the model.

A published folder is what ``PyTorchModelHubMixin.save_pretrained`` wrote: ``config.json`` holding
the ``ModelArgs`` dataclass fields flat at top level (no class name) and ``model.safetensors``
holding the full ``state_dict()``. The config does not say which class saved it: ``AEModel``
(MAETok) and ``SoftVQModel`` (SoftVQ-VAE) share every field, so the class the caller loads with
decides (a SoftVQ checkpoint has ``quantize.embedding``, a MAETok one has not; the error says so).

What is refused, by name: fields that are not ``ModelArgs`` fields (except the tolerated
``repa_layer_indices`` of the published SoftVQ configs, a training-only REPA setting), CNN
encoders/decoders, ViT recipes other than the DINOv2 small/base/large ones, axial RoPE (broken
upstream), ``use_ape: false`` without RoPE (takes the same broken path upstream), LoRA
tuning (PEFT-wrapped names), REPA models, a non-linear ``to_pixel`` head, no decoder class token.

Tensors the published checkpoints carry but inference never reads are checked (shape, and value
for the RoPE grid buffers) and dropped: ``quantize.codebook_used`` (usage statistics),
``encoder.mask_token`` (MAE token drop, training only), ``decoder.model.patch_embed.*`` (the
decoder never embeds patches), ``decoder.model.pos_embed`` with RoPE (the RoPE decoder adds no
absolute table), ``{encoder,decoder}.freqs_t_{x,y}`` (grid coordinates, recomputed from the actual
grid at run time exactly as the original does when they are stale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from .convert import MatchReport
from .layouts import CheckpointError

#: The 45 ``ModelArgs`` fields with their defaults (continuous_tokenizer 7cc3e96); absent fields
#: take these values, as ``PyTorchModelHubMixin`` does.
MODELARGS_DEFAULTS: Dict[str, object] = {
    "image_size": 256,
    "base_image_size": 256,
    "codebook_size": 16384,
    "codebook_embed_dim": 8,
    "codebook_l2_norm": True,
    "codebook_show_usage": True,
    "commit_loss_beta": 0.25,
    "entropy_loss_ratio": 0.0,
    "vq_loss_ratio": 1.0,
    "kl_loss_weight": 1e-6,
    "tau": 0.1,
    "num_codebooks": 1,
    "encoder_ch_mult": [1, 1, 2, 2, 4],
    "decoder_ch_mult": [1, 1, 2, 2, 4],
    "z_channels": 256,
    "dropout_p": 0.0,
    "enc_type": "cnn",
    "dec_type": "cnn",
    "encoder_model": "llamagen_encoder",
    "decoder_model": "llamagen_decoder",
    "num_latent_tokens": 256,
    "to_pixel": "linear",
    "enc_tuning_method": "full",
    "dec_tuning_method": "full",
    "enc_pretrained": True,
    "dec_pretrained": False,
    "enc_patch_size": 16,
    "dec_patch_size": 16,
    "enc_drop_path_rate": 0.0,
    "dec_drop_path_rate": 0.0,
    "enc_token_drop": 0.0,
    "enc_token_drop_max": 0.6,
    "dec_cls_token": True,
    "use_ape": True,
    "use_rope": False,
    "rope_mixed": False,
    "rope_theta": 10.0,
    "repa": False,
    "repa_patch_size": 16,
    "repa_model": "vit_base_patch16_224",
    "repa_proj_dim": 2048,
    "repa_loss_weight": 0.1,
    "repa_align": "global",
    "vq_mean": 0.0,
    "vq_std": 1.0,
}

#: Fields seen in published configs that are not ``ModelArgs`` fields; the original loader drops them.
TOLERATED_EXTRA_FIELDS = ("repa_layer_indices",)

#: The ViT recipes the published tokenizers name (timm's DINOv2 ones: LayerScale, MLP ratio 4,
#: GELU, class token, no registers). The patch size of the name is overridden by the config.
VIT_RECIPES: Dict[str, Dict[str, int]] = {
    "vit_small_patch14_dinov2.lvd142m": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base_patch14_dinov2.lvd142m": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large_patch14_dinov2.lvd142m": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
_VIT_OVERRIDE_KEYS = ("embed_dim", "depth", "num_heads")

#: Original tensor name -> ours (applied in order by ``convert.map_key``).
TOKENIZER_KEY_RULES: Tuple[Tuple[str, str], ...] = (
    (r"^encoder\.model\.", "encoder."),
    (r"^decoder\.model\.", "decoder."),
    (r"^decoder\.to_pixel\.model\.", "decoder.to_pixel."),
    (r"^(encoder|decoder)\.freqs$", r"\1.rope.freqs"),
)

#: Which of our classes a kind loads into.
TOKENIZER_CLASSES = {"maetok": "AutoencoderMAETok", "softvq": "AutoencoderSoftVQ"}


def is_tokenizer_config(config) -> bool:
    """True for a ``ModelArgs`` config.json as ``PyTorchModelHubMixin`` writes it (no ``_class_name``)."""
    return (
        isinstance(config, dict)
        and "_class_name" not in config
        and {"num_latent_tokens", "codebook_embed_dim", "encoder_model"} <= set(config)
    )


@dataclass
class TokenizerConversion:
    """An original snapshot mapped onto one of our classes: its config, its renamed-to-be tensors, the checks."""

    class_name: str
    config: dict
    state_dict: Dict[str, torch.Tensor]
    key_rules: Tuple[Tuple[str, str], ...]
    report: MatchReport = field(default_factory=MatchReport)
    notes: List[str] = field(default_factory=list)


def _vit(name: str, side: str, overrides: Optional[Mapping]) -> Dict[str, int]:
    if name not in VIT_RECIPES:
        raise CheckpointError(
            f"{side}_model {name!r} is not supported; supported ViT recipes: {sorted(VIT_RECIPES)} "
            "(CNN, register-token, giant (SwiGLU), CLIP, SAM, EVA02 and MoVQ variants are not)"
        )
    recipe = dict(VIT_RECIPES[name])
    if overrides and name in overrides:
        extra = set(overrides[name]) - set(_VIT_OVERRIDE_KEYS)
        if extra:
            raise CheckpointError(f"vit_overrides[{name!r}] may set only {_VIT_OVERRIDE_KEYS}, got {sorted(extra)}")
        recipe.update(overrides[name])
    return recipe


def _refuse(config: dict) -> None:
    """Refuse what this package cannot reproduce, with a sentence per problem."""
    problems = []
    for side in ("enc", "dec"):
        if config[f"{side}_type"] != "vit":
            problems.append(f"{side}_type is {config[f'{side}_type']!r}: only 'vit' tokenizers are supported")
        if config[f"{side}_tuning_method"] not in ("full", "frozen"):
            problems.append(
                f"{side}_tuning_method {config[f'{side}_tuning_method']!r}: LoRA-wrapped weights are not supported"
            )
    if config["to_pixel"] != "linear":
        problems.append(f"to_pixel {config['to_pixel']!r}: only the 'linear' pixel head is supported")
    if config["use_rope"] and not config["rope_mixed"]:
        problems.append("use_rope without rope_mixed (axial RoPE) is not supported: it fails in the original code too")
    if not config["use_rope"] and not config["use_ape"]:
        problems.append(
            "use_ape false without use_rope is not supported (the original then takes its axial-RoPE path, which fails)"
        )
    if not config["dec_cls_token"]:
        problems.append("dec_cls_token false is not supported (no published model uses it)")
    if config["repa"]:
        problems.append("repa true is not supported (REPA weights belong to training)")
    if problems:
        raise CheckpointError(
            "config.json describes a tokenizer this package cannot build:\n  " + "\n  ".join(problems)
        )


def original_tokenizer_config_to_ours(
    config: dict, kind: str, vit_overrides: Optional[Mapping] = None
) -> Tuple[str, dict, dict]:
    """Map a ``ModelArgs`` config onto our class's arguments.

    Args:
        config: the original config.json (absent fields take ``ModelArgs`` defaults).
        kind: ``"maetok"`` (``AEModel``) or ``"softvq"`` (``SoftVQModel``).
        vit_overrides: ``{recipe name: {embed_dim, depth, num_heads}}`` for checkpoints built with a
            modified timm recipe (the parity fixtures shrink the DINOv2 recipes this way); None for
            published checkpoints.

    Returns:
        ``(class_name, our config, full original config with defaults filled)``.
    """
    if not isinstance(config, dict):
        raise CheckpointError("config.json must hold a JSON object")
    if kind not in TOKENIZER_CLASSES:
        raise ValueError(f"kind must be one of {sorted(TOKENIZER_CLASSES)}, got {kind!r}")
    unknown = sorted(set(config) - set(MODELARGS_DEFAULTS) - set(TOLERATED_EXTRA_FIELDS))
    if unknown:
        raise CheckpointError(f"config.json has fields that are not continuous_tokenizer ModelArgs fields: {unknown}")
    full = {**MODELARGS_DEFAULTS, **config}
    for key in TOLERATED_EXTRA_FIELDS:
        full.pop(key, None)
    _refuse(full)
    enc = _vit(full["encoder_model"], "encoder", vit_overrides)
    dec = _vit(full["decoder_model"], "decoder", vit_overrides)
    ours = {
        "image_size": full["image_size"],
        "enc_patch_size": full["enc_patch_size"],
        "dec_patch_size": full["dec_patch_size"],
        "num_latent_tokens": full["num_latent_tokens"],
        "codebook_embed_dim": full["codebook_embed_dim"],
        "encoder_embed_dim": enc["embed_dim"],
        "encoder_depth": enc["depth"],
        "encoder_num_heads": enc["num_heads"],
        "decoder_embed_dim": dec["embed_dim"],
        "decoder_depth": dec["depth"],
        "decoder_num_heads": dec["num_heads"],
        "mlp_ratio": 4.0,  # every supported DINOv2 recipe
        "norm_eps": 1e-6,
        "use_rope": bool(full["use_rope"]),
        "rope_theta": full["rope_theta"],
        "vq_mean": full["vq_mean"],
        "vq_std": full["vq_std"],
    }
    if kind == "softvq":
        ours.update(
            codebook_size=full["codebook_size"],
            num_codebooks=full["num_codebooks"],
            tau=full["tau"],
            codebook_l2_norm=full["codebook_l2_norm"],
        )
    return TOKENIZER_CLASSES[kind], ours, full


def unused_tensors(full: dict, ours: dict, kind: str) -> Dict[str, Tuple[int, ...]]:
    """Original tensors that inference never reads, with the shapes this config gives them."""
    d_enc, d_dec = ours["encoder_embed_dim"], ours["decoder_embed_dim"]
    p_dec = ours["dec_patch_size"]
    spec: Dict[str, Tuple[int, ...]] = {
        "decoder.model.patch_embed.proj.weight": (d_dec, 3, p_dec, p_dec),
        "decoder.model.patch_embed.proj.bias": (d_dec,),
    }
    if full["enc_token_drop"] > 0:
        spec["encoder.mask_token"] = (1, 1, d_enc)
    if kind == "softvq" and full["codebook_show_usage"]:
        spec["quantize.codebook_used"] = (full["num_codebooks"], 65536)
    if ours["use_rope"]:
        spec["decoder.model.pos_embed"] = (1, 1 + (ours["image_size"] // p_dec) ** 2, d_dec)
        for side in ("encoder", "decoder"):
            n = rope_buffer_grid(full, side) ** 2
            spec[f"{side}.freqs_t_x"] = (n,)
            spec[f"{side}.freqs_t_y"] = (n,)
    return spec


def rope_buffer_grid(full: dict, side: str) -> int:
    """Grid side the stored ``freqs_t_x/_t_y`` were made for: ``base_image_size / patch`` (the original's rule)."""
    patch = full["enc_patch_size" if side == "encoder" else "dec_patch_size"]
    return full["base_image_size"] // patch


def convert_tokenizer(
    config: dict, state_dict: Mapping[str, torch.Tensor], kind: str, vit_overrides: Optional[Mapping] = None
) -> TokenizerConversion:
    """Map an original snapshot onto our class: config, tensors (still under their original names), checks.

    The unused tensors are checked and dropped here (missing, mis-shaped, non-finite or, for the
    RoPE grid buffers, holding other coordinates than the config implies: reported by name); the
    rest is matched strictly against the model by :func:`diffusers_mdiffae.models.hub.build_tokenizer`.
    """
    class_name, ours, full = original_tokenizer_config_to_ours(config, kind, vit_overrides)
    spec = unused_tensors(full, ours, kind)
    report, notes = MatchReport(), []
    kept: Dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if name not in spec:
            kept[name] = tensor
            continue
        shape = spec[name]
        if tuple(tensor.shape) != shape:
            report.mismatched.append((name, tuple(tensor.shape), shape))
        elif tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            report.nonfinite.append(name)
        elif ".freqs_t_" in name:
            side = name.split(".", 1)[0]
            g = rope_buffer_grid(full, side)
            n = torch.arange(g * g, dtype=torch.float32)
            want = n % g if name.endswith("_x") else torch.div(n, g, rounding_mode="floor")
            if not torch.equal(tensor.float(), want):
                notes.append(f"{name} does not hold the {g}x{g} grid coordinates base_image_size implies")
    report.missing = [(k, s) for k, s in spec.items() if k not in state_dict]
    if kind == "maetok" and "quantize.embedding" in state_dict:
        notes.append("the checkpoint has a SoftVQ codebook (quantize.embedding): load it with AutoencoderSoftVQ")
    if kind == "softvq" and "quantize.embedding" not in state_dict:
        notes.append(
            "the checkpoint has no codebook (quantize.embedding): if it is MAETok, load it with AutoencoderMAETok"
        )
    return TokenizerConversion(class_name, ours, kept, TOKENIZER_KEY_RULES, report, notes)
