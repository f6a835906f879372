"""The ``mdiffae`` command: reconstruct, encode, decode, convert, eval, train.

    mdiffae reconstruct IN OUT [--model M] [--steps N] [--pdg W] [--seed S] [--dtype D]
    mdiffae encode IN OUT.safetensors
    mdiffae decode IN.safetensors OUT
    mdiffae convert SNAPSHOT OUT [--verify]
    mdiffae encode-dataset IN OUT [--resolution 256 --flip ...]
    mdiffae eval IN [--out DIR]
    mdiffae train --data DIR --output-dir DIR [...]

IN may be a file or a folder (every image below it). The default model is the checkpoint bundled
with the package; ``--model`` takes a local diffusers folder, a published snapshot folder, or a
Hub id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

from .atomic import atomic_file

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def load_model(spec: Optional[str], dtype: str = "float32"):
    """The bundled demo checkpoint, a local folder (diffusers or published layout), or a Hub id."""
    from . import DEMO_MODEL_DIR
    from . import AutoencoderMDiffAE

    source = str(DEMO_MODEL_DIR) if spec is None else spec
    try:
        model = AutoencoderMDiffAE.from_pretrained(source, torch_dtype=_DTYPES[dtype])
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot load model {source!r}: {e}") from None
    return model.eval()


def _inputs(path: Path) -> List[Path]:
    from .imaging import list_images

    if path.is_dir():
        files = list_images(path)
        if not files:
            raise CLIError(f"{path}: no images found")
        return files
    if not path.exists():
        raise CLIError(f"{path}: no such file or folder")
    return [path]


def _outputs(inputs: List[Path], src: Path, out: Path, suffix: Optional[str] = None) -> List[Path]:
    """Output paths mirroring ``inputs`` below ``out`` when ``src`` is a folder, else ``out`` itself."""
    if src.is_dir():
        return [(out / p.relative_to(src)).with_suffix(suffix or p.suffix) for p in inputs]
    return [out]


def _load_tensor(path: Path) -> Tuple[torch.Tensor, Tuple[int, int], List[str]]:
    """Image file -> ``[1, 3, H', W']`` padded to multiples of 16, original size, notes."""
    from .imaging import ImageLoadError, load_rgb, pad_to_multiple, pil_to_tensor

    try:
        image, notes = load_rgb(path)
    except ImageLoadError as e:
        raise CLIError(str(e)) from None
    x, size = pad_to_multiple(pil_to_tensor(image), 16)
    if x.shape[-2:] != size:
        notes.append(f"{size[1]}x{size[0]} is not a multiple of 16: padded to {x.shape[-1]}x{x.shape[-2]} "
                     "(reflection) and cropped back")
    return x, size, notes


def _decode_kwargs(args) -> dict:
    return {"num_inference_steps": args.steps, "pdg_strength": args.pdg, "seed": args.seed, "sampler": args.sampler}


def _progress(items, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=len(items) < 2, dynamic_ncols=True)


def cmd_reconstruct(args) -> int:
    from .imaging import save_image_atomic, tensor_to_pil

    src, out = Path(args.input), Path(args.output)
    inputs = _inputs(src)
    outputs = _outputs(inputs, src, out)
    model = load_model(args.model, args.dtype)
    t0 = time.perf_counter()
    for path, dest in zip(_progress(inputs, "reconstruct"), outputs):
        x, (h, w), notes = _load_tensor(path)
        for note in notes:
            _say(f"{path}: {note}")
        with torch.no_grad():
            z = model.encode(x.to(model.dtype)).latent
            y = model.decode(z, **_decode_kwargs(args)).sample[..., :h, :w]
        save_image_atomic(tensor_to_pil(y), dest)
        if len(inputs) == 1:
            from .metrics import psnr

            print(f"wrote {dest} ({w}x{h}, latent {tuple(z.shape[1:])}, PSNR {psnr(y, x[..., :h, :w]):.2f} dB, "
                  f"{time.perf_counter() - t0:.2f} s)")
    if len(inputs) > 1:
        print(f"wrote {len(outputs)} images under {out}")
    return 0


def cmd_encode(args) -> int:
    from safetensors.torch import save_file

    src, out = Path(args.input), Path(args.output)
    inputs = _inputs(src)
    model = load_model(args.model, args.dtype)
    tensors, meta = {}, {}
    for i, path in enumerate(_progress(inputs, "encode")):
        x, (h, w), notes = _load_tensor(path)
        for note in notes:
            _say(f"{path}: {note}")
        with torch.no_grad():
            tensors[f"latent.{i}"] = model.encode(x.to(model.dtype)).latent[0].float().contiguous()
        meta[str(i)] = {"source": str(path), "height": h, "width": w}
    with atomic_file(out) as tmp:
        save_file(tensors, str(tmp), metadata={"images": json.dumps(meta), "format": "mdiffae-latents-v1"})
    print(f"wrote {len(tensors)} latent(s) to {out}")
    return 0


def cmd_decode(args) -> int:
    from safetensors import safe_open

    from .imaging import save_image_atomic, tensor_to_pil

    src, out = Path(args.input), Path(args.output)
    if not src.is_file():
        raise CLIError(f"{src}: no such file")
    try:
        with safe_open(str(src), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("images", "{}"))
            latents = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own types
        raise CLIError(f"{src}: not a latent file written by `mdiffae encode` ({e})") from None
    keys = sorted((k for k in latents if k.startswith("latent.")), key=lambda k: int(k.split(".")[1]))
    if not keys:
        raise CLIError(f"{src}: holds no 'latent.N' tensors")
    model = load_model(args.model, args.dtype)
    many = len(keys) > 1
    for k in _progress(keys, "decode"):
        i = k.split(".")[1]
        info = meta.get(i, {})
        z = latents[k][None].to(model.dtype)
        with torch.no_grad():
            try:
                y = model.decode(z, **_decode_kwargs(args)).sample
            except ValueError as e:
                raise CLIError(f"{src} [{k}]: {e}") from None
        if "height" in info:
            y = y[..., : info["height"], : info["width"]]
        dest = out / f"{Path(info.get('source', f'image_{i}')).stem}.png" if many else out
        save_image_atomic(tensor_to_pil(y), dest)
    print(f"wrote {len(keys)} image(s) to {out}")
    return 0


def cmd_eval(args) -> int:
    from .evaluation import evaluate_files

    src = Path(args.input)
    inputs = _inputs(src)
    model = load_model(args.model, args.dtype)
    report = evaluate_files(model, inputs, Path(args.out) if args.out else None, decode_kwargs=_decode_kwargs(args))
    print(report["markdown"])
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=1))
    return 0


def cmd_train(args) -> int:
    from .training import SKIMAGE_HELDOUT, TrainConfig, export_skimage_photos, train

    data = args.data
    if data == "skimage":
        data = str(Path(args.output_dir) / "skimage_photos")
        export_skimage_photos(data)
        args.exclude = list(args.exclude or []) + [f"{n}.png" for n in SKIMAGE_HELDOUT]
    model_config = json.loads(args.model_config) if args.model_config else {}
    cfg = TrainConfig(
        data=data, output_dir=args.output_dir, model_config=model_config, init=args.init, resume=args.resume,
        steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=args.seed,
        mixed_precision=args.mixed_precision, gradient_checkpointing=args.gradient_checkpointing,
        checkpoint_every=args.checkpoint_every, preview_every=args.preview_every, exclude=args.exclude or [],
        ema_decay=args.ema_decay, warmup_steps=args.warmup_steps, permute_channels=args.permute_channels,
    )
    train(cfg)
    return 0


def cmd_encode_dataset(args) -> int:
    from .dataset_encoding import main as encode_dataset_main

    return encode_dataset_main(args.rest)


def cmd_convert(args) -> int:
    from .conversion.cli import main as convert_main

    return convert_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdiffae", description="mDiffAE image tokenizer (diffusers-mdiffae).")
    sub = p.add_subparsers(dest="command", required=True)

    def model_opts(sp, decode=True):
        sp.add_argument("--model", help="diffusers folder, published snapshot folder or Hub id (default: bundled demo)")
        sp.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
        if decode:
            sp.add_argument("--steps", type=int, default=None, help="decoder steps (default: model config, 1)")
            sp.add_argument("--pdg", type=float, default=None, help="path-drop guidance strength (1.0 = off)")
            sp.add_argument("--seed", type=int, default=None, help="noise seed (default: model config)")
            sp.add_argument("--sampler", choices=["ddim", "dpmpp_2m"], default=None)

    sp = sub.add_parser("reconstruct", help="encode and decode images")
    sp.add_argument("input")
    sp.add_argument("output")
    model_opts(sp)
    sp.set_defaults(fn=cmd_reconstruct)

    sp = sub.add_parser("encode", help="encode images to a safetensors file of latents")
    sp.add_argument("input")
    sp.add_argument("output")
    model_opts(sp, decode=False)
    sp.set_defaults(fn=cmd_encode)

    sp = sub.add_parser("decode", help="decode a latent file written by `mdiffae encode`")
    sp.add_argument("input")
    sp.add_argument("output", help="an image file (one latent) or a folder (several)")
    model_opts(sp)
    sp.set_defaults(fn=cmd_decode)

    sp = sub.add_parser("eval", help="PSNR/SSIM(/LPIPS) against bicubic baselines, with pictures")
    sp.add_argument("input")
    sp.add_argument("--out", help="folder for comparison grids and latent PCA images")
    sp.add_argument("--json", help="also write the figures as JSON")
    model_opts(sp)
    sp.set_defaults(fn=cmd_eval)

    sp = sub.add_parser("convert", help="convert a published snapshot (see `mdiffae convert -h`)", add_help=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_convert)

    sp = sub.add_parser("encode-dataset", help="encode an image dataset to sharded latents (see `mdiffae encode-dataset -h`)",
                        add_help=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_encode_dataset)

    sp = sub.add_parser("train", help="train or fine-tune (accelerate: `accelerate launch -m diffusers_mdiffae.cli train ...`)")
    sp.add_argument("--data", required=True, help="image folder, or 'skimage' for scikit-image's sample photos")
    sp.add_argument("--output-dir", required=True)
    sp.add_argument("--model-config", help="JSON of AutoencoderMDiffAE arguments for a fresh model")
    sp.add_argument("--init", help="fine-tune from this model (folder, snapshot or Hub id)")
    sp.add_argument("--resume", help="checkpoint folder or 'latest'")
    sp.add_argument("--steps", type=int, default=1000)
    sp.add_argument("--batch-size", type=int, default=8)
    sp.add_argument("--crop", type=int, default=128)
    sp.add_argument("--lr", type=float, default=5e-4)
    sp.add_argument("--warmup-steps", type=int, default=100)
    sp.add_argument("--ema-decay", type=float, default=0.999)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    sp.add_argument("--gradient-checkpointing", action="store_true")
    sp.add_argument("--checkpoint-every", type=int, default=500)
    sp.add_argument("--preview-every", type=int, default=500)
    sp.add_argument("--exclude", nargs="*", help="file names to hold out")
    sp.add_argument("--permute-channels", action="store_true",
                    help="shuffle RGB channels of every crop (colour diversity for small folders)")
    sp.set_defaults(fn=cmd_train)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except CLIError as e:
        _say(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
