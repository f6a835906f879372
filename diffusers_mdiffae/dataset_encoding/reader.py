"""Reading encoded shards back as a ``torch.utils.data.Dataset``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch
from torch.utils.data import Dataset


def load_manifest(folder: Union[str, os.PathLike]) -> Dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the encoding run has not finished (run it again to complete it)")
    return json.loads(path.read_text())


class LatentShardDataset(Dataset):
    """Latents and metadata of an ``encode_dataset`` output, in manifest order.

    Args:
        folder: the output folder (with ``manifest.json``).
        normalize: return ``(z - latents_mean) / latents_std`` per channel (float32).

    Items are dicts: ``latent`` ``[C, h, w]`` float32, ``source``, ``flip``, ``original_size``,
    ``crop_box``. Shards are opened lazily and kept memory-mapped by safetensors.
    """

    def __init__(self, folder: Union[str, os.PathLike], normalize: bool = False):
        from safetensors import safe_open

        self.folder = Path(folder)
        self.manifest = load_manifest(folder)
        self.normalize = normalize
        c = self.manifest["latent_channels"]
        self.mean = torch.tensor(self.manifest["latents_mean"]).view(c, 1, 1)
        self.std = torch.tensor(self.manifest["latents_std"]).clamp_min(1e-6).view(c, 1, 1)
        self.index: List[Tuple[str, int, Dict]] = []
        for shard in self.manifest["shards"]:
            with safe_open(str(self.folder / shard["file"]), "pt") as f:
                samples = json.loads(f.metadata()["samples"])
            self.index += [(shard["file"], j, s) for j, s in enumerate(samples)]
        self._handles = {}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Dict:
        from safetensors import safe_open

        file, j, meta = self.index[i]
        if file not in self._handles:
            self._handles[file] = safe_open(str(self.folder / file), "pt")
        z = self._handles[file].get_tensor(f"latent.{j}").float()
        if self.normalize:
            z = (z - self.mean) / self.std
        return {
            "latent": z,
            "source": meta["source"],
            "flip": meta["flip"],
            "original_size": meta["original_size"],
            "crop_box": meta["crop_box"],
        }

    def __getstate__(self):  # DataLoader workers re-open shards themselves
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state
