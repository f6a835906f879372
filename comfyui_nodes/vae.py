"""``comfy.sd.VAE`` subclass around mDiffAE (imported only inside ComfyUI)."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import comfy.sd
import torch

from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule


class _DropNoWeightsWarning(logging.Filter):
    """``VAE(sd={})`` logs that it found no weights; that is expected here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No VAE weights detected" not in record.getMessage()


def use_comfy_operations(module: torch.nn.Module) -> int:
    """Give every ``nn.Linear``/``nn.Conv2d`` of ``module`` ComfyUI's layer class, in place.

    ``comfy.ops.disable_weight_init`` layers are the same torch layers plus the hooks through which
    ComfyUI's ModelPatcher casts and streams weights per call, as it does for its core VAEs; so
    partial (low-VRAM) loading and offloading work instead of being disabled. Numerics are
    unchanged while every weight sits on the compute device. Returns the number of layers changed.
    """
    swaps = {
        torch.nn.Linear: comfy.ops.disable_weight_init.Linear,
        torch.nn.Conv2d: comfy.ops.disable_weight_init.Conv2d,
    }
    changed = 0
    for m in module.modules():
        target = swaps.get(type(m))
        if target is not None:
            m.__class__ = target
            changed += 1
    return changed


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
        use_comfy_operations(module)
        self.disable_offload = False  # ComfyUI's layers: ModelPatcher may load partially and cast per call
        self.memory_used_encode = lambda shape, dtype: module.encode_memory(shape, dtype)
        self.memory_used_decode = lambda shape, dtype: module.decode_memory(shape, dtype)
        self.device = mm.vae_device()
        self.vae_dtype = dtype or mm.vae_dtype(self.device, self.working_dtypes)
        self.output_device = mm.intermediate_device()
        self.first_stage_model.to(self.vae_dtype)
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.first_stage_model, load_device=self.device, offload_device=mm.vae_offload_device()
        )
