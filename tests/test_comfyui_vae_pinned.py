"""comfyui_nodes.vae pinned (against the stand-in ComfyUI): what each VAE wrapper tells ComfyUI about
its latents (channels, factor, 1-D or 2-D) and the dtype it runs in."""

import importlib
import sys
from pathlib import Path

import pytest
import torch
from fixtures import fake_comfy
from fixtures.models import TOKENIZER_SIZE, make_tiny, make_tiny_tokenizer

from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule, ComfyTokenizerModule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def vae_module(tmp_path):
    state = fake_comfy.install(tmp_path / "models", batch_chunk=1)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    yield importlib.import_module("comfyui_nodes.vae")
    fake_comfy.uninstall(state)


@pytest.mark.parametrize(
    "kind, latent_dim, ratio",
    [("maetok", 1, TOKENIZER_SIZE), ("softvq", 1, TOKENIZER_SIZE), ("vmae", 2, 8)],
)
def test_a_tokenizer_vae_declares_its_latent_layout(vae_module, kind, latent_dim, ratio):
    vae = vae_module.TokenizerVAE(ComfyTokenizerModule(make_tiny_tokenizer(kind)))
    # tokens are one whole-image 1-D latent; VMAE's is a 2-D grid at its patch size
    assert (vae.latent_dim, vae.latent_channels, vae.downscale_ratio, vae.upscale_ratio) == (
        latent_dim,
        4,
        ratio,
        ratio,
    )
    assert (vae.output_channels, vae.crop_input, vae.disable_offload) == (3, False, False)


def test_the_latent_channels_are_the_models(vae_module):
    import diffusers_mdiffae as pkg

    torch.manual_seed(0)
    vmae = pkg.AutoencoderVMAE(
        img_size=32,
        patch_size=8,
        embed_dim=24,
        depth=1,
        num_heads=2,
        decoder_embed_dim=24,
        decoder_depth=1,
        decoder_num_heads=2,
        latent_dim=6,
    )
    assert vae_module.TokenizerVAE(ComfyTokenizerModule(vmae)).latent_channels == 6
    wide = make_tiny(latent_channels=8)
    vae = vae_module.MDiffAEVAE(ComfyMDiffAEModule(wide))
    assert (vae.latent_dim, vae.latent_channels, vae.downscale_ratio, vae.upscale_ratio) == (2, 8, 16, 16)
    assert vae.crop_input is True  # the stock nodes may crop to the grid


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_a_vae_runs_in_the_dtype_it_is_given(vae_module, dtype):
    tokens = vae_module.TokenizerVAE(ComfyTokenizerModule(make_tiny_tokenizer("vmae")), dtype=dtype)
    mdiffae = vae_module.MDiffAEVAE(ComfyMDiffAEModule(make_tiny()), dtype=dtype)
    for vae in (tokens, mdiffae):
        assert vae.vae_dtype == dtype
        assert {p.dtype for p in vae.first_stage_model.parameters()} == {dtype}


def test_without_a_dtype_a_vae_runs_in_comfyuis_choice(vae_module, monkeypatch):
    import comfy.model_management as mm

    asked = []
    monkeypatch.setattr(mm, "vae_dtype", lambda device=None, allowed=None: asked.append(allowed) or torch.bfloat16)
    tokens = vae_module.TokenizerVAE(ComfyTokenizerModule(make_tiny_tokenizer("maetok")))
    mdiffae = vae_module.MDiffAEVAE(ComfyMDiffAEModule(make_tiny()))
    assert asked == [[torch.bfloat16, torch.float32]] * 2  # ComfyUI chooses among the dtypes these run in
    for vae in (tokens, mdiffae):
        assert vae.vae_dtype == torch.bfloat16
        assert {p.dtype for p in vae.first_stage_model.parameters()} == {torch.bfloat16}
