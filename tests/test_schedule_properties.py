"""Invariants of the VP schedule and its two samplers, for any schedule the config admits (hypothesis).

Kept fast: at most 25 examples per property, no deadline.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusers_mdiffae import VPDDIMScheduler, VPDPMSolverMultistepScheduler
from diffusers_mdiffae.schedulers.vp_schedule import (
    alpha_sigma_from_logsnr,
    cosine_interpolated_logsnr,
    shifted_cosine_interpolated_logsnr,
    time_grid,
)

FAST = settings(max_examples=25, deadline=None)

# logsnr_min < logsnr_max with a gap large enough that float32 can resolve the slope.
bounds = st.tuples(st.floats(-20.0, 12.0), st.floats(0.5, 30.0)).map(lambda p: (p[0], p[0] + p[1]))
shift = st.floats(-5.0, 5.0)
T_DENSE = torch.linspace(0.0, 1.0, 201)
T_COARSE = torch.linspace(0.0, 1.0, 11)


def _falls(lam_dense, lam_coarse):
    """Never rises on the dense grid beyond float32 rounding (tan cannot resolve every step of a flat,
    very negative schedule, and may round one step up by an ulp) and falls strictly on the coarse one."""
    slack = 4e-6 * lam_dense.abs().clamp_min(1.0)
    return bool((lam_dense[1:] <= lam_dense[:-1] + slack[1:]).all()) and bool((lam_coarse[1:] < lam_coarse[:-1]).all())


@FAST
@given(bounds, shift)
def test_alpha_squared_plus_sigma_squared_is_one_everywhere(lohi, s):
    lo, hi = lohi
    lam = shifted_cosine_interpolated_logsnr(T_DENSE, lo, hi, s, s)
    a, sg = alpha_sigma_from_logsnr(lam)
    assert a.dtype == torch.float32 and sg.dtype == torch.float32
    assert torch.allclose(a**2 + sg**2, torch.ones_like(a), atol=2e-6)
    assert bool((a > 0).all()) and bool((sg > 0).all())
    # and each is the square root of the logistic of +-logsnr
    assert torch.allclose(a**2, torch.sigmoid(lam), atol=2e-6)
    assert torch.allclose(sg**2, torch.sigmoid(-lam), atol=2e-6)


@FAST
@given(bounds, shift)
def test_logsnr_falls_from_max_to_min_for_any_constant_shift(lohi, s):
    lo, hi = lohi
    lam = shifted_cosine_interpolated_logsnr(T_DENSE, lo, hi, s, s)
    assert _falls(lam, shifted_cosine_interpolated_logsnr(T_COARSE, lo, hi, s, s))
    assert float(lam[0]) == pytest.approx(hi + s, abs=5e-4 * max(1.0, abs(hi)))
    assert float(lam[-1]) == pytest.approx(lo + s, abs=5e-4 * max(1.0, abs(lo)))


@FAST
@given(bounds, shift, st.floats(0.0, 5.0))
def test_logsnr_falls_strictly_when_the_noise_end_is_shifted_down(lohi, high, drop):
    """A shift that moves linearly in t keeps the schedule monotone when it does not rise towards t = 1."""
    lo, hi = lohi
    low = high - drop
    lam = shifted_cosine_interpolated_logsnr(T_DENSE, lo, hi, high, low)
    assert _falls(lam, shifted_cosine_interpolated_logsnr(T_COARSE, lo, hi, high, low))
    assert float(lam[0]) == pytest.approx(hi + high, abs=5e-4 * max(1.0, abs(hi)))
    assert float(lam[-1]) == pytest.approx(lo + low, abs=5e-4 * max(1.0, abs(lo)))


@FAST
@given(bounds, st.floats(0.0, 1.0))
def test_cosine_logsnr_is_minus_two_log_tan_of_a_line_in_t(lohi, t):
    lo, hi = lohi
    b = math.atan(math.exp(-hi / 2))
    a = math.atan(math.exp(-lo / 2)) - b
    expected = -2 * math.log(math.tan(a * t + b))
    got = float(cosine_interpolated_logsnr(torch.tensor([t]), lo, hi))
    assert got == pytest.approx(expected, abs=2e-4 * max(1.0, abs(expected)))


@FAST
@given(st.sampled_from(["linear", "cosine"]), st.integers(1, 40))
def test_time_grids_descend_from_one_to_zero(schedule, n):
    g = time_grid(schedule, n)
    assert g.shape == (n + 1,) and g.dtype == torch.float32
    assert float(g[0]) == 1.0 and float(g[-1]) == 0.0
    assert bool((g[1:] < g[:-1]).all())
    i = torch.arange(n + 1, dtype=torch.float64)
    ascending = i / n if schedule == "linear" else 0.5 * (1 - torch.cos(math.pi * i / n))
    assert torch.allclose(g.double(), ascending.flip(0), atol=1e-6)


@FAST
@given(bounds, st.integers(1, 6), st.sampled_from(["linear", "cosine"]), st.floats(0.05, 1.0))
def test_ddim_with_the_true_x0_walks_exactly_along_the_forward_process(lohi, n, schedule, strength):
    """DDIM is exact when the model predicts the true x0: every step lands on alpha_next x0 + sigma_next eps."""
    lo, hi = lohi
    s = VPDDIMScheduler(logsnr_min=lo, logsnr_max=hi)
    s.set_timesteps(n, schedule=schedule, strength=strength)
    g = torch.Generator().manual_seed(n)
    x0 = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).float()
    eps = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).float()
    grid = time_grid(schedule, n) * strength
    a, sg = s.alpha_sigma(grid[:1])
    x = a * x0 + sg * eps
    for k, t in enumerate(s.timesteps):
        x = s.step(x0, t, x).prev_sample
        a, sg = s.alpha_sigma(grid[k + 1 : k + 2])
        assert torch.allclose(x, a * x0 + sg * eps, atol=2e-4)


@FAST
@given(st.integers(2, 6), st.sampled_from(["linear", "cosine"]), st.floats(0.5, 3.0))
def test_dpmpp_2m_with_a_constant_x0_is_exact_too(n, schedule, w):
    """With the same x0 at every step the second-order correction vanishes (D1 = 0): DPM++(2M) is exact as well,
    with or without guidance (x0_uncond = x0_cond makes any strength the identity)."""
    s = VPDPMSolverMultistepScheduler()
    s.set_timesteps(n, schedule=schedule)
    g = torch.Generator().manual_seed(n)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    grid = time_grid(schedule, n)
    a, sg = s.alpha_sigma(grid[:1])
    x = a * x0 + sg * eps
    for k, t in enumerate(s.timesteps):
        x = s.step(x0, t, x, model_output_uncond=x0.clone(), pdg_strength=w).prev_sample
        a, sg = s.alpha_sigma(grid[k + 1 : k + 2])
        assert torch.allclose(x, a * x0 + sg * eps, atol=2e-4)


@FAST
@given(st.floats(-4.0, 4.0), st.floats(0.1, 2.0))
def test_guidance_is_the_affine_combination_of_the_two_predictions(w, scale):
    s = VPDDIMScheduler()
    g = torch.Generator().manual_seed(0)
    c = torch.randn(2, 3, 4, 4, generator=g) * scale
    u = torch.randn(2, 3, 4, 4, generator=g) * scale
    got = s.combine_guidance(c, u, w)
    assert torch.allclose(got, u + w * (c - u), atol=1e-5)
    assert torch.allclose(s.combine_guidance(c, u, 1.0), c, atol=1e-6)
    assert torch.allclose(s.combine_guidance(c, u, 0.0), u, atol=1e-6)


@FAST
@given(st.floats(0.0, 1.0), st.floats(0.1, 2.0))
def test_add_noise_is_alpha_x0_plus_sigma_s_eps(t, pixel_std):
    s = VPDDIMScheduler(pixel_noise_std=pixel_std)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    a, sg = s.alpha_sigma(torch.tensor([t]))
    got = s.add_noise(x0, eps, torch.tensor([t, t]))
    assert torch.allclose(got, a * x0 + sg * pixel_std * eps, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_add_noise_returns_the_dtype_of_its_input(dtype):
    s = VPDDIMScheduler()
    x0 = torch.linspace(-1, 1, 48).view(1, 3, 4, 4).to(dtype)
    eps = torch.ones(1, 3, 4, 4, dtype=dtype)
    got = s.add_noise(x0, eps, 0.5)  # a plain float time: alpha = sigma = sqrt(1/2)
    assert got.dtype == dtype
    expected = (x0.float() + 0.558 * eps.float()) * math.sqrt(0.5)
    assert torch.allclose(got.float(), expected, atol=1e-2)
