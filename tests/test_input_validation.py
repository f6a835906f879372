"""Bad input raises ValueError naming the problem and the fix, before any computation."""

import numpy as np
import pytest
import torch
from fixtures.models import images


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(3, 64, 64), "rank 4.*unsqueeze"),
        (torch.rand(1, 1, 3, 64, 64), "rank 4"),
        (torch.rand(1, 4, 64, 64), "3 channels"),
        (torch.rand(1, 64, 64, 3), "3 channels"),
        (torch.rand(1, 3, 60, 64), "multiples of 16.*60x64"),
        (torch.rand(1, 3, 64, 70), "multiples of 16"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (torch.full((1, 3, 32, 32), float("inf")), "NaN or infinite"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.zeros(0, 3, 32, 32), "empty batch"),
        (np.zeros((1, 3, 32, 32), dtype=np.float32), "torch.Tensor"),
    ],
)
def test_encode_rejects_bad_images(tiny, x, match):
    with pytest.raises(ValueError, match=match):
        tiny.encode(x)


@pytest.mark.parametrize(
    "z, match",
    [
        (torch.randn(64, 4, 4), "rank 4"),
        (torch.randn(1, 16, 4, 4), "64 channels"),
        (torch.full((1, 64, 4, 4), float("nan")), "NaN"),
        (torch.zeros(1, 64, 4, 4, dtype=torch.int64), "floating-point"),
    ],
)
def test_decode_rejects_bad_latents(tiny, z, match):
    with pytest.raises(ValueError, match=match):
        tiny.decode(z)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_inference_steps": 0}, "positive int"),
        ({"num_inference_steps": 1.5}, "positive int"),
        ({"pdg_strength": float("nan")}, "finite"),
    ],
)
def test_decode_rejects_bad_settings(tiny, kw, match):
    with pytest.raises(ValueError, match=match):
        tiny.decode(torch.randn(1, 64, 2, 2), **kw)


def test_reconstruct_and_forward_validate_too(tiny):
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny.reconstruct(images(1, 40, 32)[:, :, :40])
    with pytest.raises(ValueError, match="3 channels"):
        tiny(torch.rand(1, 1, 32, 32))
