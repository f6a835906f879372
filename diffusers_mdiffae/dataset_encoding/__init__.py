"""Encode an image dataset to mDiffAE latents: sharded, resumable, on accelerate.

    mdiffae encode-dataset IMAGES/ OUT/ --resolution 256 --flip
    accelerate launch --num_processes 2 -m diffusers_mdiffae.dataset_encoding IMAGES/ OUT/

>>> from diffusers_mdiffae.dataset_encoding import encode_dataset, LatentShardDataset

The names load on first use (PEP 562), so ``mdiffae encode-dataset -h`` reads the options without
importing torch.
"""

from importlib import import_module

_WHERE = {
    "EncodeConfig": ".options",
    "encode_dataset": ".encode",
    "main": ".encode",
    "LatentShardDataset": ".reader",
    "load_manifest": ".reader",
}

__all__ = ["EncodeConfig", "LatentShardDataset", "encode_dataset", "load_manifest", "main"]


def __getattr__(name):
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
