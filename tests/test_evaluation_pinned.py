"""The evaluation's error picture, the training preview grid and the latest-checkpoint lookup,
against hand computations."""

import math
import types

import torch
from PIL import Image

from diffusers_mdiffae.evaluation import error_map
from diffusers_mdiffae.training import latest_checkpoint
from diffusers_mdiffae.training.loop import _preview


def test_error_map_is_black_red_yellow_white_at_gain_4():
    a = torch.full((1, 3, 1, 5), 0.5)
    d = torch.tensor([0.0, 0.05, 0.25, 0.45, 1.0])  # mean |a - b| per pixel; error = 4 * d / 2 = 2 d
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])  # either direction counts
    b = a + (sign * d).view(1, 1, 1, 5)
    # e = [0, 0.1, 0.5, 0.9, 1 (clamped)]; R = 3e, G = 3e - 1, B = 3e - 2, each clamped to [0, 1], then * 2 - 1
    expected = torch.tensor(
        [
            [-1.0, -0.4, 1.0, 1.0, 1.0],
            [-1.0, -1.0, 0.0, 1.0, 1.0],
            [-1.0, -1.0, -1.0, 0.4, 1.0],
        ]
    ).view(1, 3, 1, 5)
    torch.testing.assert_close(error_map(a, b), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(error_map(b, a), expected, rtol=0, atol=1e-5)
    # gain 2 halves the error: e = [0, 0.05, 0.25, 0.45, 1]
    g = error_map(a, b, gain=2.0)
    torch.testing.assert_close(g[0, :, 0, 2], torch.tensor([0.5, -1.0, -1.0]), rtol=0, atol=1e-5)


def test_error_map_mean_is_over_the_colour_channels():
    a = torch.zeros(1, 3, 1, 1)
    b = torch.tensor([0.3, 0.0, 0.0]).view(1, 3, 1, 1)  # mean 0.1 -> e = 0.2 -> R = 0.6
    torch.testing.assert_close(error_map(a, b)[0, :, 0, 0], torch.tensor([0.2, -1.0, -1.0]), rtol=0, atol=1e-5)


def test_preview_rows_are_original_then_reconstruction(tmp_path):
    images = torch.zeros(2, 3, 4, 6)
    images[0] = 1.0  # white first image, black second
    images[1] = -1.0
    recon = -images  # each reconstruction the opposite colour
    probe = types.SimpleNamespace(reconstruct=lambda x: recon)
    ema = types.SimpleNamespace(averaged_model=lambda model: probe)
    path = tmp_path / "p.png"
    value = _preview(object(), ema, images, path)
    assert value == 10.0 * math.log10(4.0 / 4.0)
    with Image.open(path) as im:
        assert im.size == (12, 8)  # two images side by side, two rows
        assert [im.getpixel(xy) for xy in ((0, 0), (6, 0), (0, 4), (6, 4))] == [
            (255, 255, 255),
            (0, 0, 0),
            (0, 0, 0),
            (255, 255, 255),
        ]


def test_latest_checkpoint_is_none_without_any(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    assert latest_checkpoint(tmp_path) is None


def _row(image, size, base, grid=1.25):
    keys = ("psnr", "psnr_bicubic4", "psnr_bicubic8", "ssim", "ssim_bicubic4", "ssim_bicubic8", "lpips")
    return {"image": image, "size": size, **{k: base + i for i, k in enumerate(keys)}, "grid": grid}


def test_markdown_table_has_a_row_per_image_a_mean_row_the_margins_and_the_grid_score():
    from diffusers_mdiffae.evaluation import _markdown

    rows = [_row("a.png", "64x48", 30.0), _row("b.png", "32x32", 20.0, grid=None)]
    mean = _row("", "", 25.0)
    assert _markdown(rows, mean, with_lpips=False) == (
        "| image | size | mDiffAE PSNR | bicubic 1/4 PSNR | bicubic 1/8 PSNR "
        "| mDiffAE SSIM | bicubic 1/4 SSIM | bicubic 1/8 SSIM | grid |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        "| a.png | 64x48 | 30.00 | 31.00 | 32.00 | 33.000 | 34.000 | 35.000 | 1.25 |\n"
        "| b.png | 32x32 | 20.00 | 21.00 | 22.00 | 23.000 | 24.000 | 25.000 | n/a |\n"
        "| **mean** |  | 25.00 | 26.00 | 27.00 | 28.000 | 29.000 | 30.000 | 1.25 |\n"
        "\n"
        "mean PSNR margin: -2.00 dB vs bicubic 1/8, -1.00 dB vs bicubic 1/4\n"
        "grid: error steps across 16-px patch edges over those across patch middles, in flat regions "
        "(1.00 = no patch grid; bicubic scores about 1)"
    )
    with_lpips = _markdown(rows, mean, with_lpips=True).splitlines()
    assert with_lpips[0].endswith("| bicubic 1/8 SSIM | grid | LPIPS |")
    assert with_lpips[1] == "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert with_lpips[2] == "| a.png | 64x48 | 30.00 | 31.00 | 32.00 | 33.000 | 34.000 | 35.000 | 1.25 | 36.000 |"


def test_mean_grid_score_leaves_out_images_without_flat_regions():
    from diffusers_mdiffae.evaluation import _mean

    assert _mean([1.5, None, 2.5]) == 2.0
    assert _mean([None, None]) is None
    assert _mean([3.0]) == 3.0


def test_lpips_is_alexnet_quietly_or_none_without_the_package(monkeypatch):
    import sys

    from diffusers_mdiffae.evaluation import _lpips

    made = []

    class LPIPS:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def eval(self):
            return ("evaluating", self)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=LPIPS))
    mode, net = _lpips()
    assert mode == "evaluating" and isinstance(net, LPIPS) and made == [{"net": "alex", "verbose": False}]
    monkeypatch.setitem(sys.modules, "lpips", None)
    assert _lpips() is None


def test_bicubic_baseline_is_antialiased_bicubic_down_then_bicubic_up_clamped():
    import torch.nn.functional as F

    from diffusers_mdiffae.evaluation import bicubic_baseline

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 24, generator=g) * 2 - 1
    down = F.interpolate(x, size=(4, 6), mode="bicubic", antialias=True, align_corners=False)
    expected = F.interpolate(down, size=(16, 24), mode="bicubic", align_corners=False).clamp(-1, 1)
    torch.testing.assert_close(bicubic_baseline(x, 4), expected, rtol=0, atol=1e-6)
    # a sharp edge overshoots in bicubic: the result is clamped to [-1, 1] and reaches both ends
    edge = torch.ones(1, 3, 16, 16)
    edge[..., :8] = -1
    y = bicubic_baseline(edge, 4)
    assert (float(y.min()), float(y.max())) == (-1.0, 1.0)


def test_bicubic_baseline_of_a_thin_image_keeps_one_row_and_column():
    from diffusers_mdiffae.evaluation import bicubic_baseline

    ramp = torch.linspace(-1, 1, 4).view(1, 1, 4, 1).expand(1, 3, 4, 32).contiguous()
    flat = bicubic_baseline(ramp, 8)  # 4 // 8 = 0 -> one row: every row the same
    torch.testing.assert_close(flat, flat[..., :1, :].expand_as(flat))
    flat = bicubic_baseline(ramp.transpose(-1, -2).contiguous(), 8)  # one column
    torch.testing.assert_close(flat, flat[..., :1].expand_as(flat))
