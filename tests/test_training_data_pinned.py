"""Training images: export_skimage_photos against a stand-in scikit-image (none is installed or downloaded), and
ImageFolderCrops: its folder, its messages and each crop against its definition."""

import sys
import types

import numpy as np
import pytest
from PIL import Image

from diffusers_mdiffae.training import data as training_data
from diffusers_mdiffae.training.data import SKIMAGE_HELDOUT, SKIMAGE_TRAIN, export_skimage_photos


class _Samples:
    """``skimage.data``: every sample is a small image whose pixels encode its name's length."""

    def __getattr__(self, name):
        if name == "stereo_motorcycle":
            return lambda: (np.full((4, 6, 3), 10, np.uint8), np.full((4, 6, 3), 200, np.uint8), None)
        return lambda: np.full((3, 5), len(name), np.uint8)


@pytest.fixture
def fake_skimage(monkeypatch):
    mod = types.ModuleType("skimage")
    mod.data = _Samples()
    monkeypatch.setitem(sys.modules, "skimage", mod)
    monkeypatch.setitem(sys.modules, "skimage.data", mod.data)


def test_exports_the_named_samples_as_stored_keeping_the_left_stereo_view(tmp_path, fake_skimage):
    out = tmp_path / "a" / "b"  # parents are created
    written = export_skimage_photos(out, names=["camera", "stereo_motorcycle"])
    assert written == [out / "camera.png", out / "stereo_motorcycle.png"]
    with Image.open(written[0]) as im:
        assert (im.mode, im.size, im.getpixel((0, 0))) == ("L", (5, 3), 6)
    with Image.open(written[1]) as im:
        assert (im.mode, im.size, im.getpixel((0, 0))) == ("RGB", (6, 4), (10, 10, 10))
    assert export_skimage_photos(out, names=["coins"]) == [out / "coins.png"]  # an existing folder is fine


def test_exports_every_train_and_held_out_sample_by_default(tmp_path, fake_skimage):
    written = export_skimage_photos(tmp_path)
    assert [p.name for p in written] == [f"{n}.png" for n in SKIMAGE_TRAIN + SKIMAGE_HELDOUT]
    assert all(p.is_file() for p in written)


def test_without_scikit_image_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError) as e:
        export_skimage_photos(tmp_path)
    assert str(e.value) == "export_skimage_photos needs scikit-image: pip install scikit-image"
    assert not list(tmp_path.iterdir())
    assert training_data.SKIMAGE_HELDOUT == ("astronaut", "coffee", "rocket", "camera")


# -- ImageFolderCrops: the folder, its messages and each crop against its definition ---------------


def _photo(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _crop_by_hand(img, crop, scale_range, g, jitter=0.0, permute=False):
    """ImageFolderCrops.crop_one's definition, drawing from ``g`` in its documented order: the scale
    (log-uniform), the square's top and left, the flip, the three jitter factors, the channel order."""
    import math

    import torch
    import torch.nn.functional as F

    _, h, w = img.shape
    lo, hi = scale_range
    u = float(torch.rand((), generator=g))
    scale = lo * (hi / lo) ** u
    side = min(max(crop, round(crop / scale)), h, w)
    top = int(torch.randint(0, h - side + 1, (), generator=g))
    left = int(torch.randint(0, w - side + 1, (), generator=g))
    out = img[:, top : top + side, left : left + side].double()
    if side != crop:
        out = F.interpolate(out[None], size=(crop, crop), mode="bilinear", antialias=True)[0]
    if float(torch.rand((), generator=g)) < 0.5:
        out = out.flip(-1)
    if jitter:
        b, c, s = (1.0 + jitter * (2 * torch.rand(3, generator=g).double() - 1)).tolist()
        out = b * out  # brightness
        out = c * out + (1 - c) * out.mean()  # contrast about the crop's mean
        luma = 0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2]
        out = (s * out + (1 - s) * luma).clamp(0, 255)  # saturation about each pixel's luma
    if permute:
        out = out[torch.randperm(3, generator=g)]
    assert not math.isnan(float(out.sum()))
    return (out / 127.5 - 1.0).clamp(-1, 1).float()


@pytest.mark.parametrize(
    "jitter,permute", [(0.0, False), (0.0, True), (0.4, False), (0.4, True)], ids=["plain", "perm", "jit", "both"]
)
def test_a_crop_is_its_definition_drawn_in_the_documented_order(tmp_path, jitter, permute):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops

    _photo(tmp_path / "a.png", 80, 96, 0)  # wider than high: the square is cut within both sides
    _photo(tmp_path / "b.png", 40, 36, 1)  # smaller than the largest square: the side is clipped to the width
    _photo(tmp_path / "c.png", 36, 60, 2)  # ... or to the height
    data = ImageFolderCrops(
        tmp_path, crop=32, scale_range=(0.4, 0.9), log=lambda _: None, color_jitter=jitter, permute_channels=permute
    )
    images = [torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in data.paths]
    for seed in range(12):
        for i, img in enumerate(images):
            got = data.crop_one(i, torch.Generator().manual_seed(seed))
            g = torch.Generator().manual_seed(seed)
            want = _crop_by_hand(img, 32, (0.4, 0.9), g, jitter, permute)
            assert got.shape == (3, 32, 32) and got.dtype == torch.float32
            assert torch.allclose(got, want, rtol=0, atol=2e-5), (seed, i)
            after = torch.Generator().manual_seed(seed)
            data.crop_one(i, after)
            assert torch.equal(torch.rand(4, generator=after), torch.rand(4, generator=g))  # drew no more, no less


def test_channel_permutation_shuffles_whole_channels_and_visits_every_order(tmp_path):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops

    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 0, 51, 255  # one flat value per channel
    Image.fromarray(img).save(tmp_path / "rgb.png")
    data = ImageFolderCrops(tmp_path, crop=32, log=lambda _: None, permute_channels=True)
    levels = {-1.0: "r", 51 / 127.5 - 1: "g", 1.0: "b"}
    seen = set()
    for seed in range(60):
        out = data.crop_one(0, torch.Generator().manual_seed(seed))
        firsts = [float(out[c, 0, 0]) for c in range(3)]
        assert all(torch.all(out[c] == firsts[c]) for c in range(3))
        seen.add("".join(levels[min(levels, key=lambda v: abs(v - f))] for f in firsts))
    assert seen == {"rgb", "rbg", "grb", "gbr", "brg", "bgr"}


def test_white_and_black_pixels_give_plus_and_minus_one_and_never_more_whatever_the_resize(tmp_path):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops

    for side in (19, 35, 55, 94):  # sizes whose antialiased resize to 16 sums its weights above 1 in float32
        Image.new("RGB", (side, side), (255, 255, 255)).save(tmp_path / f"white{side}.png")
        Image.new("RGB", (side, side), (0, 0, 0)).save(tmp_path / f"black{side}.png")
    data = ImageFolderCrops(tmp_path, crop=16, scale_range=(0.1, 0.5), log=lambda _: None)
    for i, path in enumerate(data.paths):
        for seed in range(4):
            out = data.crop_one(i, torch.Generator().manual_seed(seed))
            if path.name.startswith("white"):  # the resize's own rounding, never above the top
                assert float(out.max()) == 1.0 and float(out.min()) > 1 - 1e-6, (path.name, seed)
            else:
                assert torch.all(out == -1.0), (path.name, seed)


def test_an_uncached_folder_reads_each_image_again_and_gives_the_same_crops(tmp_path):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops, step_generator

    _photo(tmp_path / "a.png", 48, 64, 0)
    _photo(tmp_path / "b.png", 40, 40, 1)
    Image.new("L", (48, 48), 90).save(tmp_path / "gray.png")  # converted on every read too
    cached = ImageFolderCrops(tmp_path, crop=32, log=lambda _: None)
    uncached = ImageFolderCrops(tmp_path, crop=32, log=lambda _: None, cache=False)
    assert uncached.paths == cached.paths and len(uncached) == 3
    assert uncached._images == {} and sorted(cached._images) == [0, 1, 2]
    for i in range(3):
        assert torch.equal(uncached._image(i), cached._image(i))
        assert uncached._image(i).shape == (3, *np.array(Image.open(cached.paths[i])).shape[:2])
    assert torch.equal(uncached.batch(5, step_generator(3, 1)), cached.batch(5, step_generator(3, 1)))


def test_excluded_names_are_left_out_wherever_they_are_and_the_rest_still_read(tmp_path):
    from diffusers_mdiffae.training.data import ImageFolderCrops

    for name in ("a.png", "b.png", "c.png", "sub/b.png", "sub/d.png"):
        _photo(tmp_path / name, 32, 32, 0)
    messages = []
    data = ImageFolderCrops(tmp_path, crop=16, exclude=["b.png", "zzz.png"], log=messages.append)
    assert [p.relative_to(tmp_path).as_posix() for p in data.paths] == ["a.png", "c.png", "sub/d.png"]
    assert messages == [f"training on 3, skipped 0 ({tmp_path})"]
    every = ImageFolderCrops(tmp_path, crop=16, log=lambda _: None)
    assert len(every) == 5


def test_folder_messages_name_each_file_its_skip_and_its_conversions(tmp_path):
    from fixtures.models import write_odd_images

    from diffusers_mdiffae.training.data import ImageFolderCrops

    folder = write_odd_images(tmp_path / "odd")
    messages = []
    data = ImageFolderCrops(folder, crop=16, log=messages.append)
    corrupt = folder / "corrupt.png"
    reason = f"cannot read image (UnidentifiedImageError: cannot identify image file '{corrupt}')"
    assert messages == [
        f"skipped {corrupt}: {reason}",
        f"{folder / 'deep16.png'}: I;16 (16-bit) image rescaled to 8 bits",
        f"{folder / 'deep16.png'}: grayscale image converted to RGB",
        f"{folder / 'gray.png'}: grayscale image converted to RGB",
        f"{folder / 'rgba.png'}: alpha channel composited onto white",
        f"training on 3, skipped 1 ({folder})",
    ]
    assert data.skipped == [f"{corrupt}: {reason}"]
    assert [p.name for p in data.paths] == ["deep16.png", "gray.png", "rgba.png"]


def test_a_folder_without_usable_images_says_how_many_were_skipped(tmp_path):
    from diffusers_mdiffae.training.data import ImageFolderCrops

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/x.png").write_bytes(b"nope")
    (tmp_path / "bad/y.jpg").write_bytes(b"nope")
    with pytest.raises(ValueError) as e:
        ImageFolderCrops(tmp_path / "bad", crop=16, log=lambda _: None)
    assert str(e.value) == f"{tmp_path / 'bad'}: no usable images (2 skipped)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as e:
        ImageFolderCrops(tmp_path / "empty", crop=16, log=lambda _: None)
    assert str(e.value) == f"{tmp_path / 'empty'}: no usable images"
    with pytest.raises(ValueError) as e:
        ImageFolderCrops(tmp_path / "empty", crop=24)
    assert str(e.value) == "crop must be a multiple of 16, got 24"
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError) as e:
            ImageFolderCrops(tmp_path / "empty", crop=16, color_jitter=bad)
        assert str(e.value) == f"color_jitter must be in [0, 1), got {bad}"


def test_a_step_generator_is_seeded_from_seed_step_process_and_stream_in_that_nesting():
    from diffusers_mdiffae.training.data import step_generator

    for seed, step, process, stream in [(0, 0, 0, 0), (3, 17, 2, 5), (12345, 999, 7, 1)]:
        want = ((seed * 1_000_003 + step) * 1_009 + process) * 7 + stream
        assert step_generator(seed, step, process, stream).initial_seed() == want
    assert step_generator(3, 17).initial_seed() == (3 * 1_000_003 + 17) * 1_009 * 7  # process 0, stream 0


def test_a_batch_draws_its_images_uniformly_from_the_whole_folder(tmp_path):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops

    for i, value in enumerate((0, 128, 255)):
        Image.new("RGB", (16, 16), (value,) * 3).save(tmp_path / f"{i}.png")
    data = ImageFolderCrops(tmp_path, crop=16, log=lambda _: None)
    batch = data.batch(12, torch.Generator().manual_seed(0))
    # each crop is one flat image: its first pixel says which; the draws are randint(0, 3) with that generator
    drawn = [round((float(x[0, 0, 0]) + 1) * 127.5) for x in batch]
    want = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(0)).tolist()
    assert drawn == [(0, 128, 255)[i] for i in want] and 0 in drawn


def test_a_flip_draw_of_exactly_one_half_keeps_the_crop_unflipped(tmp_path):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops

    # The flip takes the lower half of rand's float32 grid [0, 1), so it happens with probability
    # exactly 1/2; a draw of 0.5 itself belongs to the upper half.
    ramp = np.broadcast_to((np.arange(16, dtype=np.uint8) * 16)[None, :, None], (16, 16, 3))
    Image.fromarray(np.ascontiguousarray(ramp)).save(tmp_path / "ramp.png")
    data = ImageFolderCrops(tmp_path, crop=16, log=lambda _: None)  # the 16-pixel square is the whole image
    # seed 479's draw 1395 is exactly 0.5: skip 1392 draws so the scale, top and left take the next three
    assert float(torch.rand(1396, generator=torch.Generator().manual_seed(479))[1395]) == 0.5
    g = torch.Generator().manual_seed(479)
    torch.rand(1392, generator=g)
    out = data.crop_one(0, g)
    want = torch.from_numpy(np.ascontiguousarray(ramp)).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.equal(out, want)


def test_built_with_its_defaults_a_folder_gives_128_pixel_crops(tmp_path):
    import torch

    from diffusers_mdiffae.training.data import ImageFolderCrops

    Image.new("RGB", (160, 144), (10, 20, 30)).save(tmp_path / "a.png")
    data = ImageFolderCrops(tmp_path, log=lambda _: None)
    assert data.crop == 128
    assert data.batch(2, torch.Generator().manual_seed(0)).shape == (2, 3, 128, 128)
