"""Scheduler edges pinned: schedule defaults, argument refusals, batched timesteps, the exact error sentences."""

import math

import pytest
import torch
from fixtures.dtypes import default_dtype

from diffusers_mdiffae import VPDDIMScheduler
from diffusers_mdiffae.schedulers.vp_schedule import (
    cosine_interpolated_logsnr,
    shifted_cosine_interpolated_logsnr,
    time_grid,
)


def test_schedule_function_defaults_are_the_published_ones():
    t = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(cosine_interpolated_logsnr(t), torch.tensor([10.0, 0.0, -10.0]), atol=1e-4)
    assert torch.allclose(shifted_cosine_interpolated_logsnr(t), torch.tensor([10.0, 0.0, -10.0]), atol=1e-4)
    assert torch.allclose(shifted_cosine_interpolated_logsnr(t, -6.0), cosine_interpolated_logsnr(t, -6.0), atol=1e-5)


@pytest.mark.parametrize("steps", [0, -1, 2.0, True, "3", None])
def test_time_grid_refuses_anything_but_a_positive_int(steps):
    with pytest.raises(ValueError, match=f"num_steps must be a positive int, got {steps!r}"):
        time_grid("linear", steps)


def test_time_grid_names_the_schedules():
    with pytest.raises(ValueError, match=r"schedule must be one of \('linear', 'cosine'\), got 'karras'"):
        time_grid("karras", 2)


@pytest.mark.parametrize("strength", [True, 0.0, -0.5, 1.5, 2.0, "1", None])
def test_set_timesteps_refuses_strengths_outside_0_1(strength):
    with pytest.raises(ValueError, match=r"strength must be a number in \(0, 1\], got"):
        VPDDIMScheduler().set_timesteps(2, strength=strength)


def test_integer_strength_one_is_the_full_grid():
    s = VPDDIMScheduler()
    s.set_timesteps(4, strength=1)
    assert torch.equal(s.timesteps, torch.tensor([1.0, 0.75, 0.5, 0.25]))
    s.set_timesteps(4, strength=0.5)
    assert torch.allclose(s.timesteps, torch.tensor([0.5, 0.375, 0.25, 0.125]))


def test_step_accepts_a_per_sample_timestep_tensor():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    x = torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x0 = torch.zeros_like(x)
    ref = VPDDIMScheduler()
    ref.set_timesteps(2)
    t = s.timesteps[0]
    assert torch.equal(s.step(x0, t.expand(3), x).prev_sample, ref.step(x0, t, x).prev_sample)


def test_the_final_time_is_not_a_step_and_strangers_are_named():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    with pytest.raises(ValueError) as info:
        s.step(torch.zeros(1, 3, 2, 2), 0.0, torch.zeros(1, 3, 2, 2))
    assert str(info.value) == (
        "timestep 0.000000 is not one of this scheduler's timesteps [1.0, 0.5]; call set_timesteps first"
    )
    with pytest.raises(ValueError, match="timestep 0.300000 is not one of"):
        s.step(torch.zeros(1, 3, 2, 2), 0.3, torch.zeros(1, 3, 2, 2))


def test_a_float64_timestep_is_held_to_the_grid_after_rounding_to_float32():
    # The grid is float32, so the 1e-6 tolerance is measured on the timestep's float32 reading.
    # Below 0.25 float32 steps are 2^-26: 0.25 - 1.003e-6 reads as 0.25 - 67 steps (9.98e-7 away) and
    # takes the last step; above it they are 2^-25: 0.25 + 0.999e-6 reads as 0.25 + 34 steps (1.013e-6).
    accepted = torch.tensor(0.25 - 1.003e-6, dtype=torch.float64)
    refused = torch.tensor(0.25 + 0.999e-6, dtype=torch.float64)
    assert 0.25 - float(accepted.float()) < 1e-6 < float(refused.float()) - 0.25
    x = torch.ones(1, 3, 2, 2)
    s, ref = VPDDIMScheduler(), VPDDIMScheduler()
    s.set_timesteps(4)
    ref.set_timesteps(4)
    assert torch.equal(
        s.step(torch.zeros_like(x), accepted, x).prev_sample, ref.step(torch.zeros_like(x), 0.25, x).prev_sample
    )
    assert s.step_index == 4
    s.set_timesteps(4)
    with pytest.raises(ValueError, match="timestep 0.250001 is not one of"):
        s.step(torch.zeros_like(x), refused, x)


def test_shape_mismatch_sentences_name_the_argument():
    s = VPDDIMScheduler()
    s.set_timesteps(1)
    x = torch.zeros(2, 3, 2, 2)
    with pytest.raises(ValueError) as info:
        s.step(torch.zeros(1, 3, 2, 2), 1.0, x)
    assert str(info.value) == (
        "model_output has shape (1, 3, 2, 2) but sample has (2, 3, 2, 2); "
        "they must match (no broadcasting over the batch)"
    )
    with pytest.raises(ValueError) as info:
        s.step(x, 1.0, x, model_output_uncond=torch.zeros(1, 3, 2, 2))
    assert str(info.value).startswith("model_output_uncond has shape (1, 3, 2, 2) but sample has (2, 3, 2, 2);")


def test_return_tuple_and_step_index():
    s = VPDDIMScheduler()
    s.set_timesteps(2)
    assert s.step_index is None and len(s) == 1000 and s.order == 1
    x = torch.ones(1, 3, 2, 2)
    prev, x0 = s.step(torch.zeros_like(x), s.timesteps[0], x, return_dict=False)
    assert s.step_index == 1 and torch.equal(x0, torch.zeros_like(x))
    alpha, sigma = s.alpha_sigma(torch.tensor([1.0, 0.5]))
    assert torch.allclose(prev, x * float(sigma[1] / sigma[0]), atol=1e-6)  # x0 = 0: eps scaled to sigma_next
    assert math.isclose(s.init_noise_sigma, float(sigma[0]) * 0.558, rel_tol=1e-6)


def test_dpmpp_2m_honours_strength_and_schedule_too():
    from diffusers_mdiffae import VPDPMSolverMultistepScheduler

    s = VPDPMSolverMultistepScheduler()
    s.set_timesteps(3, schedule="cosine", strength=0.5)
    assert torch.allclose(s.timesteps, torch.tensor([0.5, 0.375, 0.125]))


def test_grids_stay_float32_when_torch_defaults_to_float64():
    with default_dtype(torch.float64):
        for schedule in ("linear", "cosine"):
            assert time_grid(schedule, 3).dtype == torch.float32


def test_schedule_values_stay_float32_when_torch_defaults_to_float64():
    ref = cosine_interpolated_logsnr(torch.tensor(0.25))
    with default_dtype(torch.float64):
        got = cosine_interpolated_logsnr(torch.tensor(0.25, dtype=torch.float32))
    assert got.dtype == torch.float32 and torch.equal(got, ref)
