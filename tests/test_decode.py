"""Decoding: determinism, batch/slicing/tiling invariance, steps, PDG, callbacks, dtypes."""

import pytest
import torch
from fixtures.models import images, make_tiny

from diffusers_mdiffae import MDiffAEInferenceConfig


@pytest.fixture
def z(tiny):
    with torch.no_grad():
        return tiny.encode(images(2, 64, 96)).latent


def decode(model, z, **kw):
    with torch.no_grad():
        return model.decode(z, **kw).sample


def test_seeded_decode_is_bit_identical_twice(tiny, z):
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(decode(tiny, z, generator=g1), decode(tiny, z, generator=g2))


def test_decode_without_generator_is_deterministic(tiny, z):
    assert torch.equal(decode(tiny, z), decode(tiny, z))


def test_decode_without_generator_is_per_sample_so_batch_size_does_not_matter(tiny, z):
    both = decode(tiny, z, num_inference_steps=2, pdg_strength=1.5)
    second = decode(tiny, z[1:], num_inference_steps=2, pdg_strength=1.5)
    assert torch.allclose(both[1:], second, atol=1e-5)


def test_different_seeds_give_different_images(tiny, z):
    a = decode(tiny, z, seed=1, num_inference_steps=2)
    b = decode(tiny, z, seed=2, num_inference_steps=2)
    assert not torch.equal(a, b)


def test_slicing_equals_no_slicing(tiny, z):
    for kw in ({}, {"num_inference_steps": 3, "pdg_strength": 1.2}, {"generator": torch.Generator().manual_seed(3)}):
        tiny.disable_slicing()
        ref = decode(
            tiny, z, **{k: (torch.Generator().manual_seed(3) if k == "generator" else v) for k, v in kw.items()}
        )
        tiny.enable_slicing()
        got = decode(
            tiny, z, **{k: (torch.Generator().manual_seed(3) if k == "generator" else v) for k, v in kw.items()}
        )
        tiny.disable_slicing()
        assert torch.allclose(ref, got, atol=1e-5), kw


def test_encode_slicing_equals_no_slicing(tiny):
    x = images(3, 32, 48)
    with torch.no_grad():
        ref = tiny.encode(x).latent
        tiny.enable_slicing()
        got = tiny.encode(x).latent
    assert torch.allclose(ref, got, atol=1e-5)


def test_generator_list_gives_one_stream_per_sample(tiny, z):
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    out = decode(tiny, z, generator=gens, num_inference_steps=2)
    single = decode(tiny, z[:1], generator=[torch.Generator().manual_seed(5)], num_inference_steps=2)
    assert torch.allclose(out[:1], single, atol=1e-5)
    with pytest.raises(ValueError, match="one per sample"):
        decode(tiny, z, generator=[torch.Generator()])


def test_tiled_decode_stays_close_to_untiled_and_covers_the_image(tiny):
    with torch.no_grad():
        z = tiny.encode(images(1, 128, 160)).latent
    ref = decode(tiny, z, num_inference_steps=2)
    tiny.enable_tiling(tile_sample_min_size=64, tile_overlap_factor=0.5)
    tiled = decode(tiny, z, num_inference_steps=2)
    tiny.disable_tiling()
    assert tiled.shape == ref.shape
    assert (tiled - ref).abs().mean() < 0.05
    assert torch.equal(decode(tiny, z, num_inference_steps=2), ref)


def test_tiled_encode_stays_close_to_untiled(tiny):
    x = images(1, 128, 96)
    with torch.no_grad():
        ref = tiny.encode(x).latent
        tiny.enable_tiling(tile_sample_min_size=64, tile_overlap_factor=0.25)
        tiled = tiny.encode(x).latent
    assert tiled.shape == ref.shape
    assert (tiled - ref).abs().mean() < 0.1


def test_tiling_rejects_sizes_off_the_patch_grid(tiny):
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny.enable_tiling(tile_sample_min_size=100)


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("pdg", [1.0, 1.1])
def test_steps_and_pdg_produce_valid_images(tiny, z, steps, pdg):
    out = decode(tiny, z, num_inference_steps=steps, pdg_strength=pdg)
    assert out.shape == (2, 3, 64, 96)
    assert torch.isfinite(out).all()


def test_pdg_changes_the_multi_step_result(tiny, z):
    assert not torch.equal(
        decode(tiny, z, num_inference_steps=3), decode(tiny, z, num_inference_steps=3, pdg_strength=1.5)
    )


def test_skip_decoder_with_dual_and_path_drop_pdg_decodes():
    for mode in ("dual", "path_drop"):
        model = make_tiny(
            decoder_depth=3, decoder_start_blocks=1, decoder_end_blocks=1, outer_norms=False, pdg_mode=mode
        )
        with torch.no_grad():
            zz = model.encode(images(1, 32, 32)).latent
        a = decode(model, zz, num_inference_steps=2, pdg_strength=2.0)
        b = decode(model, zz, num_inference_steps=2)
        assert a.shape == (1, 3, 32, 32) and not torch.equal(a, b)


def test_inference_config_matches_keyword_arguments_with_one_generator_for_the_batch(tiny, z):
    cfg = MDiffAEInferenceConfig(num_steps=3, pdg_enabled=True, pdg_strength=1.2, seed=11)
    assert torch.equal(
        decode(tiny, z, inference_config=cfg),
        decode(tiny, z, num_inference_steps=3, pdg_strength=1.2, generator=torch.Generator().manual_seed(11)),
    )
    off = MDiffAEInferenceConfig(num_steps=3, pdg_enabled=False, pdg_strength=1.2, seed=11)
    assert torch.equal(
        decode(tiny, z, inference_config=off),
        decode(tiny, z, num_inference_steps=3, generator=torch.Generator().manual_seed(11)),
    )


def test_for_one_sample_the_published_draw_and_the_per_sample_draw_coincide(tiny, z):
    cfg = MDiffAEInferenceConfig(num_steps=2, seed=5)
    assert torch.equal(decode(tiny, z[:1], inference_config=cfg), decode(tiny, z[:1], num_inference_steps=2, seed=5))


def test_strength_and_cosine_schedule_change_the_decode(tiny, z):
    ref = decode(tiny, z, num_inference_steps=3)
    assert not torch.equal(decode(tiny, z, num_inference_steps=3, strength=0.5), ref)
    assert not torch.equal(decode(tiny, z, num_inference_steps=3, schedule="cosine"), ref)
    for bad in (0.0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="strength must be a number in \\(0, 1\\]"):
            decode(tiny, z, strength=bad)
    with pytest.raises(ValueError, match="schedule must be one of"):
        decode(tiny, z, schedule="karras")


def test_original_api_decode_with_height_width_and_reconstruct(tiny):
    x = images(1, 48, 64)
    with torch.no_grad():
        z = tiny.encode(x).latent
        out = tiny.decode(z, height=48, width=64).sample
        rec = tiny.reconstruct(x)
    assert out.shape == rec.shape == x.shape
    assert torch.equal(out, rec)
    with pytest.raises(ValueError, match="height=50"):
        tiny.decode(z, height=50, width=64)


def test_unknown_sampler_is_refused(tiny, z):
    with pytest.raises(ValueError, match="dpmpp_2m.*euler"):
        tiny.decode(z, inference_config=MDiffAEInferenceConfig(sampler="euler"))


def test_dpmpp_2m_sampler_decodes_and_differs_from_ddim_beyond_one_step(tiny, z):
    one = decode(tiny, z, sampler="dpmpp_2m")
    assert torch.allclose(one, decode(tiny, z), atol=1e-5)  # first-order DPM-Solver++ is DDIM
    cfg = MDiffAEInferenceConfig(num_steps=4, sampler="dpmpp_2m", pdg_enabled=True, pdg_strength=1.1, seed=0)
    dpm = decode(tiny, z, inference_config=cfg)
    assert torch.isfinite(dpm).all() and not torch.equal(dpm, decode(tiny, z, num_inference_steps=4, pdg_strength=1.1))
    tiny.enable_slicing()
    assert torch.allclose(decode(tiny, z, inference_config=cfg), dpm, atol=1e-5)  # solver state resets per run


def test_callback_reports_every_step_and_can_interrupt(tiny, z):
    seen = []
    decode(tiny, z, num_inference_steps=4, callback=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]

    class Stop(Exception):
        pass

    calls = []

    def stop_after_two(i, n):
        calls.append(i)
        if i == 2:
            raise Stop

    with pytest.raises(Stop):
        decode(tiny, z, num_inference_steps=10, callback=stop_after_two)
    assert calls == [1, 2]


def test_forward_and_return_dict_false(tiny):
    x = images(1, 32, 32)
    with torch.no_grad():
        out = tiny(x).sample
        tup = tiny(x, return_dict=False)
        enc = tiny.encode(x, return_dict=False)
        dec = tiny.decode(tiny.encode(x).latent, return_dict=False)
    assert isinstance(tup, tuple) and torch.equal(tup[0], out)
    assert torch.equal(enc[0].mode(), tiny.encode(x).latent)
    assert isinstance(dec, tuple) and torch.equal(dec[0], out)


def test_latent_dist_sample_equals_mode_for_the_deterministic_encoder(tiny):
    x = images(1, 32, 32)
    with torch.no_grad():
        dist = tiny.encode(x).latent_dist
    assert torch.equal(dist.sample(torch.Generator().manual_seed(0)), dist.mode())
    assert torch.equal(dist.mean, dist.mode())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_model_decodes_close_to_float32(dtype):
    model = make_tiny()
    x = images(1, 32, 32)
    with torch.no_grad():
        ref = model.reconstruct(x)
        model.to(dtype)
        out = model.reconstruct(x.to(dtype))
    assert out.dtype == dtype
    assert (out.float() - ref).abs().mean() < 0.05


def test_diffusers_layerwise_casting_and_group_offload_work():
    x = images(1, 32, 32)
    model = make_tiny()
    with torch.no_grad():
        ref = model.reconstruct(x)
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
        cast = model.reconstruct(x)
        offloaded = make_tiny()
        offloaded.enable_group_offload(torch.device("cpu"), offload_type="leaf_level")
        off = offloaded.reconstruct(x)
    assert (cast - ref).abs().mean() < 0.1
    assert torch.equal(off, ref)


@pytest.mark.parametrize("length", [1, 7, 32, 33, 64, 100, 128])
@pytest.mark.parametrize("tile, overlap", [(32, 8), (16, 0), (8, 4)])
def test_tile_spans_cover_the_grid_with_the_requested_overlap(length, tile, overlap):
    from diffusers_mdiffae.models.tiling import spans as tile_spans

    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(e - s == min(tile, length) for s, e in spans)
    assert all(a[1] - b[0] >= overlap for a, b in zip(spans, spans[1:]))
