"""PSNR and SSIM pinned to hand computations and to scikit-image's reference implementations."""

import math

import numpy as np
import pytest
import torch
from fixtures.dtypes import default_dtype
from fixtures.errors import error_message

from diffusers_mdiffae.metrics import psnr, seam_contrast, ssim


def test_psnr_of_a_constant_offset_is_computed_by_hand():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.full((1, 3, 8, 8), 0.5)  # mse 0.25, peak-to-peak 2: 10 log10(4 / 0.25) = 12.0412 dB
    assert psnr(a, b) == pytest.approx(10 * math.log10(16.0), abs=1e-9)
    assert psnr(a, b) == pytest.approx(12.041199826559248, abs=1e-9)


def test_psnr_averages_the_squared_error_over_every_element():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    b[1, 2, 3, 3] = 1.0  # one element of 96 off by 1: mse = 1/96
    assert psnr(a, b) == pytest.approx(10 * math.log10(4 * 96), abs=1e-6)  # mean in float32


def test_psnr_clamps_both_images_to_the_range_first():
    a = torch.full((1, 3, 4, 4), 3.0)  # clamps to 1
    b = torch.full((1, 3, 4, 4), -7.0)  # clamps to -1: mse 4, PSNR 0 dB
    assert psnr(a, b) == pytest.approx(0.0, abs=1e-12)
    assert psnr(a, torch.ones(1, 3, 4, 4)) == float("inf")
    zeros = torch.zeros(1, 3, 4, 4)
    assert psnr(zeros, torch.full((1, 3, 4, 4), 3.0)) == pytest.approx(psnr(zeros, torch.ones(1, 3, 4, 4)), abs=1e-9)
    assert psnr(torch.full((1, 3, 4, 4), -5.0), zeros) == pytest.approx(psnr(-torch.ones(1, 3, 4, 4), zeros), abs=1e-9)


def test_psnr_of_identical_images_is_infinite_and_symmetric_otherwise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
    assert psnr(a, a) == float("inf")
    assert psnr(a, b) == pytest.approx(psnr(b, a), abs=1e-9)
    assert psnr(a.half(), b.half()) == pytest.approx(psnr(a.half().float(), b.half().float()), abs=1e-9)


def _ssim_by_hand(x, y, window=11, sigma=1.5):
    """Wang et al. 2004 in float64 numpy, one channel, 'valid' windows; x, y in [0, 1]."""
    k = np.arange(window) - (window - 1) / 2
    g = np.exp(-(k**2) / (2 * sigma**2))
    g /= g.sum()
    w = np.outer(g, g)
    h, wd = x.shape
    out = []
    for i in range(h - window + 1):
        for j in range(wd - window + 1):
            px, py = x[i : i + window, j : j + window], y[i : i + window, j : j + window]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
            cov = (w * px * py).sum() - mx * my
            c1, c2 = 0.01**2, 0.03**2
            out.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(out))


def _pair(seed=0, h=16, w=18, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    b = (a + noise * torch.randn(1, 3, h, w, generator=g)).clamp(-1, 1)
    return a, b


def test_ssim_matches_a_hand_computation_per_channel():
    a, b = _pair()
    x, y = ((a.double() + 1) / 2).numpy()[0], ((b.double() + 1) / 2).numpy()[0]
    expected = np.mean([_ssim_by_hand(x[c], y[c]) for c in range(3)])
    assert ssim(a, b) == pytest.approx(expected, abs=1e-5)


def test_ssim_window_and_sigma_are_honoured():
    a, b = _pair(seed=3, h=14, w=14)
    x, y = ((a.double() + 1) / 2).numpy()[0], ((b.double() + 1) / 2).numpy()[0]
    expected = np.mean([_ssim_by_hand(x[c], y[c], window=7, sigma=0.8) for c in range(3)])
    assert ssim(a, b, window=7, sigma=0.8) == pytest.approx(expected, abs=1e-5)
    assert ssim(a, b, window=7, sigma=0.8) != pytest.approx(ssim(a, b), abs=1e-4)


def test_ssim_is_one_for_identical_images_and_clamps_its_inputs():
    a, _ = _pair(seed=1)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ssim(a.sign() * 5, a.sign()) == pytest.approx(1.0, abs=1e-6)  # both clamp to the same image
    assert ssim(a.sign(), a.sign() * 5) == pytest.approx(1.0, abs=1e-6)
    assert ssim(a, -a) < 0.5


def test_ssim_constant_images_show_the_stabilising_constants():
    # Two flat images: variances and covariance vanish, SSIM = (2 mx my + c1) / (mx^2 + my^2 + c1).
    a = torch.full((1, 1, 11, 11), -1.0)  # 0 in [0, 1]
    b = torch.full((1, 1, 11, 11), 0.0)  # 0.5 in [0, 1]
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx(c1 / (0.25 + c1), rel=1e-4)


def test_psnr_and_ssim_agree_with_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    for seed in range(3):
        a, b = _pair(seed=seed, h=24, w=20, noise=0.1 + 0.2 * seed)
        x = ((a[0].permute(1, 2, 0).double() + 1) / 2).numpy()
        y = ((b[0].permute(1, 2, 0).double() + 1) / 2).numpy()
        ref_psnr = skm.peak_signal_noise_ratio(x, y, data_range=1.0)
        ref_ssim = skm.structural_similarity(
            x, y, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert psnr(a, b) == pytest.approx(ref_psnr, abs=1e-4)
        assert ssim(a, b) == pytest.approx(ref_ssim, abs=1e-5)


def test_ssim_does_not_depend_on_torch_default_dtype():
    a, b = _pair(seed=4)
    ref = ssim(a, b)
    with default_dtype(torch.float64):
        assert ssim(a, b) == pytest.approx(ref, abs=1e-7)


def _column_error(values, height=32):
    """A ``[1, 3, height, len(values)]`` error image that is constant down each column."""
    row = torch.tensor(values, dtype=torch.float32)
    return row.view(1, 1, 1, -1).expand(1, 3, height, len(values)).clone()


def _seam_by_hand(error, flat, period=16):
    """Loops: pair (i, i + 1) of flat pixels at phase (i + 1) % period, edge band {p-1, 0, 1}, middle band {p/2 +- 1}."""
    _, c, h, w = error.shape
    sums = {"edge": [], "middle": []}
    bands = {"edge": {period - 1, 0, 1}, "middle": {period // 2 - 1, period // 2, period // 2 + 1}}
    pairs = [((r, i), (r, i + 1), i) for r in range(h) for i in range(w - 1)]
    pairs += [((i, r), (i + 1, r), i) for r in range(w) for i in range(h - 1)]
    for a, b, i in pairs:
        if not (flat[a] and flat[b]):
            continue
        step = sum(abs(float(error[0, ch][b] - error[0, ch][a])) for ch in range(c)) / c
        for name, phases in bands.items():
            if (i + 1) % period in phases:
                sums[name].append(step)
    mean = {k: sum(v) / len(v) for k, v in sums.items()}
    return mean["edge"] / mean["middle"]


def test_seam_contrast_is_near_edge_steps_over_near_middle_steps_by_hand():
    from diffusers_mdiffae.metrics import flat_mask, seam_contrast

    g = torch.Generator().manual_seed(0)
    ref = torch.zeros(1, 3, 40, 48)
    ref[..., 30:, 30:] = torch.rand(1, 3, 10, 18, generator=g)  # a textured corner, left out
    error = 0.01 * torch.rand(1, 3, 40, 48, generator=g)
    error[..., 16] += 0.05  # a one-pixel line just after an edge
    error[..., 15, :] -= 0.03  # and one just before a horizontal edge
    flat = flat_mask(ref)[0, 0]
    assert not flat[35, 40] and flat[5, 5]
    want = _seam_by_hand(error, flat)
    assert want > 1.5
    assert seam_contrast(ref + error, ref) == pytest.approx(want, rel=1e-5)


def test_seam_contrast_counts_a_step_on_the_edge_and_lines_beside_it():
    from diffusers_mdiffae.metrics import seam_contrast

    ref = torch.zeros(1, 3, 32, 32)
    noise = 0.01 * torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    base = seam_contrast(ref + noise, ref)
    for col in (15, 16):  # a line on either side of the edge between pixels 15 and 16
        lined = noise.clone()
        lined[..., col] += 0.05
        assert seam_contrast(ref + lined, ref) > 2 * base
    stepped = noise + _column_error([0.0] * 16 + [0.05] * 16)
    assert seam_contrast(ref + stepped, ref) > 2 * base
    mid = noise.clone()
    mid[..., 8] += 0.05  # a line in the middle of the squares lowers the score instead
    assert seam_contrast(ref + mid, ref) < base


def test_seam_contrast_of_patch_squares_that_do_not_meet_is_infinite_and_of_no_error_one():
    from diffusers_mdiffae.metrics import seam_contrast

    ref = torch.full((1, 3, 32, 32), 0.2)
    blocks = torch.zeros(1, 3, 32, 32)
    blocks[..., :16, 16:] = 0.1
    blocks[..., 16:, :16] = -0.1
    assert seam_contrast(ref + blocks, ref) == math.inf
    assert seam_contrast(ref, ref) == 1.0


def test_seam_contrast_judges_flat_regions_only_and_is_nan_without_them():
    from diffusers_mdiffae.metrics import flat_mask, seam_contrast

    g = torch.Generator().manual_seed(0)
    textured = torch.rand(1, 3, 32, 64, generator=g) * 2 - 1
    assert not flat_mask(textured).any()
    assert math.isnan(seam_contrast(textured + 0.1, textured))
    # left half flat with an honest ramp error, right half textured with a blocky one: only the left counts
    ref = textured.clone()
    ref[..., :32] = 0.0
    error = _column_error([0.01 * j + 0.002 * (j % 3) for j in range(64)])
    blocky = error.clone()
    blocky[..., 48:] += 0.5  # an edge step inside the textured half
    assert seam_contrast(ref + blocky, ref) == seam_contrast(ref + error, ref)


def test_seam_contrast_of_an_error_with_half_the_period_is_one_and_period_must_be_even():
    from diffusers_mdiffae.metrics import seam_contrast

    # an upsampler whose own period divides 8 errs alike at patch edges and middles
    g = torch.Generator().manual_seed(1)
    cols = torch.rand(8, generator=g).repeat(32)
    rows = torch.rand(8, generator=g).repeat(32)
    error = (0.01 * (cols.view(1, 1, 1, -1) + rows.view(1, 1, -1, 1))).expand(1, 3, 256, 256)
    ref = torch.zeros(1, 3, 256, 256)
    # exactly 1 but for the image border, where a band is cut short
    assert seam_contrast(ref + error, ref) == pytest.approx(1.0, abs=0.03)
    shifted = torch.roll(error, shifts=(3, 5), dims=(-2, -1))
    assert seam_contrast(ref + shifted, ref) == pytest.approx(1.0, abs=0.03)
    for period in (0, 2, 15, 16.0):
        with pytest.raises(ValueError, match="period"):
            seam_contrast(ref, ref, period=period)


def _checkerboard(h, w, amplitude):
    """A ``[1, 3, h, w]`` image of +-``amplitude`` alternating pixel by pixel, alike in every channel."""
    sign = (torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)) % 2 * 2 - 1
    return (amplitude * sign.float()).expand(1, 3, h, w).clone()


# a step at the 16-pixel edge and a line in the middle of the squares, as a column error:
# per row the edge band holds 5 horizontal pairs summing 0.25 and the middle band 6 summing 0.25,
# and down each column the error does not change (5 edge and 6 middle pairs, all 0), so on a
# 32x32 image the score is (8 / 320) / (8 / 384) = 1.2
_EDGE_STEP_AND_MIDDLE_LINE = [0.0] * 8 + [0.125] + [0.0] * 7 + [0.25] * 16


def test_seam_contrast_honours_max_std():
    from diffusers_mdiffae.metrics import flat_mask, seam_contrast

    # a +-1/16 checkerboard has a local std of about 0.0625: textured at 0.03, flat at 0.1
    ref = _checkerboard(32, 32, 0.0625)
    assert flat_mask(ref, max_std=0.1).all() and not flat_mask(ref).any()
    error = _column_error(_EDGE_STEP_AND_MIDDLE_LINE)
    assert seam_contrast(ref + error, ref, max_std=0.1) == pytest.approx(1.2, rel=1e-12)
    assert math.isnan(seam_contrast(ref + error, ref))


def test_seam_contrast_judges_the_error_recon_minus_ref_and_not_the_images():
    from diffusers_mdiffae.metrics import seam_contrast

    # a faint step on the edge of a flat reference is content, not error: a perfect recon scores 1
    ref = _column_error([0.0] * 16 + [1 / 128] * 16)
    assert seam_contrast(ref, ref) == 1.0
    error = _column_error(_EDGE_STEP_AND_MIDDLE_LINE)
    assert seam_contrast(ref + error, ref) == pytest.approx(1.2, rel=1e-12)


def test_seam_contrast_accepts_the_smallest_period_whose_bands_overlap():
    from diffusers_mdiffae.metrics import seam_contrast

    # period 4: edge phases {3, 0, 1}, middle phases {1, 2, 3}. Per row of 8 pixels the pairs sit at
    # phases 1, 2, 3, 0, 1, 2, 3: steps 0.25 at phase 0 and 0.125 at phases 2 and 3, so the edge band
    # holds 5 pairs summing 0.375 and the middle band 6 summing 0.25; the 8 columns add 5 and 6
    # pairs each, all 0. Score (8 * 0.375 / 80) / (8 * 0.25 / 96) = 1.8
    error = _column_error([0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.375, 0.25], height=8)
    ref = torch.zeros_like(error)
    assert seam_contrast(ref + error, ref, period=4) == pytest.approx(1.8, rel=1e-12)


def test_seam_contrast_is_nan_when_only_one_band_has_flat_pairs():
    from diffusers_mdiffae.metrics import seam_contrast

    # 6 pixels reach phases 1..5 only: edge pairs but no middle ones, so nothing to compare with
    ref = torch.zeros(1, 3, 6, 6)
    assert math.isnan(seam_contrast(ref, ref))
    assert math.isnan(seam_contrast(ref + _column_error([0.25, 0, 0, 0, 0, 0], height=6), ref))


def test_seam_contrast_judges_thin_strips_along_the_axes_they_have():
    from diffusers_mdiffae.metrics import seam_contrast

    # two rows: per row 5 edge pairs (all 0) and 6 middle pairs (0.125 twice, the line at column 8);
    # the 32 vertical pairs sit at phase 1 and step 0.25. Score (8 / 42) / (0.5 / 12) = 32 / 7
    strip = _column_error([0.0] * 8 + [0.125] + [0.0] * 23, height=2)
    strip[..., 1, :] += 0.25
    ref = torch.zeros_like(strip)
    assert seam_contrast(ref + strip, ref) == pytest.approx(32 / 7, rel=1e-12)
    # one column: no horizontal pairs, but the vertical ones count as a row of the 32x32 case does
    column = _column_error(_EDGE_STEP_AND_MIDDLE_LINE, height=1).transpose(-1, -2)
    ref = torch.zeros_like(column)
    assert seam_contrast(ref + column, ref) == pytest.approx(1.2, rel=1e-12)


def test_seam_contrast_pairs_only_pixels_that_are_both_flat():
    from diffusers_mdiffae.metrics import flat_mask, seam_contrast

    # texture in columns 0..11 and 36..47 leaves columns 16..31 flat, so the edge pairs (15, 16) and
    # (31, 32) each have one flat pixel and do not count, whatever the error steps there
    ref = torch.zeros(1, 3, 32, 48)
    ref[..., :12] = _checkerboard(32, 12, 1.0)
    ref[..., 36:] = _checkerboard(32, 12, 1.0)
    flat = flat_mask(ref)[0, 0]
    assert flat[:, 16:32].all() and not flat[:, :16].any() and not flat[:, 32:].any()
    values = [0.5] * 48
    values[16:32] = [0.0] * 16
    values[16], values[24] = 0.25, 0.125
    # in the flat columns: per row the edge pairs (16, 17), (30, 31) step 0.25 and 0, the middle
    # pairs (22, 23), (23, 24), (24, 25) step 0, 0.125, 0.125; the 16 columns add 5 edge and 6 middle
    # pairs each, all 0. Score (32 * 0.25 / 144) / (32 * 0.25 / 192) = 4 / 3
    error = _column_error(values)
    assert seam_contrast(ref + error, ref) == pytest.approx(4 / 3, rel=1e-12)


def test_seam_contrast_bands_do_not_depend_on_torch_default_dtype():
    from diffusers_mdiffae.metrics import seam_contrast

    # period 518 puts the middles at phases 258..260, which bfloat16 cannot all tell from 261.
    # One row of 263 pixels: the edge pair (0, 1) steps 0.125; the middle pairs step 0, 0.25, 0.25;
    # the pair (260, 261) at phase 261 steps 0.5 and is not in either band. Score 0.125 / (0.5 / 3)
    values = [0.0] * 263
    values[0], values[259], values[261] = 0.125, 0.25, 0.5
    error = _column_error(values, height=1)
    ref = torch.zeros_like(error)
    assert seam_contrast(ref + error, ref, period=518) == pytest.approx(0.75, rel=1e-12)
    with default_dtype(torch.bfloat16):
        assert seam_contrast(ref + error, ref, period=518) == pytest.approx(0.75, rel=1e-12)


def test_flat_mask_thresholds_the_local_grey_std():
    from diffusers_mdiffae.metrics import flat_mask

    ramp = torch.linspace(-1, 1, 64).view(1, 1, 1, 64).expand(1, 3, 16, 64)
    # a ramp of 2/63 per pixel has a 9-wide std of about 0.0836 inside the image
    assert flat_mask(ramp, max_std=0.09)[..., 4:-4].all()
    assert not flat_mask(ramp, max_std=0.08)[..., 4:-4].any()
    # strictly below: with a threshold of 0 not even a constant image is flat
    assert not flat_mask(torch.zeros(1, 3, 16, 16), max_std=0.0).any()


@pytest.mark.parametrize("metric", [psnr, ssim, seam_contrast])
@pytest.mark.parametrize(
    "a, b", [((3, 16, 16), (3, 16, 16)), ((1, 3, 16, 16), (1, 3, 16, 8)), ((1, 3, 16, 16), (3, 16, 16))]
)
def test_each_metric_refuses_images_that_are_not_one_nchw_shape(metric, a, b):
    """A 3-D pair or a pair that would broadcast is refused, not scored as something else."""
    message = error_message(metric, torch.zeros(a), torch.zeros(b))
    assert message == f"expected two [B, C, H, W] images of one shape, got {a} and {b}"
