"""Model card text for saved and pushed AutoencoderMDiffAE folders."""

from __future__ import annotations

_TEMPLATE = """---
library_name: diffusers
license: apache-2.0
tags:
- mdiffae
- diffusers_mdiffae
- autoencoder
- diffusion-autoencoder
---

# mDiffAE autoencoder ({n_params:,} parameters)

A Masked Diffusion AutoEncoder in the format of the
[diffusers-mdiffae](https://pypi.org/project/diffusers-mdiffae/) package: a deterministic patch-{patch}
encoder to a {latent}-channel latent at H/{patch} x W/{patch}, and a VP-diffusion decoder sampled with
DDIM (default {steps} step(s); path-drop guidance strength {pdg}, 1.0 = off).

| field | value |
|---|---|
| model_dim | {model_dim} |
| encoder / decoder blocks | {enc} / {dec} |
| latent channels | {latent} |
| scaling_factor / shift_factor | {scale} / {shift} |

```python
from diffusers_mdiffae import AutoencoderMDiffAE

vae = AutoencoderMDiffAE.from_pretrained("<this repo or folder>")
z = vae.encode(images).latent_dist.mode()   # images [B, 3, H, W] in [-1, 1], H, W multiples of {patch}
recon = vae.decode(z).sample                # [B, 3, H, W] in [-1, 1]
```

The class lives in the `diffusers_mdiffae` package (`pip install diffusers-mdiffae`); import it before
loading a pipeline that contains this autoencoder.
"""


def render_model_card(model) -> str:
    c = model.config
    return _TEMPLATE.format(
        n_params=model.num_parameters(), patch=c.patch_size, latent=c.latent_channels,
        steps=c.decoder_num_inference_steps, pdg=c.decoder_pdg_strength, model_dim=c.model_dim,
        enc=c.encoder_depth, dec=c.decoder_depth, scale=c.scaling_factor, shift=c.shift_factor,
    )
