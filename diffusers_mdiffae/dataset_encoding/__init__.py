"""Encode an image dataset to mDiffAE latents: sharded, resumable, on accelerate.

    mdiffae encode-dataset IMAGES/ OUT/ --resolution 256 --flip
    accelerate launch --num_processes 2 -m diffusers_mdiffae.dataset_encoding IMAGES/ OUT/

>>> from diffusers_mdiffae.dataset_encoding import encode_dataset, LatentShardDataset
"""

from .encode import EncodeConfig, encode_dataset, main
from .reader import LatentShardDataset, load_manifest

__all__ = ["EncodeConfig", "LatentShardDataset", "encode_dataset", "load_manifest", "main"]
