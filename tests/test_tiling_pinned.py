"""models/tiling pinned: the 1-D blending ramp of one window, against values worked by hand."""

import pytest
import torch

from diffusers_mdiffae.models.tiling import ramp


@pytest.mark.parametrize(
    "args, weights",
    [
        # interior window: ramps of 1/4, 2/4, 3/4 on both sides (overlap 3 -> steps of 1/(3+1))
        ((6, 2, 8, 10, 3), [0.25, 0.5, 0.75, 0.75, 0.5, 0.25]),
        ((6, 0, 6, 10, 3), [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]),  # first window: no ramp at the image edge
        ((6, 4, 10, 10, 3), [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]),  # last window: no ramp at the image edge
        ((4, 1, 5, 10, 1), [0.5, 1.0, 1.0, 0.5]),  # overlap 1: a single half weight, even one cell in
        ((2, 1, 3, 10, 3), [0.25, 0.25]),  # a window shorter than the overlap: both ramps overlap
        ((4, 0, 4, 4, 0), [1.0, 1.0, 1.0, 1.0]),  # no overlap: flat
    ],
)
def test_ramp_weights(args, weights):
    w = ramp(*args)
    assert w.dtype == torch.float32 and w.tolist() == weights
