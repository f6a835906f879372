"""``comfy.sd.VAE`` subclass around mDiffAE (imported only inside ComfyUI)."""

from __future__ import annotations

import logging

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule


class _DropNoWeightsWarning(logging.Filter):
    """``VAE(sd={})`` logs that it found no weights; that is expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No VAE weights detected" not in record.getMessage()


class MDiffAEVAE(comfy.sd.VAE):
    """A ComfyUI VAE whose model is mDiffAE: the stock VAE Encode/Decode (tiled too) accept it.

    The parent constructor is called with an empty state dict so every attribute this ComfyUI
    version expects gets its default; then the mDiffAE-specific ones are set.
    """

    def __init__(self, module: ComfyMDiffAEModule, dtype: torch.dtype = None):
        log_filter = _DropNoWeightsWarning()
        root = logging.getLogger()
        root.addFilter(log_filter)
        try:
            super().__init__(sd={})
        finally:
            root.removeFilter(log_filter)
        self.first_stage_model = module.eval()
        self.latent_channels = module.latent_channels
        self.downscale_ratio = self.upscale_ratio = module.patch_size
        self.latent_dim = 2
        self.output_channels = 3
        self.working_dtypes = [torch.bfloat16, torch.float32]
        self.disable_offload = True  # plain torch layers: a partial load would leave some on the CPU
        self.memory_used_encode = lambda shape, dtype: module.encode_memory(shape, dtype)
        self.memory_used_decode = lambda shape, dtype: module.decode_memory(shape, dtype)
        self.device = mm.vae_device()
        self.vae_dtype = dtype or mm.vae_dtype(self.device, self.working_dtypes)
        self.output_device = mm.intermediate_device()
        self.first_stage_model.to(self.vae_dtype)
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.first_stage_model, load_device=self.device, offload_device=mm.vae_offload_device()
        )
