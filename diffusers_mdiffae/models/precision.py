"""Buffers that must stay float32 when a model is cast to a half dtype."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn


def apply_keeping_float32(module: nn.Module, super_apply: Callable, fn, recurse: bool, names: Sequence[str]):
    """Run ``nn.Module._apply`` (``super_apply``) but keep the buffers ``names`` of ``module`` in float32.

    Casting moves them to the new device only: frequency tables and whitening statistics lose
    too much in float16/bfloat16 (the published packages keep them float32 as well).
    """
    saved = {n: getattr(module, n).detach().float().clone() for n in names if getattr(module, n, None) is not None}
    super_apply(fn, recurse)
    for name, value in saved.items():
        setattr(module, name, value.to(getattr(module, name).device))
    return module
