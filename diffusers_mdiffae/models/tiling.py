"""Spans and blending weights for tiled encode/decode on the latent grid."""

from __future__ import annotations

from typing import Iterator, List, Tuple

import torch


def spans(length: int, tile: int, overlap: int) -> List[Tuple[int, int]]:
    """Fewest windows of size ``tile`` overlapping by at least ``overlap`` that cover ``[0, length)``.

    Starts are spread evenly, so the spare room becomes extra overlap shared by every seam
    instead of one nearly redundant last tile.
    """
    if length <= tile:
        return [(0, length)]
    n = -(-(length - overlap) // max(tile - overlap, 1))
    n = max(n, 2)
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    return [(s, s + tile) for s in starts]


def ramp(length: int, start: int, end: int, total: int, overlap: int) -> torch.Tensor:
    """1-D blending weight of one window: linear ramps over the overlap on interior edges."""
    w = torch.ones(length)
    if overlap > 0:
        up = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        n = min(overlap, length)
        if start > 0:
            w[:n] = torch.minimum(w[:n], up[:n])
        if end < total:
            w[length - n :] = torch.minimum(w[length - n :], up[:n].flip(0))
    return w


def tiles(h: int, w: int, tile: int, overlap: int) -> Iterator[Tuple[slice, slice, torch.Tensor]]:
    """Latent-grid windows covering ``h x w`` and their blending weights ``[h_tile, w_tile]`` (CPU)."""
    for y0, y1 in spans(h, tile, overlap):
        wy = ramp(y1 - y0, y0, y1, h, overlap)
        for x0, x1 in spans(w, tile, overlap):
            wx = ramp(x1 - x0, x0, x1, w, overlap)
            yield slice(y0, y1), slice(x0, x1), wy[:, None] * wx[None, :]
