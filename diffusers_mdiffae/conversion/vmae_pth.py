"""LDMAE's VMAE ``.pth`` checkpoints -> :class:`~diffusers_mdiffae.AutoencoderVMAE`, safely and strictly.

The published ``vmaef8d16.pth`` is a ``torch.save`` pickle of the training state (LDMAE's
``misc.save_model``): ``{"model": state_dict, "optimizer": ..., "epoch": int, "scaler": ...,
"args": argparse.Namespace}``. It is read only with ``torch.load(weights_only=True)``, allowing
``argparse.Namespace`` as the one extra class; the file's globals are listed first without
unpickling, and anything else (``os.system``, arbitrary classes, ``__reduce__`` tricks) is refused
before any of it can run.

From the ``"model"`` entry the training-only tensors are dropped (``perceptual_loss.*``, the LPIPS
network attached during training; ``mask_token``, present in stage-1 MAE checkpoints and unused at
inference), the configuration is read from the tensor shapes (the head counts, which no shape
shows, from the stored ``args.model`` factory name or from the caller), and the rest must match the
model exactly: every problem is listed by name and shape.

Pure transforms (:func:`select_state_dict`, :func:`strip_training_keys`,
:func:`config_from_state_dict`, :func:`match_vmae_state_dict`) are separate from the I/O
(:func:`read_vmae_pth`, :func:`load_vmae_pth`, :func:`convert_vmae_pth`).

    python -m diffusers_mdiffae.conversion vmaef8d16.pth OUT_DIR [--latent-stats latents_stats.pt]
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch

from .convert import PICKLE_SUFFIXES, MatchReport, match_state_dict
from .layouts import CheckpointError

PathLike = Union[str, os.PathLike]

#: Globals a VMAE training checkpoint may need beyond torch's weights-only set.
ALLOWED_GLOBALS = ("argparse.Namespace",)
#: Tensors of the training state that the inference model does not have.
TRAINING_ONLY_PREFIXES = ("perceptual_loss.",)
TRAINING_ONLY_KEYS = ("mask_token",)
#: Head counts of LDMAE's factories whose structure this class implements (Linear latent maps, equal
#: encoder/decoder widths, no resolution change, smoothed pixel head): the shapes give everything else.
FACTORY_HEADS: Dict[str, Tuple[int, int]] = {
    "mae_for_ldmae_f8d16_prev": (12, 12),  # the published vmaef8d16.pth
    "mae_for_ldmae_f8d16_prev_large": (16, 16),
    "mae_for_ldmae": (12, 12),
    "mae_for_ldmae_f8d32": (12, 12),
    "mae_for_ldmae_f8d32_flexible": (12, 12),
    "mae_for_ldmae_16d": (12, 12),
    "mae_for_ldmae_f16d32": (12, 12),
}
#: The published factory's LayerNorm epsilon (not visible in the tensors).
NORM_EPS = 1e-6


@dataclass
class VMAECheckpoint:
    """A ``.pth`` read safely: the model tensors, the stored training ``args`` (as a dict) and what was dropped."""

    path: Path
    state_dict: Dict[str, torch.Tensor]
    args: Optional[dict] = None
    dropped: List[str] = field(default_factory=list)
    entry: str = "model"


# -- reading (safe) --------------------------------------------------------------------------------


def _refusal(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: refused to unpickle: {reason}. A VMAE checkpoint needs only tensors, plain containers and "
        f"{', '.join(ALLOWED_GLOBALS)}; anything else could run code on this machine, so the file was not loaded "
        "and nothing in it ran. If you trust its origin, re-save just the weights from trusted code, e.g. "
        "torch.save(checkpoint['model'], 'weights.pth'), or convert them to safetensors"
    )


def _torch_reason(error: Exception) -> str:
    """The global that torch's weights-only unpickler refused (without its advice to allow it)."""
    found = re.findall(r"GLOBAL ([\w.]+)", str(error))
    if found:
        return f"it references {sorted(set(found))}"
    lines = [s.strip() for s in str(error).splitlines() if s.strip() and "weights_only" not in s]
    return (lines[-1] if lines else type(error).__name__).split(". Please use")[0]


def read_vmae_pth(path: PathLike) -> VMAECheckpoint:
    """Read an LDMAE/VMAE ``.pth`` with weights-only unpickling; pick its model tensors.

    Refused with :class:`CheckpointError`: files whose pickle references any global besides
    torch's tensor types and ``argparse.Namespace`` (checked from the zip header before
    unpickling, and again by the weights-only unpickler for legacy files), unreadable files, and
    files holding no tensor dictionary.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    missing = [n for n in ("safe_globals", "get_unsafe_globals_in_checkpoint") if not hasattr(torch.serialization, n)]
    if missing:  # before torch 2.5 there is no safe way to read a pickle that holds an argparse.Namespace
        raise CheckpointError(
            f"{path}: reading an LDMAE .pth without running pickled code needs torch 2.5 or later "
            f"(torch.serialization.{missing[0]}); this is torch {torch.__version__}"
        )
    if zipfile.is_zipfile(path):
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as e:  # a zip that is not a torch checkpoint
            raise CheckpointError(f"{path}: not a torch checkpoint ({e})") from None
        unsafe = sorted(set(needed) - set(ALLOWED_GLOBALS))
        if unsafe:
            raise _refusal(path, f"it references {unsafe}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(path, _torch_reason(e)) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read it as a torch checkpoint ({type(e).__name__}: {e})") from None
    entry, state = select_state_dict(obj, path)
    args = obj.get("args") if isinstance(obj, Mapping) else None
    args = vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else None
    state, dropped = strip_training_keys(state)
    return VMAECheckpoint(path, state, args, dropped, entry)


def select_state_dict(obj, source: PathLike = "checkpoint") -> Tuple[str, Dict[str, torch.Tensor]]:
    """``(entry, tensors)``: the ``"model"`` entry of a training checkpoint (else ``"state_dict"``, else ``obj``)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a checkpoint dictionary")
    for entry in ("model", "state_dict"):
        if isinstance(obj.get(entry), Mapping):
            state, name = obj[entry], entry
            break
    else:
        state, name = obj, "(top level)"
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    others = sorted(str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor)))
    if not tensors:
        raise CheckpointError(f"{source}: entry {name!r} holds no tensors (keys: {sorted(map(str, obj))[:12]})")
    if others:
        raise CheckpointError(f"{source}: entry {name!r} mixes tensors with other values: {others[:12]}")
    if all(k.startswith("module.") for k in tensors):  # saved from a DDP wrapper
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return name, tensors


def strip_training_keys(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Drop the training-only tensors (``perceptual_loss.*``, ``mask_token``); return ``(kept, dropped names)``."""
    kept, dropped = {}, []
    for k, v in state.items():
        if k.startswith(TRAINING_ONLY_PREFIXES) or k in TRAINING_ONLY_KEYS:
            dropped.append(k)
        else:
            kept[k] = v
    return kept, sorted(dropped)


# -- configuration from the tensors ----------------------------------------------------------------


def _variant_problem(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """Why a state dict is of an LDMAE variant this class does not implement (None if it looks supported)."""
    if "cls_token" in state:
        return "it has a class token (trained with no_cls=False)"
    if any(k.startswith(("to_latent.layers.", "from_latent.layers.")) for k in state):
        return "its latent maps are MLPs (a down_nonlinear factory such as mae_for_ldmae_f8d16)"
    to_latent, from_latent = state.get("to_latent.weight"), state.get("from_latent.weight")
    if to_latent is not None and from_latent is not None and to_latent.shape[0] == from_latent.shape[-1]:
        return "its encoder predicts the latent itself, not a mean and a log-variance (trained without kl_loss_weight)"
    if "decoder_pred.weight" in state:
        return "its pixel head is a plain Linear (trained without smooth_output)"
    if "decoder_pred.conv_smoother.weight" in state and "decoder_pred.linear_pred.weight" not in state:
        return "its pixel head is a convolution (trained with pred_with_conv)"
    if any(re.match(r"(decoder_)?blocks\.\d+\.conv\.", k) for k in state):
        return "it has Down/Upsample blocks (a gradual_resol model)"
    return None


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"\.(\d+)\.", k)] if m}
    if found != set(range(len(found))):
        raise CheckpointError(f"{prefix} block indices are not 0..{len(found) - 1}: {sorted(found)}")
    return len(found)


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> Tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"the checkpoint has no {key} tensor, which every VMAE has")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def config_from_state_dict(
    state: Mapping[str, torch.Tensor], args: Optional[Mapping] = None, overrides: Optional[Mapping] = None
) -> dict:
    """:class:`AutoencoderVMAE` arguments for an LDMAE state dict (training keys already stripped).

    Shapes give ``patch_size``, ``in_chans``, ``embed_dim``, ``depth``, ``decoder_*`` widths and
    depth, ``mlp_ratio``, ``latent_dim`` and ``img_size`` (from the position table). The head counts
    come from ``overrides``, else from the stored ``args.model`` factory (:data:`FACTORY_HEADS`);
    ``norm_layer_eps`` is the factories' 1e-6 unless overridden. Every other override replaces the
    inferred value (a wrong one then fails the strict match, naming the tensors).
    """
    overrides = dict(overrides or {})
    problem = _variant_problem(state)
    if problem:
        raise CheckpointError(
            f"unsupported LDMAE variant: {problem}; AutoencoderVMAE implements mae_for_ldmae_f8d16_prev"
        )
    embed_dim, in_chans, p, p2 = _shape(state, "patch_embed.proj.weight", 4)
    if p != p2:
        raise CheckpointError(f"patch_embed.proj.weight has a non-square kernel {p}x{p2}")
    _, tokens, _ = _shape(state, "pos_embed", 3)
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise CheckpointError(f"pos_embed holds {tokens} tokens, not a square grid")
    decoder_embed_dim, latent_dim = _shape(state, "from_latent.weight", 2)
    hidden = _shape(state, "blocks.0.mlp.fc1.weight", 2)[0] if "blocks.0.mlp.fc1.weight" in state else 4 * embed_dim
    config = {
        "img_size": grid * p,
        "patch_size": p,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depth": _count(state, "blocks"),
        "decoder_embed_dim": decoder_embed_dim,
        "decoder_depth": _count(state, "decoder_blocks"),
        "mlp_ratio": hidden / embed_dim,
        "norm_layer_eps": NORM_EPS,
        "latent_dim": latent_dim,
    }
    factory = (args or {}).get("model")
    if "num_heads" not in overrides or "decoder_num_heads" not in overrides:
        if factory not in FACTORY_HEADS:
            known = f"the stored args name factory {factory!r}" if factory else "the checkpoint stores no args.model"
            raise CheckpointError(
                f"cannot tell the attention head counts from the tensors and {known}, which is not one of "
                f"{sorted(FACTORY_HEADS)}; pass num_heads=... and decoder_num_heads=... "
                "(--num-heads / --decoder-num-heads on the command line)"
            )
        config["num_heads"], config["decoder_num_heads"] = FACTORY_HEADS[factory]
    config.update(overrides)
    return config


# -- matching (pure, against a meta-device model) ---------------------------------------------------


def expected_shapes(config: Mapping) -> Dict[str, Tuple[int, ...]]:
    """Tensor names and shapes of ``AutoencoderVMAE(**config)`` (built on the meta device)."""
    from ..models.autoencoders.autoencoder_vmae import AutoencoderVMAE

    try:
        with torch.device("meta"):
            model = AutoencoderVMAE(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint describes a model this class cannot build: {e}") from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def match_vmae_state_dict(
    state: Mapping[str, torch.Tensor], config: Mapping
) -> Tuple[Dict[str, torch.Tensor], MatchReport]:
    """Match ``state`` strictly onto ``AutoencoderVMAE(**config)``; names carry over unchanged."""
    return match_state_dict(state, expected_shapes(config))


# -- building and writing ---------------------------------------------------------------------------


def build_vmae(
    state: Mapping[str, torch.Tensor], config: Mapping, torch_dtype: Optional[torch.dtype] = None, source="checkpoint"
):
    """``AutoencoderVMAE(**config)`` filled strictly from ``state`` (eval mode, float32 unless ``torch_dtype``)."""
    from ..models.autoencoders.autoencoder_vmae import AutoencoderVMAE

    converted, report = match_vmae_state_dict(state, config)
    if not report.ok:
        raise CheckpointError(f"{source} does not match AutoencoderVMAE({dict(config)}):\n{report.format()}")
    with torch.device("meta"):
        model = AutoencoderVMAE(**config)
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True, assign=True)
    for name in ("pos_embed", "decoder_pos_embed"):  # frozen tables, as in the original
        getattr(model, name).requires_grad_(False)
    if torch_dtype is not None:
        model = torch.nn.Module.to(model, torch_dtype)  # ModelMixin.to warns on every dtype cast
    return model.eval()


def load_latent_stats(path: PathLike) -> Dict[str, List[float]]:
    """``{"latents_mean": [...], "latents_std": [...]}`` from LDMAE's ``latents_stats.pt`` (weights-only)."""
    path = Path(path)
    try:
        stats = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(path, _torch_reason(e)) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read it as a torch file ({type(e).__name__}: {e})") from None
    if not (isinstance(stats, Mapping) and all(isinstance(stats.get(k), torch.Tensor) for k in ("mean", "std"))):
        raise CheckpointError(f"{path}: expected a dict with tensors 'mean' and 'std' (LDMAE's latents_stats.pt)")
    mean, std = stats["mean"].flatten().double(), stats["std"].flatten().double()
    if mean.shape != std.shape or not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise CheckpointError(f"{path}: 'mean'/'std' must be finite, of one length, std > 0")
    return {"latents_mean": mean.tolist(), "latents_std": std.tolist()}


def load_vmae_pth(path: PathLike, torch_dtype: Optional[torch.dtype] = None, **overrides):
    """Read ``path`` safely and return the strictly matched :class:`AutoencoderVMAE` (eval mode).

    ``overrides`` are constructor arguments that replace what the tensors and stored args give
    (``num_heads``, ``decoder_num_heads``, ``norm_layer_eps``, ``latents_mean``, ...).
    """
    ckpt = read_vmae_pth(path)
    config = config_from_state_dict(ckpt.state_dict, ckpt.args, overrides)
    return build_vmae(ckpt.state_dict, config, torch_dtype, source=f"{ckpt.path} (entry {ckpt.entry!r})")


def find_vmae_pth(pretrained: PathLike, subfolder: Optional[str] = None) -> Optional[Path]:
    """The ``.pth`` to convert for ``from_pretrained(pretrained)``, or None for a diffusers folder / Hub id.

    A pickle file is returned as is. A local folder without a diffusers ``config.json`` that holds
    exactly one pickle file returns that file; several are refused (name the one to use).
    """
    base = Path(pretrained) / (subfolder or "")
    if base.is_file():
        if base.suffix.lower() in PICKLE_SUFFIXES:
            return base
        raise CheckpointError(f"{base}: not a .pth checkpoint or a model folder")
    if not base.is_dir() or (base / "config.json").is_file():
        return None
    pickles = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if len(pickles) > 1:
        raise CheckpointError(f"{base} holds several checkpoints {[p.name for p in pickles]}; pass the file to load")
    return pickles[0] if pickles else None


def convert_vmae_pth(
    path: PathLike,
    out: PathLike,
    overwrite: bool = False,
    torch_dtype: Optional[torch.dtype] = None,
    latent_stats: Optional[PathLike] = None,
    **overrides,
) -> Path:
    """Convert ``path`` into a diffusers folder ``out`` (``config.json`` + ``diffusion_pytorch_model.safetensors``).

    The folder appears atomically, complete or not at all. ``latent_stats`` (LDMAE's
    ``latents_stats.pt``) sets ``latents_mean``/``latents_std``.
    """
    from ..atomic import atomic_directory

    if latent_stats is not None:
        overrides.update(load_latent_stats(latent_stats))
    model = load_vmae_pth(path, torch_dtype=torch_dtype, **overrides)
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
    return out


__all__ = [
    "ALLOWED_GLOBALS",
    "FACTORY_HEADS",
    "TRAINING_ONLY_KEYS",
    "TRAINING_ONLY_PREFIXES",
    "VMAECheckpoint",
    "build_vmae",
    "config_from_state_dict",
    "convert_vmae_pth",
    "expected_shapes",
    "find_vmae_pth",
    "load_latent_stats",
    "load_vmae_pth",
    "match_vmae_state_dict",
    "read_vmae_pth",
    "select_state_dict",
    "strip_training_keys",
]
