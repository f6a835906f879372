"""Encoder, decoder and soft quantiser of the 1-D latent-token tokenizers (MAETok, SoftVQ-VAE).

Token order inside both ViTs: ``[cls, N image tokens, L latent tokens]`` with ``N = (S / p)**2``
for image size ``S`` and patch ``p``. The encoder reads the image tokens and returns the last ``L``
(latent) states; the decoder starts from ``N`` copies of a learned mask token, attends to the ``L``
latent tokens and turns the image-token states back into patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vit_blocks import MixedRoPE2D, PatchEmbed, ViTBlock


class _LatentTokenViT(nn.Module):
    """Shared parts: class token, latent position table, optional mixed RoPE, blocks, final norm."""

    def __init__(
        self,
        grid: int,
        dim: int,
        depth: int,
        num_heads: int,
        num_latent_tokens: int,
        mlp_ratio: float,
        norm_eps: float,
        use_rope: bool,
        rope_theta: float,
    ):
        super().__init__()
        self.grid = grid
        self.num_latent_tokens = num_latent_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.latent_pos_embed = nn.Parameter(torch.zeros(1, num_latent_tokens, dim))
        self.rope = MixedRoPE2D(dim, num_heads, depth, rope_theta) if use_rope else None
        self.blocks = nn.ModuleList(ViTBlock(dim, num_heads, mlp_ratio, norm_eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.gradient_checkpointing = False
        for p in (self.cls_token, self.latent_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Blocks then the final norm; RoPE (if any) rotates the image tokens ``1 : 1 + N``."""
        cis = self.rope(self.grid, self.grid) if self.rope is not None else None
        for i, block in enumerate(self.blocks):
            rope = cis[i] if cis is not None else None
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, rope, 1)
            else:
                x = block(x, rope, 1)
        return self.norm(x)


class LatentTokenEncoder(_LatentTokenViT):
    """Images ``[B, in_channels, S, S]`` -> latent-token states ``[B, L, dim]`` (after the final LayerNorm).

    The absolute position table ``pos_embed`` ``[1, 1 + N, dim]`` (covering the class token) is
    always added, also when the blocks use RoPE, as in the published encoder.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        num_latent_tokens: int,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        use_rope: bool = False,
        rope_theta: float = 10.0,
        in_channels: int = 3,
    ):
        grid = image_size // patch_size
        super().__init__(grid, dim, depth, num_heads, num_latent_tokens, mlp_ratio, norm_eps, use_rope, rope_theta)
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.latent_tokens = nn.Parameter(torch.zeros(1, num_latent_tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.latent_tokens, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embed
        x = torch.cat([x, self.latent_tokens.expand(b, -1, -1) + self.latent_pos_embed], dim=1)
        return self.run_blocks(x)[:, -self.num_latent_tokens :]


class LatentTokenDecoder(_LatentTokenViT):
    """Latent-token states ``[B, L, dim]`` (after ``post_quant_conv``) -> images ``[B, 3, S, S]``, unclamped.

    Query tokens are ``N`` copies of ``mask_token``; ``pos_embed`` exists only with absolute position
    embeddings (with RoPE the published decoder adds none). Output head: a Linear to ``3 * p * p``
    per image token, unpatchified with channels last within each patch.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        num_latent_tokens: int,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        use_rope: bool = False,
        rope_theta: float = 10.0,
        out_channels: int = 3,
    ):
        grid = image_size // patch_size
        super().__init__(grid, dim, depth, num_heads, num_latent_tokens, mlp_ratio, norm_eps, use_rope, rope_theta)
        self.patch_size = patch_size
        self.out_channels = out_channels
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        if use_rope:
            self.register_parameter("pos_embed", None)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.to_pixel = nn.Linear(dim, out_channels * patch_size * patch_size)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, g, p = z.shape[0], self.grid, self.patch_size
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.mask_token.expand(b, g * g, -1)], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = torch.cat([x, z + self.latent_pos_embed], dim=1)
        x = self.to_pixel(self.run_blocks(x)[:, 1 : 1 + g * g])
        x = x.reshape(b, g, g, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, self.out_channels, g * p, g * p)


class SoftVectorQuantizer(nn.Module):
    """SoftVQ bottleneck: each token becomes a softmax-weighted mix of its codebook's entries.

    Tokens are split into ``num_codebooks`` contiguous groups along the token axis (token ``t`` uses
    codebook ``t // (L / num_codebooks)``). With ``l2_norm`` both the tokens and the codebook rows are
    L2-normalised, so the logits are cosine similarities and ``|z_q| <= 1``. Deterministic.

    Args:
        codebook_size: entries per codebook.
        dim: token width.
        num_codebooks: codebooks (must divide the token count).
        tau: softmax temperature.
        l2_norm: normalise tokens and codebook rows.

    ``embedding``: ``[num_codebooks, codebook_size, dim]``. Shapes: ``[B, L, dim] -> [B, L, dim]``.
    """

    def __init__(self, codebook_size: int, dim: int, num_codebooks: int = 1, tau: float = 0.07, l2_norm: bool = True):
        super().__init__()
        self.num_codebooks = num_codebooks
        self.tau = tau
        self.l2_norm = l2_norm
        self.embedding = nn.Parameter(torch.empty(num_codebooks, codebook_size, dim).uniform_(-1, 1) / codebook_size)

    def codebooks(self) -> torch.Tensor:
        """The codebooks as used (normalised rows with ``l2_norm``), ``[num_codebooks, codebook_size, dim]``."""
        return F.normalize(self.embedding, p=2, dim=-1) if self.l2_norm else self.embedding

    def probabilities(self, z: torch.Tensor) -> torch.Tensor:
        """Codebook weights ``[num_codebooks, B * L / num_codebooks, codebook_size]`` (group-major)."""
        b, n, d = z.shape
        k = self.num_codebooks
        groups = z.reshape(b, k, n // k, d)
        if self.l2_norm:
            groups = F.normalize(groups, p=2, dim=-1)
        flat = groups.permute(1, 0, 2, 3).reshape(k, b * (n // k), d)
        return torch.softmax(torch.bmm(flat, self.codebooks().transpose(1, 2)) / self.tau, dim=-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, n, d = z.shape
        k = self.num_codebooks
        z_q = torch.bmm(self.probabilities(z), self.codebooks())
        return z_q.reshape(k, b, n // k, d).permute(1, 0, 2, 3).reshape(b, n, d)
