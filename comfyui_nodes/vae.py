"""``comfy.sd.VAE`` subclasses around this package's autoencoders (imported only inside ComfyUI)."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import comfy.sd
import torch

from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule, ComfyTokenizerModule


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


class PackageVAE(comfy.sd.VAE):
    """A ComfyUI VAE around one of this package's ``first_stage_model`` modules.

    The parent constructor is called with an empty state dict so every attribute this ComfyUI
    version expects gets its default; then the model-specific ones are set. The layers become
    ComfyUI's, so ModelPatcher may load the model partially and cast weights per call.
    """

    def __init__(self, module, latent_channels: int, ratio: int, latent_dim: int, memory, dtype=None):
        log_filter = _DropNoWeightsWarning()
        root = logging.getLogger()
        root.addFilter(log_filter)
        try:
            super().__init__(sd={})
        finally:
            root.removeFilter(log_filter)
        self.first_stage_model = module.eval()
        self.latent_channels = latent_channels
        self.downscale_ratio = self.upscale_ratio = ratio
        self.latent_dim = latent_dim
        self.output_channels = 3
        self.working_dtypes = [torch.bfloat16, torch.float32]
        use_comfy_operations(module)
        self.disable_offload = False
        self.memory_used_encode, self.memory_used_decode = memory
        self.device = mm.vae_device()
        self.vae_dtype = dtype or mm.vae_dtype(self.device, self.working_dtypes)
        self.output_device = mm.intermediate_device()
        self.first_stage_model.to(self.vae_dtype)
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.first_stage_model, load_device=self.device, offload_device=mm.vae_offload_device()
        )


class MDiffAEVAE(PackageVAE):
    """A ComfyUI VAE whose model is mDiffAE: the stock VAE Encode/Decode (tiled too) accept it."""

    def __init__(self, module: ComfyMDiffAEModule, dtype: torch.dtype = None):
        memory = (
            lambda shape, dtype: module.encode_memory(shape, dtype),
            lambda shape, dtype: module.decode_memory(shape, dtype),
        )
        super().__init__(module, module.latent_channels, module.patch_size, 2, memory, dtype)


class TokenizerVAE(PackageVAE):
    """A ComfyUI VAE around MAETok / SoftVQ-VAE (1-D tokens) or LDMAE's VMAE (spatial, fixed size).

    The stock VAE Encode/Decode nodes work at the model's image size; the tiled ones are refused
    with a sentence: every latent describes the whole image (tokens) or a position learned for the
    whole fixed-size image (VMAE), so tiles would be decoded as if each were a full picture.
    """

    def __init__(self, module: ComfyTokenizerModule, dtype: torch.dtype = None):
        def memory(shape, dtype):  # encode and decode hold the same two ViTs' activations
            return module.memory(shape[0], dtype)

        latent_dim = 1 if module.tokens else 2
        super().__init__(module, module.latent_channels, module.downscale, latent_dim, (memory, memory), dtype)
        self.crop_input = False  # a wrong size is refused with the size to use, not silently cropped

    def _no_tiles(self, *args, **kwargs):
        module = self.first_stage_model
        what = "1-D latent tokens that each describe the whole image" if module.tokens else "a fixed-size latent"
        raise ValueError(
            f"{module.family} cannot encode or decode in tiles: it has {what} "
            f"({module.image_size}x{module.image_size} images); use the plain VAE Encode / VAE Decode nodes"
        )

    encode_tiled = decode_tiled = _no_tiles
    encode_tiled_ = decode_tiled_ = encode_tiled_1d = decode_tiled_1d = _no_tiles
