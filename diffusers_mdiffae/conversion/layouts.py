"""The published checkpoint layouts: how to recognise each, its config and its tensor-name rules.

Every entry maps an original ``config.json`` (a frozen dataclass saved with ``asdict``) onto the
arguments of one of this package's classes. Tensor names of the published packages are this
package's names wherever they are known (README, "Evidence"); the rules below are only for the
names no public source shows, each an alias that a real checkpoint may use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unreadable, truncated, or not matching the model."""


# DiCo blocks: only conv1/conv2/norm1/norm2 and the MLP's conv_in/conv_out were ever visible.
_DICO_RULES: List[Tuple[str, str]] = [
    (r"\.cca\.(?:1|conv|fc)\.", r".cca.proj."),
    (r"\.(?:ffn|conv_mlp|mlp_block)\.", r".mlp."),
]

# Original config field -> our argument, common to every layout.
_COMMON_FIELDS = {
    "in_channels": "in_channels",
    "patch_size": "patch_size",
    "model_dim": "model_dim",
    "encoder_depth": "encoder_depth",
    "decoder_depth": "decoder_depth",
    "decoder_start_blocks": "decoder_start_blocks",
    "decoder_end_blocks": "decoder_end_blocks",
    "bottleneck_dim": "latent_channels",
    "mlp_ratio": "mlp_ratio",
    "depthwise_kernel_size": "depthwise_kernel_size",
    "adaln_low_rank_rank": "adaln_low_rank_rank",
    "logsnr_min": "logsnr_min",
    "logsnr_max": "logsnr_max",
    "pixel_noise_std": "pixel_noise_std",
}
_REQUIRED = ("model_dim", "patch_size", "bottleneck_dim")


@dataclass(frozen=True)
class Layout:
    """One published model family's checkpoint layout.

    Args:
        name: short name (``mdiffae_v1``, ...).
        class_name: this package's class the layout loads into.
        packages: ``(folder, class)`` of the original Python package shipped inside the snapshot,
            newest name first (``--verify`` imports it).
        extra_fields: original config fields beyond the common ones, mapped to our arguments.
        fixed: our arguments this layout implies (not stored in its config).
        key_rules: ``(regex, replacement)`` aliases for tensor names not known for sure.
        matches: recognises the layout from an original config dict.
    """

    name: str
    class_name: str
    packages: Tuple[Tuple[str, str], ...]
    extra_fields: Dict[str, str]
    fixed: Dict[str, object]
    key_rules: Tuple[Tuple[str, str], ...]
    matches: Callable[[dict], bool]


def _skip(c: dict) -> bool:
    return bool(c.get("decoder_start_blocks") or c.get("decoder_end_blocks"))


def _fcdm(c: dict) -> bool:
    return "bottleneck_posterior_kind" in c or "bottleneck_norm_mode" in c


LAYOUTS: Tuple[Layout, ...] = (
    Layout(
        name="semdisdiffae",
        class_name="AutoencoderSemDisDiffAE",
        packages=(("fcdm_diffae", "FCDMDiffAE"), ("capacitor_diffae", "CapacitorDiffAE")),
        extra_fields={
            "bottleneck_posterior_kind": "bottleneck_posterior_kind",
            "bottleneck_norm_mode": "bottleneck_norm_mode",
            "latent_running_stats_eps": "latent_running_stats_eps",
        },
        fixed={},
        key_rules=(),
        matches=_fcdm,
    ),
    Layout(
        name="mdiffae_v1",
        class_name="AutoencoderMDiffAE",
        packages=(("m_diffae", "MDiffAE"),),
        extra_fields={"pdg_mask_ratio": "pdg_mask_ratio"},
        fixed={"outer_norms": True, "pdg_mode": "token_mask"},
        key_rules=tuple(_DICO_RULES),
        matches=lambda c: not _fcdm(c) and not _skip(c),
    ),
    Layout(
        name="mdiffae_v2",
        class_name="AutoencoderMDiffAE",
        packages=(("m_diffae_v2", "MDiffAEV2"),),
        extra_fields={"pdg_mask_ratio": "pdg_mask_ratio"},
        # Trained with use_other_outer_rms_norms=False (its decoder docstring); token mask + path drop.
        fixed={"outer_norms": False, "pdg_mode": "dual"},
        key_rules=tuple(_DICO_RULES),
        matches=lambda c: not _fcdm(c) and _skip(c) and "pdg_mask_ratio" in c,
    ),
    Layout(
        name="irdiffae_v1",
        class_name="AutoencoderMDiffAE",
        packages=(("ir_diffae", "IRDiffAE"),),
        extra_fields={},
        # Path-drop PDG only; outer norms read as absent (both readings fit its published size).
        fixed={"outer_norms": False, "pdg_mode": "path_drop"},
        key_rules=tuple(_DICO_RULES),
        matches=lambda c: not _fcdm(c) and _skip(c) and "pdg_mask_ratio" not in c,
    ),
)


def layout_named(name: str) -> Layout:
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise KeyError(f"no layout {name!r}; known: {[lay.name for lay in LAYOUTS]}")


def is_original_config(config) -> bool:
    """True for a published (non-diffusers) config: original field names, no ``_class_name``."""
    return isinstance(config, dict) and "bottleneck_dim" in config and "_class_name" not in config


def detect_layout(config: dict) -> Layout:
    """The layout an original ``config.json`` belongs to (raises :class:`CheckpointError` if none)."""
    if not is_original_config(config):
        raise CheckpointError("config.json is not a published mDiffAE-family config (no 'bottleneck_dim')")
    for layout in LAYOUTS:
        if layout.matches(config):
            return layout
    raise CheckpointError("config.json matches no published layout")  # pragma: no cover (layouts are exhaustive)


def original_config_to_ours(config: dict, layout: Optional[Layout] = None) -> Tuple[Layout, dict]:
    """Map an original config onto our class's arguments; unknown fields are refused by name."""
    if not isinstance(config, dict):
        raise CheckpointError("config.json must hold a JSON object")
    layout = layout or detect_layout(config)
    fields = {**_COMMON_FIELDS, **layout.extra_fields}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise CheckpointError(f"config.json has fields the {layout.name} layout does not know: {unknown}")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise CheckpointError(f"config.json lacks {missing}: is this an mDiffAE-family snapshot?")
    ours = {fields[k]: v for k, v in config.items()}
    ours.update(layout.fixed)
    patch = ours["patch_size"]
    if isinstance(patch, int) and not isinstance(patch, bool) and patch > 0 and patch & (patch - 1) == 0:
        ours["block_out_channels"] = [ours["model_dim"]] * (int(math.log2(patch)) + 1)
    return layout, ours
