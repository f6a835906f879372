"""Convert a published mDiffAE snapshot (``config.json`` + ``model.safetensors``) to a diffusers folder.

    python -m diffusers_mdiffae.convert SNAPSHOT_DIR OUT_DIR [--verify] [--dtype float32]

Loading is strict: every checkpoint tensor must land on exactly one parameter of the same shape
and every parameter must be filled, or the conversion stops with a list of the offending tensors
and writes nothing. About a third of the original tensor names could not be read from any public
source (spec section 8), so the name mapping below is a best reading; two checks make it
verifiable on the user's machine, where the weights are:

* ``--verify`` imports the original package shipped inside the snapshot (``m_diffae/``), runs it
  and the converted model on the same input and noise, and reports the largest difference;
* every conversion reconstructs a bundled sample image and reports its PSNR, warning loudly when
  it is implausibly low for a trained checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..atomic import atomic_directory
from ..models.autoencoders.autoencoder_mdiffae import AutoencoderMDiffAE
from ..metrics import psnr

SAMPLE_IMAGE = Path(__file__).parents[1] / "assets" / "astronaut_256.png"
WEIGHTS_NAME = "model.safetensors"
# A trained mDiffAE reconstructs the bundled photo far above this (published v1 mean: 34 dB on
# 2k images); below it the mapping or an architecture reading is almost certainly wrong.
PLAUSIBLE_PSNR_DB = 25.0
VERIFY_TOLERANCE = 1e-4

# Original config field -> AutoencoderMDiffAE argument. Everything listed is required to mean the
# same thing in both; fields not listed here are rejected rather than silently dropped.
_CONFIG_FIELDS = {
    "in_channels": "in_channels",
    "patch_size": "patch_size",
    "model_dim": "model_dim",
    "encoder_depth": "encoder_depth",
    "decoder_depth": "decoder_depth",
    "decoder_start_blocks": "decoder_start_blocks",
    "decoder_end_blocks": "decoder_end_blocks",
    "bottleneck_dim": "latent_channels",
    "mlp_ratio": "mlp_ratio",
    "depthwise_kernel_size": "depthwise_kernel_size",
    "adaln_low_rank_rank": "adaln_low_rank_rank",
    "logsnr_min": "logsnr_min",
    "logsnr_max": "logsnr_max",
    "pixel_noise_std": "pixel_noise_std",
    "pdg_mask_ratio": "pdg_mask_ratio",
}
_UNSUPPORTED_FIELDS = {
    "bottleneck_posterior_kind": "SemDisDiffAE's Gaussian posterior",
    "bottleneck_norm_mode": "SemDisDiffAE's latent normalisation",
    "bottleneck_patchify_mode": "the p32 latent patchify",
    "latent_running_stats_eps": "latent whitening",
}

# Original tensor name -> ours. Names this package already shares with the original need no rule;
# each rule is an alias for a spelling the original may use (spec section 8 lists which names are
# unknown). If a real checkpoint reports unmatched tensors, this table is the place to fix.
KEY_RULES: List[Tuple[str, str]] = [
    (r"^(encoder|decoder)\.patchify\.(?:conv|proj|linear)\.", r"\1.patchify.proj."),
    (r"\.cca\.(?:1|conv|fc)\.", r".cca.proj."),
    (r"\.(?:ffn|conv_mlp|mlp_block)\.", r".mlp."),
    (r"^decoder\.time_embed(?:ding)?\.(?:mlp\.0|fc1|linear1)\.", r"decoder.time_embed.linear_1."),
    (r"^decoder\.time_embed(?:ding)?\.(?:mlp\.2|fc2|linear2)\.", r"decoder.time_embed.linear_2."),
    (r"^decoder\.latent_mask_feature$", r"decoder.mask_feature"),
    (r"^decoder\.(?:out_proj|output_proj|to_pixels|head)\.", r"decoder.unpatchify.proj."),
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unreadable, truncated, or not matching the model."""


@dataclass
class MatchReport:
    """Result of matching a checkpoint against a model's state dict."""

    unexpected: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    missing: List[Tuple[str, Tuple[int, ...]]] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.missing or self.mismatched)

    def format(self) -> str:
        lines = []
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} checkpoint tensor(s) match no model parameter:")
            lines += [f"    {k}  {list(s)}" for k, s in self.unexpected]
        if self.missing:
            lines.append(f"  {len(self.missing)} model parameter(s) missing from the checkpoint:")
            lines += [f"    {k}  {list(s)}" for k, s in self.missing]
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} shape mismatch(es) (checkpoint vs model):")
            lines += [f"    {k}  {list(a)} vs {list(b)}" for k, a, b in self.mismatched]
        return "\n".join(lines)


# -- reading ---------------------------------------------------------------------------------


def _safetensors_header(path: Path) -> Dict[str, dict]:
    """Parse and check a safetensors header without loading data; list tensors the file cannot hold."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: {size} bytes, too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100 * 2**20:
            raise CheckpointError(f"{path}: not a safetensors file or truncated inside its header")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    beyond = [(k, v.get("data_offsets", [0, 0])[1]) for k, v in header.items()
              if v.get("data_offsets", [0, 0])[1] > data_size]
    if beyond:
        lines = "\n".join(f"    {k}  needs bytes up to {end}, file data has {data_size}" for k, end in beyond)
        raise CheckpointError(f"{path} is truncated: {len(beyond)} tensor(s) lie past the end of the file:\n{lines}")
    return header


def load_safetensors(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file after checking the header (never unpickles)."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix in (".bin", ".pt", ".pth", ".ckpt"):
        raise CheckpointError(f"{path}: pickle checkpoints are not loaded (unsafe); convert it to safetensors")
    _safetensors_header(path)
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read safetensors data ({e})") from None


def _find_weights(snapshot: Path) -> Path:
    path = snapshot / WEIGHTS_NAME
    if path.is_file():
        return path
    candidates = sorted(snapshot.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates[0]
    pickles = sorted(p.name for p in snapshot.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    hint = f" (found {pickles}: pickle files are never loaded)" if pickles else ""
    raise CheckpointError(f"{snapshot}: expected {WEIGHTS_NAME}{hint}")


def original_config_to_diffusers(original: dict) -> dict:
    """Map an original ``config.json`` (MDiffAEConfig / MDiffAEV2Config / IRDiffAEConfig fields)."""
    if not isinstance(original, dict):
        raise CheckpointError("config.json must hold a JSON object")
    unsupported = [f"{k} ({why})" for k, why in _UNSUPPORTED_FIELDS.items() if k in original]
    if unsupported:
        raise CheckpointError(f"this snapshot needs features not implemented yet: {', '.join(unsupported)}")
    unknown = sorted(set(original) - set(_CONFIG_FIELDS))
    if unknown:
        raise CheckpointError(f"config.json has fields this converter does not know: {unknown}")
    cfg = {ours: original[theirs] for theirs, ours in _CONFIG_FIELDS.items() if theirs in original}
    for required in ("model_dim", "patch_size", "latent_channels"):
        if required not in cfg:
            raise CheckpointError(f"config.json lacks {required!r}: is this an mDiffAE snapshot?")
    skip = bool(cfg.get("decoder_start_blocks") or cfg.get("decoder_end_blocks"))
    has_token_mask = "pdg_mask_ratio" in original
    if not skip:
        # mdiffae_v1: flat decoder with the outer RMSNorms (spec section 7, reading "B").
        cfg.update(decoder_outer_norms=True, pdg_mode="token_mask")
    elif has_token_mask:
        # mdiffae-v2: trained with use_other_outer_rms_norms=False, dual PDG.
        cfg.update(decoder_outer_norms=False, pdg_mode="dual")
    else:
        # iRDiffAE: path-drop PDG only; outer norms read as absent (both readings fit its size).
        cfg.update(decoder_outer_norms=False, pdg_mode="path_drop")
    cfg["block_out_channels"] = [cfg["model_dim"]] * (int(math.log2(cfg["patch_size"])) + 1)
    return cfg


# -- key mapping -----------------------------------------------------------------------------


def map_key(name: str) -> str:
    """Original tensor name -> this package's name (identity where the names agree)."""
    for pattern, repl in KEY_RULES:
        name = re.sub(pattern, repl, name)
    return name


def _adapt(name: str, tensor: torch.Tensor, target_shape: torch.Size) -> Optional[torch.Tensor]:
    """Reshape the few tensors the original may store in another equivalent layout."""
    if tensor.shape == target_shape:
        return tensor
    if tensor.numel() != math.prod(target_shape):
        return None
    if name.endswith("patchify.proj.weight") and tensor.ndim == 4 and target_shape[2:] == (1, 1):
        # Strided p x p conv [C, 3, p, p] == PixelUnshuffle + 1x1 conv [C, 3*p*p, 1, 1]:
        # PixelUnshuffle orders channels (c, dy, dx), which is exactly a row-major flatten.
        return tensor.reshape(target_shape)
    if [d for d in tensor.shape if d != 1] == [d for d in target_shape if d != 1]:
        return tensor.reshape(target_shape)  # e.g. a mask feature stored as [C] vs [1, C, 1, 1]
    return None


def match_state_dict(
    original: Dict[str, torch.Tensor], model: torch.nn.Module
) -> Tuple[Dict[str, torch.Tensor], MatchReport]:
    """Rename and reshape ``original`` for ``model``; report everything that does not fit."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    report = MatchReport()
    converted: Dict[str, torch.Tensor] = {}
    for name, tensor in original.items():
        ours = map_key(name)
        if ours not in expected or ours in converted:
            report.unexpected.append((name, tuple(tensor.shape)))
            continue
        adapted = _adapt(ours, tensor, expected[ours])
        if adapted is None:
            report.mismatched.append((name, tuple(tensor.shape), tuple(expected[ours])))
            continue
        converted[ours] = adapted
    mismatched_targets = {map_key(k) for k, _, _ in report.mismatched}
    report.missing = [(k, tuple(s)) for k, s in expected.items() if k not in converted and k not in mismatched_targets]
    return converted, report


def build_from_state_dict(
    config: dict, state_dict: Dict[str, torch.Tensor], torch_dtype: Optional[torch.dtype] = None
) -> AutoencoderMDiffAE:
    """Construct ``AutoencoderMDiffAE(**config)`` and fill it strictly from an original state dict."""
    from accelerate import init_empty_weights

    try:
        with init_empty_weights():
            model = AutoencoderMDiffAE(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config.json describes a model this package cannot build: {e}") from None
    converted, report = match_state_dict(state_dict, model)
    if not report.ok:
        raise CheckpointError(
            f"checkpoint does not match AutoencoderMDiffAE({json.dumps(config)}):\n{report.format()}"
        )
    bad = [k for k, v in converted.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint has NaN/inf values in {len(bad)} tensor(s): {bad[:10]}")
    model.load_state_dict(converted, strict=True, assign=True)
    model = model.float() if torch_dtype is None else model.to(torch_dtype)
    return model.use_channels_last_weights().eval()


def convert_original_snapshot(
    snapshot_dir: Union[str, os.PathLike], torch_dtype: Optional[torch.dtype] = None
) -> AutoencoderMDiffAE:
    """Load a published snapshot folder (``config.json`` + ``model.safetensors``) as our model."""
    snapshot = Path(snapshot_dir)
    if not snapshot.is_dir():
        raise CheckpointError(f"{snapshot} is not a directory")
    config_path = snapshot / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{snapshot}: no config.json")
    try:
        original_config = json.loads(config_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    if isinstance(original_config, dict) and "_class_name" in original_config:
        raise CheckpointError(
            f"{snapshot} is already a diffusers folder ({original_config['_class_name']}); "
            "load it with AutoencoderMDiffAE.from_pretrained"
        )
    config = original_config_to_diffusers(original_config)
    return build_from_state_dict(config, load_safetensors(_find_weights(snapshot)), torch_dtype)


def is_original_snapshot(path: Union[str, os.PathLike]) -> bool:
    """True for a folder in the published layout (original ``config.json`` field names)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except ValueError:
        return False
    return isinstance(data, dict) and "bottleneck_dim" in data and "_class_name" not in data


def locate_original_snapshot(
    pretrained: Union[str, os.PathLike], subfolder: Optional[str] = None, **hub_kwargs
) -> Optional[Path]:
    """The local folder of ``pretrained`` if it is in the published (original) layout, else None.

    A local folder is inspected directly. A Hub id costs one ``config.json`` download; if that config
    is an original one, the weights (and the shipped package, for ``--verify``) are fetched too.
    Any failure to reach the Hub returns None, so the caller falls back to the diffusers loader and
    its usual error messages.
    """
    local = Path(pretrained) / (subfolder or "")
    if local.is_dir():
        return local if is_original_snapshot(local) else None
    if Path(pretrained).exists():
        return None
    from huggingface_hub import hf_hub_download, snapshot_download

    keep = {k: hub_kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only", "force_download")
            if hub_kwargs.get(k) is not None}
    try:
        config = hf_hub_download(str(pretrained), "config.json", subfolder=subfolder, **keep)
    except Exception:  # offline, missing repo, gated...: let diffusers report it
        return None
    folder = Path(config).parent
    if not is_original_snapshot(folder):
        return None
    prefix = f"{subfolder}/" if subfolder else ""
    root = snapshot_download(
        str(pretrained), allow_patterns=[f"{prefix}config.json", f"{prefix}*.safetensors", f"{prefix}m_diffae*/*"], **keep
    )
    return Path(root) / (subfolder or "")


# -- checks ----------------------------------------------------------------------------------


def load_sample_image(path: Union[str, os.PathLike] = SAMPLE_IMAGE) -> torch.Tensor:
    """The sample photo as ``[1, 3, H, W]`` in [-1, 1] (H, W cropped to multiples of 16)."""
    from ..imaging import load_rgb, pil_to_tensor

    x = pil_to_tensor(load_rgb(path)[0])
    return x[..., : x.shape[-2] // 16 * 16, : x.shape[-1] // 16 * 16]


@torch.no_grad()
def sample_psnr(model: AutoencoderMDiffAE, image: Optional[torch.Tensor] = None) -> float:
    """PSNR of the 1-step reconstruction of the bundled sample image (float32)."""
    x = load_sample_image() if image is None else image
    x = x.to(model.device)
    return psnr(model.reconstruct(x.to(model.dtype)), x)


@contextlib.contextmanager
def _snapshot_on_path(snapshot: Path, package: str):
    """Import ``package`` from inside ``snapshot`` without leaving it in ``sys.modules``."""
    saved = {k: v for k, v in sys.modules.items() if k == package or k.startswith(package + ".")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(snapshot))
    try:
        yield importlib.import_module(package)
    finally:
        sys.path.remove(str(snapshot))
        for k in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
            del sys.modules[k]
        sys.modules.update(saved)


@dataclass
class VerifyResult:
    """Largest absolute differences between the original package and the converted model."""

    diffs: Dict[str, float]
    notes: List[str]

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values()) if self.diffs else float("nan")

    def passed(self, tol: float = VERIFY_TOLERANCE) -> bool:
        return bool(self.diffs) and self.max_diff < tol


@torch.no_grad()
def verify_against_original(
    snapshot_dir: Union[str, os.PathLike], model: AutoencoderMDiffAE, package: str = "m_diffae", size: int = 64
) -> VerifyResult:
    """Run the original package (shipped inside the snapshot) and ``model`` on the same tensors.

    Compares the encoder output and single decoder forwards at ``t = 1`` and ``t = 0.5`` on the
    same ``x_t`` (float32, CPU). The multi-step sampler is not compared: its noise comes from an
    RNG whose draw order the original does not document.
    """
    snapshot = Path(snapshot_dir)
    if not (snapshot / package).is_dir():
        raise CheckpointError(f"--verify needs the original package {snapshot / package}/ (shipped in the snapshot)")
    model = model.float().to("cpu").eval()
    gen = torch.Generator("cpu").manual_seed(1234)
    x = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    x_t = torch.randn(1, 3, size, size, generator=gen) * model.config.pixel_noise_std
    diffs: Dict[str, float] = {}
    notes: List[str] = []
    with _snapshot_on_path(snapshot, package) as pkg:
        cls = getattr(pkg, "MDiffAE", None)
        if cls is None:
            raise CheckpointError(f"{package} has no MDiffAE class")
        try:
            original = cls.from_pretrained(str(snapshot), device="cpu")
        except TypeError:
            original = cls.from_pretrained(str(snapshot))
        original = original.float().eval() if hasattr(original, "float") else original
        z_orig = original.encode(x)
        z = model.encode(x).latent
        diffs["encode"] = float((z_orig.float() - z.float()).abs().max())
        decoder = getattr(original, "decoder", None)
        if decoder is None:
            notes.append("the original model has no .decoder attribute; decoder forward not compared")
        else:
            for tv in (1.0, 0.5):
                t = torch.full((1,), tv)
                try:
                    out_orig = decoder(x_t, t, z)
                except TypeError as e:
                    notes.append(f"could not call the original decoder(x_t, t, latents): {e}")
                    break
                diffs[f"decoder(t={tv})"] = float((out_orig.float() - model.decoder(x_t, t, z).float()).abs().max())
    return VerifyResult(diffs, notes)


# -- writing ---------------------------------------------------------------------------------


def save_atomically(model: AutoencoderMDiffAE, out_dir: Union[str, os.PathLike], overwrite: bool = False) -> Path:
    """``save_pretrained`` into a temporary sibling folder, then rename it into place."""
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
    return Path(out_dir)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffusers_mdiffae.convert",
        description="Convert a published mDiffAE snapshot (config.json + model.safetensors) to a diffusers folder.",
    )
    parser.add_argument("snapshot", help="downloaded original repository folder")
    parser.add_argument("out", help="output folder (written only if every check passes)")
    parser.add_argument("--verify", action="store_true",
                        help="run the original m_diffae package from the snapshot and compare outputs")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32", help="dtype of the saved weights")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--min-psnr", type=float, default=PLAUSIBLE_PSNR_DB,
                        help="warn when the sample reconstruction is below this PSNR (dB)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        model = convert_original_snapshot(args.snapshot)
        print(f"loaded {args.snapshot}: {model.num_parameters():,} parameters, every tensor matched")
        if args.verify:
            result = verify_against_original(args.snapshot, model)
            for name, d in result.diffs.items():
                print(f"verify {name}: max |original - converted| = {d:.3e}")
            for note in result.notes:
                print(f"verify note: {note}")
            if not result.passed():
                print(f"error: verification failed (largest difference {result.max_diff:.3e}, "
                      f"tolerance {VERIFY_TOLERANCE:.0e}); nothing written", file=sys.stderr)
                return 1
            print(f"verify: passed (largest difference {result.max_diff:.3e} < {VERIFY_TOLERANCE:.0e})")
        value = sample_psnr(model)
        print(f"sample image PSNR (1-step decode, float32): {value:.2f} dB")
        if value < args.min_psnr:
            bar = "!" * 78
            print(f"{bar}\nWARNING: {value:.2f} dB is implausibly low for a trained mDiffAE checkpoint "
                  f"(expected > {args.min_psnr:.0f} dB).\nThe tensor names may have matched the wrong "
                  f"layers. Run with --verify to compare against the original code.\n{bar}", file=sys.stderr)
        save_atomically(model.to(_DTYPES[args.dtype]), out, overwrite=args.overwrite)
    except CheckpointError as e:
        print(f"error: {e}\nnothing written", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
