"""mDiffAE-family nodes (ComfyUI V3 schema). Thin: the work is done by ``diffusers_mdiffae``.

Every node checks its widget values against its own schema before any work, twice: in
``validate_inputs`` (ComfyUI calls it when the prompt is queued, so the error shows on the node
before anything runs) and again at the start of ``execute`` (for callers that skip validation).
Both use :func:`input_problems`.

How ComfyUI 0.3.64 calls a V3 ``validate_inputs`` (``execution.validate_inputs``): only when the
class overrides it; with only the inputs its signature names (hence one keyword per widget, each
defaulting to None); a linked input arrives as None (its value is not known yet); ComfyUI skips its
own min/max check for every input named there (so the numbers are checked here); V3 combos get no
check at all from ComfyUI (their type is "COMBO", not a list). A returned string becomes one
"custom_validation_failed" error per named input present, each prefixed with that input's name, so
the message names the offending input itself.
"""

from __future__ import annotations

import os
from typing import List, Optional

import comfy.model_management as mm
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import ComfyExtension, io

import diffusers_mdiffae
from diffusers_mdiffae.comfy_bridge import (
    SAMPLER_NAMES,
    SCHEDULE_NAMES,
    TOKENIZER_KINDS,
    ComfyMDiffAEModule,
    ComfyTokenizerModule,
    InputSpec,
    NotAnMDiffAECheckpoint,
    NotATokenizerCheckpoint,
    check_values,
    describe_checkpoint,
    image_to_model,
    load_any,
    load_tokenizer,
    tokenizer_class_name,
)
from diffusers_mdiffae.latent_pca import latent_pca_rgb

from .vae import MDiffAEVAE, TokenizerVAE

CATEGORY = "latent/mdiffae"
DEMO_CHOICE = "(bundled demo checkpoint)"
FOLDERS = ("mdiffae", "vae")
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SEED_MAX = 0xFFFFFFFFFFFFFFFF
WEIGHT_SUFFIXES = (".safetensors", ".sft")
TOKENIZER_FOLDER = "tokenizers"
TOKENIZER_SUFFIXES = WEIGHT_SUFFIXES + (".pth", ".pt")


def register_model_folder() -> None:
    """Add ``models/mdiffae`` (single .safetensors files, or diffusers/snapshot folders inside it) and
    ``models/tokenizers`` (MAETok / SoftVQ-VAE folders, LDMAE VMAE ``.pth`` files)."""
    for name, suffixes in (("mdiffae", WEIGHT_SUFFIXES), (TOKENIZER_FOLDER, TOKENIZER_SUFFIXES)):
        if name not in folder_paths.folder_names_and_paths:
            path = os.path.join(folder_paths.models_dir, name)
            folder_paths.folder_names_and_paths[name] = ([path], set(suffixes))


def tokenizer_choices() -> List[str]:
    """Weights files under ``models/tokenizers`` (a folder's weights file stands for its folder)."""
    register_model_folder()
    names = folder_paths.get_filename_list(TOKENIZER_FOLDER)
    return [n for n in names if n.endswith(TOKENIZER_SUFFIXES)]


def checkpoint_choices() -> List[str]:
    """Weights files under the ``mdiffae`` and ``vae`` model folders, as ``folder/relative path``."""
    register_model_folder()
    choices = [DEMO_CHOICE] if (diffusers_mdiffae.DEMO_MODEL_DIR / "config.json").is_file() else []
    for folder in FOLDERS:
        choices += [
            f"{folder}/{name}" for name in folder_paths.get_filename_list(folder) if name.endswith(WEIGHT_SUFFIXES)
        ]
    return choices


def resolve_checkpoint(choice: str) -> str:
    if choice == DEMO_CHOICE:
        return str(diffusers_mdiffae.DEMO_MODEL_DIR)
    register_model_folder()
    folder, _, name = choice.partition("/")
    if folder not in FOLDERS or not name:
        raise ValueError(f"checkpoint {choice!r} is not a file in models/mdiffae or models/vae")
    return folder_paths.get_full_path_or_raise(folder, name)


def require_mdiffae(vae) -> MDiffAEVAE:
    if not isinstance(vae, MDiffAEVAE):
        raise ValueError(
            f"this node needs a VAE from the MDiffAE Loader node, got {type(vae).__name__}; "
            "use the stock VAE Decode/Encode nodes for other VAEs"
        )
    return vae


# -- input checks (one helper for validate_inputs and execute) ------------------------------------


def widget_specs(node_cls) -> List[InputSpec]:
    """The node's number and choice inputs with their declared ranges and choices."""
    specs = []
    for inp in node_cls.define_schema().inputs:
        if isinstance(inp, io.Combo.Input):
            specs.append(InputSpec(inp.id, "COMBO", options=tuple(inp.options or ())))
        elif isinstance(inp, io.Int.Input):
            specs.append(InputSpec(inp.id, "INT", min=inp.min, max=inp.max))
        elif isinstance(inp, io.Float.Input):
            specs.append(InputSpec(inp.id, "FLOAT", min=inp.min, max=inp.max))
    return specs


def input_problems(node_cls, **values) -> Optional[str]:
    """One message naming every bad value (input, value, what is allowed), or None."""
    return check_values(widget_specs(node_cls), values)


def require_valid(node_cls, **values) -> None:
    problem = input_problems(node_cls, **values)
    if problem:
        raise ValueError(problem)


def validation_result(problem: Optional[str]):
    """What ComfyUI expects from ``validate_inputs``: True, or the message to show."""
    return True if problem is None else problem


def seed_input(control: bool) -> io.Int.Input:
    return io.Int.Input(
        "seed",
        default=0,
        min=0,
        max=SEED_MAX,
        control_after_generate=control,
        tooltip="seed of the decoder's initial noise; every sample in a batch uses it alone",
    )


def decode_inputs() -> list:
    """steps / pdg_strength (shared by the loader's defaults and the decode node)."""
    return [
        io.Int.Input("steps", default=1, min=1, max=100, tooltip="decoder steps; 1 is PSNR-optimal"),
        io.Float.Input(
            "pdg_strength",
            default=1.0,
            min=0.0,
            max=5.0,
            step=0.01,
            tooltip="path-drop guidance strength for multi-step decodes; 1.0 = off",
        ),
    ]


# -- nodes ----------------------------------------------------------------------------------------


class MDiffAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        choices = checkpoint_choices()
        return io.Schema(
            node_id="MDiffAELoader",
            display_name="MDiffAE Loader",
            category=CATEGORY,
            description="Load an mDiffAE-family autoencoder (mDiffAE v1/v2, iRDiffAE, SemDisDiffAE) as a VAE for "
            "the stock VAE Encode/Decode nodes (tiled too). Reads models/mdiffae and models/vae: a "
            "single .safetensors file (family and configuration read from its tensors), a diffusers "
            "folder (config.json + weights) or a published snapshot (converted on load). Steps, PDG "
            "and seed are the defaults the stock nodes decode with.",
            inputs=[
                io.Combo.Input("checkpoint", options=choices, default=choices[0] if choices else None),
                *decode_inputs(),
                seed_input(control=False),
                io.Combo.Input(
                    "dtype",
                    options=list(DTYPES),
                    default="auto",
                    tooltip="auto: ComfyUI's choice for VAEs on this device",
                ),
            ],
            outputs=[io.Vae.Output()],
        )

    @classmethod
    def validate_inputs(cls, checkpoint=None, steps=None, pdg_strength=None, seed=None, dtype=None):
        problem = input_problems(
            cls, checkpoint=checkpoint, steps=steps, pdg_strength=pdg_strength, seed=seed, dtype=dtype
        )
        if problem is None and checkpoint is not None:
            try:  # the header or config.json only: a file of another kind is refused before the run
                describe_checkpoint(resolve_checkpoint(checkpoint))
            except (NotAnMDiffAECheckpoint, OSError, ValueError) as e:
                problem = str(e)
        return validation_result(problem)

    @classmethod
    def execute(cls, checkpoint, steps, pdg_strength, seed, dtype) -> io.NodeOutput:
        require_valid(cls, checkpoint=checkpoint, steps=steps, pdg_strength=pdg_strength, seed=seed, dtype=dtype)
        path = resolve_checkpoint(checkpoint)
        vae_dtype = DTYPES[dtype]
        model = load_any(path, torch_dtype=vae_dtype or torch.float32)
        module = ComfyMDiffAEModule(model, steps=steps, pdg_strength=pdg_strength, seed=seed % (2**63))
        return io.NodeOutput(MDiffAEVAE(module, dtype=vae_dtype))


class MDiffAETokenizerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        choices = tokenizer_choices()
        return io.Schema(
            node_id="MDiffAETokenizerLoader",
            display_name="Load Tokenizer (MAETok / SoftVQ-VAE / VMAE)",
            category="latent/tokenizers",
            description="Load MAETok or SoftVQ-VAE (1-D latent tokens) or LDMAE's VMAE (a spatial latent) from "
            "models/tokenizers as a VAE for the stock VAE Encode / VAE Decode nodes. MAETok and SoftVQ-VAE: "
            "an original repository folder (config.json + model.safetensors) or a save_pretrained folder. "
            "VMAE: the original .pth (read without running any pickled code) or a save_pretrained folder. "
            "Images must be the model's size (256x256 for the published ones); tiled nodes are refused.",
            inputs=[
                io.Combo.Input("checkpoint", options=choices, default=choices[0] if choices else None),
                io.Combo.Input(
                    "kind",
                    options=list(TOKENIZER_KINDS),
                    default="auto",
                    tooltip="auto: from the folder's config and tensors (quantize.* = SoftVQ-VAE; .pth = VMAE)",
                ),
                io.Combo.Input(
                    "dtype", options=list(DTYPES), default="auto", tooltip="auto: ComfyUI's choice for VAEs"
                ),
            ],
            outputs=[io.Vae.Output()],
        )

    @classmethod
    def validate_inputs(cls, checkpoint=None, kind=None, dtype=None):
        problem = input_problems(cls, checkpoint=checkpoint, kind=kind, dtype=dtype)
        if problem is None and checkpoint is not None and kind is not None:
            try:
                tokenizer_class_name(folder_paths.get_full_path_or_raise(TOKENIZER_FOLDER, checkpoint), kind)
            except (NotATokenizerCheckpoint, OSError, ValueError) as e:
                problem = str(e)
        return validation_result(problem)

    @classmethod
    def execute(cls, checkpoint, kind, dtype) -> io.NodeOutput:
        require_valid(cls, checkpoint=checkpoint, kind=kind, dtype=dtype)
        path = folder_paths.get_full_path_or_raise(TOKENIZER_FOLDER, checkpoint)
        vae_dtype = DTYPES[dtype]
        model = load_tokenizer(path, kind, torch_dtype=vae_dtype or torch.float32)
        return io.NodeOutput(TokenizerVAE(ComfyTokenizerModule(model), dtype=vae_dtype))


class MDiffAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDiffAEEncode",
            display_name="MDiffAE Encode",
            category=CATEGORY,
            description="Encode images to the model's latents (64, 96 or 128 channels at 1/16). Unlike the stock "
            "node, sizes that are not multiples of 16 are refused instead of cropped.",
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
            description="Decode mDiffAE-family latents with explicit steps, path-drop guidance, seed, sampler, "
            "time schedule and start strength. Every sample is seeded alone, so batch splitting does "
            "not change results. Cancellable between steps.",
            inputs=[
                io.Latent.Input("samples"),
                io.Vae.Input("vae"),
                *decode_inputs(),
                seed_input(control=True),
                io.Combo.Input(
                    "sampler",
                    options=list(SAMPLER_NAMES),
                    default="ddim",
                    tooltip="ddim, or dpmpp_2m (DPM-Solver++(2M): closer to the many-step result at a few steps)",
                ),
                io.Combo.Input(
                    "schedule", options=list(SCHEDULE_NAMES), default="linear", tooltip="time grid of the steps"
                ),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=0.01,
                    max=1.0,
                    step=0.01,
                    tooltip="sampling starts at t = strength (1.0 = from pure noise)",
                ),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def validate_inputs(cls, steps=None, pdg_strength=None, seed=None, sampler=None, schedule=None, strength=None):
        return validation_result(
            input_problems(
                cls,
                steps=steps,
                pdg_strength=pdg_strength,
                seed=seed,
                sampler=sampler,
                schedule=schedule,
                strength=strength,
            )
        )

    @classmethod
    def execute(
        cls, samples, vae, steps, pdg_strength, seed, sampler="ddim", schedule="linear", strength=1.0
    ) -> io.NodeOutput:
        require_valid(
            cls,
            steps=steps,
            pdg_strength=pdg_strength,
            seed=seed,
            sampler=sampler,
            schedule=schedule,
            strength=strength,
        )
        vae = require_mdiffae(vae)
        z = samples["samples"]
        if z.ndim != 4 or z.shape[1] != vae.latent_channels:
            raise ValueError(
                f"latent has shape {tuple(z.shape)}; this VAE decodes [B, {vae.latent_channels}, h, w] latents "
                f"(from MDiffAE Encode or MDiffAE Empty Latent with this VAE, or a model trained on its latents)"
            )
        bar = comfy.utils.ProgressBar(steps)

        def on_step(step: int, total: int) -> None:
            bar.update_absolute(step, total)
            mm.throw_exception_if_processing_interrupted()

        options = {
            "steps": steps,
            "pdg_strength": pdg_strength,
            "seed": seed % (2**63),
            "sampler": sampler,
            "schedule": schedule,
            "strength": strength,
            "callback": on_step,
        }
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
    def validate_inputs(cls, upscale=None):
        return validation_result(input_problems(cls, upscale=upscale))

    @classmethod
    def execute(cls, samples, upscale) -> io.NodeOutput:
        require_valid(cls, upscale=upscale)
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
            description="Zeros shaped like the given VAE's latents (its channels at its factor, e.g. 64 at 1/16); "
            "the stock Empty Latent Image is 4 channels at 1/8.",
            inputs=[
                io.Vae.Input("vae"),
                io.Int.Input("width", default=512, min=16, max=16384, step=16),
                io.Int.Input("height", default=512, min=16, max=16384, step=16),
                io.Int.Input("batch_size", default=1, min=1, max=4096),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None, batch_size=None):
        return validation_result(input_problems(cls, width=width, height=height, batch_size=batch_size))

    @classmethod
    def execute(cls, vae, width, height, batch_size) -> io.NodeOutput:
        require_valid(cls, width=width, height=height, batch_size=batch_size)
        vae = require_mdiffae(vae)
        p = vae.downscale_ratio
        if width % p or height % p:
            raise ValueError(f"width and height must be multiples of {p} for this VAE, got {width}x{height}")
        z = torch.zeros(batch_size, vae.latent_channels, height // p, width // p, device=mm.intermediate_device())
        return io.NodeOutput({"samples": z})


NODES = [MDiffAELoader, MDiffAEEncode, MDiffAEDecode, MDiffAELatentPreview, MDiffAEEmptyLatent, MDiffAETokenizerLoader]


class MDiffAEExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> ComfyExtension:
    register_model_folder()
    return MDiffAEExtension()
