"""Deterministic patch-16 convolutional encoder."""

from __future__ import annotations

import torch
from torch import nn

from .dico_blocks import DiCoBlock
from .embeddings import Patchify
from .norms import ChannelWiseRMSNorm


class MDiffAEEncoder(nn.Module):
    """Patchify -> affine RMSNorm -> DiCo blocks (learned gates) -> 1x1 bottleneck -> RMSNorm.

    The output latents have unit RMS over channels at every position.

    Shapes: images ``[B, in_channels, H, W]`` in [-1, 1] -> latents ``[B, latent_channels, H/p, W/p]``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        patch_size: int = 16,
        model_dim: int = 896,
        depth: int = 4,
        latent_channels: int = 64,
        mlp_ratio: float = 4.0,
        depthwise_kernel_size: int = 7,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.patchify = Patchify(in_channels, patch_size, model_dim)
        self.norm_in = ChannelWiseRMSNorm(model_dim, eps=norm_eps, affine=True)
        self.blocks = nn.ModuleList(
            DiCoBlock(model_dim, mlp_ratio, depthwise_kernel_size=depthwise_kernel_size, norm_eps=norm_eps)
            for _ in range(depth)
        )
        self.to_bottleneck = nn.Conv2d(model_dim, latent_channels, 1)
        self.norm_out = ChannelWiseRMSNorm(latent_channels, eps=norm_eps, affine=False)
        self.gradient_checkpointing = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Channels-last activations keep every 1x1 convolution a plain [HW, C] x [C, C'] matrix
        # multiply for oneDNN (about 13 % faster on CPU, more with channels-last weights).
        h = self.norm_in(self.patchify(images)).contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                h = self._gradient_checkpointing_func(block, h)
            else:
                h = block(h)
        return self.norm_out(self.to_bottleneck(h))
