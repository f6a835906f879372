"""mDiffAE nodes (ComfyUI V3 schema). Thin: the work is done by ``diffusers_mdiffae``."""

from __future__ import annotations

import os
from typing import List

import torch
from comfy_api.latest import ComfyExtension, io

import comfy.model_management as mm
import comfy.utils
import folder_paths

import diffusers_mdiffae
from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule, image_to_model, load_any
from diffusers_mdiffae.latent_pca import latent_pca_rgb

from .vae import MDiffAEVAE

CATEGORY = "latent/mdiffae"
DEMO_CHOICE = "(bundled demo checkpoint)"
FOLDERS = ("mdiffae", "vae")
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def register_model_folder() -> None:
    """Add ``models/mdiffae`` (any file type: diffusers folders hold .json and .safetensors)."""
    if "mdiffae" not in folder_paths.folder_names_and_paths:
        path = os.path.join(folder_paths.models_dir, "mdiffae")
        folder_paths.folder_names_and_paths["mdiffae"] = ([path], {".safetensors", ".sft"})


def checkpoint_choices() -> List[str]:
    """Weights files under the ``mdiffae`` and ``vae`` model folders, as ``folder/relative path``."""
    register_model_folder()
    choices = [DEMO_CHOICE] if (diffusers_mdiffae.DEMO_MODEL_DIR / "config.json").is_file() else []
    for folder in FOLDERS:
        choices += [f"{folder}/{name}" for name in folder_paths.get_filename_list(folder)
                    if name.endswith((".safetensors", ".sft"))]
    return choices


def resolve_checkpoint(choice: str) -> str:
    if choice == DEMO_CHOICE:
        return str(diffusers_mdiffae.DEMO_MODEL_DIR)
    register_model_folder()
    folder, _, name = choice.partition("/")
    if folder not in FOLDERS or not name:
        raise ValueError(f"unknown checkpoint choice {choice!r}")
    return folder_paths.get_full_path_or_raise(folder, name)


def require_mdiffae(vae) -> MDiffAEVAE:
    if not isinstance(vae, MDiffAEVAE):
        raise ValueError(
            f"this node needs a VAE from the MDiffAE Loader node, got {type(vae).__name__}; "
            "use the stock VAE Decode/Encode nodes for other VAEs"
        )
    return vae


class MDiffAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDiffAELoader",
            display_name="MDiffAE Loader",
            category=CATEGORY,
            description="Load an mDiffAE autoencoder as a VAE for the stock VAE Encode/Decode nodes (tiled too). "
                        "Reads models/mdiffae and models/vae: a diffusers folder (config.json + weights) or a "
                        "published mdiffae snapshot (converted on load). Steps, PDG and seed are the defaults "
                        "the stock nodes decode with.",
            inputs=[
                io.Combo.Input("checkpoint", options=checkpoint_choices()),
                io.Int.Input("steps", default=1, min=1, max=100, tooltip="DDIM steps; 1 is PSNR-optimal"),
                io.Float.Input("pdg_strength", default=1.0, min=0.0, max=5.0, step=0.01,
                               tooltip="path-drop guidance strength for multi-step decodes; 1.0 = off"),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=False),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto"),
            ],
            outputs=[io.Vae.Output()],
        )

    @classmethod
    def execute(cls, checkpoint, steps, pdg_strength, seed, dtype) -> io.NodeOutput:
        path = resolve_checkpoint(checkpoint)
        vae_dtype = DTYPES[dtype]
        model = load_any(path, torch_dtype=vae_dtype or torch.float32)
        module = ComfyMDiffAEModule(model, steps=steps, pdg_strength=pdg_strength, seed=seed % (2**63))
        return io.NodeOutput(MDiffAEVAE(module, dtype=vae_dtype))


class MDiffAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDiffAEEncode",
            display_name="MDiffAE Encode",
            category=CATEGORY,
            description="Encode images to 64-channel latents at 1/16 resolution. Unlike the stock node, sizes "
                        "that are not multiples of 16 are refused instead of cropped.",
            inputs=[io.Image.Input("pixels"), io.Vae.Input("vae")],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, pixels, vae) -> io.NodeOutput:
        vae = require_mdiffae(vae)
        p = vae.downscale_ratio
        h, w = pixels.shape[1:3]
        if h % p or w % p:
            raise ValueError(
                f"image is {w}x{h}; mDiffAE needs width and height that are multiples of {p}: "
                f"scale or crop it (e.g. ImageScale to {max(w // p, 1) * p}x{max(h // p, 1) * p}), "
                "or use the stock VAE Encode node, which crops"
            )
        image_to_model(pixels)  # validates the layout with a clear message
        return io.NodeOutput({"samples": vae.encode(pixels[..., :3])})


class MDiffAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDiffAEDecode",
            display_name="MDiffAE Decode",
            category=CATEGORY,
            description="Decode mDiffAE latents with explicit steps, path-drop guidance and seed. Every sample "
                        "is seeded alone, so batch splitting does not change results. Cancellable between steps.",
            inputs=[
                io.Latent.Input("samples"),
                io.Vae.Input("vae"),
                io.Int.Input("steps", default=1, min=1, max=100),
                io.Float.Input("pdg_strength", default=1.0, min=0.0, max=5.0, step=0.01),
                io.Int.Input("seed", default=0, min=0, max=SEED_MAX, control_after_generate=True),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, samples, vae, steps, pdg_strength, seed) -> io.NodeOutput:
        vae = require_mdiffae(vae)
        z = samples["samples"]
        if z.ndim != 4 or z.shape[1] != vae.latent_channels:
            raise ValueError(
                f"latent has shape {tuple(z.shape)}; this VAE decodes [B, {vae.latent_channels}, h, w] latents "
                "(from MDiffAE Encode or a model trained on mDiffAE latents)"
            )
        bar = comfy.utils.ProgressBar(steps)

        def on_step(step: int, total: int) -> None:
            bar.update_absolute(step, total)
            mm.throw_exception_if_processing_interrupted()

        options = {"steps": steps, "pdg_strength": pdg_strength, "seed": seed % (2**63), "callback": on_step}
        return io.NodeOutput(vae.decode(z, vae_options=options))


class MDiffAELatentPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDiffAELatentPreview",
            display_name="MDiffAE Latent Preview (PCA)",
            category=CATEGORY,
            description="Show a latent as an image: its first three principal components as R, G, B.",
            inputs=[io.Latent.Input("samples"), io.Int.Input("upscale", default=16, min=1, max=64)],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, samples, upscale) -> io.NodeOutput:
        rgb = latent_pca_rgb(samples["samples"])
        rgb = torch.nn.functional.interpolate(rgb, scale_factor=upscale, mode="nearest")
        return io.NodeOutput(rgb.movedim(1, -1).contiguous())


class MDiffAEEmptyLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDiffAEEmptyLatent",
            display_name="MDiffAE Empty Latent",
            category=CATEGORY,
            description="Zeros shaped like mDiffAE latents (64 channels at 1/16); the stock Empty Latent "
                        "Image is 4 channels at 1/8.",
            inputs=[
                io.Int.Input("width", default=512, min=16, max=16384, step=16),
                io.Int.Input("height", default=512, min=16, max=16384, step=16),
                io.Int.Input("batch_size", default=1, min=1, max=4096),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, width, height, batch_size) -> io.NodeOutput:
        z = torch.zeros(batch_size, 64, height // 16, width // 16, device=mm.intermediate_device())
        return io.NodeOutput({"samples": z})


NODES = [MDiffAELoader, MDiffAEEncode, MDiffAEDecode, MDiffAELatentPreview, MDiffAEEmptyLatent]


class MDiffAEExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> ComfyExtension:
    register_model_folder()
    return MDiffAEExtension()
