"""encode-dataset's settings and command-line options, without torch (``-h`` stays instant)."""

from __future__ import annotations

from dataclasses import dataclass

from ..argtypes import OneLineParser, multiple_of_16, positive_int

DTYPE_NAMES = ("bfloat16", "float16", "float32")


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
        if not isinstance(self.resolution, int) or self.resolution % 16 or self.resolution < 16:
            raise ValueError(f"resolution must be a positive multiple of 16, got {self.resolution!r}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {self.dtype!r}")
        for name in ("shard_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


def add_arguments(p) -> None:
    """The options of ``mdiffae encode-dataset`` / ``python -m diffusers_mdiffae.dataset_encoding``."""
    p.add_argument("input", help="image folder (recursive) or a datasets folder saved with save_to_disk")
    p.add_argument("output", help="output folder for shards/, run.json and manifest.json (a rerun resumes it)")
    p.add_argument("--model", help="diffusers folder, published snapshot folder or Hub id (default: bundled demo)")
    p.add_argument(
        "--resolution",
        type=multiple_of_16,
        default=256,
        help="shorter side after resizing, a multiple of 16; centre-cropped square (default: 256)",
    )
    p.add_argument("--no-crop", action="store_true", help="keep the aspect ratio (sides cropped to multiples of 16)")
    p.add_argument("--flip", action="store_true", help="also encode horizontal flips")
    p.add_argument(
        "--dtype", choices=DTYPE_NAMES, default="float16", help="storage dtype of the latents (default: float16)"
    )
    p.add_argument("--shard-size", type=positive_int, default=256, help="images per shard (default: 256)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per encoder call (default: 16)")
    p.add_argument("--column", default="image", help="image column of a datasets dataset (default: image)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads per process")


def config_from_args(a) -> EncodeConfig:
    return EncodeConfig(
        resolution=a.resolution,
        crop=not a.no_crop,
        flip=a.flip,
        dtype=a.dtype,
        shard_size=a.shard_size,
        batch_size=a.batch_size,
        column=a.column,
    )


def build_parser() -> OneLineParser:
    """The standalone parser (``python -m diffusers_mdiffae.dataset_encoding``), torch-free like the rest."""
    p = OneLineParser(
        prog="mdiffae encode-dataset", description="Encode an image dataset to sharded mDiffAE latents (resumable)."
    )
    add_arguments(p)
    return p
