"""The published packages' own API (``m_diffae``, ``m_diffae_v2``, ``ir_diffae``, ``fcdm_diffae``) over our classes.

Code written against the original packages runs unchanged after swapping the import:

>>> from diffusers_mdiffae import FCDMDiffAE, FCDMDiffAEInferenceConfig
>>> model = FCDMDiffAE.from_pretrained("data-archetype/semdisdiffae", device="cuda")
>>> latents = model.encode(images)                       # [B, 128, H/16, W/16], whitened
>>> recon = model.decode(latents, height=H, width=W, inference_config=FCDMDiffAEInferenceConfig(num_steps=1))

``encode`` returns a tensor, ``decode`` takes ``(latents, height, width, inference_config)`` and
returns float32 images, and the noise is drawn as the originals draw it (one CPU generator seeded
with ``inference_config.seed`` for the whole batch; torch's global RNG when it is None).
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .models.autoencoders.autoencoder_mdiffae import AutoencoderMDiffAE
from .models.autoencoders.autoencoder_semdis import AutoencoderSemDisDiffAE
from .models.sampling import FCDMDiffAEInferenceConfig, IRDiffAEInferenceConfig, MDiffAEInferenceConfig


class _PublishedAPI:
    model_class = AutoencoderMDiffAE
    inference_config_class = MDiffAEInferenceConfig

    def __init__(self, model):
        if not isinstance(model, self.model_class):
            raise TypeError(f"{type(self).__name__} wraps a {self.model_class.__name__}, got {type(model).__name__}")
        self.model = model.eval()

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str,
        *,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
    ):
        """Load a published snapshot (converted on load) or a diffusers folder, from disk or the Hub."""
        model = cls.model_class.from_pretrained(
            path_or_repo_id, torch_dtype=dtype, revision=revision, cache_dir=cache_dir
        )
        return cls(model.to(device))

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> latents ``[B, L, H/16, W/16]``."""
        return self.model.encode(images.to(self.model.device, self.model.dtype)).latent

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, height: int, width: int, *, inference_config=None) -> torch.Tensor:
        """Latents -> images ``[B, 3, height, width]`` in [-1, 1], float32."""
        cfg = inference_config if inference_config is not None else self.inference_config_class()
        out = self.model.decode(latents.to(self.model.device), height=height, width=width, inference_config=cfg)
        return out.sample.float()

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, *, inference_config=None) -> torch.Tensor:
        """``decode(encode(images))`` at the images' size."""
        h, w = images.shape[-2:]
        return self.decode(self.encode(images), height=h, width=w, inference_config=inference_config)


class MDiffAE(_PublishedAPI):
    """``m_diffae.MDiffAE``: mDiffAE v1 (``MDiffAEInferenceConfig``)."""


class MDiffAEV2(_PublishedAPI):
    """``m_diffae_v2.MDiffAEV2``: mDiffAE v2."""


class IRDiffAE(_PublishedAPI):
    """``ir_diffae.IRDiffAE``: iRDiffAE v1 (``IRDiffAEInferenceConfig``, PDG strength 2.0)."""

    inference_config_class = IRDiffAEInferenceConfig


class FCDMDiffAE(_PublishedAPI):
    """``fcdm_diffae.FCDMDiffAE``: SemDisDiffAE, with whitened latents and ``encode_posterior``."""

    model_class = AutoencoderSemDisDiffAE
    inference_config_class = FCDMDiffAEInferenceConfig

    @torch.no_grad()
    def encode_posterior(self, images: torch.Tensor):
        """The raw posterior (``mean``, ``logsnr``, ``alpha``, ``sigma``, ``mode()``, ``sample(generator=)``)."""
        from .models.autoencoders.autoencoder_semdis import VPPosterior

        mean, logsnr = self.model.encode_posterior(images.to(self.model.device, self.model.dtype))
        zeros = torch.zeros(mean.shape[1], device=mean.device)
        return VPPosterior(mean, logsnr, zeros, torch.ones_like(zeros))

    def whiten(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.whiten(latents)

    def dewhiten(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.dewhiten(latents)


class CapacitorDiffAE(FCDMDiffAE):
    """``capacitor_diffae.CapacitorDiffAE``: SemDisDiffAE's first release name."""
