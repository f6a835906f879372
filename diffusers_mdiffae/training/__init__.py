"""Training mDiffAE with the published objective (README "Training"), on accelerate.

>>> from diffusers_mdiffae.training import TrainConfig, train
>>> train(TrainConfig(data="photos/", output_dir="runs/demo", model_config=dict(model_dim=128), steps=2000))
"""

from .data import SKIMAGE_HELDOUT, SKIMAGE_TRAIN, ImageFolderCrops, export_skimage_photos, step_generator
from .loop import TrainConfig, train
from .objective import ObjectiveConfig, diffusion_loss
from .state import EMA, CheckpointError, complete_checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "CheckpointError",
    "EMA",
    "ImageFolderCrops",
    "ObjectiveConfig",
    "SKIMAGE_HELDOUT",
    "SKIMAGE_TRAIN",
    "TrainConfig",
    "complete_checkpoints",
    "diffusion_loss",
    "export_skimage_photos",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "step_generator",
    "train",
]
