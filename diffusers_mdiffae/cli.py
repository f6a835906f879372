"""The ``mdiffae`` command: reconstruct, encode, decode, convert, encode-dataset, eval, train.

    mdiffae reconstruct IN OUT [--model M] [--steps N] [--pdg-strength W] [--seed S] [--dtype D] [--ext png]
    mdiffae encode IN OUT.safetensors
    mdiffae decode IN.safetensors OUT
    mdiffae convert SNAPSHOT OUT [--verify] [--overwrite]
    mdiffae encode-dataset IN OUT [--resolution 256 --flip ...]
    mdiffae eval IN [--out DIR] [--json FILE]
    mdiffae train --data DIR --output-dir DIR [...]

IN may be a file or a folder (every image below it). The default model is the checkpoint bundled
with the package; ``--model`` takes a local diffusers folder, a published snapshot folder, or a
Hub id.

How it behaves on bad input, in one place:

* parsing (and ``-h``) imports nothing heavy: torch and diffusers load only when a command runs;
* every argument is checked before any work starts;
* outputs follow :mod:`.outputs` (never onto an input, never two onto one name, the format the
  extension names, an existing output replaced only by a complete new one);
* folder commands skip unreadable files with a reason each and end with ``wrote N, skipped M``
  (:mod:`.skipping`); they fail only when nothing could be done;
* every failure is one line on stderr, ``error: <file>: <reason>``, exit status non-zero, no
  traceback (set ``MDIFFAE_TRACEBACK=1`` to see one when reporting a bug).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from .argtypes import (
    OneLineParser,
    finite_float,
    float_in,
    json_object,
    multiple_of_16,
    non_negative_int,
    positive_int,
    seed_int,
)
from .outputs import (
    OutputError,
    check_output_not_input,
    check_planned_outputs,
    image_format,
    is_folder_target,
    mirror_outputs,
    names_from_sources,
    normalise_ext,
)
from .skipping import SKIPPABLE, SkipTally, describe_error, one_line, reason_of, say

DTYPE_NAMES = ("bfloat16", "float16", "float32")
SAMPLERS = ("ddim", "dpmpp_2m")
_TRACEBACK_ENV = "MDIFFAE_TRACEBACK"


class CLIError(Exception):
    """A user-facing error: printed as one ``error:`` line without a traceback, exit status 1."""

    user_facing = True


# -- loading --------------------------------------------------------------------------------


def _torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def _looks_local(spec: str) -> bool:
    """A path the user means on disk (a Hub id is ``name`` or ``org/name``)."""
    return os.path.isabs(spec) or spec.startswith(".") or spec.count("/") > 1 or os.sep != "/" and os.sep in spec


def check_model_spec(spec: Optional[str], option: str = "--model") -> None:
    """Refuse the model arguments that cannot work, with the sentence that fixes them."""
    if spec is None:
        return
    path = Path(spec)
    if path.is_file():
        raise CLIError(
            f"{spec}: {option} takes the folder that holds config.json, not a file (pass {str(path.parent) or '.'})"
        )
    if (_looks_local(spec) or os.path.lexists(spec)) and not path.is_dir():
        raise CLIError(f"{spec}: cannot load model: no such folder")


def load_model(spec: Optional[str], dtype: str = "float32"):
    """The bundled demo checkpoint, a local folder (diffusers or published layout), or a Hub id."""
    from . import DEMO_MODEL_DIR, AutoencoderMDiffAE  # lazy: the package top level, wherever the class lives

    check_model_spec(spec)
    source = str(DEMO_MODEL_DIR) if spec is None else spec
    try:
        model = AutoencoderMDiffAE.from_pretrained(source, torch_dtype=_torch_dtype(dtype))
    except Exception as e:  # diffusers, huggingface_hub and safetensors raise many types
        if os.environ.get(_TRACEBACK_ENV):
            raise
        raise CLIError(f"{source}: cannot load model ({reason_of(e, source)})") from None
    return model.eval()


def _inputs(path: Path) -> List[Path]:
    from .imaging import list_images

    if path.is_dir():
        files = list_images(path)
        if not files:
            raise CLIError(f"{path}: no images found")
        return files
    if os.path.lexists(path) and not path.exists():
        raise CLIError(f"{path}: broken symbolic link or symlink loop")
    if not path.exists():
        raise CLIError(f"{path}: no such file or folder")
    return [path]


def _single_output(src: Path, out_spec: str, ext: Optional[str]) -> Path:
    """The image file a one-image command writes: ``OUT`` itself, or ``OUT/<name>.<ext>`` for a folder."""
    if is_folder_target(out_spec):
        return Path(out_spec) / (src.stem + normalise_ext(ext))
    dest = Path(out_spec)
    image_format(dest)
    return dest


def _folder_output(src: Path, out_spec: str) -> Path:
    out = Path(out_spec)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out}: is a file, but the input {src} is a folder; name an output folder")
    return out


def _clean_leftovers(outputs: Sequence[Path]) -> None:
    """Remove temporaries that a killed earlier run left for these outputs (only dead writers')."""
    from .atomic import remove_stale_temporaries

    by_folder: dict = {}
    for dest in outputs:
        by_folder.setdefault(Path(dest).parent, set()).add(Path(dest).name)
    for folder, names in by_folder.items():
        remove_stale_temporaries(folder, names=names)


def _load_tensor(path: Path):
    """Image file -> ``([1, 3, H', W']`` padded to multiples of 16, original size, notes)."""
    from .imaging import load_rgb, pad_mode, pad_to_multiple, pil_to_tensor

    image, notes = load_rgb(path)
    x, size = pad_to_multiple(pil_to_tensor(image), 16)
    if x.shape[-2:] != size:
        fill = "reflection" if pad_mode(size, 16) == "reflect" else "edge replication"
        notes.append(
            f"{size[1]}x{size[0]} is not a multiple of 16: padded to {x.shape[-1]}x{x.shape[-2]} "
            f"({fill}) and cropped back"
        )
    return x, size, notes


def _decode_kwargs(args) -> dict:
    return {
        "num_inference_steps": args.steps,
        "pdg_strength": args.pdg_strength,
        "seed": args.seed,
        "sampler": args.sampler,
        "schedule": args.schedule,
        "strength": args.strength,
    }


def _progress(items, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=len(items) < 2, dynamic_ncols=True)


def _attempt(tally: Optional[SkipTally], name, fn, *args):
    """Run one item's step: a folder run skips a failure (reported); a one-file run fails with it."""
    if tally is not None:
        return tally.attempt(str(name), fn, *args)
    try:
        return True, fn(*args)
    except SKIPPABLE as e:
        raise CLIError(f"{name}: {reason_of(e, str(name))}") from None


def _finish(tally: Optional[SkipTally], where) -> int:
    if tally is None:
        return 0
    if tally.nothing_done:
        raise CLIError(f"{where}: nothing written, all {len(tally.skipped)} input(s) skipped")
    print(f"{tally.summary()} ({where})")
    return 0


# -- commands -------------------------------------------------------------------------------


def cmd_reconstruct(args) -> int:
    from .imaging import save_image_atomic, tensor_to_pil

    src = Path(args.input)
    inputs = _inputs(src)
    if src.is_dir():
        out = _folder_output(src, args.output)
        check_output_not_input(out, [src])
        outputs = mirror_outputs(inputs, src, out, args.ext)
        tally: Optional[SkipTally] = SkipTally()
    else:
        out = _single_output(src, args.output, args.ext)
        check_output_not_input(out, [src])
        outputs, tally = [out], None
    model = load_model(args.model, args.dtype)
    _clean_leftovers(outputs)
    import torch

    def run(x):
        with torch.no_grad():
            z = model.encode(x.to(model.dtype)).latent
            return z, model.decode(z, **_decode_kwargs(args)).sample

    t0 = time.perf_counter()
    for path, dest in zip(_progress(inputs, "reconstruct"), outputs):
        ok, loaded = _attempt(tally, path, _load_tensor, path)
        if not ok:
            continue
        x, (h, w), notes = loaded
        for note in notes:
            say(f"{path}: {note}")
        ok, result = _attempt(tally, path, run, x)
        if not ok:
            continue
        z, y = result
        y = y[..., :h, :w]
        save_image_atomic(tensor_to_pil(y), dest)
        if tally is None:
            from .metrics import psnr

            print(
                f"wrote {dest} ({w}x{h}, latent {tuple(z.shape[1:])}, PSNR {psnr(y, x[..., :h, :w]):.2f} dB, "
                f"{time.perf_counter() - t0:.2f} s)"
            )
        else:
            tally.done()
    return _finish(tally, out)


def cmd_encode(args) -> int:
    from .atomic import save_safetensors

    src, out = Path(args.input), Path(args.output)
    inputs = _inputs(src)
    if out.is_dir():
        raise CLIError(f"{out}: is a folder; name the .safetensors file to write")
    if out.suffix.lower() != ".safetensors":
        raise CLIError(f"{out}: encode writes a safetensors file; name it *.safetensors")
    check_output_not_input(out, [src])
    tally = SkipTally(verb="encoded") if src.is_dir() else None
    model = load_model(args.model, args.dtype)
    import torch

    def run(x):
        with torch.no_grad():
            return model.encode(x.to(model.dtype)).latent[0].float().contiguous()

    _clean_leftovers([out])
    tensors, meta = {}, {}
    for path in _progress(inputs, "encode"):
        ok, loaded = _attempt(tally, path, _load_tensor, path)
        if not ok:
            continue
        x, (h, w), notes = loaded
        for note in notes:
            say(f"{path}: {note}")
        ok, z = _attempt(tally, path, run, x)
        if not ok:
            continue
        i = len(tensors)
        tensors[f"latent.{i}"] = z
        meta[str(i)] = {"source": str(path), "height": h, "width": w}
        if tally is not None:
            tally.done()
    if not tensors:
        return _finish(tally, src)
    save_safetensors(tensors, out, metadata={"images": json.dumps(meta), "format": "mdiffae-latents-v1"})
    print(f"wrote {len(tensors)} latent(s) to {out}")
    return _finish(tally, out)


def _open_latents(src: Path):
    """``(safe_open handle, metadata per index, sorted latent keys)``, or a one-line CLIError."""
    from safetensors import safe_open

    if src.is_dir():
        raise CLIError(f"{src}: is a folder; decode takes the .safetensors file written by `mdiffae encode`")
    if not src.is_file():
        raise CLIError(f"{src}: no such file")
    try:
        handle = safe_open(str(src), "pt")
        keys = list(handle.keys())
        raw = (handle.metadata() or {}).get("images", "{}")
    except Exception as e:  # safetensors raises its own types for a malformed header
        raise CLIError(f"{src}: not a latent file written by `mdiffae encode` ({reason_of(e)})") from None
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except ValueError:
        say(f"{src}: its 'images' metadata is not valid JSON; sizes and names are not restored")
        meta = {}
    # isdecimal, not isdigit: "²" is a digit that int() refuses
    latent_keys = [k for k in keys if k.startswith("latent.") and k.split(".", 1)[1].isdecimal()]
    latent_keys.sort(key=lambda k: int(k.split(".", 1)[1]))
    if not latent_keys:
        raise CLIError(f"{src}: holds no 'latent.N' tensors; not a latent file written by `mdiffae encode`")
    return handle, meta, latent_keys


def cmd_decode(args) -> int:
    from .imaging import save_image_atomic, tensor_to_pil

    src = Path(args.input)
    handle, meta, keys = _open_latents(src)
    infos = [meta.get(k.split(".", 1)[1], {}) if isinstance(meta.get(k.split(".", 1)[1]), dict) else {} for k in keys]
    out, outputs = _decode_outputs(args, src, keys, infos)
    tally = SkipTally() if len(keys) > 1 else None
    model = load_model(args.model, args.dtype)
    _clean_leftovers(outputs)
    import torch

    def run(k, info):
        z = handle.get_tensor(k)
        _check_latent(z)
        with torch.no_grad():
            y = model.decode(z[None].to(model.dtype), **_decode_kwargs(args)).sample
        h, w = info.get("height"), info.get("width")
        if isinstance(h, int) and isinstance(w, int) and 0 < h <= y.shape[-2] and 0 < w <= y.shape[-1]:
            y = y[..., :h, :w]
        return y

    for k, info, dest in zip(_progress(keys, "decode"), infos, outputs):
        ok, y = _attempt(tally, f"{src} [{k}]", run, k, info)
        if not ok:
            continue
        save_image_atomic(tensor_to_pil(y), dest)
        if tally is not None:
            tally.done()
    if tally is None:
        print(f"wrote {outputs[0]}")
        return 0
    return _finish(tally, out)


def _check_latent(z) -> None:
    """Refuse what would decode to garbage: integer data, wrong rank, NaN/inf."""
    import torch

    if not z.is_floating_point():
        raise ValueError(
            f"dtype {str(z.dtype).replace('torch.', '')}: latents must be floating point "
            "(this is not a latent written by `mdiffae encode`)"
        )
    if z.ndim != 3:
        raise ValueError(f"shape {list(z.shape)}: a latent is [channels, height, width]")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("holds NaN or infinite values")


def _decode_outputs(args, src: Path, keys: List[str], infos: List[dict]):
    """``(output, one path per latent)``: a file for one latent, else a folder keeping the sources' folders."""
    if len(keys) > 1 or is_folder_target(args.output):
        out = Path(args.output)
        if out.exists() and not out.is_dir():
            raise CLIError(f"{out}: is a file, but {src} holds {len(keys)} latents; name an output folder")
        sources = [info.get("source") if isinstance(info.get("source"), str) else None for info in infos]
        outputs = [out / name for name in names_from_sources(sources, args.ext)]
    else:
        out = Path(args.output)
        image_format(out)
        outputs = [out]
    check_planned_outputs(outputs, keys, [src])
    for dest in outputs:
        check_output_not_input(dest, [src])
    return out, outputs


def cmd_eval(args) -> int:
    from .atomic import atomic_file
    from .evaluation import evaluate_files

    src = Path(args.input)
    inputs = _inputs(src)
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise CLIError(f"{out}: is a file; --out takes a folder for the pictures")
        check_output_not_input(out, [src])
    if args.json:
        if os.path.isdir(args.json):
            raise CLIError(f"{args.json}: is a folder; --json takes a file name")
        check_output_not_input(args.json, [src], reread=False)  # a .json is never read back as an image
    tally = SkipTally(verb="evaluated") if src.is_dir() else None
    model = load_model(args.model, args.dtype)
    root = src if src.is_dir() else src.parent

    def fail(name, reason):  # one file: its error is the command's error
        raise CLIError(f"{name}: {reason}")

    report = evaluate_files(
        model,
        inputs,
        out,
        decode_kwargs=_decode_kwargs(args),
        root=root,
        on_skip=tally.skip if tally is not None else fail,
    )
    if report is None:
        return _finish(tally, src)
    print(report["markdown"])
    if args.json:
        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=1))
    if tally is not None:
        tally.done(len(report["rows"]))
    return _finish(tally, src)


def _check_train_args(args) -> Path:
    """Everything about a training run that can be refused before torch loads."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out}: is a file; --output-dir takes a folder")
    if args.data != "skimage":
        data = Path(args.data)
        if not data.is_dir():
            raise CLIError(f"{data}: no such folder (--data takes an image folder, or 'skimage')")
        check_output_not_input(out, [data])
    if args.init:
        check_model_spec(args.init, "--init")
    if args.resume and args.resume != "latest":
        if not Path(args.resume).is_dir():
            raise CLIError(f"{args.resume}: no such checkpoint folder (--resume takes one, or 'latest')")
    if args.warmup_steps > args.steps:
        say(
            f"note: --warmup-steps {args.warmup_steps} exceeds --steps {args.steps}; the learning rate never "
            "reaches --lr"
        )
    return out


def _objective_overrides(args) -> dict:
    """The ``ObjectiveConfig`` fields given on the command line (saved with each checkpoint; the rest keep their defaults)."""
    given = {
        "token_mask_prob": args.token_mask_prob,
        "sigmoid_bias": args.sigmoid_bias,
        "gradient_weight": args.gradient_weight,
        "umd_ratio": args.umd_ratio,
        "umd_mask_ratio": args.umd_mask_ratio,
    }
    return {k: v for k, v in given.items() if v is not None}


def cmd_train(args) -> int:
    out = _check_train_args(args)
    from .training import SKIMAGE_HELDOUT, TrainConfig, export_skimage_photos, train

    data = args.data
    exclude = list(args.exclude or [])
    if data == "skimage":
        data = str(out / "skimage_photos")
        export_skimage_photos(data)
        exclude += [f"{n}.png" for n in SKIMAGE_HELDOUT]
    cfg = TrainConfig(
        data=data,
        output_dir=str(out),
        model_config=args.model_config or {},
        init=args.init,
        resume=args.resume,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_every=args.checkpoint_every,
        preview_every=args.preview_every,
        exclude=exclude,
        ema_decay=args.ema_decay,
        warmup_steps=args.warmup_steps,
        permute_channels=args.permute_channels,
        color_jitter=args.color_jitter,
        objective=_objective_overrides(args),
    )
    try:
        train(cfg, log=say)
    except TypeError as e:  # an unknown --model-config key reaches the model's __init__
        if args.model_config and "argument" in str(e):
            raise CLIError(f"--model-config: {one_line(e)}") from None
        raise
    return 0


def cmd_encode_dataset(args) -> int:
    from .dataset_encoding.encode import run_from_args

    check_model_spec(args.model)
    return run_from_args(args, log=say)


def converter_module():
    """The converter's module: the one place that names it (a one-line change when it moves)."""
    from .conversion import cli as convert

    return convert


def run_converter(argv: List[str]) -> int:
    """The converter's own command line, run with already checked arguments."""
    return converter_module().main(argv)


def cmd_convert(args) -> int:
    snapshot, out = Path(args.snapshot), Path(args.out)
    if snapshot.is_file():
        raise CLIError(f"{snapshot}: is a file; pass the snapshot folder that holds it ({snapshot.parent})")
    if not snapshot.is_dir():
        raise CLIError(f"{snapshot}: not a directory (pass the downloaded snapshot folder)")
    check_output_not_input(out, [snapshot], replaces_folder=True)
    if out.exists() and not args.overwrite:
        raise CLIError(f"{out}: exists; pass --overwrite to replace it")
    argv = [str(snapshot), str(out), "--dtype", args.dtype]
    argv += ["--verify"] if args.verify else []
    argv += ["--overwrite"] if args.overwrite else []
    argv += ["--min-psnr", repr(args.min_psnr)] if args.min_psnr is not None else []
    return run_converter(argv)


# -- the parser -----------------------------------------------------------------------------


def _model_opts(sp, decode: bool = True, default_dtype: str = "float32") -> None:
    sp.add_argument(
        "--model", help="diffusers folder, published snapshot folder or Hub id (default: the bundled demo checkpoint)"
    )
    sp.add_argument(
        "--dtype",
        choices=DTYPE_NAMES,
        default=default_dtype,
        help=f"dtype the model runs in (default: {default_dtype})",
    )
    if decode:
        sp.add_argument("--steps", type=positive_int, default=None, help="decoder steps (default: model config, 1)")
        sp.add_argument(
            "--pdg-strength",
            type=finite_float,
            default=None,
            help="path-drop guidance strength (1.0 = off; 1.01-1.2 sharpens with --steps > 1)",
        )
        sp.add_argument("--seed", type=seed_int, default=None, help="noise seed (default: model config)")
        sp.add_argument(
            "--sampler",
            choices=SAMPLERS,
            default=None,
            help="ddim (default) or dpmpp_2m (DPM-Solver++(2M), better at few steps)",
        )
        sp.add_argument(
            "--schedule",
            choices=("linear", "cosine"),
            default=None,
            help="time grid of the sampler: linear (default) or cosine",
        )
        sp.add_argument(
            "--strength",
            type=float_in(0.0, 1.0, low_open=True),
            default=None,
            help="start the sampler at t = STRENGTH in (0, 1] instead of 1 (default 1)",
        )


def _ext_opt(sp) -> None:
    sp.add_argument(
        "--ext",
        default=None,
        type=_ext_type,
        help="image format of folder outputs: png (default, lossless), jpg, webp, bmp or tiff",
    )


def _ext_type(text: str) -> str:
    try:
        return normalise_ext(text)
    except OutputError:
        raise argparse.ArgumentTypeError(f"cannot write {text!r} images; use png, jpg, webp, bmp or tiff") from None


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; building and parsing it imports nothing heavy (no torch, no diffusers)."""
    p = OneLineParser(prog="mdiffae", description="mDiffAE image tokenizer (diffusers-mdiffae).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser(
        "reconstruct",
        help="encode and decode images",
        description="Encode and decode images; a folder input gives a folder output with the same structure.",
    )
    sp.add_argument("input", help="an image file, or a folder (every image below it)")
    sp.add_argument(
        "output",
        help="an image file (its extension names the format) or, for a folder input or a path ending in /, a folder",
    )
    _model_opts(sp)
    _ext_opt(sp)
    sp.set_defaults(fn=cmd_reconstruct)

    sp = sub.add_parser(
        "encode",
        help="encode images to a safetensors file of latents",
        description="Encode images to one safetensors file (latents + source/size metadata).",
    )
    sp.add_argument("input", help="an image file, or a folder (every image below it)")
    sp.add_argument("output", help="the .safetensors file to write")
    _model_opts(sp, decode=False)
    sp.set_defaults(fn=cmd_encode)

    sp = sub.add_parser(
        "decode",
        help="decode a latent file written by `mdiffae encode`",
        description="Decode the latents of a file written by `mdiffae encode`.",
    )
    sp.add_argument("input", help="a .safetensors file written by `mdiffae encode`")
    sp.add_argument(
        "output",
        help="an image file (one latent), or a folder (several latents, or a path ending "
        "in /); folder outputs keep the sources' relative folders",
    )
    _model_opts(sp)
    _ext_opt(sp)
    sp.set_defaults(fn=cmd_decode)

    sp = sub.add_parser(
        "eval",
        help="PSNR/SSIM(/LPIPS) against bicubic baselines, with pictures",
        description="Reconstruction quality against bicubic-from-1/4 and -1/8 baselines.",
    )
    sp.add_argument("input", help="an image file, or a folder (every image below it)")
    sp.add_argument("--out", help="folder for comparison grids and latent PCA images")
    sp.add_argument("--json", help="also write the figures to this JSON file")
    _model_opts(sp)
    sp.set_defaults(fn=cmd_eval)

    sp = sub.add_parser(
        "convert",
        help="convert a published snapshot to a diffusers folder",
        description="Convert a published mDiffAE snapshot (config.json + model.safetensors) to a "
        "diffusers folder; nothing is written unless every check passes.",
    )
    sp.add_argument("snapshot", help="the downloaded original repository folder")
    sp.add_argument("out", help="output folder (written only if every check passes; never inside the snapshot)")
    sp.add_argument(
        "--verify", action="store_true", help="run the original m_diffae package from the snapshot and compare outputs"
    )
    sp.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="dtype of the saved weights")
    sp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT if it exists (the old one is removed only after the new one is complete)",
    )
    sp.add_argument(
        "--min-psnr",
        type=finite_float,
        default=None,
        help="warn when the sample reconstruction is below this PSNR in dB (default: the converter's, 25)",
    )
    sp.set_defaults(fn=cmd_convert)

    from .dataset_encoding.options import add_arguments as add_encode_dataset_arguments

    sp = sub.add_parser(
        "encode-dataset",
        help="encode an image dataset to sharded latents (resumable)",
        description="Encode an image dataset to sharded mDiffAE latents (resumable; `accelerate "
        "launch -m diffusers_mdiffae.dataset_encoding` for several processes).",
    )
    add_encode_dataset_arguments(sp)
    sp.set_defaults(fn=cmd_encode_dataset)

    sp = sub.add_parser(
        "train",
        help="train or fine-tune (`accelerate launch -m diffusers_mdiffae.cli train ...`)",
        description="Train or fine-tune with the published objective, on accelerate.",
    )
    sp.add_argument("--data", required=True, help="image folder (recursive), or 'skimage' for scikit-image's samples")
    sp.add_argument("--output-dir", required=True, help="folder for checkpoints, previews, log.jsonl and final/")
    sp.add_argument(
        "--model-config", type=json_object, help="JSON object of AutoencoderMDiffAE arguments for a fresh model"
    )
    sp.add_argument("--init", help="fine-tune from this model (diffusers folder, snapshot folder or Hub id)")
    sp.add_argument("--resume", help="a checkpoint folder, or 'latest' (falls back past a corrupt one)")
    sp.add_argument("--steps", type=positive_int, default=1000, help="total optimizer steps (default: 1000)")
    sp.add_argument("--batch-size", type=positive_int, default=8, help="images per step and process (default: 8)")
    sp.add_argument(
        "--crop", type=multiple_of_16, default=128, help="crop side in pixels, a multiple of 16 (default: 128)"
    )
    sp.add_argument(
        "--lr",
        type=float_in(0.0, 1.0, low_open=True),
        default=5e-4,
        help="peak learning rate, in (0, 1] (default: 5e-4)",
    )
    sp.add_argument("--warmup-steps", type=non_negative_int, default=100, help="linear warm-up steps (default: 100)")
    sp.add_argument(
        "--ema-decay",
        type=float_in(0.0, 1.0, high_open=True),
        default=0.999,
        help="EMA decay in [0, 1) (default: 0.999)",
    )
    sp.add_argument("--seed", type=seed_int, default=0, help="seed of the initialisation and every batch (default: 0)")
    sp.add_argument(
        "--mixed-precision", choices=["no", "bf16", "fp16"], default="no", help="autocast dtype (default: no)"
    )
    sp.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for activation memory")
    sp.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=500,
        help="steps between checkpoints (and one at the end), 0 = none (default: 500)",
    )
    sp.add_argument(
        "--preview-every",
        type=non_negative_int,
        default=500,
        help="steps between preview grids, 0 = never (default: 500)",
    )
    sp.add_argument("--exclude", nargs="*", help="file names to hold out")
    sp.add_argument(
        "--permute-channels",
        action="store_true",
        help="shuffle RGB channels of every crop (colour diversity for small folders)",
    )
    sp.add_argument(
        "--color-jitter",
        type=float_in(0.0, 1.0, high_open=True),
        default=0.0,
        help="per-crop brightness, contrast and saturation factors drawn from [1 - s, 1 + s] (default: 0)",
    )
    sp.add_argument(
        "--token-mask-prob",
        type=float_in(0.0, 1.0),
        help="fraction of samples whose latent tokens are masked, 3 of each 2x2 group (default: 0.5)",
    )
    sp.add_argument(
        "--sigmoid-bias",
        type=finite_float,
        help="SiD2 bias b of the loss weight sigmoid(logsnr - b); lower puts more weight near pure noise, "
        "where the 1-step decode runs (default: -8)",
    )
    sp.add_argument(
        "--gradient-weight",
        type=float_in(0.0, 1e6),
        help="add this times the squared error of neighbour differences to the loss, against a 16-px grid "
        "in flat regions (default: 0 = the published loss)",
    )
    sp.add_argument(
        "--umd-ratio",
        type=float_in(0.0, 1.0),
        help="UMD objective: fraction of samples given a noise-free step with masked pixel patches "
        "(r_{t=0}; default 0 = the published objective)",
    )
    sp.add_argument(
        "--umd-mask-ratio",
        type=float_in(0.0, 1.0, high_open=True),
        help="UMD: fraction of pixel patches blanked in those samples, in [0, 1) (default: 0.9)",
    )
    sp.set_defaults(fn=cmd_train)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        say("error: interrupted")
        return 130
    except Exception as e:  # every failure ends as one line; MDIFFAE_TRACEBACK=1 shows the traceback
        if os.environ.get(_TRACEBACK_ENV):
            raise
        say(f"error: {describe_error(e)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
