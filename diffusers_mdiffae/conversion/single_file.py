"""One ``.safetensors`` file, no ``config.json``: infer the family and its configuration from the tensors.

ComfyUI users drop single weight files into ``models/vae``; this module turns such a file into a
model. The configuration comes from, in order of preference:

1. a JSON config stored in the file's safetensors metadata under ``"config"`` (written by
   :func:`save_single_file`; either this package's diffusers config with ``_class_name`` or a
   published ``config.json``), checked like a ``config.json``;
2. the tensor names and shapes alone, read from the header without loading any data
   (:func:`infer_config`).

Either way the model is then built strictly (:func:`~diffusers_mdiffae.models.hub.build_from_state_dict`):
every missing, unexpected or mis-shaped tensor is listed, so a wrong inference cannot load silently.

What the tensors do not show is taken from the defaults (the published values): the VP schedule
(``logsnr_min/max``, ``pixel_noise_std``), ``norm_eps``, ``pdg_mask_ratio``, ``latent_running_stats_eps``
and SemDisDiffAE's ``bottleneck_norm_mode`` (a non-affine norm has no tensor). A file whose model
used other values needs the metadata config.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from .convert import load_safetensors, map_key, safetensors_header
from .layouts import CheckpointError, is_original_config, layout_named, original_config_to_ours

METADATA_KEY = "config"
DICO = "AutoencoderMDiffAE"
FCDM = "AutoencoderSemDisDiffAE"
Shapes = Mapping[str, Tuple[int, ...]]


def _name(path) -> str:
    return Path(path).name


def read_header(path: Union[str, os.PathLike]) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, str]]:
    """``({tensor name: shape}, metadata)`` of a safetensors file, from its header only."""
    shapes = {k: tuple(v.get("shape", ())) for k, v in safetensors_header(path).items()}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{_name(path)}: cannot read the safetensors header ({e})") from None
    return shapes, metadata


# -- inference from names and shapes ----------------------------------------------------------


def _foreign_hint(names) -> str:
    """What a file that is not of this family probably is, from a few well-known tensor names."""
    names = set(names)
    if "decoder.conv_in.weight" in names or "first_stage_model.decoder.conv_in.weight" in names:
        return " (an SD/FLUX VAE has decoder.conv_in.weight: load it with the stock Load VAE node)"
    if any(k.startswith(("model.diffusion_model.", "diffusion_model.")) for k in names):
        return " (it holds a diffusion model, not an autoencoder)"
    if any("lora" in k.lower() for k in names):
        return " (it holds LoRA weights)"
    return ""


def _count(shapes: Shapes, prefix: str) -> int:
    """Number of blocks ``prefix.N.*`` (indices must run 0..N-1)."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in shapes for m in [pattern.match(k)] if m}
    if found and found != set(range(len(found))):
        raise CheckpointError(f"{prefix} block indices are not 0..{len(found) - 1}: {sorted(found)}")
    return len(found)


def _shape(shapes: Shapes, name: str, ndim: int, source: str) -> Tuple[int, ...]:
    if name not in shapes:
        raise _incomplete(source, name)
    shape = shapes[name]
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: {name} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _mlp_ratio(width: int, hidden: int) -> float:
    """The ``mlp_ratio`` for which ``int(width * mlp_ratio) == hidden`` (the blocks' rounding)."""
    for digits in (1, 2, 3, 4, 6, 8):
        ratio = round(hidden / width, digits)
        if int(width * ratio) == hidden:
            return ratio
    return hidden / width


def _incomplete(source: str, what: str) -> CheckpointError:
    return CheckpointError(f"{source} is not a complete mDiffAE-family checkpoint: it has no {what}")


def _block_family(shapes: Shapes, source: str) -> str:
    """``DICO`` or ``FCDM`` from the block tensors' names."""
    if "decoder.patchify.proj.weight" not in shapes:
        raise CheckpointError(
            f"{source} is not an mDiffAE-family checkpoint: it has no decoder.patchify.proj.weight"
            f"{_foreign_hint(shapes)}"
        )
    fcdm = any(".pwconv1." in k or ".grn." in k for k in shapes) or "latent_norm_running_mean" in shapes
    dico = any(re.search(r"\.conv1\.weight$", k) for k in shapes) and any(".cca." in k for k in shapes)
    if fcdm == dico:
        what = (
            "both FCDM (pwconv1, grn) and DiCo (conv1, cca) blocks"
            if fcdm
            else "neither FCDM blocks (pwconv1, grn) nor DiCo blocks (conv1, cca)"
        )
        raise CheckpointError(f"{source} is not an mDiffAE-family checkpoint: it has {what}")
    return FCDM if fcdm else DICO


def _patch_geometry(shapes: Shapes, source: str) -> Tuple[int, int, int]:
    """``(model_dim, in_channels, patch_size)`` from the decoder's patch embedding ``[C, 3, p, p]``."""
    proj = _shape(shapes, "decoder.patchify.proj.weight", 4, source)
    if proj[2] == proj[3] and proj[2] > 1:
        return proj[0], proj[1], proj[2]
    patch = math.isqrt(proj[1] // 3)  # a PixelUnshuffle + 1x1 layout [C, 3 * p * p, 1, 1] (RGB assumed)
    if 3 * patch * patch != proj[1]:
        raise CheckpointError(f"{source}: decoder.patchify.proj.weight has shape {list(proj)}, not a patch embedding")
    return proj[0], 3, patch


def _depths(shapes: Shapes, source: str) -> Tuple[int, int, int, int]:
    """``(encoder_depth, decoder_depth, decoder_start_blocks, decoder_end_blocks)`` by counting blocks."""
    encoder_depth = _count(shapes, "encoder.blocks")
    flat = _count(shapes, "decoder.blocks")
    start, middle, end = (_count(shapes, f"decoder.{part}_blocks") for part in ("start", "middle", "end"))
    if flat and (start or middle or end):
        raise CheckpointError(
            f"{source} has both a flat decoder (decoder.blocks) and a skip decoder "
            "(decoder.start_blocks/middle_blocks/end_blocks)"
        )
    if not flat and not middle:
        raise _incomplete(source, "decoder blocks")
    if not encoder_depth:
        raise _incomplete(source, "encoder blocks")
    return encoder_depth, flat or start + middle + end, start, end


def _pdg_mode(names) -> Optional[str]:
    """The DiCo decoder's guidance from its learned features (None when it has none)."""
    if "decoder.mask_feature" in names:
        return "token_mask"
    if "decoder.path_drop_mask_feature" in names:
        return "dual" if "decoder.latent_mask_feature" in names else "path_drop"
    return None


def infer_config(shapes: Shapes, source: str = "checkpoint") -> Tuple[str, dict]:
    """``(class name, config)`` of the model whose state dict has these tensor names and shapes.

    Raises :class:`CheckpointError` with a sentence naming what is missing when the names fit no
    member of the family.
    """
    family = _block_family(shapes, source)
    if family == DICO:  # the published DiCo checkpoints may use aliases for a few names
        shapes = {map_key(k, layout_named("mdiffae_v1").key_rules): v for k, v in shapes.items()}
    model_dim, in_channels, patch = _patch_geometry(shapes, source)
    encoder_depth, decoder_depth, start, end = _depths(shapes, source)
    latent = _shape(shapes, "decoder.latent_up.weight", 4, source)[1]
    first = "decoder.blocks.0" if not (start or end) else "decoder.middle_blocks.0"
    hidden_name, kernel_name = ("pwconv1", "dwconv") if family == FCDM else ("mlp.conv_in", "conv2")
    hidden = _shape(shapes, f"{first}.{hidden_name}.weight", 4, source)[0]
    kernel = _shape(shapes, f"{first}.{kernel_name}.weight", 4, source)
    # the kernel size is read from this block alone: the build would blame every other block's kernel
    if kernel[-2] != kernel[-1]:
        raise CheckpointError(
            f"{source}: {first}.{kernel_name}.weight has shape {list(kernel)}, not a square depthwise kernel"
        )
    config = {
        "in_channels": in_channels,
        "out_channels": in_channels,
        "patch_size": patch,
        "model_dim": model_dim,
        "encoder_depth": encoder_depth,
        "decoder_depth": decoder_depth,
        "decoder_start_blocks": start,
        "decoder_end_blocks": end,
        "latent_channels": latent,
        "mlp_ratio": _mlp_ratio(model_dim, hidden),
        "depthwise_kernel_size": kernel[-1],
        "adaln_low_rank_rank": _shape(shapes, "decoder.adaln_deltas.0.down.weight", 2, source)[0],
    }
    if patch >= 1 and patch & (patch - 1) == 0:
        config["block_out_channels"] = [model_dim] * (int(math.log2(patch)) + 1)
        config["sample_size"] = max(512 // patch, 1) * patch
    if family == FCDM:
        out = _shape(shapes, "encoder.to_bottleneck.weight", 4, source)[0]
        if out not in (latent, 2 * latent):
            raise CheckpointError(
                f"{source}: encoder.to_bottleneck.weight has {out} output channels; a SemDisDiffAE encoder has "
                f"{2 * latent} (mean and log-SNR of {latent} latent channels) or {latent} (deterministic)"
            )
        config["bottleneck_posterior_kind"] = "diagonal_gaussian" if out == 2 * latent else "deterministic"
        return FCDM, config
    config["pdg_mode"] = _pdg_mode(set(shapes))
    if config["pdg_mode"] is None:
        raise _incomplete(
            source,
            "guidance feature in its decoder (decoder.mask_feature, "
            "decoder.latent_mask_feature or decoder.path_drop_mask_feature)",
        )
    config["outer_norms"] = "decoder.norm_in.weight" in shapes
    return DICO, config


# -- metadata config ----------------------------------------------------------------------------


def config_from_metadata(metadata: Mapping[str, str], source: str = "checkpoint") -> Optional[Tuple[str, dict]]:
    """``(class name, config)`` from the metadata's JSON config, None when there is none."""
    from ..models.hub import model_classes

    text = metadata.get(METADATA_KEY)
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{source}: the config in its metadata is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: the config in its metadata is not a JSON object")
    if is_original_config(config):
        layout, ours = original_config_to_ours(config)
        return layout.class_name, ours
    cls_name = config.get("_class_name")
    classes = model_classes()
    if cls_name not in classes:
        raise CheckpointError(
            f"{source}: the config in its metadata describes {cls_name or 'an unknown model'}, "
            f"not one of {sorted(classes)}"
        )
    return cls_name, {k: v for k, v in config.items() if not k.startswith("_")}


# -- loading and saving ---------------------------------------------------------------------------


def describe(path: Union[str, os.PathLike]) -> Tuple[str, dict]:
    """``(class name, config)`` of a single-file checkpoint, from its header only (no tensor data read).

    Cheap enough to run while a workflow is checked: ComfyUI's loader node uses it to refuse a file of
    another kind before anything runs.
    """
    shapes, metadata = read_header(path)
    source = _name(path)
    found = config_from_metadata(metadata, source)
    return found if found is not None else infer_config(shapes, source)


def load_single_file(path: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None):
    """The model stored in one ``.safetensors`` file (metadata config, else inferred), built strictly."""
    from ..models.hub import build_from_state_dict

    path = Path(path)
    cls_name, config = describe(path)
    rules = layout_named("mdiffae_v1").key_rules if cls_name == DICO else ()
    return build_from_state_dict(cls_name, config, load_safetensors(path), rules, torch_dtype, source=path.name)


def save_single_file(model, path: Union[str, os.PathLike], with_config: bool = True) -> None:
    """Write ``model``'s state dict to one ``.safetensors`` file, its config in the metadata unless told not to."""
    from safetensors.torch import save_file

    from ..atomic import atomic_file

    metadata = None
    if with_config:
        config = {k: v for k, v in dict(model.config).items() if not k.startswith("_") or k == "_class_name"}
        config["_class_name"] = type(model).__name__
        metadata = {METADATA_KEY: json.dumps(config, default=list)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
