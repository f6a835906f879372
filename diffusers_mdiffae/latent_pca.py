"""Look at latents: project the channels onto their top three principal components as RGB."""

from __future__ import annotations

import torch


def latent_pca_rgb(latents: torch.Tensor, quantile: float = 0.01) -> torch.Tensor:
    """Per-image PCA of the channel vectors, first three components shown as R, G, B.

    Each image is centred over its positions, its 3 leading principal directions are found by SVD
    (float32), and every component is stretched between its ``quantile`` and ``1 - quantile``
    values. Signs are fixed so the largest loading of each direction is positive, making the
    colours reproducible.

    Shapes: ``[B, C, h, w] -> [B, 3, h, w]`` float32 in [0, 1] (C >= 1; fewer than 3 components
    leave the remaining colour channels at 0.5).
    """
    if latents.ndim != 4:
        raise ValueError(f"latents must be [B, C, h, w], got shape {tuple(latents.shape)}")
    b, c, h, w = latents.shape
    out = torch.full((b, 3, h, w), 0.5)
    for i in range(b):
        x = latents[i].detach().float().cpu().reshape(c, h * w).T  # [hw, C]
        x = x - x.mean(dim=0, keepdim=True)
        if h * w < 2 or float(x.abs().max()) == 0.0:
            continue
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        k = min(3, vh.shape[0])
        dirs = vh[:k]
        signs = torch.sign(dirs.gather(1, dirs.abs().argmax(dim=1, keepdim=True)))
        proj = x @ (dirs * signs).T  # [hw, k]
        lo = torch.quantile(proj, quantile, dim=0)
        hi = torch.quantile(proj, 1 - quantile, dim=0)
        proj = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
        out[i, :k] = proj.T.reshape(k, h, w)
    return out
