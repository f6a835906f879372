"""The mDiffAE family of diffusion autoencoders (mDiffAE v1/v2, iRDiffAE, SemDisDiffAE) for diffusers.

>>> from diffusers_mdiffae import AutoencoderMDiffAE
>>> vae = AutoencoderMDiffAE.from_pretrained(folder_or_repo_id)
>>> z = vae.encode(images).latent_dist.mode()     # [B, 64, H/16, W/16]
>>> images = vae.decode(z).sample                 # [B, 3, H, W] in [-1, 1]

Also the 1-D latent-token tokenizers MAETok and SoftVQ-VAE (``AutoencoderMAETok``,
``AutoencoderSoftVQ``): images ``[B, 3, S, S]`` -> tokens ``[B, L, d]`` -> images.

Names are imported on first use, so ``import diffusers_mdiffae`` (and the ``mdiffae`` command's
help) does not pay for torch and diffusers.
"""

from importlib import import_module
from pathlib import Path

__version__ = "0.1.0"

#: The small checkpoint trained for this package and shipped with it (a diffusers folder): the default
#: model of every command, so everything runs offline. See README "The bundled checkpoint".
DEMO_MODEL_DIR = Path(__file__).parent / "assets" / "demo_model"
#: The package's sample photo (scikit-image's astronaut, public domain), 256x256.
SAMPLE_IMAGE = Path(__file__).parent / "assets" / "astronaut_256.png"

_EXPORTS = {
    "AutoencoderMDiffAE": ".models.autoencoders.autoencoder_mdiffae",
    "AutoencoderSemDisDiffAE": ".models.autoencoders.autoencoder_semdis",
    "AutoencoderVMAE": ".models.autoencoders.autoencoder_vmae",
    "AutoencoderMAETok": ".models.autoencoders.autoencoder_maetok",
    "AutoencoderSoftVQ": ".models.autoencoders.autoencoder_maetok",
    "LatentTokenEncoderOutput": ".models.autoencoders.autoencoder_maetok",
    "TokenLatentDistribution": ".models.autoencoders.autoencoder_maetok",
    "MDiffAEEncoderOutput": ".models.autoencoders.vp_autoencoder",
    "VPPosterior": ".models.autoencoders.autoencoder_semdis",
    "MDiffAEInferenceConfig": ".models.sampling",
    "IRDiffAEInferenceConfig": ".models.sampling",
    "FCDMDiffAEInferenceConfig": ".models.sampling",
    "VPDDIMScheduler": ".schedulers.scheduling_vp_ddim",
    "VPDDIMSchedulerOutput": ".schedulers.scheduling_vp_ddim",
    "VPDPMSolverMultistepScheduler": ".schedulers.scheduling_vp_dpmpp_2m",
    "MDiffAE": ".original_api",
    "MDiffAEV2": ".original_api",
    "IRDiffAE": ".original_api",
    "FCDMDiffAE": ".original_api",
    "CapacitorDiffAE": ".original_api",
}

__all__ = ["DEMO_MODEL_DIR", "SAMPLE_IMAGE", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
