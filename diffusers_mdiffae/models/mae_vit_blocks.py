"""The plain ViT pieces of LDMAE's VMAE: patch embedding, pre-norm blocks, the smoothed pixel head.

Self-contained on purpose (torch only, no timm): the module names and tensor shapes are those of
the published ``vmaef8d16.pth`` so its state dict loads without renaming. Written from the
published facts (tests/fixtures/parity/TOKENIZERS_FACTS.md, section 2), not from the original code.

Numerics follow the original where the order of operations matters: the attention logits are
``(q @ k^T) * head_dim**-0.5`` (scaled *after* the product), softmax over the last axis in the
working dtype, exact (erf) GELU in the MLP.
"""

from __future__ import annotations

import torch
from torch import nn


class MAEPatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution, then ``[B, D, h, w] -> [B, h*w, D]`` (row-major tokens)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class MAEAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (bias on) and an output ``proj``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # [B, N, 3*C] -> [3, B, heads, N, head_dim]
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = (q @ k.transpose(-2, -1)) * self.scale
        weights = weights.softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class MAEMlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MAEBlock(nn.Module):
    """Pre-norm transformer block without LayerScale: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MAEAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MAEMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmoothedPixelHead(nn.Module):
    """Tokens -> image: a per-token linear map to a ``p x p`` RGB patch, then a 3x3 convolution on the image.

    ``linear_pred`` maps ``[B, h*w, D]`` to ``[B, h*w, p*p*C]``; each token's vector is read as a
    ``(p, p, C)`` patch (row, column, channel) and the patches are laid out on the ``h x w`` grid;
    ``conv_smoother`` (C -> C, 3x3, zero padding 1) then mixes across patch borders.
    """

    def __init__(self, dim: int, patch_size: int, out_chans: int):
        super().__init__()
        self.patch_size = patch_size
        self.out_chans = out_chans
        self.linear_pred = nn.Linear(dim, patch_size * patch_size * out_chans)
        self.conv_smoother = nn.Conv2d(out_chans, out_chans, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        p, c = self.patch_size, self.out_chans
        x = self.linear_pred(x).reshape(x.shape[0], h, w, p, p, c)
        x = x.permute(0, 5, 1, 3, 2, 4).reshape(x.shape[0], c, h * p, w * p)
        return self.conv_smoother(x)


__all__ = ["MAEAttention", "MAEBlock", "MAEMlp", "MAEPatchEmbed", "SmoothedPixelHead"]
