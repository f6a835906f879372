"""mDiffAE (Masked Diffusion AutoEncoder) for diffusers.

>>> from diffusers_mdiffae import AutoencoderMDiffAE
>>> vae = AutoencoderMDiffAE.from_pretrained(folder_or_repo_id)
>>> z = vae.encode(images).latent_dist.mode()     # [B, 64, H/16, W/16]
>>> images = vae.decode(z).sample                 # [B, 3, H, W] in [-1, 1]
"""

from pathlib import Path

from .models.autoencoders.autoencoder_mdiffae import AutoencoderMDiffAE, MDiffAEEncoderOutput, MDiffAEInferenceConfig
from .schedulers.scheduling_vp_ddim import VPDDIMScheduler, VPDDIMSchedulerOutput
from .schedulers.scheduling_vp_dpmpp_2m import VPDPMSolverMultistepScheduler

__version__ = "0.1.0"

#: The small checkpoint trained for this package and shipped with it (a diffusers folder): the default
#: model of every command, so everything runs offline. See README "The bundled checkpoint".
DEMO_MODEL_DIR = Path(__file__).parent / "assets" / "demo_model"

__all__ = [
    "DEMO_MODEL_DIR",
    "AutoencoderMDiffAE",
    "MDiffAEEncoderOutput",
    "MDiffAEInferenceConfig",
    "VPDDIMScheduler",
    "VPDDIMSchedulerOutput",
    "VPDPMSolverMultistepScheduler",
]
