"""Image files <-> tensors: robust loading, padding to the patch grid, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import torch

from .atomic import atomic_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class ImageLoadError(ValueError):
    """An image file that cannot be used (unreadable, corrupt, empty)."""


def list_images(folder: Union[str, os.PathLike]) -> List[Path]:
    """Image files below ``folder`` (recursive), sorted, by suffix; hidden files skipped.

    Entries with an image suffix that are not folders are listed even when they cannot be opened
    (a broken symlink, a symlink loop), so the caller reports them as skipped instead of silently
    missing them. Symlinked folders are not descended into, so a loop cannot recurse forever.
    """
    root = Path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not p.is_dir()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def load_rgb(path: Union[str, os.PathLike]) -> Tuple["PIL.Image.Image", List[str]]:  # noqa: F821
    """Open an image file as 8-bit RGB and say what was converted on the way.

    Grayscale becomes RGB, alpha is composited onto white, 16/32-bit integer images are rescaled
    to 8 bits, palettes are expanded. A file that cannot be used for any reason -- unreadable,
    corrupt, truncated, empty, over Pillow's decompression-bomb limit, too large for memory --
    raises :class:`ImageLoadError` naming the file and the reason, so one bad file in a folder is
    one skipped file, never a crashed run.

    Returns:
        ``(image, notes)``: the RGB image and a list of human-readable conversion notes.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return load_rgb_image(im)
    except ImageLoadError as e:
        raise ImageLoadError(f"{path}: {e}") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{path}: image too large ({e})") from None
    except MemoryError:
        raise ImageLoadError(f"{path}: image too large to decode in memory") from None
    except OSError as e:
        if e.strerror:  # a system error (no such file, permission, loop), not a decoding one
            raise ImageLoadError(f"{path}: cannot read image ({e.strerror})") from None
        raise ImageLoadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    except Exception as e:  # Pillow's decoders raise many types on malformed data
        raise ImageLoadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def load_rgb_image(im) -> Tuple["PIL.Image.Image", List[str]]:  # noqa: F821
    """:func:`load_rgb` for an already opened PIL image (e.g. from a ``datasets`` column)."""
    from PIL import Image

    notes: List[str] = []
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        notes.append(f"{mode} ({'16' if top > 255 else '8'}-bit) image rescaled to 8 bits")
        mode = "L"
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        im = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8), "L")
        notes.append("floating-point image rescaled to 8 bits")
        mode = "L"
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
        notes.append("palette image expanded")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Pillow converts premultiplied La only to LA, not on to RGBA
        rgba = (im.convert("LA") if mode == "La" else im).convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
        notes.append("alpha channel composited onto white")
    elif mode in ("L", "1"):
        notes.append("grayscale image converted to RGB")
    elif mode not in ("RGB",):
        notes.append(f"{mode} image converted to RGB")
    rgb = im.convert("RGB")
    if rgb.width == 0 or rgb.height == 0:
        raise ImageLoadError("empty image")
    return rgb, notes


def pil_to_tensor(image) -> torch.Tensor:
    """8-bit RGB PIL image -> ``[1, 3, H, W]`` float32 in [-1, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0


def _levels_8bit(x: torch.Tensor) -> torch.Tensor:
    """``x`` in [-1, 1] as the 0..255 levels of an 8-bit image (clamped, rounded; still float)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round()


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """``x`` in [-1, 1] rounded to the 256 levels an 8-bit image file keeps (clamped), still in [-1, 1]."""
    return _levels_8bit(x) / 127.5 - 1


def tensor_to_pil(x: torch.Tensor):
    """``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1] -> 8-bit RGB PIL image (rounded, clamped)."""
    from PIL import Image

    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {x.shape[0]}")
        x = x[0]
    arr = _levels_8bit(x.detach().cpu()).to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")


def pad_mode(size: Tuple[int, int], multiple: int) -> str:
    """How :func:`pad_to_multiple` fills the pad of an ``(H, W)`` image: ``"reflect"``, or
    ``"replicate"`` (its edges repeated) when a side is not longer than its pad, which a reflection
    cannot reach across."""
    h, w = size
    return "reflect" if (-h) % multiple < h and (-w) % multiple < w else "replicate"


def pad_to_multiple(x: torch.Tensor, multiple: int = 16) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Reflect-pad ``[B, C, H, W]`` on the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` to crop back to. Reflection needs the
    pad to be smaller than the side, so very small images fall back to edge replication (:func:`pad_mode`).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode=pad_mode((h, w), multiple)), (h, w)


def save_image_atomic(image, path: Union[str, os.PathLike]) -> Path:
    """Write a PIL image in the format its extension names (refusing others), atomically and durably."""
    from .outputs import image_format

    path = Path(path)
    fmt = image_format(path)
    with atomic_file(path) as tmp:
        image.save(tmp, format=fmt)
    return path
