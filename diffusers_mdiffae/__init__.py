"""mDiffAE (Masked Diffusion AutoEncoder) for diffusers.

>>> from diffusers_mdiffae import AutoencoderMDiffAE
>>> vae = AutoencoderMDiffAE.from_pretrained(folder_or_repo_id)
>>> z = vae.encode(images).latent_dist.mode()     # [B, 64, H/16, W/16]
>>> images = vae.decode(z).sample                 # [B, 3, H, W] in [-1, 1]
"""

from .autoencoder_mdiffae import AutoencoderMDiffAE, MDiffAEEncoderOutput, MDiffAEInferenceConfig
from .scheduling_vp_ddim import VPDDIMScheduler, VPDDIMSchedulerOutput
from .scheduling_vp_dpmpp_2m import VPDPMSolverMultistepScheduler

__version__ = "0.1.0"

__all__ = [
    "AutoencoderMDiffAE",
    "MDiffAEEncoderOutput",
    "MDiffAEInferenceConfig",
    "VPDDIMScheduler",
    "VPDDIMSchedulerOutput",
    "VPDPMSolverMultistepScheduler",
]
