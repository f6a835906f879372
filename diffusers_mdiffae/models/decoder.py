"""VP-diffusion decoder of the family: predicts the clean image from ``x_t``, ``t`` and the latents."""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .adaln import AdaLNZeroLowRankDelta, AdaLNZeroProjector
from .embeddings import Patchify, SinusoidalTimeEmbeddingMLP
from .encoder import BLOCK_TYPES
from .norms import ChannelWiseRMSNorm

PDG_MODES = ("token_mask", "path_drop", "dual")
_CHUNKS = {"dico": 4, "fcdm": 2}


class Decoder(nn.Module):
    """x-prediction decoder conditioned on latents (1x1 up-projection, fused with the ``x_t`` patches) and on time.

    ``patchify(x_t)`` and ``latent_up(z)`` are concatenated and fused by ``fuse_in``; the blocks are
    modulated by a shared AdaLN projection of the time embedding plus a low-rank delta per block;
    ``out_proj`` and a pixel shuffle return to pixels. Topology:

    * flat (``start_blocks = end_blocks = 0``, mDiffAE v1): ``blocks``;
    * skip-concat (mDiffAE v2, iRDiffAE, SemDisDiffAE, 2 + 4 + 2): ``start_blocks`` ->
      ``middle_blocks`` -> ``fuse_skip(cat[start, middle])`` -> ``end_blocks``.

    The degraded branch of path-drop guidance (PDG) is chosen by ``pdg_mode``: ``"token_mask"``
    replaces the up-projected latent tokens outside a keep-mask by a learned feature (v1:
    ``mask_feature``), ``"path_drop"`` replaces the middle blocks' output by
    ``path_drop_mask_feature`` (iRDiffAE, SemDisDiffAE), ``"dual"`` has both (v2, whose token
    feature is ``latent_mask_feature``).

    ``outer_norms`` adds the affine RMSNorms the v2 docstring says v1 had and v2 dropped: ``norm_in``
    on the ``x_t`` patches, ``latent_norm`` on the up-projected latent tokens, ``norm_out`` before
    ``out_proj``. Their placement is a reading (README, "Evidence"); the names are the published ones.
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
        adaln_low_rank_rank: int = 128,
        start_blocks: int = 0,
        end_blocks: int = 0,
        block_type: str = "dico",
        outer_norms: bool = True,
        pdg_mode: str = "token_mask",
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {sorted(BLOCK_TYPES)}, got {block_type!r}")
        if pdg_mode not in PDG_MODES:
            raise ValueError(f"pdg_mode must be one of {PDG_MODES}, got {pdg_mode!r}")
        self.skip = start_blocks > 0 or end_blocks > 0
        if self.skip and depth - start_blocks - end_blocks < 1:
            raise ValueError(
                f"decoder depth {depth} leaves no middle block after {start_blocks} start and {end_blocks} end blocks"
            )
        if pdg_mode in ("path_drop", "dual") and not self.skip:
            raise ValueError("path-drop guidance needs a skip decoder (decoder_start_blocks/decoder_end_blocks > 0)")
        self.pdg_mode = pdg_mode
        self.patch_size = patch_size
        n_chunks = _CHUNKS[block_type]

        def norm(c):
            return ChannelWiseRMSNorm(c, eps=norm_eps, affine=True) if outer_norms else None

        def blocks(n):
            return nn.ModuleList(
                BLOCK_TYPES[block_type](
                    model_dim,
                    mlp_ratio,
                    depthwise_kernel_size=depthwise_kernel_size,
                    use_external_adaln=True,
                    norm_eps=norm_eps,
                )
                for _ in range(n)
            )

        self.patchify = Patchify(in_channels, patch_size, model_dim)
        self.norm_in = norm(model_dim)
        self.latent_up = nn.Conv2d(latent_channels, model_dim, 1)
        self.latent_norm = norm(model_dim)
        # v1 names its token feature "mask_feature" (config comment), v2 "latent_mask_feature".
        self._token_feature_name = {"token_mask": "mask_feature", "dual": "latent_mask_feature"}.get(pdg_mode)
        if self._token_feature_name:
            self.register_parameter(self._token_feature_name, nn.Parameter(torch.zeros(1, model_dim, 1, 1)))
        self.fuse_in = nn.Conv2d(2 * model_dim, model_dim, 1)
        self.time_embed = SinusoidalTimeEmbeddingMLP(model_dim)
        self.adaln_base = AdaLNZeroProjector(model_dim, model_dim, n_chunks)
        self.adaln_deltas = nn.ModuleList(
            AdaLNZeroLowRankDelta(model_dim, model_dim, adaln_low_rank_rank, n_chunks) for _ in range(depth)
        )
        if self.skip:
            self.start_blocks = blocks(start_blocks)
            self.middle_blocks = blocks(depth - start_blocks - end_blocks)
            self.fuse_skip = nn.Conv2d(2 * model_dim, model_dim, 1)
            self.end_blocks = blocks(end_blocks)
            if pdg_mode in ("path_drop", "dual"):
                self.path_drop_mask_feature = nn.Parameter(torch.zeros(1, model_dim, 1, 1))
        else:
            self.blocks = blocks(depth)
        self.norm_out = norm(model_dim)
        self.out_proj = nn.Conv2d(model_dim, in_channels * patch_size * patch_size, 1)
        self.unpatchify = nn.PixelShuffle(patch_size)
        self.gradient_checkpointing = False
        # Activation layout; the autoencoder's use_channels_last() sets it with the weights'.
        self.memory_format = torch.channels_last

    @property
    def token_mask_feature(self) -> Optional[nn.Parameter]:
        """The learned feature that replaces masked latent tokens (None without token-mask PDG)."""
        return getattr(self, self._token_feature_name) if self._token_feature_name else None

    @property
    def uses_token_mask(self) -> bool:
        return self.pdg_mode in ("token_mask", "dual")

    @property
    def uses_path_drop(self) -> bool:
        return self.pdg_mode in ("path_drop", "dual")

    def condition_tokens(self, latents: torch.Tensor, keep_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Latent tokens ``[B, C, h, w]`` for the input fuse; constant across sampling steps.

        ``keep_mask`` (bool ``[B, 1, h, w]``, True = keep) replaces the other tokens by the token-mask
        feature: training's masking regulariser and the degraded branch of token-mask PDG.
        """
        z = self.latent_up(latents)
        if self.latent_norm is not None:
            z = self.latent_norm(z)
        z = z.contiguous(memory_format=self.memory_format)
        if keep_mask is not None:
            feature = self.token_mask_feature
            if feature is None:
                raise ValueError(f"token masking is not available with pdg_mode={self.pdg_mode!r}")
            z = torch.where(keep_mask, z, feature.to(z.dtype))
        return z

    def _run(self, blocks: nn.ModuleList, h: torch.Tensor, mods: List[torch.Tensor]) -> torch.Tensor:
        for block, m in zip(blocks, mods):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                h = self._gradient_checkpointing_func(block, h, m)
            else:
                h = block(h, m)
        return h

    def denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, cond_tokens: torch.Tensor, drop_middle_blocks: bool = False
    ) -> torch.Tensor:
        """Predict ``x_0`` ``[B, 3, H, W]`` from ``x_t`` ``[B, 3, H, W]``, ``t`` ``[B]`` and latent tokens."""
        x = self.patchify(x_t)
        if self.norm_in is not None:
            x = self.norm_in(x)
        x = x.contiguous(memory_format=self.memory_format)
        h = self.fuse_in(torch.cat([x, cond_tokens.contiguous(memory_format=self.memory_format)], dim=1))
        a = F.silu(self.time_embed(t, dtype=h.dtype))
        base = self.adaln_base(a)
        mods = [base + delta(a) for delta in self.adaln_deltas]
        if not self.skip:
            h = self._run(self.blocks, h, mods)
        else:
            n_start, n_mid = len(self.start_blocks), len(self.middle_blocks)
            start = self._run(self.start_blocks, h, mods[:n_start])
            if drop_middle_blocks:
                if not self.uses_path_drop:
                    raise ValueError(f"path drop is not available with pdg_mode={self.pdg_mode!r}")
                middle = self.path_drop_mask_feature.to(start.dtype).expand_as(start)
            else:
                middle = self._run(self.middle_blocks, start, mods[n_start : n_start + n_mid])
            h = self.fuse_skip(torch.cat([start, middle], dim=1))
            h = self._run(self.end_blocks, h, mods[n_start + n_mid :])
        if self.norm_out is not None:
            h = self.norm_out(h)
        return self.unpatchify(self.out_proj(h))

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        latents: torch.Tensor,
        *,
        keep_mask: Optional[torch.Tensor] = None,
        drop_middle_blocks: bool = False,
    ) -> torch.Tensor:
        """One decoder call (the published ``decoder(x_t, t, latents, drop_middle_blocks=...)`` protocol).

        Shapes: ``x_t [B, 3, H, W]``, ``t [B]`` in [0, 1], ``latents [B, latent_channels, H/p, W/p]``
        -> ``x0_hat [B, 3, H, W]``.
        """
        return self.denoise(x_t, t, self.condition_tokens(latents, keep_mask), drop_middle_blocks)
