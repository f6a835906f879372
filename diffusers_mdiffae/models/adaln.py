"""AdaLN-Zero conditioning: one shared projector plus a low-rank delta per block.

Block ``i`` receives ``m_i = base(a) + delta_i(a)`` with ``a = SiLU(cond)`` computed once per
forward, so the shared projection is evaluated once and each block only pays for its rank-``r``
correction.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaLNZeroProjector(nn.Module):
    """Shared AdaLN projection ``Linear(d_cond, n_chunks * d_model)``, zero-initialised.

    Shapes: ``a [B, d_cond] -> [B, n_chunks * d_model]``; ``a`` is the already-activated condition.
    """

    def __init__(self, d_model: int, d_cond: int, n_chunks: int = 4):
        super().__init__()
        self.proj = nn.Linear(d_cond, n_chunks * d_model)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.proj(a)


class AdaLNZeroLowRankDelta(nn.Module):
    """Per-block low-rank correction ``up(down(a))`` with ``up`` zero-initialised.

    No biases: the published mdiffae_v1 parameter count (81,410,624) only fits bias-free deltas.

    Shapes: ``a [B, d_cond] -> [B, n_chunks * d_model]``.
    """

    def __init__(self, d_model: int, d_cond: int, rank: int, n_chunks: int = 4):
        super().__init__()
        self.down = nn.Linear(d_cond, rank, bias=False)
        self.up = nn.Linear(rank, n_chunks * d_model, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(a))
