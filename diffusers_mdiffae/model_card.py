"""Model card text for saved and pushed folders of the family's classes."""

from __future__ import annotations

CARD_TAGS = ("mdiffae", "diffusers_mdiffae", "autoencoder", "diffusion-autoencoder")

_BODY = """# {title} ({n_params:,} parameters)

A diffusion autoencoder of the mDiffAE family in the format of the
[diffusers-mdiffae](https://pypi.org/project/diffusers-mdiffae/) package: a patch-{patch} encoder to a
{latent}-channel latent at H/{patch} x W/{patch}, and a VP-diffusion decoder sampled with DDIM (default
{steps} step(s); path-drop guidance strength {pdg}, 1.0 = off).

| field | value |
|---|---|
| class | `{cls}` |
| model_dim | {model_dim} |
| encoder / decoder blocks | {enc} / {dec} |
| latent channels | {latent} |
| scaling_factor / shift_factor | {scale} / {shift} |

```python
from diffusers_mdiffae import {cls}

vae = {cls}.from_pretrained("<this repo or folder>")
z = vae.encode(images).latent_dist.mode()   # images [B, 3, H, W] in [-1, 1], H, W multiples of {patch}
recon = vae.decode(z).sample                # [B, 3, H, W] in [-1, 1]
```

The class lives in the `diffusers_mdiffae` package (`pip install diffusers-mdiffae`); import it before
loading a pipeline that contains this autoencoder.
"""

_TITLES = {"AutoencoderMDiffAE": "mDiffAE autoencoder", "AutoencoderSemDisDiffAE": "SemDisDiffAE autoencoder"}


def render_model_card_body(model) -> str:
    """The card's Markdown body (no metadata block), for ``load_or_create_model_card``."""
    c = model.config
    cls = type(model).__name__
    return _BODY.format(
        title=_TITLES.get(cls, cls),
        cls=cls,
        n_params=model.num_parameters(),
        patch=c.patch_size,
        latent=c.latent_channels,
        steps=c.decoder_num_inference_steps,
        pdg=c.decoder_pdg_strength,
        model_dim=c.model_dim,
        enc=c.encoder_depth,
        dec=c.decoder_depth,
        scale=c.scaling_factor,
        shift=c.shift_factor,
    )


def render_model_card(model) -> str:
    """A complete card: YAML metadata (library, licence, tags) and the body."""
    tags = "".join(f"- {t}\n" for t in CARD_TAGS)
    return f"---\nlibrary_name: diffusers\nlicense: apache-2.0\ntags:\n{tags}---\n\n" + render_model_card_body(model)
