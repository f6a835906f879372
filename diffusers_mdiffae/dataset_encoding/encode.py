"""The encoder job: deterministic shards, atomic writes, exact resume, manifest written last."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..atomic import atomic_file, remove_stale_temporaries, save_safetensors
from ..imaging import pil_to_tensor
from ..outputs import check_output_not_input
from ..skipping import SkipTally, describe_error, reason_of, say
from .options import EncodeConfig, build_parser, config_from_args
from .sources import ImageSource, open_source

SHARD_DIR = "shards"
MANIFEST = "manifest.json"
RUN_FILE = "run.json"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# Test hook: seconds to sleep after each shard is written, so a test can SIGKILL the job mid-run.
_PAUSE_ENV = "MDIFFAE_ENCODE_PAUSE_AFTER_SHARD"


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
    x = x[..., top : top + th, left : left + tw]
    return x[0], {"original_size": [h, w], "resized_size": [nh, nw], "crop_box": [top, left, top + th, left + tw]}


def shard_path(out: Path, k: int) -> Path:
    return out / SHARD_DIR / f"shard-{k:06d}.safetensors"


def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _sha256_model(model) -> str:
    """Hash of a loaded model's config and weights (what it computes, wherever it came from)."""
    h = hashlib.sha256(
        json.dumps(
            {k: v for k, v in dict(model.config).items() if not k.startswith("_")}, sort_keys=True, default=str
        ).encode()
    )
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + b"\0" + str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model, spec=None) -> Dict[str, str]:
    """What identifies a model for a restart: a hash of its weights and config, not a path string.

    A local folder is hashed from its files (``config.json`` and every ``*.safetensors`` in it,
    so the same folder reached through another path or a symlink is the same model, and a folder
    whose weights changed is not); anything else (a Hub id, an in-memory model) from the loaded
    weights. ``model_path`` records the resolved folder for people; it is not compared.
    """
    folder = Path(spec) if spec is not None and Path(spec).is_dir() else None
    if folder is not None:
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and (p.suffix == ".safetensors" or p.name == "config.json")
        )
        if files:
            return {"model_sha256": _sha256_files(files), "model_path": os.path.realpath(folder)}
    return {"model_sha256": _sha256_model(model), "model_path": str(spec or "in-memory model")}


def _fingerprint(source: ImageSource, cfg: EncodeConfig, model_fp: Dict[str, str]) -> Dict:
    names = hashlib.sha256("\n".join(source.name(i) for i in range(len(source))).encode()).hexdigest()
    return {"config": asdict(cfg), **model_fp, "num_images": len(source), "names_sha256": names}


def _same_run(previous: Dict, current: Dict) -> bool:
    informative = ("model_path",)
    return {k: v for k, v in previous.items() if k not in informative} == {
        k: v for k, v in current.items() if k not in informative
    }


def _write_atomic_json(path: Path, data) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _encode_shard(model, source: ImageSource, k: int, cfg: EncodeConfig, out: Path, log) -> int:
    start, stop = k * cfg.shard_size, min((k + 1) * cfg.shard_size, len(source))
    samples, pixels, skipped = [], [], []
    tally = SkipTally(log=log)
    for i in range(start, stop):
        name = source.name(i)
        try:
            image, notes = source.load(i)
            x, geom = preprocess(image, cfg)
        except Exception as e:  # any failure of one image is that image's, never the run's (nor every restart's)
            reason = reason_of(e, name)
            skipped.append({"source": name, "reason": reason})
            tally.skip(name, reason)
            continue
        for flip in [False, True] if cfg.flip else [False]:
            pixels.append(x.flip(-1) if flip else x)
            samples.append({"source": name, "index": i, "flip": flip, "notes": notes, **geom})
    latents = []
    dtype = model.dtype
    with torch.inference_mode():
        for b in range(0, len(pixels), cfg.batch_size):
            chunk = pixels[b : b + cfg.batch_size]
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
    save_safetensors(
        tensors,
        shard_path(out, k),
        metadata={
            "samples": json.dumps(samples),
            "skipped": json.dumps(skipped),
            "shard": str(k),
            "format": "mdiffae-latent-shard-v1",
        },
    )
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


def _collect_manifest(out: Path, n_shards: int, fingerprint: Dict, latent_channels: int) -> Dict:
    """The manifest of finished shards (not yet written: the caller writes it last, atomically)."""
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
        "format": "mdiffae-latent-dataset-v1",
        **fingerprint,
        "latent_channels": latent_channels,
        "num_samples": num_samples,
        "shards": shards,
        "skipped": skipped,
        "latents_mean": mean.tolist(),
        "latents_std": std.tolist(),
        "hint": "normalise with (z - latents_mean) / latents_std per channel; "
        "a single scalar scale is 1 / mean(latents_std)",
    }
    return manifest


def _claim_run(out: Path, fingerprint: Dict) -> None:
    """Main process: start ``out`` for this run, or check that it holds the same run (to resume it)."""
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    for name in (RUN_FILE, MANIFEST):
        remove_stale_temporaries(out, name)
    run_file = out / RUN_FILE
    if not run_file.is_file():
        _write_atomic_json(run_file, fingerprint)
        return
    try:
        previous = json.loads(run_file.read_text())
    except ValueError:
        raise ValueError(f"{run_file}: unreadable (not JSON); use a new output folder") from None
    if not isinstance(previous, dict) or not _same_run(previous, fingerprint):
        raise ValueError(
            f"{out}: holds a run with other settings, inputs or model weights ({RUN_FILE} differs); "
            "use a new output folder"
        )


def _remove_my_stale_shards(out: Path, mine: Sequence[int]) -> None:
    for stale in (out / SHARD_DIR).glob(".shard-*.tmp-*"):
        k = int(stale.name.split("-")[1].split(".")[0])
        if k in mine:
            stale.unlink(missing_ok=True)


def _encode_shards(model, src: ImageSource, todo: Sequence[int], cfg: EncodeConfig, out: Path, log, accelerator):
    from tqdm.auto import tqdm

    pause = float(os.environ.get(_PAUSE_ENV, "0") or 0)
    sizes = {k: min((k + 1) * cfg.shard_size, len(src)) - k * cfg.shard_size for k in todo}
    bar = tqdm(
        total=sum(sizes.values()),
        disable=not accelerator.is_main_process,
        desc="encode",
        unit="img",
        dynamic_ncols=True,
    )
    t0, done = time.perf_counter(), 0
    for k in todo:
        done += _encode_shard(model, src, k, cfg, out, log)
        bar.update(sizes[k])
        bar.set_postfix(img_s=f"{done * accelerator.num_processes / max(time.perf_counter() - t0, 1e-9):.1f}")
        if pause:
            time.sleep(pause)
    bar.close()


def encode_dataset(
    source,
    output_dir,
    model=None,
    config: Optional[EncodeConfig] = None,
    num_threads: Optional[int] = None,
    log=say,
) -> Optional[Dict]:
    """Encode every image of ``source`` into shards under ``output_dir``; returns the manifest (main process).

    Run it once per process (``accelerate launch``): process ``p`` of ``n`` encodes the shards
    ``k`` with ``k % n == p``. Finished shards are skipped, so a restarted run only does what is
    missing; temporary files of a killed run are removed. An image that cannot be used is skipped
    (recorded in its shard and the manifest); the run fails only when no image could be encoded.

    Args:
        source: image folder, saved ``datasets`` folder, or ``datasets.Dataset``.
        model: an ``AutoencoderMDiffAE``, a path/Hub id, or None for the bundled checkpoint.
        num_threads: torch CPU threads (fix it to compare runs bitwise across process counts).
    """
    from accelerate import Accelerator

    from .. import DEMO_MODEL_DIR, AutoencoderMDiffAE  # the package top level, wherever the class lives

    cfg = config or EncodeConfig()
    cfg.validate()
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; the output must be a folder")
    if isinstance(source, (str, os.PathLike)):
        check_output_not_input(out, [source], reread=False)
    if num_threads:
        torch.set_num_threads(num_threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main_log = log if accelerator.is_main_process else (lambda _: None)
    src = open_source(source, cfg.column)
    spec = str(model or DEMO_MODEL_DIR) if model is None or isinstance(model, (str, os.PathLike)) else None
    if spec is not None:
        model = AutoencoderMDiffAE.from_pretrained(spec)
    model = model.eval().to(accelerator.device)
    fingerprint = _fingerprint(src, cfg, model_fingerprint(model, spec))
    n_shards = -(-len(src) // cfg.shard_size)
    if accelerator.is_main_process:
        _claim_run(out, fingerprint)
    accelerator.wait_for_everyone()

    mine = [k for k in range(n_shards) if k % accelerator.num_processes == accelerator.process_index]
    _remove_my_stale_shards(out, mine)
    todo = [k for k in mine if not _shard_done(shard_path(out, k))]
    main_log(
        f"{len(src)} images in {n_shards} shards; {accelerator.num_processes} process(es); "
        f"main process: {len(mine) - len(todo)} of its {len(mine)} shards already done"
    )
    _encode_shards(model, src, todo, cfg, out, main_log, accelerator)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    missing = [k for k in range(n_shards) if not _shard_done(shard_path(out, k))]
    if missing:
        raise RuntimeError(f"shards {missing[:10]} are missing after the run; run the same command again")
    manifest = _collect_manifest(out, n_shards, fingerprint, model.config.latent_channels)
    if manifest["num_samples"] == 0 and manifest["skipped"]:
        raise ValueError(f"{source}: nothing encoded, all {len(manifest['skipped'])} image(s) skipped")
    _write_atomic_json(out / MANIFEST, manifest)
    log(f"wrote {manifest['num_samples']} sample(s), skipped {len(manifest['skipped'])} image(s) ({out / MANIFEST})")
    return manifest


def run_from_args(a, log=say) -> int:
    """Run from parsed options (``mdiffae encode-dataset`` and ``python -m ...`` share the parser)."""
    encode_dataset(a.input, a.output, model=a.model, config=config_from_args(a), num_threads=a.threads, log=log)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return main_with_args(build_parser().parse_args(argv))


def main_with_args(a) -> int:
    """Run parsed options; every failure is one ``error:`` line (MDIFFAE_TRACEBACK=1 shows the traceback)."""
    try:
        return run_from_args(a)
    except KeyboardInterrupt:
        say("error: interrupted")
        return 130
    except Exception as e:
        if os.environ.get("MDIFFAE_TRACEBACK"):
            raise
        say(f"error: {describe_error(e)}")
        return 1
