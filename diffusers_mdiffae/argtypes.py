"""Argument types that refuse a bad value with a sentence, and a parser whose errors are one line.

Shared by ``mdiffae`` and ``python -m diffusers_mdiffae.dataset_encoding`` so both check every
argument before any work starts (``--batch-size 0``, ``--lr nan`` and ``--steps 0`` end as
``error: --lr: must be a finite number, got nan``). Standard library only: parsing stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Callable


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A float type accepting only finite values in the interval (open or closed ends)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            lo, hi = ("(" if low_open else "[") + f"{low:g}", f"{high:g}" + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(f"must be in {lo}, {hi}, got {text}")
        return value

    return parse


finite_float = float_in(-math.inf, math.inf)


def multiple_of_16(text: str) -> int:
    value = positive_int(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16, got {value}")
    return value


def seed_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**63), got {value}")
    return value


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object like '{{\"model_dim\": 128}}', got {type(value).__name__}"
        )
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``error: --lr: must be ...``, instead of usage + message."""

    def error(self, message: str):
        if message.startswith("argument "):
            message = message[len("argument ") :]
        message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
        self.exit(2, f"error: {message} (see `{self.prog} -h`)\n")
