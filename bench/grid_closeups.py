#!/usr/bin/env python
"""Patch-grid close-ups of 1-step reconstructions, and the grid score, for one or more models.

    python bench/grid_closeups.py held_out/ --model before=OLD_DIR --model after=diffusers_mdiffae/assets/demo_model \
        --out closeups.png

For every image the flattest ``--size`` window is found (the most pixels flat by
``metrics.flat_mask``: sky, walls, backgrounds, where a 16-px grid shows first), cut from the
original and from each model's reconstruction, and shown with its contrast stretched ``--gain``
times about the original window's mean colour, so a grid of one or two levels out of 255 becomes
visible. Rows: the original, then each model; columns: the images. Printed: a markdown table of
PSNR and the grid score (``metrics.seam_contrast``, 1.00 = no grid) per model and image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def flattest_window(x: torch.Tensor, height: int, width: int) -> tuple:
    """``(top, left)`` of the ``height x width`` window of ``x`` ``[1, 3, H, W]`` with the most flat pixels."""
    from diffusers_mdiffae.metrics import flat_mask

    flat = flat_mask(x).float()
    h, w = min(height, x.shape[-2]), min(width, x.shape[-1])
    counts = F.avg_pool2d(flat, (h, w), stride=4)
    idx = int(counts.flatten().argmax())
    return (idx // counts.shape[-1]) * 4, (idx % counts.shape[-1]) * 4


def stretched(crop: torch.Tensor, centre: torch.Tensor, gain: float) -> torch.Tensor:
    """``crop`` in [-1, 1] with its deviation from ``centre`` (per channel) times ``gain``, clamped."""
    return ((crop - centre) * gain).clamp(-1, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", type=Path, help="folder of images (the held-out photos)")
    p.add_argument("--model", action="append", required=True, help="LABEL=FOLDER, repeatable, one row each")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--size", type=int, nargs=2, default=(96, 160), metavar=("H", "W"), help="window (default 96 160)")
    p.add_argument("--gain", type=float, default=4.0, help="contrast stretch (default 4)")
    p.add_argument("--zoom", type=int, default=3, help="nearest-neighbour zoom (default 3)")
    p.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="NAME=TOP,LEFT",
        help="place one image's window by hand instead of the flattest (e.g. rocket.png=0,440), repeatable",
    )
    args = p.parse_args(argv)

    from diffusers_mdiffae import AutoencoderMDiffAE
    from diffusers_mdiffae.imaging import (
        list_images,
        load_rgb,
        pad_to_multiple,
        pil_to_tensor,
        quantize_8bit,
        save_image_atomic,
        tensor_to_pil,
    )
    from diffusers_mdiffae.metrics import psnr, seam_contrast

    models = []
    for spec in args.model:
        label, sep, folder = spec.partition("=")
        if not sep:
            p.error(f"--model takes LABEL=FOLDER, got {spec!r}")
        models.append((label, AutoencoderMDiffAE.from_pretrained(folder).eval()))
    placed = {}
    for spec in args.window:
        name, _, where = spec.partition("=")
        try:
            placed[name] = tuple(int(v) for v in where.split(","))
        except ValueError:
            p.error(f"--window takes NAME=TOP,LEFT, got {spec!r}")
    paths = list_images(args.images)
    if not paths:
        p.error(f"{args.images}: no images")

    rows = [[] for _ in range(len(models) + 1)]
    table = {label: [] for label, _ in models}
    for path in paths:
        x = pil_to_tensor(load_rgb(path)[0])
        top, left = placed.get(path.name) or flattest_window(x, *args.size)
        window = (..., slice(top, top + args.size[0]), slice(left, left + args.size[1]))
        centre = x[window].mean(dim=(-2, -1), keepdim=True)
        rows[0].append(stretched(x[window], centre, args.gain))
        xp, (h, w) = pad_to_multiple(x, 16)
        for i, (label, model) in enumerate(models, start=1):
            with torch.no_grad():
                y = model.reconstruct(xp)[..., :h, :w].clamp(-1, 1)
            y = quantize_8bit(y)  # the 8-bit image a user saves
            table[label].append((path.name, psnr(y, x), seam_contrast(y, x)))
            rows[i].append(stretched(y[window], centre, args.gain))

    gap = 6
    lines = [torch.cat([t for c in row for t in (c, torch.ones(1, 3, c.shape[-2], gap))], dim=-1) for row in rows]
    panel = torch.cat([t for line in lines for t in (line, torch.ones(1, 3, gap, line.shape[-1]))], dim=-2)
    panel = F.interpolate(panel, scale_factor=args.zoom, mode="nearest")
    save_image_atomic(tensor_to_pil(panel), args.out)

    names = [n for n, _, _ in next(iter(table.values()))]
    print("| model | " + " | ".join(f"{n} PSNR / grid" for n in names) + " | mean PSNR / grid |")
    print("|---|" + "---:|" * (len(names) + 1))
    for label, cells in table.items():
        mean_psnr = sum(c[1] for c in cells) / len(cells)
        mean_grid = sum(c[2] for c in cells) / len(cells)
        body = " | ".join(f"{c[1]:.2f} / {c[2]:.2f}" for c in cells)
        print(f"| {label} | {body} | {mean_psnr:.2f} / {mean_grid:.2f} |")
    print(f"wrote {args.out} (rows: original, {', '.join(table)}; contrast x{args.gain:g})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
