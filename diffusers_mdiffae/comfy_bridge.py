"""What ComfyUI's VAE machinery needs from the mDiffAE family, without importing ComfyUI.

ComfyUI's ``comfy.sd.VAE`` calls ``first_stage_model.encode(x)`` and
``first_stage_model.decode(z, **vae_options)`` and expects plain tensors in [-1, 1]; it also
assigns attributes such as ``device`` on that module. :class:`ComfyMDiffAEModule` is that module:
a thin ``nn.Module`` around any family member (:class:`AutoencoderMDiffAE`,
:class:`AutoencoderSemDisDiffAE`) that carries the loader's decode defaults. :func:`load_any` reads
every checkpoint form a ComfyUI user has; :func:`check_values` checks node inputs against their
declared choices and ranges. The node pack (``comfyui_nodes/``) builds on these; everything here is
testable without ComfyUI.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .models.autoencoders.vp_autoencoder import VPDiffusionAutoencoder
from .models.sampling import SAMPLERS
from .schedulers.vp_schedule import SCHEDULES

SAMPLER_NAMES = tuple(SAMPLERS)
SCHEDULE_NAMES = tuple(SCHEDULES)

# Activation memory of a 1-step decode, per latent position, in units of one hidden-MLP activation
# (model_dim * mlp_ratio values). bench/bench_speed.py measured the full mdiffae_v1 at 51-93 KB per
# position in float32 (peak RSS growth from 256 to 1024 and 2048 pixels), i.e. 3.5-6.5 units;
# 6 units plus a few full-resolution image buffers (104 KB) keeps ComfyUI's batch split on the
# safe side.
_ACTIVATION_FACTOR = 6


class ComfyMDiffAEModule(nn.Module):
    """``first_stage_model`` for ComfyUI: tensors in and out, decode defaults stored here.

    Args:
        vae: the autoencoder, any family member (kept as a child so ComfyUI's ModelPatcher moves
            its parameters).
        steps / pdg_strength / seed / sampler / schedule / strength: decode defaults, used when
            ComfyUI passes no options (stock ``VAEDecode`` and every tiled path). Node-specific
            settings come in as keyword arguments and never change these.
    """

    def __init__(
        self,
        vae: VPDiffusionAutoencoder,
        steps: int = 1,
        pdg_strength: float = 1.0,
        seed: int = 0,
        sampler: str = "ddim",
        schedule: str = "linear",
        strength: float = 1.0,
    ):
        super().__init__()
        self.vae = vae.eval()
        self.default_steps = int(steps)
        self.default_pdg_strength = float(pdg_strength)
        self.default_seed = int(seed)
        self.default_sampler = sampler
        self.default_schedule = schedule
        self.default_strength = float(strength)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def patch_size(self) -> int:
        return self.vae.config.patch_size

    @property
    def family(self) -> str:
        """The model class name (``AutoencoderMDiffAE`` or ``AutoencoderSemDisDiffAE``)."""
        return type(self.vae).__name__

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> latents ``[B, C, H/p, W/p]`` (SemDisDiffAE: whitened posterior mode)."""
        return self.vae.encode(x.to(self.vae.dtype)).latent

    def decode(
        self,
        z: torch.Tensor,
        steps: Optional[int] = None,
        pdg_strength: Optional[float] = None,
        seed: Optional[int] = None,
        sampler: Optional[str] = None,
        schedule: Optional[str] = None,
        strength: Optional[float] = None,
        callback: Optional[Callable[[int, int], None]] = None,
        **_ignored,
    ) -> torch.Tensor:
        """Latents -> ``[B, 3, p*h, p*w]`` in [-1, 1]; every sample is seeded alone (batch-split safe)."""
        return self.vae.decode(
            z.to(self.vae.dtype),
            num_inference_steps=self.default_steps if steps is None else int(steps),
            pdg_strength=self.default_pdg_strength if pdg_strength is None else float(pdg_strength),
            seed=self.default_seed if seed is None else int(seed),
            sampler=self.default_sampler if sampler is None else sampler,
            schedule=self.default_schedule if schedule is None else schedule,
            strength=self.default_strength if strength is None else float(strength),
            callback=callback,
        ).sample

    def decode_memory(self, latent_shape, dtype: torch.dtype, pdg: bool = True) -> int:
        """Bytes a decode of ``latent_shape`` ``[B, C, h, w]`` may need (PDG doubles the batch)."""
        b, _, h, w = latent_shape[:4]
        c = self.vae.config
        per_token = int(c.model_dim * c.mlp_ratio) * _ACTIVATION_FACTOR + 6 * c.patch_size**2 * c.in_channels
        return int(b * (2 if pdg else 1) * h * w * per_token * _dtype_size(dtype))

    def encode_memory(self, image_shape, dtype: torch.dtype) -> int:
        """Bytes an encode of ``image_shape`` ``[B, 3, H, W]`` may need."""
        b, _, hh, ww = image_shape[:4]
        p = self.vae.config.patch_size
        return self.decode_memory((b, 0, -(-hh // p), -(-ww // p)), dtype, pdg=False)


def _dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# -- node inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """A widget input as a node declares it: ``kind`` is ``"INT"``, ``"FLOAT"`` or ``"COMBO"``."""

    name: str
    kind: str
    options: Optional[Sequence] = None
    min: Optional[float] = None
    max: Optional[float] = None


def _listing(options: Sequence, limit: int = 12) -> str:
    shown = ", ".join(repr(o) if isinstance(o, str) else str(o) for o in list(options)[:limit])
    return shown + (f", ... ({len(options)} in all)" if len(options) > limit else "")


def _range(spec: InputSpec) -> str:
    lo = "" if spec.min is None else f"{spec.min:g}" if spec.kind == "FLOAT" else str(spec.min)
    hi = "" if spec.max is None else f"{spec.max:g}" if spec.kind == "FLOAT" else str(spec.max)
    if lo and hi:
        return f" from {lo} to {hi}"
    return f" of at least {lo}" if lo else f" of at most {hi}" if hi else ""


def value_problem(spec: InputSpec, value) -> Optional[str]:
    """A sentence saying why ``value`` is not acceptable for ``spec`` (None when it is)."""
    if spec.kind == "COMBO":
        options = list(spec.options or [])
        if value in options:
            return None
        if not options:
            return f"{spec.name} {value!r} cannot be used: this input has no choices here (nothing was found to offer)"
        return f"{spec.name} {value!r} is not one of its choices: {_listing(options)}"
    if spec.kind == "INT":
        ok = isinstance(value, int) and not isinstance(value, bool)
        what = "a whole number"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        what = "a number"
    if ok and (spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max):
        return None
    return f"{spec.name} must be {what}{_range(spec)}, got {value!r}"


def check_values(specs: Sequence[InputSpec], values: Mapping[str, object]) -> Optional[str]:
    """Every problem of ``values`` (name -> value; None = linked, not known yet) as one message, or None."""
    problems = [value_problem(s, values[s.name]) for s in specs if values.get(s.name) is not None]
    problems = [p for p in problems if p]
    return "; ".join(problems) + "." if problems else None


# -- ComfyUI tensor layouts ---------------------------------------------------------------------


def image_to_model(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE ``[B, H, W, C]`` in [0, 1] (alpha dropped) -> ``[B, 3, H, W]`` in [-1, 1]."""
    if images.ndim != 4:
        raise ValueError(f"IMAGE must be [B, H, W, C], got shape {tuple(images.shape)}")
    return images[..., :3].movedim(-1, 1).float() * 2.0 - 1.0


def model_to_image(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> ComfyUI IMAGE ``[B, H, W, 3]`` float32 in [0, 1]."""
    return ((x.float() + 1.0) / 2.0).clamp(0, 1).movedim(1, -1).contiguous()


# -- checkpoints ----------------------------------------------------------------------------------


class NotAnMDiffAECheckpoint(ValueError):
    """The chosen file is not an mDiffAE-family checkpoint in any layout this package reads."""


# Weight files that belong to the folder they are in (with its config.json), not single files.
_FOLDER_WEIGHTS = ("diffusion_pytorch_model", "model")


def is_folder_weights(path: Union[str, os.PathLike]) -> bool:
    """True when ``path`` is the weights file of a diffusers folder or a published snapshot next to it."""
    p = Path(path)
    if not (p.parent / "config.json").is_file():
        return False
    stem = p.name.split(".")[0]
    return stem in _FOLDER_WEIGHTS or len(list(p.parent.glob("*.safetensors"))) == 1


def describe_checkpoint(path: Union[str, os.PathLike]) -> str:
    """Cheap check of a checkpoint before loading (header or config only); returns the class name.

    Raises :class:`NotAnMDiffAECheckpoint` with a sentence when the file is of another kind.
    """
    from .conversion.layouts import CheckpointError
    from .conversion.single_file import describe

    p = Path(path)
    if p.is_file() and not is_folder_weights(p):
        try:
            return describe(p)[0]
        except CheckpointError as e:
            raise NotAnMDiffAECheckpoint(str(e)) from None
    return _folder_class(p if p.is_dir() else p.parent, p.name)


def _folder_class(folder: Path, name: str) -> str:
    from .conversion.convert import is_original_snapshot
    from .conversion.layouts import CheckpointError, original_config_to_ours
    from .models.hub import model_classes

    config = folder / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        raise NotAnMDiffAECheckpoint(f"{name}: its folder's config.json cannot be read as JSON") from None
    if is_original_snapshot(folder):
        try:
            return original_config_to_ours(data)[0].class_name
        except CheckpointError as e:
            raise NotAnMDiffAECheckpoint(str(e)) from None
    cls_name = data.get("_class_name") if isinstance(data, dict) else None
    if cls_name not in model_classes():
        raise NotAnMDiffAECheckpoint(
            f"{name} is not an mDiffAE-family checkpoint: its config.json describes "
            f"{cls_name or 'an unknown model'} (use the stock Load VAE node for other VAEs)"
        )
    return cls_name


def load_any(path: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None) -> VPDiffusionAutoencoder:
    """Load a family member from any form a ComfyUI user has, strictly.

    * a single ``.safetensors`` file (family and configuration from its metadata or its tensor
      names and shapes, :mod:`diffusers_mdiffae.conversion.single_file`);
    * a diffusers folder (``config.json`` + weights, as ``save_pretrained`` writes), or its weights file;
    * a published snapshot folder (original ``config.json`` + ``model.safetensors``), converted on load.

    Anything else (an SD VAE, a LoRA, a mismatched file) raises :class:`NotAnMDiffAECheckpoint`
    naming the file and what is wrong.
    """
    from .conversion.convert import is_original_snapshot
    from .conversion.layouts import CheckpointError
    from .conversion.single_file import load_single_file
    from .models.hub import convert_original_snapshot, model_classes

    p = Path(path)
    try:
        if p.is_file() and not is_folder_weights(p):
            return load_single_file(p, torch_dtype=torch_dtype)
        folder = p if p.is_dir() else p.parent
        if not (folder / "config.json").is_file():
            raise NotAnMDiffAECheckpoint(
                f"{p.name} is not an mDiffAE-family checkpoint: expected a .safetensors file or a folder with "
                "config.json and the weights (save_pretrained's layout, or a published snapshot)"
            )
        cls_name = _folder_class(folder, p.name)
        if is_original_snapshot(folder):
            return convert_original_snapshot(folder, torch_dtype=torch_dtype)
        return model_classes()[cls_name].from_pretrained(folder, torch_dtype=torch_dtype)
    except CheckpointError as e:
        raise NotAnMDiffAECheckpoint(str(e)) from None


# -- the other tokenizers: MAETok, SoftVQ-VAE (1-D tokens) and LDMAE's VMAE (spatial) ----------

TOKENIZER_CLASSES = ("AutoencoderMAETok", "AutoencoderSoftVQ", "AutoencoderVMAE")
TOKENIZER_KINDS = {
    "auto": None,
    "maetok": "AutoencoderMAETok",
    "softvq": "AutoencoderSoftVQ",
    "vmae": "AutoencoderVMAE",
}


class NotATokenizerCheckpoint(ValueError):
    """The chosen file is not a MAETok, SoftVQ-VAE or VMAE checkpoint in a form this package reads."""


def _tokenizer_class(name: str):
    import diffusers_mdiffae

    return getattr(diffusers_mdiffae, name)


def tokenizer_class_name(path: Union[str, os.PathLike], kind: str = "auto") -> str:
    """Which tokenizer class loads ``path``, from its config or its tensor names (nothing is built).

    ``path`` is a ``.pth``/``.pt`` (LDMAE VMAE), or a folder (or its weights file) with a
    ``config.json``: ours (``_class_name``) or an original ``PyTorchModelHubMixin`` one, where a
    ``quantize.*`` tensor tells SoftVQ-VAE from MAETok. ``kind`` (a key of :data:`TOKENIZER_KINDS`)
    forces the class.
    """
    from safetensors import safe_open

    if kind not in TOKENIZER_KINDS:
        raise NotATokenizerCheckpoint(f"kind {kind!r} is not one of {', '.join(TOKENIZER_KINDS)}")
    p = Path(path)
    if p.is_file() and p.suffix.lower() in (".pth", ".pt"):
        found = "AutoencoderVMAE"
    else:
        folder = _tokenizer_folder(p)
        try:
            data = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            raise NotATokenizerCheckpoint(
                f"{p.name} is not a tokenizer checkpoint: expected an LDMAE .pth file or a folder with config.json "
                "and model.safetensors (an original MAETok/SoftVQ-VAE repository, or save_pretrained's layout)"
            ) from None
        found = data.get("_class_name") if isinstance(data, dict) else None
        if found is None:
            weights = sorted(folder.glob("*.safetensors"))
            if len(weights) != 1:
                raise NotATokenizerCheckpoint(
                    f"{folder.name}: expected one .safetensors file next to config.json, found {len(weights)}"
                )
            try:
                with safe_open(str(weights[0]), framework="pt") as f:
                    quantized = any(k.startswith("quantize.") for k in f.keys())  # noqa: SIM118
            except Exception as e:  # a broken header: say which file
                raise NotATokenizerCheckpoint(f"{weights[0].name}: not a readable safetensors file ({e})") from None
            found = "AutoencoderSoftVQ" if quantized else "AutoencoderMAETok"
    if found not in TOKENIZER_CLASSES:
        raise NotATokenizerCheckpoint(
            f"{p.name} is not a MAETok, SoftVQ-VAE or VMAE checkpoint: its config describes {found} "
            "(use the MDiffAE Loader for the mDiffAE family, the stock Load VAE node for others)"
        )
    forced = TOKENIZER_KINDS[kind]
    return forced or found


def _tokenizer_folder(p: Path) -> Path:
    """The model folder of ``p``: itself, or the folder of a weights file; a weights file linked into
    ComfyUI's model folder (as ComfyUI users and tools do) stands for the folder it really lives in."""
    if p.is_dir():
        return p
    if not (p.parent / "config.json").is_file() and p.is_symlink():
        return p.resolve().parent
    return p.parent


def load_tokenizer(path: Union[str, os.PathLike], kind: str = "auto", torch_dtype: Optional[torch.dtype] = None):
    """Load a MAETok / SoftVQ-VAE / VMAE checkpoint strictly (see :func:`tokenizer_class_name`)."""
    from .conversion.layouts import CheckpointError

    p = Path(path)
    name = tokenizer_class_name(p, kind)
    target = p if p.suffix.lower() in (".pth", ".pt") else _tokenizer_folder(p)
    try:
        return _tokenizer_class(name).from_pretrained(str(target), torch_dtype=torch_dtype)
    except (CheckpointError, ValueError, OSError) as e:
        raise NotATokenizerCheckpoint(f"{p.name}: cannot load as {name}: {e}") from None


class ComfyTokenizerModule(nn.Module):
    """``first_stage_model`` for ComfyUI around MAETok / SoftVQ-VAE / VMAE: tensors in and out.

    1-D tokens ``[B, L, d]`` travel through ComfyUI channels-first, ``[B, d, L]``, the layout of its
    other 1-D latents; VMAE latents stay ``[B, C, h, w]`` (the posterior mean). Images must be the
    model's fixed size: anything else is refused with the size to resize to.
    """

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae.eval()

    @property
    def tokens(self) -> bool:
        """True for 1-D latent tokens (MAETok, SoftVQ-VAE), False for VMAE's spatial latent."""
        return "num_latent_tokens" in self.vae.config

    @property
    def image_size(self) -> int:
        c = self.vae.config
        return int(c["image_size"] if "image_size" in c else c["img_size"])

    @property
    def latent_channels(self) -> int:
        c = self.vae.config
        return int(c["codebook_embed_dim"] if self.tokens else c["latent_dim"])

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along a side (VMAE); for tokens, the image side (one whole-image latent)."""
        return self.image_size if self.tokens else int(self.vae.config["patch_size"])

    @property
    def family(self) -> str:
        return type(self.vae).__name__

    def check_image(self, x: torch.Tensor) -> None:
        s = self.image_size
        if x.ndim != 4 or tuple(x.shape[-2:]) != (s, s):
            got = "x".join(str(v) for v in x.shape[-1:-3:-1]) if x.ndim >= 2 else str(tuple(x.shape))
            raise ValueError(
                f"image is {got}; {self.family} takes {s}x{s} images only (its positions are learned for that "
                f"size): resize or crop to {s}x{s} first, e.g. with ImageScale"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [-1, 1] -> ``[B, d, L]`` tokens, or ``[B, C, S/p, S/p]`` (VMAE)."""
        self.check_image(x)
        z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode()
        return z.transpose(1, 2) if self.tokens else z

    def decode(self, z: torch.Tensor, **_ignored) -> torch.Tensor:
        """Latents as :meth:`encode` gives them -> ``[B, 3, S, S]`` in about [-1, 1]."""
        want = "[B, d, L] tokens" if self.tokens else "[B, C, h, w]"
        if z.ndim != (3 if self.tokens else 4) or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"latent has shape {tuple(z.shape)}; {self.family} decodes {want} latents with "
                f"{self.latent_channels} channels (from VAE Encode with this VAE)"
            )
        z = z.to(self.vae.dtype)
        return self.vae.decode(z.transpose(1, 2) if self.tokens else z).sample

    def memory(self, batch: int, dtype: torch.dtype) -> int:
        """Bytes one encode or decode of ``batch`` images may need: both ViTs' widest activations, generously."""
        c = self.vae.config
        widths = [c[k] for k in ("encoder_embed_dim", "decoder_embed_dim", "embed_dim") if k in c]
        p = c["enc_patch_size"] if "enc_patch_size" in c else c["patch_size"]
        n = (self.image_size // p) ** 2 + int(c.get("num_latent_tokens", 0))
        heads = max(c[k] for k in ("encoder_num_heads", "decoder_num_heads", "num_heads") if k in c)
        per_token = int(max(widths) * c["mlp_ratio"]) * _ACTIVATION_FACTOR + 6 * p * p * 3 + heads * n  # + scores
        return int(batch * n * per_token * _dtype_size(dtype))
