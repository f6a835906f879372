"""VPDDIMScheduler: schedule, DDIM update, guidance, float32 maths and persistence."""

import json

import pytest
import torch

from diffusers_mdiffae import VPDDIMScheduler


def test_schedule_endpoints_are_logsnr_max_and_min():
    s = VPDDIMScheduler()
    assert torch.allclose(s.logsnr(torch.tensor([0.0, 1.0])), torch.tensor([10.0, -10.0]), atol=1e-4)
    alpha, sigma = s.alpha_sigma(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(alpha**2 + sigma**2, torch.ones(3), atol=1e-6)
    assert abs(float(alpha[0]) - 0.99998) < 1e-4 and abs(float(sigma[0]) - 0.00669) < 1e-4


def test_init_noise_sigma_is_sigma_one_times_pixel_noise_std():
    s = VPDDIMScheduler()
    assert abs(s.init_noise_sigma - 0.99998 * 0.558) < 1e-4


@pytest.mark.parametrize("n", [1, 2, 5])
def test_set_timesteps_is_linear_from_one_and_excludes_zero(n):
    s = VPDDIMScheduler()
    s.set_timesteps(n)
    assert s.num_inference_steps == n and len(s.timesteps) == n
    assert float(s.timesteps[0]) == 1.0 and float(s.timesteps[-1]) > 0
    assert torch.allclose(s.timesteps, torch.linspace(1, 0, n + 1)[:-1])
    assert s.timesteps.dtype == torch.float32


def test_one_step_returns_the_clean_prediction():
    s = VPDDIMScheduler()
    s.set_timesteps(1)
    x0 = torch.randn(2, 3, 8, 8)
    out = s.step(x0, s.timesteps[0], torch.randn(2, 3, 8, 8))
    assert torch.equal(out.prev_sample, x0) and torch.equal(out.pred_original_sample, x0)


def test_ddim_step_follows_the_vp_formula():
    s = VPDDIMScheduler()
    s.set_timesteps(4)
    t, t_next = s.timesteps[1], s.timesteps[2]
    x_t, x0 = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    a, sg = s.alpha_sigma(t)
    an, sn = s.alpha_sigma(t_next)
    eps = (x_t - a * x0) / sg
    assert torch.allclose(s.step(x0, t, x_t).prev_sample, an * x0 + sn * eps, atol=1e-6)


def test_without_set_alpha_to_one_the_last_step_stops_at_logsnr_max():
    s = VPDDIMScheduler(set_alpha_to_one=False)
    s.set_timesteps(1)
    x_t, x0 = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    prev = s.step(x0, 1.0, x_t).prev_sample
    assert not torch.equal(prev, x0) and (prev - x0).abs().max() < 0.1


def test_guidance_combines_in_x0_space_and_one_is_off():
    s = VPDDIMScheduler()
    s.set_timesteps(1)
    c, u, x = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    assert torch.allclose(s.step(c, 1.0, x, model_output_uncond=u, guidance_scale=1.0).prev_sample, c)
    assert torch.allclose(s.step(c, 1.0, x, model_output_uncond=u, guidance_scale=2.0).prev_sample, 2 * c - u)
    s2 = VPDDIMScheduler(guidance_scale=3.0)
    s2.set_timesteps(1)
    assert torch.allclose(s2.step(c, 1.0, x, model_output_uncond=u).prev_sample, u + 3 * (c - u))


def test_maths_is_float32_for_low_precision_model_outputs():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    x0 = torch.randn(1, 3, 4, 4).to(torch.bfloat16)
    out = s.step(x0, s.timesteps[0], torch.randn(1, 3, 4, 4).to(torch.bfloat16))
    assert out.prev_sample.dtype == torch.float32 and out.pred_original_sample.dtype == torch.float32


def test_step_refuses_a_time_not_on_the_grid():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    with pytest.raises(ValueError, match="set_timesteps"):
        s.step(torch.zeros(1, 3, 2, 2), 0.3, torch.zeros(1, 3, 2, 2))


def test_add_noise_scales_unit_noise_by_pixel_noise_std():
    s = VPDDIMScheduler()
    x0, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.tensor([0.25, 0.75])
    a, sg = s.alpha_sigma(t)
    expected = a.view(-1, 1, 1, 1) * x0 + sg.view(-1, 1, 1, 1) * 0.558 * noise
    assert torch.allclose(s.add_noise(x0, noise, t), expected, atol=1e-6)


def test_logsnr_shift_is_additive():
    a, b = VPDDIMScheduler(), VPDDIMScheduler(logsnr_shift=1.5)
    t = torch.linspace(0, 1, 5)
    assert torch.allclose(b.logsnr(t) - a.logsnr(t), torch.full((5,), 1.5), atol=1e-5)


def test_config_round_trip_through_its_own_file(tmp_path):
    s = VPDDIMScheduler(pixel_noise_std=0.5, logsnr_shift=0.25, guidance_scale=1.1)
    s.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert data["_class_name"] == "VPDDIMScheduler" and data["pixel_noise_std"] == 0.5
    loaded = VPDDIMScheduler.from_pretrained(tmp_path)
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}
    assert strip(loaded.config) == strip(s.config)


def test_bad_schedule_parameters_are_refused():
    with pytest.raises(ValueError, match="logsnr_min"):
        VPDDIMScheduler(logsnr_min=5, logsnr_max=-5)
    with pytest.raises(ValueError, match="positive int"):
        VPDDIMScheduler().set_timesteps(0)


def test_pipeline_facing_attributes():
    s = VPDDIMScheduler()
    assert s.order == 1 and len(s) == 1000
    x = torch.randn(1, 3, 2, 2)
    assert s.scale_model_input(x, 1.0) is x


def _gaussian_data_sampling(cls, steps, c=0.5):
    """Sample with the exact x0 predictor of Gaussian data N(0, c^2): a closed-form test model."""
    s = cls()
    s.set_timesteps(steps)
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * s.init_noise_sigma
    for t in s.timesteps:
        a, sg = s.alpha_sigma(t)
        x0 = a * c * c / (a * a * c * c + sg * sg * 0.558**2) * x
        x = s.step(x0, t, x).prev_sample
    return x


def test_dpmpp_2m_converges_faster_than_ddim():
    from diffusers_mdiffae import VPDPMSolverMultistepScheduler

    ref = _gaussian_data_sampling(VPDDIMScheduler, 1000)
    err = lambda cls: float((_gaussian_data_sampling(cls, 10) - ref).abs().mean())  # noqa: E731
    assert err(VPDPMSolverMultistepScheduler) < 0.25 * err(VPDDIMScheduler)


def test_dpmpp_2m_shares_the_config_format():
    from diffusers_mdiffae import VPDPMSolverMultistepScheduler

    s = VPDPMSolverMultistepScheduler.from_config(VPDDIMScheduler(logsnr_shift=0.5).config)
    assert s.config.logsnr_shift == 0.5
