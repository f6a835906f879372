"""VP-diffusion decoder: predicts the clean image from ``x_t``, ``t`` and the latents."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .adaln import AdaLNZeroLowRankDelta, AdaLNZeroProjector
from .dico_blocks import DiCoBlock
from .embeddings import Patchify, SinusoidalTimeEmbeddingMLP, Unpatchify
from .norms import ChannelWiseRMSNorm

PDG_MODES = ("token_mask", "path_drop", "dual")


class MDiffAEDecoder(nn.Module):
    """x-prediction decoder conditioned on latents (by 1x1 up-projection and fusion) and on time.

    Topology is set by ``start_blocks``/``end_blocks``: both 0 gives mDiffAE v1's flat stack of
    ``depth`` blocks; otherwise ``start`` -> ``middle`` -> skip-fuse(cat[start, middle]) -> ``end``
    (mDiffAE v2 / iRDiffAE, 2 + 4 + 2), where the middle output can be replaced by a learned
    ``path_drop_mask_feature`` for path-drop guidance.

    The unconditional branch of path-drop guidance (PDG) is selected by ``pdg_mode``:
    ``"token_mask"`` replaces the latent tokens outside a keep-mask with ``mask_feature`` (v1),
    ``"path_drop"`` drops the middle blocks, ``"dual"`` does both (v2).

    With ``outer_norms`` (v1), affine RMSNorms sit on the incoming latent (``latent_norm``), on the
    patchified ``x_t`` (``norm_in``), after the input fuse (``fuse_norm``) and before the output head
    (``norm_out``). These four plus ``mask_feature`` are the 6,400 parameters by which mdiffae_v1
    exceeds the sum of its large layers (spec section 7, reading "B"); their placement is this
    package's choice and the converter's ``--verify`` checks it against the original code.
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
        adaln_rank: int = 128,
        start_blocks: int = 0,
        end_blocks: int = 0,
        outer_norms: bool = True,
        pdg_mode: str = "token_mask",
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if pdg_mode not in PDG_MODES:
            raise ValueError(f"pdg_mode must be one of {PDG_MODES}, got {pdg_mode!r}")
        self.skip = start_blocks > 0 or end_blocks > 0
        if self.skip and depth - start_blocks - end_blocks < 1:
            raise ValueError(
                f"decoder depth {depth} leaves no middle block after {start_blocks} start and {end_blocks} end blocks"
            )
        if pdg_mode in ("path_drop", "dual") and not self.skip:
            raise ValueError("path-drop guidance needs a skip decoder (start_blocks/end_blocks > 0)")
        self.pdg_mode = pdg_mode
        self.start_blocks = start_blocks
        self.end_blocks = end_blocks

        def norm(c):
            return ChannelWiseRMSNorm(c, eps=norm_eps, affine=True) if outer_norms else nn.Identity()

        self.patchify = Patchify(in_channels, patch_size, model_dim)
        self.norm_in = norm(model_dim)
        self.latent_norm = norm(latent_channels)
        self.latent_up = nn.Conv2d(latent_channels, model_dim, 1)
        if pdg_mode in ("token_mask", "dual"):
            self.mask_feature = nn.Parameter(torch.zeros(1, model_dim, 1, 1))
        else:
            self.register_parameter("mask_feature", None)
        self.fuse = nn.Conv2d(2 * model_dim, model_dim, 1)
        self.fuse_norm = norm(model_dim)
        self.time_embed = SinusoidalTimeEmbeddingMLP(model_dim)
        self.adaln_base = AdaLNZeroProjector(model_dim, model_dim)
        self.adaln_deltas = nn.ModuleList(
            AdaLNZeroLowRankDelta(d_model=model_dim, d_cond=model_dim, rank=adaln_rank) for _ in range(depth)
        )
        self.blocks = nn.ModuleList(
            DiCoBlock(
                model_dim, mlp_ratio, depthwise_kernel_size=depthwise_kernel_size,
                use_external_adaln=True, norm_eps=norm_eps,
            )
            for _ in range(depth)
        )
        if self.skip:
            self.skip_fuse = nn.Conv2d(2 * model_dim, model_dim, 1)
            self.path_drop_mask_feature = (
                nn.Parameter(torch.zeros(1, model_dim, 1, 1)) if pdg_mode in ("path_drop", "dual") else None
            )
        self.norm_out = norm(model_dim)
        self.unpatchify = Unpatchify(model_dim, patch_size, in_channels)
        self.gradient_checkpointing = False

    def condition_tokens(self, latents: torch.Tensor, keep_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Latent tokens ``[B, C, h, w]`` for the input fuse; constant across sampling steps.

        ``keep_mask`` (bool ``[B, 1, h, w]``, True = keep) replaces the other tokens by
        ``mask_feature``: training's masking regulariser and the unconditional PDG branch.
        """
        z = self.latent_up(self.latent_norm(latents)).contiguous(memory_format=torch.channels_last)
        if keep_mask is not None:
            if self.mask_feature is None:
                raise ValueError(f"token masking is not available with pdg_mode={self.pdg_mode!r}")
            z = torch.where(keep_mask, z, self.mask_feature.to(z.dtype))
        return z

    def _run(self, block: nn.Module, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, h, m)
        return block(h, m)

    def denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, cond_tokens: torch.Tensor, drop_middle: bool = False
    ) -> torch.Tensor:
        """Predict ``x_0`` ``[B, 3, H, W]`` from ``x_t`` ``[B, 3, H, W]``, ``t`` ``[B]`` and tokens."""
        x_tok = self.norm_in(self.patchify(x_t)).contiguous(memory_format=torch.channels_last)
        h = self.fuse(torch.cat([x_tok, cond_tokens.contiguous(memory_format=torch.channels_last)], dim=1))
        h = self.fuse_norm(h)
        a = torch.nn.functional.silu(self.time_embed(t, dtype=h.dtype))
        base = self.adaln_base(a)
        mods = [base + delta(a) for delta in self.adaln_deltas]
        if not self.skip:
            for block, m in zip(self.blocks, mods):
                h = self._run(block, h, m)
        else:
            n_mid_end = len(self.blocks) - self.end_blocks
            for i in range(self.start_blocks):
                h = self._run(self.blocks[i], h, mods[i])
            skip = h
            if drop_middle:
                h = self.path_drop_mask_feature.to(h.dtype).expand_as(h)
            else:
                for i in range(self.start_blocks, n_mid_end):
                    h = self._run(self.blocks[i], h, mods[i])
            h = self.skip_fuse(torch.cat([skip, h], dim=1))
            for i in range(n_mid_end, len(self.blocks)):
                h = self._run(self.blocks[i], h, mods[i])
        return self.unpatchify(self.norm_out(h))

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        latents: torch.Tensor,
        *,
        keep_mask: Optional[torch.Tensor] = None,
        drop_middle: bool = False,
    ) -> torch.Tensor:
        """One decoder call (the original ``decoder_forward(x_t, t, latents)`` protocol).

        Shapes: ``x_t [B, 3, H, W]``, ``t [B]`` in [0, 1], ``latents [B, latent_channels, H/p, W/p]``
        -> ``x0_hat [B, 3, H, W]``.
        """
        return self.denoise(x_t, t, self.condition_tokens(latents, keep_mask), drop_middle=drop_middle)
