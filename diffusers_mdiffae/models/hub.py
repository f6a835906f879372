"""Loading and saving: strict ``from_pretrained`` (diffusers folders and published snapshots), configs, cards."""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch

from ..conversion.convert import OriginalSnapshot, is_original_snapshot, match_state_dict, read_original_snapshot
from ..conversion.layouts import CheckpointError

# Keys diffusers itself writes into every config.json.
_DIFFUSERS_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}


def validate_config(cls, config: Dict, source: str = "config") -> None:
    """Refuse unknown keys and values of the wrong type, naming the key (diffusers only warns).

    Types are read from the constructor's defaults: an int default needs an int (not a bool, not a
    string), a float default a finite number, a bool a bool, a str a str, a sequence a list or tuple;
    a None default accepts None besides the annotated type.
    """
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in config if k not in params and k not in _DIFFUSERS_KEYS and k != "self")
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__} (a typo?); known: {sorted(params)[:60]}"
        )
    for key, value in config.items():
        if key not in params:
            continue
        default = params[key].default
        if (
            default is inspect.Parameter.empty
            or value is None
            and (default is None or "Optional" in str(params[key].annotation))
        ):
            continue
        expected = type(default) if default is not None else None
        ok = True
        if expected is bool:
            ok = isinstance(value, bool)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif expected is str:
            ok = isinstance(value, str)
        elif expected in (tuple, list):
            ok = isinstance(value, (list, tuple))
        if not ok:
            want = {bool: "a bool", int: "an int", float: "a finite number", str: "a string"}.get(expected, "a list")
            raise ValueError(f"{source}: {key} must be {want}, got {value!r} ({type(value).__name__})")


def nonfinite_tensors(model: torch.nn.Module):
    """Names of parameters and buffers holding NaN or infinite values."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [
        n
        for n, t in tensors
        if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all())
    ]


def check_loading_info(info: Dict, source, cls_name: str) -> None:
    """Turn diffusers' loading info (which it only logs) into an error listing every offending tensor."""
    problems = []
    for key in ("missing_keys", "unexpected_keys"):
        names = sorted(info.get(key) or [])
        if names:
            problems.append(f"  {key.replace('_', ' ')} ({len(names)}): " + ", ".join(names))
    if info.get("mismatched_keys"):
        problems.append(
            "  shape mismatches: " + ", ".join(f"{k} {list(a)} vs {list(b)}" for k, a, b in info["mismatched_keys"])
        )
    if info.get("error_msgs"):
        problems.append("  errors: " + "; ".join(map(str, info["error_msgs"])))
    if problems:
        raise ValueError(f"checkpoint {source} does not match {cls_name}(config):\n" + "\n".join(problems))


CONFIG_KWARGS = ("subfolder", "revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")


def strict_from_pretrained(cls, load, path, kwargs: Dict, named_only: bool = False, hint: str = "", upcast=False):
    """The strict half of every ``from_pretrained`` here, around diffusers' own loader ``load``.

    Before loading: the folder's ``config.json`` must name ``cls`` (or no class, unless
    ``named_only``; ``hint`` ends the refusal) and pass :func:`validate_config`. After:
    :func:`check_loading_info` and :func:`nonfinite_tensors` turn what diffusers only logs into
    errors. ``upcast`` loads in float32 and casts afterwards, so buffers the model keeps in float32
    are not rounded by a half ``torch_dtype`` on the way in. Returns ``(model, loading info)``.
    """
    config = cls.load_config(path, **{k: kwargs[k] for k in CONFIG_KWARGS if kwargs.get(k) is not None})
    name = config.get("_class_name")
    if name != cls.__name__ and (named_only or name is not None):
        raise ValueError(f"{path} holds a {name or 'non-diffusers'} config, not a {cls.__name__}{hint}")
    validate_config(cls, config, source=f"{path} config.json")
    torch_dtype = kwargs.pop("torch_dtype", None) if upcast else None
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch.float32
    model, info = load(path, output_loading_info=True, **kwargs)
    if torch_dtype is not None and torch_dtype != torch.float32:
        model = torch.nn.Module.to(model, torch_dtype)  # diffusers 0.42 ModelMixin.to warns on every dtype cast
    check_loading_info(info, path, cls.__name__)
    bad = nonfinite_tensors(model)
    if bad:
        raise ValueError(
            f"checkpoint {path} has NaN or infinite values in {len(bad)} tensor(s): " + ", ".join(bad[:10])
        )
    return model, info


def model_classes() -> Dict[str, type]:
    from .autoencoders.autoencoder_mdiffae import AutoencoderMDiffAE
    from .autoencoders.autoencoder_semdis import AutoencoderSemDisDiffAE

    return {c.__name__: c for c in (AutoencoderMDiffAE, AutoencoderSemDisDiffAE)}


def build_from_state_dict(
    cls_name: str,
    config: Dict,
    state_dict: Dict[str, torch.Tensor],
    rules=(),
    torch_dtype: Optional[torch.dtype] = None,
    source: str = "checkpoint",
):
    """Construct ``cls(**config)`` and fill it strictly from ``state_dict`` (renamed by ``rules``)."""
    from accelerate import init_empty_weights

    cls = model_classes()[cls_name]
    try:
        validate_config(cls, config, source=f"{source} config")
        with init_empty_weights(include_buffers=False):
            model = cls(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: config describes a model this package cannot build: {e}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted, report = match_state_dict(state_dict, expected, rules)
    if not report.ok:
        raise CheckpointError(f"{source} does not match {cls_name}({config}):\n{report.format()}")
    model.load_state_dict(converted, strict=True, assign=True)
    model = model.float() if torch_dtype is None else model.to(torch_dtype)
    return model.use_channels_last().eval()


def build_from_snapshot(snapshot: OriginalSnapshot, torch_dtype: Optional[torch.dtype] = None):
    """The model of a published snapshot (see :func:`~diffusers_mdiffae.conversion.convert.read_original_snapshot`)."""
    layout = snapshot.layout
    return build_from_state_dict(
        layout.class_name,
        snapshot.config,
        snapshot.state_dict,
        layout.key_rules,
        torch_dtype,
        source=f"{snapshot.path} ({layout.name} layout)",
    )


def convert_original_snapshot(snapshot_dir: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None):
    """Load a published snapshot folder (``config.json`` + ``model.safetensors``) as our model, strictly."""
    return build_from_snapshot(read_original_snapshot(snapshot_dir), torch_dtype)


def locate_original_snapshot(
    pretrained: Union[str, os.PathLike],
    subfolder: Optional[str] = None,
    *,
    detect: Callable[[Path], bool] = is_original_snapshot,
    with_packages: bool = True,
    **hub_kwargs,
) -> Optional[Path]:
    """The local folder of ``pretrained`` if it is in a published layout, else None.

    A local folder is inspected directly. A Hub id costs one ``config.json`` download; if that config
    is an original one, the weights and the shipped package (for ``--verify``) are fetched too. Any
    failure to reach the Hub returns None, so the caller falls back to the diffusers loader and its
    usual error messages.

    ``detect`` recognises a published folder (default: the mDiffAE-family layouts);
    ``with_packages=False`` fetches only ``config.json`` and the safetensors (the tokenizers ship no package).
    """
    from ..conversion.layouts import LAYOUTS

    local = Path(pretrained) / (subfolder or "")
    if local.is_dir():
        return local if detect(local) else None
    if Path(pretrained).exists():
        return None
    from huggingface_hub import hf_hub_download, snapshot_download

    keep = {
        k: hub_kwargs[k]
        for k in ("revision", "cache_dir", "token", "local_files_only", "force_download")
        if hub_kwargs.get(k) is not None
    }
    try:
        config = hf_hub_download(str(pretrained), "config.json", subfolder=subfolder, **keep)
    except Exception:  # offline, missing repo, gated...: let diffusers report it
        return None
    if not detect(Path(config).parent):
        return None
    prefix = f"{subfolder}/" if subfolder else ""
    packages = [f"{prefix}{pkg}/*" for layout in LAYOUTS for pkg, _ in layout.packages] if with_packages else []
    root = snapshot_download(
        str(pretrained), allow_patterns=[f"{prefix}config.json", f"{prefix}*.safetensors", *packages], **keep
    )
    return Path(root) / (subfolder or "")


# -- 1-D token tokenizers (MAETok, SoftVQ-VAE) ----------------------------------------------


def tokenizer_classes() -> Dict[str, type]:
    from .autoencoders.autoencoder_maetok import AutoencoderMAETok, AutoencoderSoftVQ

    return {c.__name__: c for c in (AutoencoderMAETok, AutoencoderSoftVQ)}


def is_tokenizer_snapshot(path: Union[str, os.PathLike]) -> bool:
    """True for a folder written by continuous_tokenizer's ``PyTorchModelHubMixin`` (``ModelArgs`` config.json)."""
    import json

    from ..conversion.tokenizer_layouts import is_tokenizer_config

    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return is_tokenizer_config(json.loads(config.read_text()))
    except ValueError:
        return False


def build_tokenizer(conversion, torch_dtype: Optional[torch.dtype] = None, source: str = "checkpoint"):
    """Construct the tokenizer a :class:`~diffusers_mdiffae.conversion.tokenizer_layouts.TokenizerConversion`
    describes and fill it strictly: every missing, unexpected, mis-shaped or non-finite tensor is
    reported by name, together with the checks of the dropped (unused) tensors."""
    from accelerate import init_empty_weights

    from ..conversion.convert import MatchReport

    cls = tokenizer_classes()[conversion.class_name]
    try:
        validate_config(cls, conversion.config, source=f"{source} config")
        with init_empty_weights(include_buffers=False):
            model = cls(**conversion.config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: config describes a model this package cannot build: {e}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    converted, report = match_state_dict(conversion.state_dict, expected, conversion.key_rules)
    unused = conversion.report
    report = MatchReport(
        unexpected=report.unexpected,
        missing=report.missing + unused.missing,
        mismatched=report.mismatched + unused.mismatched,
        nonfinite=report.nonfinite + unused.nonfinite,
    )
    if not report.ok or conversion.notes:
        notes = "".join(f"\n  {n}" for n in conversion.notes)
        raise CheckpointError(
            f"{source} does not match {conversion.class_name}({conversion.config}):\n{report.format()}{notes}"
        )
    model.load_state_dict(converted, strict=True, assign=True)
    # nn.Module.to: diffusers' ModelMixin.to warns on every dtype cast
    model = torch.nn.Module.to(model, torch.float32 if torch_dtype is None else torch_dtype)
    return model.eval()


def convert_tokenizer_snapshot(
    snapshot_dir: Union[str, os.PathLike],
    kind: str,
    vit_overrides: Optional[Dict] = None,
    torch_dtype: Optional[torch.dtype] = None,
):
    """Load a continuous_tokenizer folder (``config.json`` + ``model.safetensors``) as our ``kind`` model, strictly."""
    from ..conversion.convert import find_weights, load_safetensors, read_original_config
    from ..conversion.tokenizer_layouts import convert_tokenizer

    snapshot = Path(snapshot_dir)
    if not snapshot.is_dir():
        raise CheckpointError(f"{snapshot} is not a directory")
    config = read_original_config(snapshot)
    state_dict = load_safetensors(find_weights(snapshot))
    try:
        conversion = convert_tokenizer(config, state_dict, kind, vit_overrides)
    except CheckpointError as e:
        raise CheckpointError(f"{snapshot}: {e}") from None
    return build_tokenizer(conversion, torch_dtype, source=f"{snapshot} (continuous_tokenizer {kind} layout)")
