"""VP schedulers: schedule values, time grids, DDIM and DPM++(2M) coefficients, guidance, persistence.

Numbers are pinned against hand computations in float64 (``math``), not only at the end points.
"""

import json
import math

import pytest
import torch
from fixtures.models import public_config

from diffusers_mdiffae import VPDDIMScheduler, VPDPMSolverMultistepScheduler
from diffusers_mdiffae.schedulers.vp_schedule import time_grid


def logsnr_closed_form(t, lo=-10.0, hi=10.0, high=0.0, low=0.0):
    b = math.atan(math.exp(-hi / 2))
    a = math.atan(math.exp(-lo / 2)) - b
    base = -2 * math.log(math.tan(a * t + b))
    return (1 - t) * (base + high) + t * (base + low)


def alpha_sigma_closed_form(t, **kw):
    lam = logsnr_closed_form(t, **kw)
    return math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))


@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0])
def test_logsnr_matches_the_closed_form_at_interior_points(t):
    s = VPDDIMScheduler()
    assert float(s.logsnr(torch.tensor([t]))) == pytest.approx(logsnr_closed_form(t), abs=2e-5)


def test_interior_values_pin_the_cosine_shape():
    # A straight line with the same end points would give 0 at t = 0.5 too; these do not.
    s = VPDDIMScheduler()
    assert float(s.logsnr(torch.tensor([0.25]))) == pytest.approx(logsnr_closed_form(0.25), abs=2e-5)
    assert logsnr_closed_form(0.25) == pytest.approx(1.74375, abs=1e-4)  # the line would give 5.0
    assert float(s.logsnr(torch.tensor([0.5]))) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("high, low", [(1.5, 0.0), (0.0, -2.0), (0.7, 0.3)])
def test_shifted_schedule_interpolates_the_two_shifts_linearly_in_t(high, low):
    s = VPDDIMScheduler(log_change_high=high, log_change_low=low)
    for t in (0.0, 0.3, 0.8, 1.0):
        got = float(s.logsnr(torch.tensor([t])))
        assert got == pytest.approx(logsnr_closed_form(t, high=high, low=low), abs=3e-5)


@pytest.mark.parametrize("t", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_alpha_sigma_match_the_closed_form_and_are_variance_preserving(t):
    s = VPDDIMScheduler()
    a, sg = s.alpha_sigma(torch.tensor([t]))
    ea, es = alpha_sigma_closed_form(t)
    assert float(a) == pytest.approx(ea, abs=1e-6) and float(sg) == pytest.approx(es, abs=1e-6)
    assert float(a**2 + sg**2) == pytest.approx(1.0, abs=1e-6)


def test_init_noise_sigma_is_sigma_one_times_pixel_noise_std():
    s = VPDDIMScheduler()
    assert s.init_noise_sigma == pytest.approx(alpha_sigma_closed_form(1.0)[1] * 0.558, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_linear_grid_has_n_plus_one_points_from_one_to_zero(n):
    s = VPDDIMScheduler()
    s.set_timesteps(n)
    assert s.num_inference_steps == n and len(s.timesteps) == n
    assert torch.allclose(s.timesteps, torch.tensor([1 - i / n for i in range(n)]))
    assert s.timesteps.dtype == torch.float32
    assert torch.equal(time_grid("linear", n), torch.linspace(0, 1, n + 1).flip(0))


def test_cosine_grid_and_strength():
    grid = time_grid("cosine", 4)
    expected = [0.5 * (1 - math.cos(math.pi * i / 4)) for i in range(5)][::-1]
    assert torch.allclose(grid, torch.tensor(expected), atol=1e-7)
    s = VPDDIMScheduler()
    s.set_timesteps(4, strength=0.6)
    assert torch.allclose(s.timesteps, torch.tensor([0.6, 0.45, 0.3, 0.15]))
    with pytest.raises(ValueError, match="strength"):
        s.set_timesteps(4, strength=0.0)
    with pytest.raises(ValueError, match="schedule"):
        s.set_timesteps(4, schedule="karras")


def test_initial_state_is_sigma_start_times_pixel_noise_std_times_noise():
    s = VPDDIMScheduler()
    s.set_timesteps(3, strength=0.5)
    noise = torch.randn(2, 3, 4, 4)
    sigma = alpha_sigma_closed_form(0.5)[1]
    assert torch.allclose(s.initial_state(noise), sigma * 0.558 * noise, atol=1e-6)


def test_one_step_ends_with_the_ddim_update_to_t_zero_not_x0():
    s = VPDDIMScheduler()
    s.set_timesteps(1)
    x0, x_t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    out = s.step(x0, s.timesteps[0], x_t)
    a1, s1 = alpha_sigma_closed_form(1.0)
    a0, s0 = alpha_sigma_closed_form(0.0)
    expected = a0 * x0 + s0 * (x_t - a1 * x0) / s1
    assert torch.allclose(out.prev_sample, expected, atol=1e-5)
    assert not torch.allclose(out.prev_sample, x0, atol=1e-3)
    assert torch.equal(out.pred_original_sample, x0)


def test_set_alpha_to_one_returns_x0_on_the_last_step():
    s = VPDDIMScheduler(set_alpha_to_one=True)
    s.set_timesteps(1)
    x0 = torch.randn(1, 3, 4, 4)
    assert torch.equal(s.step(x0, 1.0, torch.randn(1, 3, 4, 4)).prev_sample, x0)


def test_ddim_coefficients_on_an_uneven_grid():
    s = VPDDIMScheduler()
    s.set_timesteps(3, schedule="cosine", strength=0.8)
    grid = [0.8 * 0.5 * (1 - math.cos(math.pi * i / 3)) for i in range(4)][::-1]
    x = torch.randn(1, 3, 4, 4)
    for i, t in enumerate(s.timesteps):
        x0 = torch.randn(1, 3, 4, 4)
        a, sg = alpha_sigma_closed_form(grid[i])
        an, sn = alpha_sigma_closed_form(grid[i + 1])
        expected = an * x0 + sn * (x - a * x0) / sg
        x = s.step(x0, t, x).prev_sample
        assert torch.allclose(x, expected, atol=2e-5), i


def test_dpmpp_2m_coefficients_on_an_uneven_grid():
    s = VPDPMSolverMultistepScheduler()
    s.set_timesteps(3, schedule="cosine")
    grid = [0.5 * (1 - math.cos(math.pi * i / 3)) for i in range(4)][::-1]
    half = [0.5 * logsnr_closed_form(t) for t in grid]
    x = torch.randn(1, 3, 4, 4)
    prev_x0 = None
    for i, t in enumerate(s.timesteps):
        x0 = torch.randn(1, 3, 4, 4)
        _, sg = alpha_sigma_closed_form(grid[i])
        an, sn = alpha_sigma_closed_form(grid[i + 1])
        h = half[i + 1] - half[i]
        phi = math.expm1(-h)
        expected = (sn / sg) * x - an * phi * x0
        if prev_x0 is not None:
            r = (half[i] - half[i - 1]) / h  # h_prev / h
            expected = expected - 0.5 * an * phi * (x0 - prev_x0) / r
        x = s.step(x0, t, x).prev_sample
        assert torch.allclose(x, expected, atol=2e-5, rtol=1e-5), i
        prev_x0 = x0


def test_guidance_combines_in_x0_space_and_one_is_off():
    s = VPDDIMScheduler(set_alpha_to_one=True)
    c, u, x = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    for w, expected in ((1.0, c), (2.0, 2 * c - u), (0.5, 0.5 * (c + u))):
        s.set_timesteps(1)
        assert torch.allclose(
            s.step(c, 1.0, x, model_output_uncond=u, pdg_strength=w).prev_sample, expected, atol=1e-6
        )
    s2 = VPDDIMScheduler(pdg_strength=3.0, set_alpha_to_one=True)
    s2.set_timesteps(1)
    assert torch.allclose(s2.step(c, 1.0, x, model_output_uncond=u).prev_sample, u + 3 * (c - u), atol=1e-6)


def test_maths_is_float32_for_low_precision_model_outputs():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    x0 = torch.randn(1, 3, 4, 4).to(torch.bfloat16)
    out = s.step(x0, s.timesteps[0], torch.randn(1, 3, 4, 4).to(torch.bfloat16))
    assert out.prev_sample.dtype == torch.float32 and out.pred_original_sample.dtype == torch.float32


def test_step_refuses_a_time_not_on_the_grid_and_a_finished_run():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    with pytest.raises(ValueError, match="set_timesteps"):
        s.step(torch.zeros(1, 3, 2, 2), 0.3, torch.zeros(1, 3, 2, 2))
    for t in s.timesteps:
        s.step(torch.zeros(1, 3, 2, 2), t, torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="all 2 steps are taken"):
        s.step(torch.zeros(1, 3, 2, 2), s.timesteps[-1], torch.zeros(1, 3, 2, 2))


def test_step_refuses_a_prediction_that_would_broadcast_over_the_batch():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 2, 2\) but sample has \(4, 3, 2, 2\)"):
        s.step(torch.zeros(1, 3, 2, 2), 1.0, torch.zeros(4, 3, 2, 2))
    with pytest.raises(ValueError, match="model_output_uncond"):
        s.step(torch.zeros(4, 3, 2, 2), 1.0, torch.zeros(4, 3, 2, 2), model_output_uncond=torch.zeros(1, 3, 2, 2))


def test_add_noise_scales_unit_noise_by_pixel_noise_std():
    s = VPDDIMScheduler()
    x0, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = torch.tensor([0.25, 0.75])
    a, sg = s.alpha_sigma(t)
    expected = a.view(-1, 1, 1, 1) * x0 + sg.view(-1, 1, 1, 1) * 0.558 * noise
    assert torch.allclose(s.add_noise(x0, noise, t), expected, atol=1e-6)


def test_config_round_trip_through_its_own_file(tmp_path):
    s = VPDDIMScheduler(pixel_noise_std=0.5, log_change_high=0.25, pdg_strength=1.1, schedule="cosine")
    s.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert data["_class_name"] == "VPDDIMScheduler" and data["pixel_noise_std"] == 0.5
    loaded = VPDDIMScheduler.from_pretrained(tmp_path)
    assert public_config(loaded.config) == public_config(s.config)


def test_bad_schedule_parameters_are_refused():
    with pytest.raises(ValueError, match="logsnr_min"):
        VPDDIMScheduler(logsnr_min=5, logsnr_max=-5)
    with pytest.raises(ValueError, match="positive int"):
        VPDDIMScheduler().set_timesteps(0)
    with pytest.raises(ValueError, match="schedule"):
        VPDDIMScheduler(schedule="sigmoid")


def test_pipeline_facing_attributes():
    s = VPDDIMScheduler()
    assert s.order == 1 and len(s) == 1000
    x = torch.randn(1, 3, 2, 2)
    assert s.scale_model_input(x, 1.0) is x


def test_both_schedulers_list_each_other_as_compatible():
    for cls in (VPDDIMScheduler, VPDPMSolverMultistepScheduler):
        names = {c.__name__ for c in cls().compatibles}
        assert {"VPDDIMScheduler", "VPDPMSolverMultistepScheduler"} <= names


def _gaussian_data_sampling(cls, steps, c=0.5):
    """Sample with the exact x0 predictor of Gaussian data N(0, c^2): a closed-form test model."""
    s = cls(set_alpha_to_one=True)
    s.set_timesteps(steps)
    x = s.initial_state(torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    for t in s.timesteps:
        a, sg = s.alpha_sigma(t)
        x0 = a * c * c / (a * a * c * c + sg * sg * 0.558**2) * x
        x = s.step(x0, t, x).prev_sample
    return x


def test_dpmpp_2m_converges_faster_than_ddim():
    ref = _gaussian_data_sampling(VPDDIMScheduler, 1000)
    err = lambda cls: float((_gaussian_data_sampling(cls, 10) - ref).abs().mean())  # noqa: E731
    assert err(VPDPMSolverMultistepScheduler) < 0.25 * err(VPDDIMScheduler)


def test_dpmpp_2m_shares_the_config_format():
    s = VPDPMSolverMultistepScheduler.from_config(VPDDIMScheduler(log_change_high=0.5).config)
    assert s.config.log_change_high == 0.5
