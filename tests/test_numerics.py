"""The optimised module path (channels-last, batched guidance branches) equals a plain functional
implementation of the same architecture reading within float tolerance."""

import pytest
import torch
from fixtures.fake_original import MDiffAE as FunctionalReference
from fixtures.fake_original import to_original_layout
from fixtures.models import images, make_tiny

from diffusers_mdiffae.models.sampling import draw_noise, keep_mask

CONFIG = {
    "patch_size": 16,
    "encoder_depth": 1,
    "decoder_depth": 2,
    "depthwise_kernel_size": 7,
    "logsnr_min": -10.0,
    "logsnr_max": 10.0,
    "pixel_noise_std": 0.558,
}


@pytest.fixture
def pair():
    model = make_tiny(seed=5)
    ref = FunctionalReference(CONFIG, to_original_layout(model.state_dict()))
    return model, ref


def test_encoder_matches_the_functional_reference(pair):
    model, ref = pair
    x = images(2, 48, 64)
    with torch.no_grad():
        assert torch.allclose(model.encode(x).latent, ref.encode(x), atol=1e-5)


@pytest.mark.parametrize("t", [1.0, 0.7, 0.1])
def test_decoder_forward_matches_the_functional_reference(pair, t):
    model, ref = pair
    x_t, z = torch.randn(2, 3, 48, 64) * 0.558, torch.randn(2, 64, 3, 4)
    tt = torch.full((2,), t)
    with torch.no_grad():
        assert torch.allclose(model.decoder(x_t, tt, z), ref.decoder(x_t, tt, z), atol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_seeded_decode_is_the_reference_sampler(pair, steps):
    model, ref = pair
    z = torch.randn(2, 64, 2, 3)
    cfg = model.inference_config_class(num_steps=steps, seed=11)
    with torch.no_grad():
        expected = ref.decode(z, 32, 48, inference_config=cfg)
        assert torch.allclose(model.decode(z, inference_config=cfg).sample, expected, atol=1e-5)


def test_one_step_pipeline_decode_is_the_reference_decoder_on_the_initial_noise(pair):
    model, ref = pair
    z = torch.randn(1, 64, 2, 3)
    noise, _ = draw_noise((1, 3, 32, 48), seed=0)
    sched = model.scheduler
    sched.set_timesteps(1)
    x1 = sched.initial_state(noise)
    a0, s0 = sched.alpha_sigma(torch.zeros(1))
    a1, s1 = sched.alpha_sigma(torch.ones(1))
    with torch.no_grad():
        x0 = ref.decoder(x1, torch.ones(1), z)
        expected = a0 * x0 + s0 * (x1 - a1 * x0) / s1  # the DDIM step to t = 0, not x0 itself
        assert torch.allclose(model.decode(z).sample, expected, atol=1e-5)


def test_batched_pdg_equals_two_separate_forwards():
    model = make_tiny(seed=6)
    z = torch.randn(1, 64, 2, 2)
    noise, gen = draw_noise((1, 3, 32, 32), seed=3)
    mask = keep_mask(gen, 1, 2, 2, 0.75, "cpu")
    sched = model.scheduler
    sched.set_timesteps(2)
    x = sched.initial_state(noise)
    with torch.no_grad():
        for t in sched.timesteps:
            tb = t.expand(1)
            c = model.decoder(x, tb, z)
            u = model.decoder(x, tb, z, keep_mask=mask)
            x = sched.step(c, t, x, model_output_uncond=u, pdg_strength=1.4).prev_sample
        got = model.decode(z, num_inference_steps=2, pdg_strength=1.4, seed=3).sample
    assert torch.allclose(got, x, atol=1e-5)


def test_compile_repeated_blocks_matches_eager():
    model = make_tiny(seed=7)
    x = images(1, 32, 32)
    with torch.no_grad():
        ref = model.reconstruct(x)
        model.compile_repeated_blocks(dynamic=False)
        out = model.reconstruct(x)
    assert torch.allclose(out, ref, atol=1e-5)
