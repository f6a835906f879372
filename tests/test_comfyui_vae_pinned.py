"""comfyui_nodes.vae pinned (against the stand-in ComfyUI): what each VAE wrapper tells ComfyUI about
its latents (channels, factor, 1-D or 2-D) and the dtype it runs in."""

import pytest
import torch
from fixtures import fake_comfy
from fixtures.models import TOKENIZER_SIZE, make_tiny, make_tiny_tokenizer

from diffusers_mdiffae.comfy_bridge import ComfyMDiffAEModule, ComfyTokenizerModule


@pytest.fixture
def vae_module(tmp_path):
    state = fake_comfy.install(tmp_path / "models", batch_chunk=1)
    yield fake_comfy.import_node_module("vae")
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


def test_the_vae_uses_comfyuis_devices_and_asks_it_for_a_dtype_on_the_vae_device(vae_module, monkeypatch):
    import comfy.model_management as mm

    asked = []
    monkeypatch.setattr(mm, "vae_device", lambda: "the vae device")
    monkeypatch.setattr(mm, "vae_offload_device", lambda: "the offload device")
    monkeypatch.setattr(mm, "intermediate_device", lambda: "the intermediate device")
    monkeypatch.setattr(
        mm, "vae_dtype", lambda device=None, allowed=None: asked.append((device, allowed)) or torch.float32
    )
    vae = vae_module.MDiffAEVAE(ComfyMDiffAEModule(make_tiny()))
    assert asked == [("the vae device", [torch.bfloat16, torch.float32])]
    assert (vae.device, vae.output_device) == ("the vae device", "the intermediate device")
    patcher = vae.patcher
    assert patcher.model is vae.first_stage_model
    assert (patcher.load_device, patcher.offload_device) == ("the vae device", "the offload device")
    assert vae.output_channels == 3  # RGB out


def test_the_expected_no_weights_warning_is_dropped_while_the_vae_is_built_and_only_then(vae_module, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        vae_module.MDiffAEVAE(ComfyMDiffAEModule(make_tiny()))
        assert not [r for r in caplog.records if "No VAE weights detected" in r.getMessage()]
        logging.warning("WARNING: No VAE weights detected, VAE not initalized.")  # the filter is gone again
    assert [r.getMessage() for r in caplog.records] == ["WARNING: No VAE weights detected, VAE not initalized."]


def test_only_the_no_weights_warning_is_filtered(vae_module):
    import logging

    def record(message):
        return logging.LogRecord("root", logging.WARNING, __file__, 1, message, None, None)

    keep = vae_module._DropNoWeightsWarning()
    assert keep.filter(record("WARNING: No VAE weights detected, VAE not initalized.")) is False
    assert keep.filter(record("VAE load device: cpu")) is True
    assert keep.filter(record("no vae weights detected")) is True  # the exact words only


def test_every_linear_and_conv2d_becomes_comfyuis_layer_and_is_counted(vae_module):
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    module = torch.nn.Sequential(
        torch.nn.Linear(2, 3),
        torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.GELU(), torch.nn.Linear(3, 3)),
        torch.nn.Conv1d(3, 3, 1),  # not a layer ComfyUI swaps here
        torch.nn.LayerNorm(3),
    )
    weight = module[0].weight
    assert vae_module.use_comfy_operations(module) == 3
    assert [type(m) for m in (module[0], module[1][0], module[1][2])] == [ops.Linear, ops.Conv2d, ops.Linear]
    assert type(module[2]) is torch.nn.Conv1d and type(module[3]) is torch.nn.LayerNorm
    assert module[0].weight is weight  # the same parameters, in place
    assert vae_module.use_comfy_operations(module) == 0  # already ComfyUI's: nothing left to change


def test_the_memory_comfyui_is_told_is_in_the_dtype_it_asks_about(vae_module):
    vae = vae_module.MDiffAEVAE(ComfyMDiffAEModule(make_tiny()))
    # make_tiny(): 4992 values per latent position (see test_comfy_bridge_pinned); PDG doubles a decode
    assert vae.memory_used_decode((1, 64, 4, 4), torch.bfloat16) == 2 * 16 * 4992 * 2 == 319488
    assert vae.memory_used_decode((1, 64, 4, 4), torch.float32) == 2 * 16 * 4992 * 4
    assert vae.memory_used_encode((1, 3, 64, 64), torch.bfloat16) == 16 * 4992 * 2 == 159744
