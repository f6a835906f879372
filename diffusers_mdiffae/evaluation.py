"""Reconstruction quality against bicubic baselines, with comparison pictures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from .imaging import load_rgb, pad_to_multiple, pil_to_tensor, quantize_8bit, save_image_atomic, tensor_to_pil
from .latent_pca import latent_pca_rgb
from .metrics import psnr, seam_contrast, ssim

BICUBIC_FACTORS = (4, 8)


def bicubic_baseline(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Downsample ``[B, 3, H, W]`` by ``factor`` (antialiased bicubic) and upsample back (bicubic).

    At factor 4 the small image holds 3/16 values per pixel, more than mDiffAE's 64 channels per
    16x16 patch (1/4 value per pixel); at factor 8 it holds 3/64, fewer.
    """
    h, w = x.shape[-2:]
    small = F.interpolate(
        x.float(), size=(max(h // factor, 1), max(w // factor, 1)), mode="bicubic", antialias=True, align_corners=False
    )
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)


def error_map(a: torch.Tensor, b: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """Absolute error (mean over RGB, times ``gain``) as a black-red-yellow image in [-1, 1]."""
    e = ((a.float() - b.float()).abs().mean(dim=1, keepdim=True) / 2 * gain).clamp(0, 1)
    rgb = torch.cat([(3 * e).clamp(0, 1), (3 * e - 1).clamp(0, 1), (3 * e - 2).clamp(0, 1)], dim=1)
    return rgb * 2 - 1


def _lpips():
    try:
        import lpips  # optional
    except ImportError:
        return None
    return lpips.LPIPS(net="alex", verbose=False).eval()


@torch.no_grad()
def evaluate_files(
    model,
    paths: Sequence[Path],
    out_dir: Optional[Path] = None,
    decode_kwargs: Optional[dict] = None,
    root: Optional[Path] = None,
    on_skip: Optional[Callable[[str, str], None]] = None,
) -> Optional[Dict]:
    """PSNR/SSIM (and LPIPS when installed) of ``model`` and of bicubic-from-1/4 and -1/8, per image and mean.

    With ``out_dir``, writes ``<name>_grid.png`` (original | reconstruction | error map) and
    ``<name>_latent_pca.png`` for every image, keeping each image's folder below ``root`` (so
    ``a/x.png`` and ``b/x.png`` do not overwrite each other's pictures). Images are padded to
    multiples of 16 for the model and cropped back; all metrics are on the original pixels.

    A file that cannot be read or encoded is passed to ``on_skip(name, reason)`` and left out
    (without ``on_skip`` the error propagates). Returns None when no image could be evaluated.
    """
    from .outputs import check_planned_outputs
    from .skipping import SKIPPABLE, reason_of

    decode_kwargs = {k: v for k, v in (decode_kwargs or {}).items() if v is not None}
    rels = [Path(p).relative_to(root) if root is not None else Path(Path(p).name) for p in paths]
    if out_dir is not None:
        grids = [out_dir / r.parent / f"{r.stem}_grid.png" for r in rels]
        check_planned_outputs(grids, [str(p) for p in paths], paths)
    lp = _lpips()
    rows: List[Dict] = []
    for path, rel in zip(paths, rels):
        try:
            image, _ = load_rgb(path)
            x = pil_to_tensor(image)
            xp, (h, w) = pad_to_multiple(x, 16)
            z = model.encode(xp.to(model.dtype)).latent
            y = model.decode(z, **decode_kwargs).sample.float()[..., :h, :w]
        except SKIPPABLE as e:
            if on_skip is None:
                raise
            on_skip(str(path), reason_of(e, str(path)))
            continue
        row = {"image": rel.as_posix(), "size": f"{w}x{h}", "psnr": psnr(y, x), "ssim": ssim(y, x)}
        for f in BICUBIC_FACTORS:
            base = bicubic_baseline(x, f)
            row[f"psnr_bicubic{f}"], row[f"ssim_bicubic{f}"] = psnr(base, x), ssim(base, x)
        if lp is not None:
            row["lpips"] = float(lp(y, x).mean())
        grid_score = seam_contrast(quantize_8bit(y), x, period=16)  # what a user saves
        row["grid"] = None if math.isnan(grid_score) else grid_score
        rows.append(row)
        if out_dir is not None:
            stem = out_dir / rel.parent / rel.stem
            grid = torch.cat([x, y.clamp(-1, 1), error_map(y, x)], dim=-1)
            save_image_atomic(tensor_to_pil(grid), f"{stem}_grid.png")
            pca = latent_pca_rgb(z)[..., : -(-h // 16), : -(-w // 16)]
            pca = F.interpolate(pca, scale_factor=16, mode="nearest")[..., :h, :w] * 2 - 1
            save_image_atomic(tensor_to_pil(torch.cat([x, pca], dim=-1)), f"{stem}_latent_pca.png")
    if not rows:
        return None
    keys = [k for k in rows[0] if k not in ("image", "size")]
    mean = {k: _mean([r[k] for r in rows]) for k in keys}
    return {"rows": rows, "mean": mean, "markdown": _markdown(rows, mean, lp is not None)}


def _mean(values: List[Optional[float]]) -> Optional[float]:
    """Mean of the values that exist (the grid score is None for an image without flat regions)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _markdown(rows, mean, with_lpips: bool) -> str:
    head = (
        "| image | size | mDiffAE PSNR | bicubic 1/4 PSNR | bicubic 1/8 PSNR "
        "| mDiffAE SSIM | bicubic 1/4 SSIM | bicubic 1/8 SSIM | grid |"
    )
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    if with_lpips:
        head, sep = head + " LPIPS |", sep + "---:|"

    def line(name, size, r):
        cells = [
            f"{r['psnr']:.2f}",
            f"{r['psnr_bicubic4']:.2f}",
            f"{r['psnr_bicubic8']:.2f}",
            f"{r['ssim']:.3f}",
            f"{r['ssim_bicubic4']:.3f}",
            f"{r['ssim_bicubic8']:.3f}",
            "n/a" if r.get("grid") is None else f"{r['grid']:.2f}",
        ]
        if with_lpips:
            cells.append(f"{r['lpips']:.3f}")
        return f"| {name} | {size} | " + " | ".join(cells) + " |"

    lines = [head, sep] + [line(r["image"], r["size"], r) for r in rows] + [line("**mean**", "", mean)]
    lines.append("")
    lines.append(
        f"mean PSNR margin: {mean['psnr'] - mean['psnr_bicubic8']:+.2f} dB vs bicubic 1/8, "
        f"{mean['psnr'] - mean['psnr_bicubic4']:+.2f} dB vs bicubic 1/4"
    )
    lines.append(
        "grid: error steps across 16-px patch edges over those across patch middles, in flat regions "
        "(1.00 = no patch grid; bicubic scores about 1)"
    )
    return "\n".join(lines)
