"""The verdict of ``verify_against_original`` (verify.VerifyResult), pinned at the tolerance's edge."""

import math

import pytest
import torch

from diffusers_mdiffae.verify import VERIFY_TOLERANCE, VerifyResult


def result(*diffs: float) -> VerifyResult:
    return VerifyResult("m_diffae", {f"check {i}": d for i, d in enumerate(diffs)}, [])


def test_the_tolerance_is_1e_4():
    assert VERIFY_TOLERANCE == 1e-4


def test_max_diff_is_the_largest_difference_and_nan_without_any():
    assert result(3e-6, 2e-5, 0.0).max_diff == 2e-5
    assert math.isnan(result().max_diff)


def test_verification_passes_only_strictly_below_the_tolerance():
    assert result(0.0, 9.9e-5).passed()
    assert not result(0.0, VERIFY_TOLERANCE).passed()  # "< tolerance", as the CLI prints it
    assert not result(2e-4).passed()


@pytest.mark.parametrize("diffs", [(1e-6, float("nan")), (float("nan"), 1e-6), (0.0, float("nan"), 0.0)])
def test_a_nan_difference_fails_verification_wherever_it_comes(diffs):
    """A NaN (the original's or the converted output went NaN) is no agreement, first or not."""
    assert math.isnan(result(*diffs).max_diff)
    assert not result(*diffs).passed()
    assert not result(*diffs).passed(float("inf"))


@pytest.mark.parametrize("tol, passed", [(1e-2, True), (5e-3, False), (5.0000001e-3, True), (1e-6, False)])
def test_a_given_tolerance_is_compared_strictly_too(tol, passed):
    assert result(1e-7, 5e-3).passed(tol) is passed


def test_nothing_compared_never_passes():
    assert result().passed() is False
    assert result().passed(float("inf")) is False


def test_a_sample_image_is_cropped_to_multiples_of_16_from_the_top_left(tmp_path):
    import numpy as np
    from PIL import Image

    from diffusers_mdiffae.verify import load_sample_image

    pixels = (np.arange(50 * 70 * 3) % 251).astype(np.uint8).reshape(50, 70, 3)  # H 50, W 70
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    x = load_sample_image(tmp_path / "photo.png")
    assert x.shape == (1, 3, 48, 64) and x.dtype == torch.float32
    want = torch.from_numpy(pixels[:48, :64].astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    assert torch.equal(x, want)


def test_the_bundled_sample_image_is_used_by_default():
    from diffusers_mdiffae import SAMPLE_IMAGE
    from diffusers_mdiffae.imaging import load_rgb, pil_to_tensor
    from diffusers_mdiffae.verify import load_sample_image

    full = pil_to_tensor(load_rgb(SAMPLE_IMAGE)[0])
    x = load_sample_image()
    h, w = full.shape[-2] // 16 * 16, full.shape[-1] // 16 * 16
    assert x.shape == (1, 3, h, w) and torch.equal(x, full[..., :h, :w])
