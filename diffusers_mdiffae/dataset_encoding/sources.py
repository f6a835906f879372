"""Where the images come from: a folder (recursive) or a Hugging Face ``datasets`` image dataset."""

from __future__ import annotations

import os
from pathlib import Path

from ..imaging import ImageLoadError, list_images, load_rgb


class ImageSource:
    """A fixed, deterministically ordered list of images; ``load(i)`` gives an RGB PIL image + notes."""

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, i: int) -> str:
        raise NotImplementedError

    def load(self, i: int):
        raise NotImplementedError


class FolderSource(ImageSource):
    def __init__(self, folder):
        self.root = Path(folder)
        self.paths = list_images(self.root)
        if not self.paths:
            raise ValueError(f"{folder}: no images found")

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, i: int) -> str:
        return str(self.paths[i].relative_to(self.root))

    def load(self, i: int):
        return load_rgb(self.paths[i])


class HFDatasetSource(ImageSource):
    """``datasets`` dataset (a saved folder ``load_from_disk`` reads, or a Dataset object) with an image column."""

    def __init__(self, dataset, column: str = "image"):
        where = "dataset"
        if isinstance(dataset, (str, os.PathLike)):
            from datasets import load_from_disk

            where = str(dataset)
            dataset = load_from_disk(where)
        if isinstance(dataset.column_names, dict):  # a DatasetDict: its column names come per split
            splits = ", ".join(dataset.column_names)
            raise ValueError(
                f"{where} holds several splits ({splits}), not one dataset: give one split "
                f"(its subfolder, or dataset[split])"
            )
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no column {column!r} (columns: {dataset.column_names})")
        self.ds, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.ds)

    def name(self, i: int) -> str:
        return f"{self.column}[{i}]"

    def load(self, i: int):
        from ..imaging import load_rgb_image

        try:
            return load_rgb_image(self.ds[i][self.column])
        except Exception as e:  # decoding errors from datasets/Pillow
            raise ImageLoadError(f"{self.name(i)}: cannot read image ({type(e).__name__}: {e})") from None


def open_source(spec, column: str = "image") -> ImageSource:
    """A folder path, a ``datasets`` folder saved with ``save_to_disk``, or a ``datasets.Dataset``."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if (p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file():
            return HFDatasetSource(p, column)
        if p.is_dir():
            return FolderSource(p)
        raise ValueError(f"{spec}: not a folder of images or a saved datasets folder")
    return HFDatasetSource(spec, column)
