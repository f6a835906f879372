"""Read a published snapshot (``config.json`` + ``model.safetensors``) and match it strictly to our names.

Pure transforms of (config dict, state dict): no model class here. :mod:`diffusers_mdiffae.models.hub`
builds the model from the result. Matching is strict: every checkpoint tensor must land on exactly
one model tensor of the same shape and every model tensor must be filled, or the report lists each
offending tensor by name and shape.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .layouts import CheckpointError, Layout, is_original_config, original_config_to_ours

WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class MatchReport:
    """Result of matching a checkpoint against a model's expected tensors."""

    unexpected: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    missing: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    nonfinite: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.missing or self.mismatched or self.nonfinite)

    def format(self) -> str:
        lines = []
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} checkpoint tensor(s) match no model tensor:")
            lines += [f"    {k}  {list(s)}" for k, s in self.unexpected]
        if self.missing:
            lines.append(f"  {len(self.missing)} model tensor(s) missing from the checkpoint:")
            lines += [f"    {k}  {list(s)}" for k, s in self.missing]
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} shape mismatch(es) (checkpoint vs model):")
            lines += [f"    {k}  {list(a)} vs {list(b)}" for k, a, b in self.mismatched]
        if self.nonfinite:
            lines.append(f"  {len(self.nonfinite)} tensor(s) hold NaN or infinite values:")
            lines += [f"    {k}" for k in self.nonfinite]
        return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------


def safetensors_header(path: Union[str, os.PathLike]) -> Dict[str, dict]:
    """Parse and check a safetensors header without loading data; name the tensors the file cannot hold."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: {size} bytes, too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 * 2**20:
            raise CheckpointError(f"{path}: not a safetensors file or truncated inside its header")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    beyond = []
    for k, v in header.items():
        offsets = v.get("data_offsets") if isinstance(v, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path}: corrupt safetensors header (entry {k!r} has no valid data_offsets)")
        if offsets[1] > data_size:
            beyond.append((k, offsets[1]))
    if beyond:
        lines = "\n".join(f"    {k}  needs bytes up to {end}, file data has {data_size}" for k, end in beyond)
        raise CheckpointError(f"{path} is truncated: {len(beyond)} tensor(s) lie past the end of the file:\n{lines}")
    return header


def load_safetensors(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file after checking the header (never unpickles)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: pickle checkpoints are not loaded (unsafe); convert it to safetensors")
    safetensors_header(path)
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read safetensors data ({e})") from None


def find_weights(snapshot: Path) -> Path:
    """``model.safetensors`` of a snapshot folder (or its only ``.safetensors``); pickles are never used."""
    path = snapshot / WEIGHTS_NAME
    if path.is_file():
        return path
    candidates = sorted(snapshot.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates[0]
    pickles = sorted(p.name for p in snapshot.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    hint = f" (found {pickles}: pickle files are never loaded)" if pickles else ""
    raise CheckpointError(f"{snapshot}: expected {WEIGHTS_NAME}{hint}")


def read_original_config(snapshot: Path) -> dict:
    config_path = snapshot / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{snapshot}: no config.json")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    if isinstance(config, dict) and "_class_name" in config:
        raise CheckpointError(
            f"{snapshot} is already a diffusers folder ({config['_class_name']}); load it with from_pretrained"
        )
    return config


def is_original_snapshot(path: Union[str, os.PathLike]) -> bool:
    """True for a folder in a published (non-diffusers) layout."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return is_original_config(json.loads(config.read_text()))
    except ValueError:
        return False


@dataclass
class OriginalSnapshot:
    """A published snapshot read from disk: its layout, our class's config, and its raw tensors."""

    path: Path
    layout: Layout
    config: dict
    state_dict: Dict[str, torch.Tensor]


def read_original_snapshot(snapshot_dir: Union[str, os.PathLike]) -> OriginalSnapshot:
    """Read ``config.json`` (layout detected from its fields) and the safetensors weights."""
    snapshot = Path(snapshot_dir)
    if not snapshot.is_dir():
        raise CheckpointError(f"{snapshot} is not a directory")
    layout, config = original_config_to_ours(read_original_config(snapshot))
    return OriginalSnapshot(snapshot, layout, config, load_safetensors(find_weights(snapshot)))


# -- key mapping -----------------------------------------------------------------------------


def map_key(name: str, rules: Sequence[Tuple[str, str]] = ()) -> str:
    """Original tensor name -> this package's name (identity where the names agree)."""
    for pattern, repl in rules:
        name = re.sub(pattern, repl, name)
    return name


def adapt(name: str, tensor: torch.Tensor, target_shape: Sequence[int]) -> Optional[torch.Tensor]:
    """Reshape the few tensors an original may store in another, weight-equivalent layout (else None)."""
    target_shape = tuple(target_shape)
    if tuple(tensor.shape) == target_shape:
        return tensor
    if tensor.numel() != math.prod(target_shape):
        return None
    if name.endswith("patchify.proj.weight") and tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
        # PixelUnshuffle + 1x1 conv [C, 3*p*p, 1, 1] == stride-p conv [C, 3, p, p]: PixelUnshuffle orders
        # its channels (c, dy, dx), which is exactly a row-major flatten of the strided kernel.
        return tensor.reshape(target_shape)
    if [d for d in tensor.shape if d != 1] == [d for d in target_shape if d != 1]:
        return tensor.reshape(target_shape)  # e.g. a feature stored as [C] vs [1, C, 1, 1]
    return None


def match_state_dict(
    original: Mapping[str, torch.Tensor],
    expected: Mapping[str, Sequence[int]],
    rules: Sequence[Tuple[str, str]] = (),
) -> Tuple[Dict[str, torch.Tensor], MatchReport]:
    """Rename and reshape ``original`` onto the ``expected`` names and shapes; report what does not fit.

    Every kind of problem is reported on its own (a missing tensor is listed even when nothing is
    unexpected), and non-finite values are reported by tensor name.
    """
    report = MatchReport()
    converted: Dict[str, torch.Tensor] = {}
    claimed = set()
    for name, tensor in original.items():
        ours = map_key(name, rules)
        if ours not in expected or ours in claimed:
            report.unexpected.append((name, tuple(tensor.shape)))
            continue
        claimed.add(ours)
        adapted = adapt(ours, tensor, expected[ours])
        if adapted is None:
            report.mismatched.append((name, tuple(tensor.shape), tuple(expected[ours])))
            continue
        if adapted.is_floating_point() and not bool(torch.isfinite(adapted).all()):
            report.nonfinite.append(name)
        converted[ours] = adapted
    report.missing = [(k, tuple(s)) for k, s in expected.items() if k not in claimed]
    return converted, report
