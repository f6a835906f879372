"""models/tiling pinned: the 1-D blending ramp of one window, against values worked by hand."""

import pytest
import torch

from diffusers_mdiffae.models.tiling import ramp, spans, tiles


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


@pytest.mark.parametrize(
    "args, windows",
    [
        ((4, 4, 1), [(0, 4)]),  # fits in one tile
        ((3, 4, 1), [(0, 3)]),
        ((6, 4, 1), [(0, 4), (2, 6)]),  # two windows; the spare room widens the overlap to 2
        ((10, 4, 1), [(0, 4), (3, 7), (6, 10)]),  # ceil((10 - 1) / (4 - 1)) = 3 windows
        ((6, 3, 2), [(0, 3), (1, 4), (2, 5), (3, 6)]),  # stride 1: ceil((6 - 2) / 1) = 4 windows
        ((5, 4, 4), [(0, 4), (1, 5)]),  # an overlap as wide as the tile still gives two windows
    ],
)
def test_spans_are_the_fewest_evenly_spread_windows(args, windows):
    assert spans(*args) == windows


def test_a_tile_weight_is_the_outer_product_of_its_ramps():
    found = list(tiles(6, 6, 4, 1))
    assert [(sy.start, sy.stop, sx.start, sx.stop) for sy, sx, _ in found] == [
        (0, 4, 0, 4),
        (0, 4, 2, 6),
        (2, 6, 0, 4),
        (2, 6, 2, 6),
    ]
    first = torch.tensor([1.0, 1.0, 1.0, 0.5])  # ramp(4, 0, 4, 6, 1): only the interior edge ramps
    assert torch.equal(found[0][2], first[:, None] * first[None, :])
    assert found[0][2][-1, -1].item() == 0.25
