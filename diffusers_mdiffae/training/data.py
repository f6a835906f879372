"""Training images: a folder read robustly, served as deterministic random crops.

Every batch is a pure function of ``(seed, step, process)``: resuming at step ``k`` draws exactly
the batches an uninterrupted run would have drawn, with no data-loader state to save.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..imaging import list_images, load_rgb
from ..skipping import SkipTally, say


class ImageFolderCrops:
    """Random square crops (with scale jitter and horizontal flips) from the images of a folder.

    Unusable files are reported once each through ``log`` and left out; conversions
    (grayscale, alpha, 16-bit) are reported too. Decoded images are cached in memory as uint8,
    which suits the small folders this package trains its demo model on; pass
    ``cache=False`` for large folders.

    Args:
        folder: image folder (recursive).
        crop: output side in pixels (a multiple of 16).
        scale_range: images are resized by a random factor in this range before cropping, but
            never below the crop size.
        exclude: file names (not paths) to leave out, e.g. held-out evaluation images.
        permute_channels: shuffle the RGB channels of every crop, so a small or mostly grayscale
            folder still teaches the autoencoder to carry colour (it must reproduce any colour).
        color_jitter: strength ``s`` of a per-crop photometric jitter: brightness, contrast (about the
            crop's mean) and saturation (about each pixel's luma) are each scaled by a factor drawn
            from ``[1 - s, 1 + s]``; 0 (the default) draws nothing, so batches stay as without it.
    """

    def __init__(
        self,
        folder: Union[str, os.PathLike],
        crop: int = 128,
        scale_range=(0.5, 1.0),
        exclude=(),
        log: Callable[[str], None] = say,
        cache: bool = True,
        permute_channels: bool = False,
        color_jitter: float = 0.0,
    ):
        if crop % 16:
            raise ValueError(f"crop must be a multiple of 16, got {crop}")
        self.crop = crop
        self.scale_range = scale_range
        self.permute_channels = permute_channels
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
        self.color_jitter = color_jitter
        self._images: Dict[int, torch.Tensor] = {}
        self.paths: List[Path] = []
        self.skipped: List[str] = []
        tally = SkipTally(log=log, verb="training on")
        for path in list_images(folder):
            if path.name in set(exclude):
                continue
            ok, loaded = tally.attempt(str(path), load_rgb, path)
            if not ok:
                self.skipped.append(f"{path}: {tally.skipped[-1][1]}")
                continue
            image, notes = loaded
            for note in notes:
                log(f"{path}: {note}")
            if cache:
                self._images[len(self.paths)] = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
            self.paths.append(path)
            tally.done()
        if not self.paths:
            raise ValueError(
                f"{folder}: no usable images" + (f" ({len(self.skipped)} skipped)" if self.skipped else "")
            )
        log(f"{tally.summary()} ({folder})")

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, i: int) -> torch.Tensor:
        if i in self._images:
            return self._images[i]
        image, _ = load_rgb(self.paths[i])
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()

    def crop_one(self, i: int, g: torch.Generator) -> torch.Tensor:
        """One ``[3, crop, crop]`` crop in [-1, 1] of image ``i`` with randomness from ``g``.

        A square region of side ``crop / scale`` is cut from the original and resized to
        ``crop`` (antialiased), which equals resizing the whole image first but costs only the region.
        """
        img = self._image(i)
        _, h, w = img.shape
        lo, hi = self.scale_range
        u = float(torch.rand((), generator=g))
        scale = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        side = min(max(self.crop, round(self.crop / scale)), h, w)
        y = int(torch.randint(0, h - side + 1, (), generator=g))
        x = int(torch.randint(0, w - side + 1, (), generator=g))
        out = img[:, y : y + side, x : x + side].float()
        if side != self.crop:
            out = F.interpolate(
                out[None], size=(self.crop, self.crop), mode="bilinear", antialias=True, align_corners=False
            )[0]
        if bool(torch.rand((), generator=g) < 0.5):
            out = out.flip(-1)
        if self.color_jitter:
            b, c, s = (1.0 + self.color_jitter * (2 * torch.rand(3, generator=g) - 1)).tolist()
            out = out * b
            out = out.mean() + c * (out - out.mean())
            luma = (out * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
            out = (luma + s * (out - luma)).clamp(0, 255)
        if self.permute_channels:
            out = out[torch.randperm(3, generator=g)]
        return (out / 127.5 - 1.0).clamp(-1, 1)

    def batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """``[batch_size, 3, crop, crop]`` in [-1, 1]."""
        idx = torch.randint(0, len(self.paths), (batch_size,), generator=generator).tolist()
        return torch.stack([self.crop_one(i, generator) for i in idx])


def step_generator(seed: int, step: int, process: int = 0, stream: int = 0) -> torch.Generator:
    """An independent, reproducible CPU generator for one (step, process, stream)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + process) * 7 + stream)


def export_skimage_photos(out_dir: Union[str, os.PathLike], names=None) -> List[Path]:
    """Write scikit-image's bundled sample images as PNGs, as stored (grayscale stays grayscale,
    the RGBA logo keeps its alpha), so the training loader's conversions are exercised too.

    Needs ``scikit-image`` (only for this helper; nothing is downloaded). Returns the written paths.
    """
    try:
        from skimage import data
    except ImportError as e:
        raise ImportError("export_skimage_photos needs scikit-image: pip install scikit-image") from e
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or (SKIMAGE_TRAIN + SKIMAGE_HELDOUT):
        arr = getattr(data, name)()
        if isinstance(arr, tuple):  # stereo pairs: keep the left view
            arr = arr[0]
        path = out / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(arr)).save(path)
        written.append(path)
    return written


# scikit-image's sample images (shipped with the package). The held-out ones are never trained
# on: astronaut is also the package's sample photo (assets/astronaut_256.png).
SKIMAGE_TRAIN = (
    "chelsea",
    "stereo_motorcycle",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "colorwheel",
    "logo",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "cell",
    "page",
    "text",
)
SKIMAGE_HELDOUT = ("astronaut", "coffee", "rocket", "camera")
