"""AdaLN-Zero conditioning: one shared projector plus a low-rank delta per block.

Block ``i`` receives ``m_i = base(a) + delta_i(a)`` with ``a = SiLU(cond)`` computed once per
forward, so the shared projection is evaluated once and each block only pays for its rank-``r``
correction. DiCo blocks take four chunks ``(scale1, gate1, scale2, gate2)``, FCDM blocks two
``(scale, gate)``.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaLNZeroProjector(nn.Module):
    """Shared AdaLN projection ``proj = Linear(d_cond, n_chunks * d_model)``, zero-initialised.

    Shapes: ``a [B, d_cond] -> [B, n_chunks * d_model]``; ``a`` is the already-activated condition.
    """

    def __init__(self, d_model: int, d_cond: int, n_chunks: int):
        super().__init__()
        self.proj = nn.Linear(d_cond, n_chunks * d_model)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.proj(a)


class AdaLNZeroLowRankDelta(nn.Module):
    """Per-block low-rank correction ``up(down(a))``, bias-free, ``up`` zero-initialised.

    No biases: the published FCDM code has none, and the mdiffae_v1 parameter count
    (81,410,624) only fits bias-free deltas.

    Shapes: ``a [B, d_cond] -> [B, n_chunks * d_model]``.
    """

    def __init__(self, d_model: int, d_cond: int, rank: int, n_chunks: int):
        super().__init__()
        self.down = nn.Linear(d_cond, rank, bias=False)
        self.up = nn.Linear(rank, n_chunks * d_model, bias=False)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.up.weight)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(a))
