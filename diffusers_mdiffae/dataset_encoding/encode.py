"""The encoder job: deterministic shards, atomic writes, exact resume, manifest written last."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..atomic import atomic_file
from ..imaging import ImageLoadError, pil_to_tensor
from .sources import ImageSource, open_source

SHARD_DIR = "shards"
MANIFEST = "manifest.json"
RUN_FILE = "run.json"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# Test hook: seconds to sleep after each shard is written, so a test can SIGKILL the job mid-run.
_PAUSE_ENV = "MDIFFAE_ENCODE_PAUSE_AFTER_SHARD"


@dataclass
class EncodeConfig:
    """Settings that determine the output; a restart must use the same ones.

    Args:
        resolution: images are resized so the shorter side is ``resolution`` (antialiased bicubic)
            and centre-cropped to ``resolution x resolution`` (the ADM/DiT/SiT recipe); a multiple
            of 16. ``crop=False`` keeps the aspect ratio and crops each side down to a multiple of 16.
        flip: also encode the horizontal mirror of every image (a second sample per image).
        dtype: storage dtype of the latents.
        shard_size: images per shard (flip copies stay in their image's shard).
        batch_size: images per encoder call; batches never cross shards, so the result does not
            depend on how many processes share the work.
    """

    resolution: int = 256
    crop: bool = True
    flip: bool = False
    dtype: str = "float16"
    shard_size: int = 256
    batch_size: int = 16
    column: str = "image"

    def validate(self) -> None:
        if self.resolution % 16 or self.resolution < 16:
            raise ValueError(f"resolution must be a positive multiple of 16, got {self.resolution}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("shard_size and batch_size must be positive")


def preprocess(image, cfg: EncodeConfig) -> Tuple[torch.Tensor, Dict]:
    """RGB PIL image -> ``[3, H, W]`` in [-1, 1] and the geometry applied (for the metadata)."""
    x = pil_to_tensor(image)
    h, w = x.shape[-2:]
    scale = cfg.resolution / min(h, w)
    nh, nw = max(round(h * scale), cfg.resolution), max(round(w * scale), cfg.resolution)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    if cfg.crop:
        th = tw = cfg.resolution
    else:
        th, tw = nh // 16 * 16, nw // 16 * 16
    top, left = (nh - th) // 2, (nw - tw) // 2
    x = x[..., top: top + th, left: left + tw]
    return x[0], {"original_size": [h, w], "resized_size": [nh, nw], "crop_box": [top, left, top + th, left + tw]}


def shard_path(out: Path, k: int) -> Path:
    return out / SHARD_DIR / f"shard-{k:06d}.safetensors"


def _fingerprint(source: ImageSource, cfg: EncodeConfig, model_id: str) -> Dict:
    names = hashlib.sha256("\n".join(source.name(i) for i in range(len(source))).encode()).hexdigest()
    return {"config": asdict(cfg), "model": model_id, "num_images": len(source), "names_sha256": names}


def _write_atomic_json(path: Path, data) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _encode_shard(model, source: ImageSource, k: int, cfg: EncodeConfig, out: Path, log) -> int:
    from safetensors.torch import save_file

    start, stop = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(source))
    samples, pixels, skipped = [], [], []
    for i in range(start, stop):
        name = source.name(i)
        try:
            image, notes = source.load(i)
            x, geom = preprocess(image, cfg)
        except (ImageLoadError, OSError, ValueError) as e:
            skipped.append({"source": name, "reason": str(e)})
            log(f"skipped {name}: {e}")
            continue
        for flip in ([False, True] if cfg.flip else [False]):
            pixels.append(x.flip(-1) if flip else x)
            samples.append({"source": name, "index": i, "flip": flip, "notes": notes, **geom})
    latents = []
    dtype = model.dtype
    with torch.inference_mode():
        for b in range(0, len(pixels), cfg.batch_size):
            chunk = pixels[b: b + cfg.batch_size]
            if len({tuple(p.shape) for p in chunk}) == 1:
                latents += list(model.encode(torch.stack(chunk).to(model.device, dtype)).latent.float().cpu())
            else:  # crop=False: sizes differ, encode one by one
                latents += [model.encode(p[None].to(model.device, dtype)).latent.float().cpu()[0] for p in chunk]
    tensors = {}
    c = model.config.latent_channels
    total, total_sq, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for j, z in enumerate(latents):
        tensors[f"latent.{j}"] = z.to(_DTYPES[cfg.dtype]).contiguous()
        zz = z.double()
        total += zz.sum(dim=(1, 2))
        total_sq += zz.square().sum(dim=(1, 2))
        count += zz.shape[1] * zz.shape[2]
    tensors["stats.sum"], tensors["stats.sumsq"] = total, total_sq
    tensors["stats.count"] = torch.tensor([count], dtype=torch.float64)
    # A shard exists under its final name only when complete.
    with atomic_file(shard_path(out, k)) as tmp:
        save_file(tensors, str(tmp), metadata={"samples": json.dumps(samples), "skipped": json.dumps(skipped),
                                               "shard": str(k), "format": "mdiffae-latent-shard-v1"})
    return len(latents)


def _shard_done(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return "stats.count" in f.keys()
    except Exception:
        return False


def _write_manifest(out: Path, n_shards: int, fingerprint: Dict, latent_channels: int) -> Dict:
    from safetensors import safe_open

    total = torch.zeros(latent_channels, dtype=torch.float64)
    total_sq = torch.zeros(latent_channels, dtype=torch.float64)
    count, num_samples, skipped, shards = 0.0, 0, [], []
    for k in range(n_shards):
        path = shard_path(out, k)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            total += f.get_tensor("stats.sum")
            total_sq += f.get_tensor("stats.sumsq")
            count += float(f.get_tensor("stats.count")[0])
        n = len(json.loads(meta["samples"]))
        num_samples += n
        skipped += json.loads(meta["skipped"])
        shards.append({"file": f"{SHARD_DIR}/{path.name}", "num_samples": n})
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean.square()).clamp_min(0).sqrt()
    manifest = {
        "format": "mdiffae-latent-dataset-v1", **fingerprint, "latent_channels": latent_channels,
        "num_samples": num_samples, "shards": shards, "skipped": skipped,
        "latents_mean": mean.tolist(), "latents_std": std.tolist(),
        "hint": "normalise with (z - latents_mean) / latents_std per channel; "
                "a single scalar scale is 1 / mean(latents_std)",
    }
    _write_atomic_json(out / MANIFEST, manifest)
    return manifest


def encode_dataset(
    source,
    output_dir,
    model=None,
    config: Optional[EncodeConfig] = None,
    num_threads: Optional[int] = None,
    log=print,
) -> Optional[Dict]:
    """Encode every image of ``source`` into shards under ``output_dir``; returns the manifest (main process).

    Run it once per process (``accelerate launch``): process ``p`` of ``n`` encodes the shards
    ``k`` with ``k % n == p``. Finished shards are skipped, so a restarted run only does what is
    missing; temporary files of a killed run are removed.

    Args:
        source: image folder, saved ``datasets`` folder, or ``datasets.Dataset``.
        model: an ``AutoencoderMDiffAE``, a path/Hub id, or None for the bundled checkpoint.
        num_threads: torch CPU threads (fix it to compare runs bitwise across process counts).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from .. import DEMO_MODEL_DIR
    from .. import AutoencoderMDiffAE

    cfg = config or EncodeConfig()
    cfg.validate()
    if num_threads:
        torch.set_num_threads(num_threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    out = Path(output_dir)
    src = open_source(source, cfg.column)
    if model is None or isinstance(model, (str, os.PathLike)):
        model_id = str(model or DEMO_MODEL_DIR)
        model = AutoencoderMDiffAE.from_pretrained(model_id)
    else:
        model_id = str(model.config.get("_name_or_path", "in-memory model"))
    model = model.eval().to(accelerator.device)
    fingerprint = _fingerprint(src, cfg, model_id)
    n_shards = -(-len(src) // cfg.shard_size)

    if accelerator.is_main_process:
        (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        run_file = out / RUN_FILE
        if run_file.is_file():
            previous = json.loads(run_file.read_text())
            if previous != fingerprint:
                raise ValueError(
                    f"{out} holds a run with other settings or inputs ({RUN_FILE} differs); "
                    "use a new output folder"
                )
        else:
            _write_atomic_json(run_file, fingerprint)
    accelerator.wait_for_everyone()

    mine = [k for k in range(n_shards) if k % accelerator.num_processes == accelerator.process_index]
    for stale in (out / SHARD_DIR).glob(".shard-*.tmp-*"):
        k = int(stale.name.split("-")[1].split(".")[0])
        if k in mine:
            stale.unlink(missing_ok=True)
    todo = [k for k in mine if not _shard_done(shard_path(out, k))]
    if accelerator.is_main_process:
        log(f"{len(src)} images in {n_shards} shards; {accelerator.num_processes} process(es); "
            f"main process: {len(mine) - len(todo)} of its {len(mine)} shards already done")
    pause = float(os.environ.get(_PAUSE_ENV, "0") or 0)
    sizes = {k: min((k + 1) * cfg.shard_size, len(src)) - k * cfg.shard_size for k in todo}
    bar = tqdm(total=sum(sizes.values()), disable=not accelerator.is_main_process, desc="encode",
               unit="img", dynamic_ncols=True)
    t0, done = time.perf_counter(), 0
    for k in todo:
        n = _encode_shard(model, src, k, cfg, out, log if accelerator.is_main_process else (lambda _: None))
        done += n
        bar.update(sizes[k])
        bar.set_postfix(img_s=f"{done * accelerator.num_processes / max(time.perf_counter() - t0, 1e-9):.1f}")
        if pause:
            time.sleep(pause)
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        missing = [k for k in range(n_shards) if not _shard_done(shard_path(out, k))]
        if missing:
            raise RuntimeError(f"shards {missing[:10]} are missing after the run; run the same command again")
        manifest = _write_manifest(out, n_shards, fingerprint, model.config.latent_channels)
        log(f"wrote {out / MANIFEST}: {manifest['num_samples']} samples, {len(manifest['skipped'])} skipped")
        return manifest
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mdiffae encode-dataset",
                                description="Encode an image dataset to sharded mDiffAE latents (resumable).")
    p.add_argument("input", help="image folder (recursive) or a datasets folder saved with save_to_disk")
    p.add_argument("output")
    p.add_argument("--model", help="diffusers folder, published snapshot or Hub id (default: bundled demo)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--no-crop", action="store_true", help="keep the aspect ratio (sides cropped to multiples of 16)")
    p.add_argument("--flip", action="store_true", help="also encode horizontal flips")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float16")
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--column", default="image", help="image column of a datasets dataset")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    a = p.parse_args(argv)
    cfg = EncodeConfig(resolution=a.resolution, crop=not a.no_crop, flip=a.flip, dtype=a.dtype,
                       shard_size=a.shard_size, batch_size=a.batch_size, column=a.column)
    try:
        encode_dataset(a.input, a.output, model=a.model, config=cfg, num_threads=a.threads)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
