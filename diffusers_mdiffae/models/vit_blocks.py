"""Plain ViT parts for the 1-D latent-token tokenizers (MAETok, SoftVQ-VAE).

The layers follow the DINOv2-style ViT the published tokenizers were trained with (timm's recipe):
pre-norm blocks with LayerNorm (eps 1e-6), LayerScale on both residual branches, a QKV projection
with bias, an MLP of width ``mlp_ratio * dim`` with exact-erf GELU, and a strided-convolution patch
embedding. Attention is written out (scale q, ``q @ k^T``, softmax, ``@ v``) in that order so that
results match the published code bit for bit on the CPU; ``F.scaled_dot_product_attention`` agrees
only to about 1e-6.

Mixed 2-D RoPE (:class:`MixedRoPE2D`): learnable per-layer, per-head frequency pairs
``freqs[0]`` (x) and ``freqs[1]`` (y); the rotation angle of image token ``n`` at column ``t_x`` and
row ``t_y`` is ``t_x * fx + t_y * fy``. It rotates interleaved pairs ``(x[2j], x[2j+1])`` of q and k
(in float32) for the image tokens only; class and latent tokens pass unrotated.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch: ``x * gamma``. Shapes: ``[..., dim] -> [..., dim]``."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class PatchEmbed(nn.Module):
    """Non-overlapping patches by a stride-``p`` convolution. Shapes: ``[B, C, H, W] -> [B, (H/p)(W/p), dim]``."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def grid_coordinates(grid_h: int, grid_w: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Column and row of every token of a row-major ``grid_h x grid_w`` grid, float32 ``[grid_h * grid_w]``."""
    n = torch.arange(grid_h * grid_w, dtype=torch.float32, device=device)
    return n % grid_w, torch.div(n, grid_w, rounding_mode="floor")


def init_mixed_rope_freqs(head_dim: int, num_heads: int, depth: int, theta: float) -> torch.Tensor:
    """Initial mixed-RoPE frequencies ``[2, depth, num_heads * head_dim / 2]`` (x plane, y plane).

    Per layer and head: a random direction ``a``; magnitudes ``theta ** (-4 j / head_dim)`` for
    ``j < head_dim / 4``; the x plane holds ``mag * cos(a)`` then ``mag * cos(a + pi/2)``, the y plane
    ``mag * sin(a)`` then ``mag * sin(a + pi/2)``.
    """
    if head_dim % 4:
        raise ValueError(f"mixed 2-D RoPE needs a head width divisible by 4, got {head_dim}")
    mag = theta ** (-torch.arange(0, head_dim, 4) / head_dim)  # in the default dtype, like the angles
    angle = torch.rand(depth, num_heads, 1) * (2 * math.pi)
    fx = torch.cat([mag * torch.cos(angle), mag * torch.cos(angle + math.pi / 2)], dim=-1)
    fy = torch.cat([mag * torch.sin(angle), mag * torch.sin(angle + math.pi / 2)], dim=-1)
    return torch.stack([fx, fy]).reshape(2, depth, num_heads * head_dim // 2)


class MixedRoPE2D(nn.Module):
    """Learnable mixed 2-D rotary embedding for every layer of one ViT.

    Args:
        dim: model width; ``dim / num_heads`` must be divisible by 4.
        num_heads: attention heads.
        depth: number of blocks (one frequency set per block).
        theta: base of the initial frequency magnitudes (only used to initialise).

    ``freqs``: ``[2, depth, dim / 2]`` (x plane, y plane; per layer the heads' ``head_dim / 2``
    frequencies one after the other).
    """

    def __init__(self, dim: int, num_heads: int, depth: int, theta: float = 10.0):
        super().__init__()
        self.num_heads = num_heads
        self.depth = depth
        self.freqs = nn.Parameter(init_mixed_rope_freqs(dim // num_heads, num_heads, depth, theta))

    def forward(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Unit complex rotations ``[depth, num_heads, grid_h * grid_w, head_dim / 2]`` (complex64)."""
        t_x, t_y = grid_coordinates(grid_h, grid_w, device=self.freqs.device)
        n = t_x.shape[0]
        freqs = self.freqs.float()
        # t[:, None] @ f[:, None, :] is a K=1 product: exactly t * f, computed as upstream does it.
        ax = (t_x.unsqueeze(-1) @ freqs[0].unsqueeze(-2)).view(self.depth, n, self.num_heads, -1).permute(0, 2, 1, 3)
        ay = (t_y.unsqueeze(-1) @ freqs[1].unsqueeze(-2)).view(self.depth, n, self.num_heads, -1).permute(0, 2, 1, 3)
        return torch.polar(torch.ones_like(ax), ax + ay)


def apply_rope(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` ``[B, heads, N, head_dim]`` by ``cis`` ``[heads, N, head_dim/2]`` (float32)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * cis.unsqueeze(0)).flatten(3).type_as(x)


class Attention(nn.Module):
    """Multi-head self-attention with an optional rotary embedding on a contiguous token range.

    Shapes: ``x`` ``[B, N, dim]`` -> ``[B, N, dim]``; ``rope`` ``[heads, n, head_dim/2]`` complex,
    applied to tokens ``rope_start : rope_start + n``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Optional[torch.Tensor] = None, rope_start: int = 0) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = (t.contiguous() for t in qkv.unbind(0))
        if rope is not None:
            stop = rope_start + rope.shape[-2]
            q = torch.cat([q[:, :, :rope_start], apply_rope(q[:, :, rope_start:stop], rope), q[:, :, stop:]], dim=2)
            k = torch.cat([k[:, :, :rope_start], apply_rope(k[:, :, rope_start:stop], rope), k[:, :, stop:]], dim=2)
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` (exact-erf GELU). Shapes: ``[..., dim] -> [..., dim]``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm block: ``x + ls1 * attn(norm1(x))``, then ``x + ls2 * mlp(norm2(x))``. Shapes: ``[B, N, dim]``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: Optional[torch.Tensor] = None, rope_start: int = 0) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, rope_start))
        return x + self.ls2(self.mlp(self.norm2(x)))
