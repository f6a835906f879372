"""Decoder token masks in 2x2 groups (mDiffAE's training regulariser and its PDG degradation)."""

from __future__ import annotations

from typing import List, Optional, Union

import torch

GeneratorArg = Optional[Union[torch.Generator, List[torch.Generator]]]


def _uniform(shape, generator: GeneratorArg, device) -> torch.Tensor:
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        return torch.cat([torch.rand((1, *shape[1:]), generator=g, device=g.device).to(device) for g in generator])
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def grouped_keep_mask(
    batch: int,
    height: int,
    width: int,
    mask_ratio: float = 0.75,
    generator: GeneratorArg = None,
    device: Union[str, torch.device] = "cpu",
) -> torch.Tensor:
    """Keep-mask over a latent grid, chosen independently in every 2x2 group of tokens.

    In each group ``round(4 * (1 - mask_ratio))`` tokens (at least one) are kept at random and the
    rest are to be replaced by the learned mask feature; 0.75 keeps exactly one token of four.
    Odd grid sizes are handled by cropping a padded group grid.

    Returns:
        bool tensor ``[batch, 1, height, width]``, True where the token is kept.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    keep = max(1, min(4, round(4 * (1.0 - mask_ratio))))
    gh, gw = (height + 1) // 2, (width + 1) // 2
    scores = _uniform((batch, gh, gw, 4), generator, device)
    ranks = scores.argsort(dim=-1).argsort(dim=-1)
    kept = ranks < keep  # [B, gh, gw, 4], position index = dy * 2 + dx
    kept = kept.view(batch, gh, gw, 2, 2).permute(0, 1, 3, 2, 4).reshape(batch, 2 * gh, 2 * gw)
    return kept[:, None, :height, :width].contiguous()
