"""The model card a saved or pushed folder gets: its metadata block and its body, text for text."""

from types import SimpleNamespace

import pytest

from diffusers_mdiffae.model_card import CARD_TAGS, render_model_card, render_model_card_body

CONFIG = SimpleNamespace(
    patch_size=16,
    latent_channels=64,
    decoder_num_inference_steps=1,
    decoder_pdg_strength=1.25,
    model_dim=896,
    encoder_depth=4,
    decoder_depth=8,
    scaling_factor=0.5,
    shift_factor=-0.125,
)


def _model(class_name, config=CONFIG, n_params=81_234_567):
    """A stand-in with the class name, config and parameter count a card is made from."""
    return type(class_name, (), {"config": config, "num_parameters": lambda self: n_params})()


EXPECTED_BODY = """# mDiffAE autoencoder (81,234,567 parameters)

A diffusion autoencoder of the mDiffAE family in the format of the
[diffusers-mdiffae](https://pypi.org/project/diffusers-mdiffae/) package: a patch-16 encoder to a
64-channel latent at H/16 x W/16, and a VP-diffusion decoder sampled with DDIM (default
1 step(s); path-drop guidance strength 1.25, 1.0 = off).

| field | value |
|---|---|
| class | `AutoencoderMDiffAE` |
| model_dim | 896 |
| encoder / decoder blocks | 4 / 8 |
| latent channels | 64 |
| scaling_factor / shift_factor | 0.5 / -0.125 |

```python
from diffusers_mdiffae import AutoencoderMDiffAE

vae = AutoencoderMDiffAE.from_pretrained("<this repo or folder>")
z = vae.encode(images).latent_dist.mode()   # images [B, 3, H, W] in [-1, 1], H, W multiples of 16
recon = vae.decode(z).sample                # [B, 3, H, W] in [-1, 1]
```

The class lives in the `diffusers_mdiffae` package (`pip install diffusers-mdiffae`); import it before
loading a pipeline that contains this autoencoder.
"""


def test_card_body_fills_every_field_from_the_config():
    assert render_model_card_body(_model("AutoencoderMDiffAE")) == EXPECTED_BODY


def test_card_body_puts_each_config_value_in_its_own_place():
    config = SimpleNamespace(
        patch_size=8,
        latent_channels=32,
        decoder_num_inference_steps=4,
        decoder_pdg_strength=1.0,
        model_dim=512,
        encoder_depth=2,
        decoder_depth=6,
        scaling_factor=1.5,
        shift_factor=0.0,
    )
    body = render_model_card_body(_model("AutoencoderMDiffAE", config, n_params=999))
    assert body.startswith("# mDiffAE autoencoder (999 parameters)\n")
    assert "a patch-8 encoder to a\n32-channel latent at H/8 x W/8," in body
    assert "(default\n4 step(s); path-drop guidance strength 1.0, 1.0 = off)" in body
    assert "| model_dim | 512 |\n| encoder / decoder blocks | 2 / 6 |\n| latent channels | 32 |\n" in body
    assert "| scaling_factor / shift_factor | 1.5 / 0.0 |" in body
    assert "H, W multiples of 8\n" in body


@pytest.mark.parametrize(
    "class_name, title",
    [
        ("AutoencoderMDiffAE", "mDiffAE autoencoder"),
        ("AutoencoderSemDisDiffAE", "SemDisDiffAE autoencoder"),
        ("MyFineTunedAE", "MyFineTunedAE"),  # a subclass without a title of its own: its class name
    ],
)
def test_card_title_names_the_family_or_else_the_class(class_name, title):
    body = render_model_card_body(_model(class_name))
    assert body.startswith(f"# {title} (81,234,567 parameters)\n")
    assert f"| class | `{class_name}` |" in body
    assert f"vae = {class_name}.from_pretrained(" in body


def test_full_card_is_the_metadata_block_then_the_body():
    assert CARD_TAGS == ("mdiffae", "diffusers_mdiffae", "autoencoder", "diffusion-autoencoder")
    assert render_model_card(_model("AutoencoderMDiffAE")) == (
        "---\n"
        "library_name: diffusers\n"
        "license: apache-2.0\n"
        "tags:\n"
        "- mdiffae\n"
        "- diffusers_mdiffae\n"
        "- autoencoder\n"
        "- diffusion-autoencoder\n"
        "---\n"
        "\n" + EXPECTED_BODY
    )
