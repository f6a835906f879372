"""VPDiffusionAutoencoder pinned: what forward() samples and decodes with, and the distribution a
sliced (or tiled) encode rebuilds, for the deterministic mDiffAE encoder and SemDisDiffAE's posterior."""

import pytest
import torch
from fixtures.dtypes import default_dtype
from fixtures.models import images, make_tiny

from diffusers_mdiffae import AutoencoderMDiffAE
from diffusers_mdiffae.models.norms import ChannelWiseRMSNorm


def gen(seed):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def test_forward_decodes_the_posterior_mode_by_default():
    model = make_tiny(seed=4, family="semdisdiffae", decoder_depth=3)  # a real posterior: a sample is not the mode
    x = images(1, 16, 16)
    want = model.decode(model.encode(x).latent).sample
    assert torch.equal(model(x).sample, want)
    assert torch.equal(model(x, sample_posterior=False).sample, want)


@torch.no_grad()
def test_forward_draws_the_posterior_sample_and_the_decoder_noise_from_the_generator():
    model = make_tiny(seed=4, family="semdisdiffae", decoder_depth=3)
    x = images(1, 16, 16)
    g = gen(3)
    z = model.encode(x).latent_dist.sample(generator=g)
    want = model.decode(z, generator=g).sample
    got = model(x, sample_posterior=True, generator=gen(3))
    assert torch.equal(got.sample, want)
    assert not torch.equal(want, model.decode(z).sample)  # the generator did reach the decoder
    assert torch.equal(model(x, sample_posterior=True, return_dict=False, generator=gen(3))[0], want)


@torch.no_grad()
def test_a_sliced_encode_of_the_deterministic_encoder_has_zero_spread():
    model = make_tiny()
    model.enable_slicing()
    dist = model.encode(images(2, 32, 32)).latent_dist
    assert torch.equal(dist.std, torch.zeros_like(dist.std))
    assert torch.equal(dist.var, torch.zeros_like(dist.var))
    assert torch.equal(dist.sample(generator=gen(0)), dist.mode())


@torch.no_grad()
def test_a_tiled_encode_of_the_deterministic_encoder_has_zero_spread():
    model = make_tiny()
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    dist = model.encode(images(1, 64, 64)).latent_dist
    assert torch.equal(dist.std, torch.zeros_like(dist.std))


@torch.no_grad()
def test_a_sliced_semdis_encode_keeps_the_posterior_spread():
    model = make_tiny(seed=4, family="semdisdiffae", decoder_depth=3)
    x = images(2, 32, 32)
    whole = model.encode(x).latent_dist
    model.enable_slicing()
    sliced = model.encode(x).latent_dist
    assert torch.equal(sliced.mode(), whole.mode())
    assert sliced.std.min() > 0.01 and torch.equal(sliced.std, whole.std)


@torch.no_grad()
def test_a_sliced_encode_of_a_deterministic_semdis_has_zero_spread():
    model = make_tiny(seed=4, family="semdisdiffae", decoder_depth=3, bottleneck_posterior_kind="deterministic")
    model.enable_slicing()
    dist = model.encode(images(2, 32, 32)).latent_dist
    assert torch.equal(dist.std, torch.zeros_like(dist.std))
    assert torch.equal(dist.sample(generator=gen(0)), dist.mode())


@torch.no_grad()
def test_a_posterior_sample_draws_float32_noise_whatever_the_default_dtype():
    model = make_tiny(seed=4, family="semdisdiffae", decoder_depth=3)
    dist = model.encode(images(1, 32, 32)).latent_dist
    want = dist.sample(generator=gen(5))
    with default_dtype(torch.float64):
        got = dist.sample(generator=gen(5))
    assert got.dtype == torch.float32 and torch.equal(got, want)


@pytest.mark.parametrize("affine, text", [(True, "8, eps=1e-06, affine=True"), (False, "8, eps=1e-06, affine=False")])
def test_channel_rms_norm_prints_its_settings(affine, text):
    assert ChannelWiseRMSNorm(8, affine=affine).extra_repr() == text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tile_sample_min_size": 0}, "tile_sample_min_size must be a positive multiple of 16, got 0"),
        ({"tile_sample_min_size": 8}, "tile_sample_min_size must be a positive multiple of 16, got 8"),
        ({"tile_sample_min_size": 40}, "tile_sample_min_size must be a positive multiple of 16, got 40"),
        ({"tile_sample_min_size": 32.0}, "tile_sample_min_size must be a positive multiple of 16, got 32.0"),
        ({"tile_sample_min_size": True}, "tile_sample_min_size must be a positive multiple of 16, got True"),
        ({"tile_overlap_factor": 1.0}, "tile_overlap_factor must be in [0, 1), got 1.0"),
        ({"tile_overlap_factor": -0.25}, "tile_overlap_factor must be in [0, 1), got -0.25"),
    ],
)
def test_bad_tiling_settings_are_refused_and_tiling_stays_off(kwargs, message):
    model = make_tiny()
    with pytest.raises(ValueError) as info:
        model.enable_tiling(**kwargs)
    assert str(info.value) == message
    assert model.use_tiling is False


def test_tiling_settings_at_their_bounds_are_kept():
    model = make_tiny()
    defaults = (model.tile_sample_min_size, model.tile_overlap_factor)
    model.enable_tiling()
    assert model.use_tiling is True and (model.tile_sample_min_size, model.tile_overlap_factor) == defaults
    model.disable_tiling()
    model.enable_tiling(tile_sample_min_size=16, tile_overlap_factor=0.0)
    assert model.use_tiling is True and (model.tile_sample_min_size, model.tile_overlap_factor) == (16, 0.0)
    model.enable_tiling(tile_overlap_factor=0.75)
    assert (model.tile_sample_min_size, model.tile_overlap_factor) == (16, 0.75)


@torch.no_grad()
def test_the_deterministic_encoder_gives_a_point_distribution_at_diffusers_log_variance_floor():
    model = make_tiny(seed=2)
    x = images(2, 32, 32, seed=5)
    dist = model.encode(x).latent_dist
    z = model.encoder(x)
    latent = model.config.latent_channels
    assert dist.deterministic is True
    assert torch.equal(dist.parameters[:, :latent], z)
    assert torch.equal(dist.parameters[:, latent:], torch.full_like(z, -30.0))
    assert torch.equal(dist.logvar, torch.full_like(z, -30.0))
    assert torch.equal(dist.std, torch.zeros_like(z)) and torch.equal(dist.mode(), z)


NO_LOADING_ISSUES = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}


def test_loading_info_of_a_published_snapshot_reports_no_issue_in_diffusers_keys(tmp_path):
    from test_convert import write_snapshot

    original = make_tiny(seed=3)
    snap = write_snapshot(tmp_path, "mdiffae_v1", original)
    model, info = AutoencoderMDiffAE.from_pretrained(snap, output_loading_info=True)
    assert info == NO_LOADING_ISSUES
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())
    assert isinstance(AutoencoderMDiffAE.from_pretrained(snap), AutoencoderMDiffAE)


def test_loading_info_of_a_saved_folder_is_diffusers_own(tmp_path):
    make_tiny(seed=3).save_pretrained(tmp_path / "m")
    model, info = AutoencoderMDiffAE.from_pretrained(tmp_path / "m", output_loading_info=True)
    assert isinstance(model, AutoencoderMDiffAE) and set(info) == set(NO_LOADING_ISSUES)
    assert all(not v for v in info.values())
    assert isinstance(
        AutoencoderMDiffAE.from_pretrained(tmp_path / "m", output_loading_info=False), AutoencoderMDiffAE
    )


def test_save_pretrained_writes_card_config_and_weights_on_the_main_process_only(tmp_path):
    model = make_tiny(seed=3)
    model.save_pretrained(tmp_path / "main")
    assert sorted(p.name for p in (tmp_path / "main").iterdir()) == [
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    model.save_pretrained(tmp_path / "other", is_main_process=False)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["diffusion_pytorch_model.safetensors"]


def tiled(model):
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.0)  # 2 x 2 latent tiles, no overlap
    return model


@torch.no_grad()
def test_a_tiled_decode_guides_every_tile():
    model = tiled(make_tiny(seed=6))  # token-mask PDG: each tile gets its slice of the keep mask
    z = torch.randn(1, model.config.latent_channels, 4, 4, generator=gen(1))
    plain = model.decode(z, num_inference_steps=2, generator=gen(2)).sample
    guided = model.decode(z, num_inference_steps=2, generator=gen(2), pdg_strength=2.0).sample
    assert guided.shape == (1, 3, 64, 64)
    for ty in range(2):
        for tx in range(2):
            tile = (slice(None), slice(None), slice(32 * ty, 32 * ty + 32), slice(32 * tx, 32 * tx + 32))
            assert not torch.allclose(guided[tile], plain[tile], atol=1e-4), (ty, tx)


@torch.no_grad()
def test_a_tiled_decode_blends_in_float32_whatever_the_default_dtype():
    model = make_tiny(seed=6)
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.5)  # overlapping tiles are blended
    z = torch.randn(2, model.config.latent_channels, 5, 7, generator=gen(1))
    want = model.decode(z, num_inference_steps=1, generator=gen(2)).sample
    with default_dtype(torch.float64):
        out = model.decode(z, num_inference_steps=1, generator=gen(2)).sample
    assert out.dtype == torch.float32 and torch.equal(out, want)


@pytest.mark.parametrize("size", [(32, 16), (16, 32), (32, 32)])
@torch.no_grad()
def test_an_image_no_larger_than_a_tile_is_encoded_whole(size):
    """Tiles are used only when a side exceeds the tile: a whole encode keeps the model's dtype (float64 here)."""
    model = make_tiny(seed=3).double()
    x = images(1, *size, seed=2).double()
    plain = model.encode(x).latent
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    assert model.encode(x).latent.dtype == plain.dtype == torch.float64
    assert torch.equal(model.encode(x).latent, plain)


@torch.no_grad()
def test_an_image_wider_than_a_tile_but_not_taller_is_tiled_both_ways():
    """Either side past the tile size is enough; a 32 px tall, 96 px wide image with 32 px tiles."""
    model = make_tiny()
    x = images(1, 32, 96)
    z = model.encode(x).latent
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    assert model.encode(x).latent.shape == z.shape == (1, 64, 2, 6)
    assert model.decode(z, num_inference_steps=1).sample.shape == (1, 3, 32, 96)


def test_from_pretrained_hands_the_download_options_to_the_published_layout_lookup(monkeypatch):
    from diffusers_mdiffae.models import hub

    seen, tiny = [], make_tiny()
    monkeypatch.setattr(hub, "locate_original_snapshot", lambda name, sub, **kw: seen.append((name, sub, kw)) or "s")
    monkeypatch.setattr(hub, "convert_original_snapshot", lambda snapshot, torch_dtype=None: tiny)
    loaded = AutoencoderMDiffAE.from_pretrained("org/repo", subfolder="sub", revision="r1", cache_dir="/c", token="t")
    assert loaded is tiny
    assert seen == [("org/repo", "sub", {"revision": "r1", "cache_dir": "/c", "token": "t"})]


def test_images_of_another_float_dtype_are_cast_to_the_models_before_encoding():
    model, x = make_tiny(), images(1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode(x.double()).latent_dist.mode(), model.encode(x).latent_dist.mode())


def test_a_tiled_encode_is_blended_in_float32_whatever_the_default_dtype():
    model, x = make_tiny(), images(1, 80, 80)  # 5 x 5 latents: uneven overlaps, where rounding shows
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    with torch.no_grad():
        expected = model.encode(x).latent_dist.parameters
    with default_dtype(torch.float64):  # the blend weights and sums must not follow it
        with torch.no_grad():
            dist = model.encode(x).latent_dist
    assert dist.parameters.dtype == torch.float32 and torch.equal(dist.parameters, expected)


def test_a_tiled_encode_returns_the_models_dtype():
    model = make_tiny().to(torch.bfloat16)
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.25)
    with torch.no_grad():
        assert model.encode(images(1, 64, 64)).latent_dist.parameters.dtype == torch.bfloat16


def test_tiles_are_as_small_as_one_patch_and_an_image_too_long_one_way_is_tiled(monkeypatch):
    model = make_tiny()
    calls = []
    real = model._encode_dist
    monkeypatch.setattr(model, "_encode_dist", lambda x: calls.append(tuple(x.shape[-2:])) or real(x))
    model.enable_tiling(tile_sample_min_size=16, tile_overlap_factor=0.0)
    with torch.no_grad():
        model.encode(images(1, 32, 32))
    assert calls == [(16, 16)] * 4
    calls.clear()
    model.enable_tiling(tile_sample_min_size=32, tile_overlap_factor=0.0)
    with torch.no_grad():
        model.encode(images(1, 16, 64))
    assert calls == [(16, 32)] * 2


def test_a_fresh_model_is_neither_sliced_nor_tiled_and_would_tile_at_its_sample_size_with_a_quarter_overlap():
    model = make_tiny(sample_size=48)
    assert (model.use_slicing, model.use_tiling) == (False, False)
    assert (model.tile_sample_min_size, model.tile_overlap_factor) == (48, 0.25)


def test_channels_last_is_the_default_and_can_be_turned_off_and_on_again():
    model = make_tiny()

    def layout():
        weight = model.encoder.patchify.proj.weight  # [32, 3, 16, 16]: the two layouts differ
        channels_last = weight.is_contiguous(memory_format=torch.channels_last)
        return model.encoder.memory_format, model.decoder.memory_format, channels_last, weight.is_contiguous()

    channels_last = (torch.channels_last, torch.channels_last, True, False)
    assert layout() == channels_last
    contiguous = (torch.contiguous_format, torch.contiguous_format, False, True)
    assert model.use_channels_last(False) is model and layout() == contiguous
    assert model.use_channels_last() is model and layout() == channels_last
