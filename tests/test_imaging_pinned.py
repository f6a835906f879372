"""imaging helpers pinned against their definitions."""

import numpy as np
import pytest
import torch
from fixtures.dtypes import default_dtype
from PIL import Image

from diffusers_mdiffae import imaging
from diffusers_mdiffae.imaging import (
    ImageLoadError,
    load_rgb,
    load_rgb_image,
    pad_mode,
    pad_to_multiple,
    pil_to_tensor,
)


def test_quantize_8bit_is_what_a_saved_png_reads_back_as():
    import torch

    from diffusers_mdiffae.imaging import pil_to_tensor, quantize_8bit, tensor_to_pil

    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2  # some outside [-1, 1]
    assert torch.allclose(quantize_8bit(x), pil_to_tensor(tensor_to_pil(x)), atol=1e-6)


def _pixels(image):
    return [image.getpixel((x, 0)) for x in range(image.width)]


def test_sixteen_bit_images_are_rescaled_from_65535_with_rounding():
    im = Image.fromarray(np.array([[0, 200, 32768, 65535]], dtype=np.uint16))
    assert im.mode == "I;16"
    rgb, notes = load_rgb_image(im)
    # v / 65535 * 255 rounded: 200 -> 0.78 -> 1, 32768 -> 127.50 -> 128
    assert _pixels(rgb) == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]
    assert notes == ["I;16 (16-bit) image rescaled to 8 bits", "grayscale image converted to RGB"]
    # a dark 16-bit image stays dark: its scale is the mode's, not its values'
    rgb, notes = load_rgb_image(Image.fromarray(np.array([[0, 200, 255]], dtype=np.uint16)))
    assert _pixels(rgb) == [(0, 0, 0), (1, 1, 1), (1, 1, 1)]
    assert notes[0] == "I;16 (16-bit) image rescaled to 8 bits"


def test_32_bit_integer_images_keep_an_8_bit_range_and_rescale_a_wider_one():
    rgb, notes = load_rgb_image(Image.fromarray(np.array([[0, 100, 255, 128]], dtype=np.int32)))
    assert _pixels(rgb) == [(0, 0, 0), (100, 100, 100), (255, 255, 255), (128, 128, 128)]
    assert notes == ["I (8-bit) image rescaled to 8 bits", "grayscale image converted to RGB"]
    rgb, notes = load_rgb_image(Image.fromarray(np.array([[0, 100, 1000, 65535]], dtype=np.int32)))
    # / 65535 * 255 rounded: 100 -> 0.39 -> 0, 1000 -> 3.89 -> 4
    assert _pixels(rgb) == [(0, 0, 0), (0, 0, 0), (4, 4, 4), (255, 255, 255)]
    assert notes == ["I (16-bit) image rescaled to 8 bits", "grayscale image converted to RGB"]


def test_float_images_are_stretched_from_their_minimum_to_their_maximum():
    rgb, notes = load_rgb_image(Image.fromarray(np.array([[-1.0, 0.0, 3.0]], dtype=np.float32)))
    # (v + 1) / 4 * 255 truncated: 0, 63.75 -> 63, 255
    assert _pixels(rgb) == [(0, 0, 0), (63, 63, 63), (255, 255, 255)]
    assert notes == ["floating-point image rescaled to 8 bits", "grayscale image converted to RGB"]


def test_a_sixteen_bit_value_is_scaled_by_65535_not_65536():
    # 65407 / 65535 * 255 + 0.5 = 255.0019 -> 255; by 65536 it would be 254.998 -> 254
    rgb, _ = load_rgb_image(Image.fromarray(np.array([[65407]], dtype=np.uint16)))
    assert _pixels(rgb) == [(255, 255, 255)]


@pytest.mark.parametrize("mode", ["I;16L", "I;16B"])
def test_sixteen_bit_images_of_either_byte_order_are_rescaled(mode):
    im = Image.new(mode, (2, 1))
    im.putpixel((1, 0), 65535)
    rgb, notes = load_rgb_image(im)
    assert _pixels(rgb) == [(0, 0, 0), (255, 255, 255)]
    assert notes[0] == f"{mode} (16-bit) image rescaled to 8 bits"


def test_32_bit_integer_images_above_255_are_16_bit_and_values_outside_saturate():
    def load(*values):
        rgb, notes = load_rgb_image(Image.fromarray(np.array([values], dtype=np.int32)))
        return [p[0] for p in _pixels(rgb)], notes[0]

    # 256 / 65535 * 255 + 0.5 = 1.496 -> 1
    assert load(0, 256) == ([0, 1], "I (16-bit) image rescaled to 8 bits")
    assert load(-100, 200) == ([0, 200], "I (8-bit) image rescaled to 8 bits")
    assert load(0, 100000) == ([0, 255], "I (16-bit) image rescaled to 8 bits")


def test_float_images_are_stretched_in_double_precision_even_over_a_range_below_1():
    rgb, _ = load_rgb_image(Image.fromarray(np.array([[0.25, 0.375, 0.5]], dtype=np.float32)))
    assert _pixels(rgb) == [(0, 0, 0), (127, 127, 127), (255, 255, 255)]  # 0.5 * 255 = 127.5 -> 127
    # (v - lo) / (hi - lo) * 255 = 117.999992 in float64 (float32 arithmetic would round it to 118)
    values = np.array([[0.2364325, 44.218903, 95.2833]], dtype=np.float32)
    rgb, _ = load_rgb_image(Image.fromarray(values))
    assert _pixels(rgb) == [(0, 0, 0), (117, 117, 117), (255, 255, 255)]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "La", "RGBa"])
def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(mode):
    base = Image.new("RGBA", (2, 1))
    base.putpixel((0, 0), (90, 90, 90, 0))
    base.putpixel((1, 0), (90, 90, 90, 255))
    im = base.convert("LA").convert(mode) if mode in ("LA", "La") else base.convert(mode)
    if mode == "PA":
        im = Image.new("PA", (2, 1))
        im.putpalette([90, 90, 90] * 256)
        im.putpixel((0, 0), (0, 0))
        im.putpixel((1, 0), (0, 255))
    assert im.mode == mode
    rgb, notes = load_rgb_image(im)
    assert _pixels(rgb) == [(255, 255, 255), (90, 90, 90)]
    assert notes == ["alpha channel composited onto white"]


def test_palette_images_are_expanded_with_their_transparency():
    im = Image.new("P", (2, 1))
    im.putpalette([200, 10, 20, 0, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 1
    rgb, notes = load_rgb_image(im)
    assert _pixels(rgb) == [(200, 10, 20), (255, 255, 255)]
    assert notes == ["palette image expanded", "alpha channel composited onto white"]


def test_rgb_needs_no_note_and_other_modes_are_named_in_theirs():
    rgb, notes = load_rgb_image(Image.new("RGB", (1, 1), (1, 2, 3)))
    assert (_pixels(rgb), notes) == ([(1, 2, 3)], [])
    for mode in ("L", "1"):
        assert load_rgb_image(Image.new(mode, (1, 1)))[1] == ["grayscale image converted to RGB"]
    rgb, notes = load_rgb_image(Image.new("CMYK", (1, 1), (0, 0, 0, 0)))
    assert (_pixels(rgb), notes) == ([(255, 255, 255)], ["CMYK image converted to RGB"])


def test_an_empty_image_is_refused():
    with pytest.raises(ImageLoadError) as e:
        load_rgb_image(Image.new("RGB", (0, 3)))
    assert str(e.value) == "empty image"


def test_load_rgb_names_the_file_and_the_reason(tmp_path, monkeypatch):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError) as e:
        load_rgb(missing)
    assert str(e.value) == f"{missing}: cannot read image (No such file or directory)"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageLoadError) as e:
        load_rgb(junk)
    assert (
        str(e.value) == f"{junk}: cannot read image (UnidentifiedImageError: cannot identify image file {str(junk)!r})"
    )

    good = tmp_path / "good.png"
    Image.new("RGB", (2, 2), (7, 8, 9)).save(good)
    for raised, message in [
        (MemoryError(), f"{good}: image too large to decode in memory"),
        (Image.DecompressionBombError("too many pixels"), f"{good}: image too large (too many pixels)"),
        (ImageLoadError("empty image"), f"{good}: empty image"),
        (KeyError("tile"), f"{good}: cannot read image (KeyError: 'tile')"),
        (OSError("broken data stream"), f"{good}: cannot read image (OSError: broken data stream)"),
    ]:

        def fails(im, raised=raised):
            raise raised

        monkeypatch.setattr(imaging, "load_rgb_image", fails)
        with pytest.raises(ImageLoadError) as e:
            load_rgb(good)
        assert str(e.value) == message
    monkeypatch.undo()
    rgb, notes = load_rgb(good)
    assert (_pixels(rgb), notes) == ([(7, 8, 9), (7, 8, 9)], [])


def test_pil_to_tensor_maps_8_bit_to_minus_one_to_one_and_expands_gray():
    gray = Image.fromarray(np.array([[0, 255, 51]], dtype=np.uint8), "L")
    x = pil_to_tensor(gray)
    assert x.shape == (1, 3, 1, 3) and x.dtype == torch.float32
    assert torch.equal(x[0, :, 0], torch.tensor([[-1.0, 1.0, 51 / 127.5 - 1]] * 3))
    rgb = pil_to_tensor(Image.new("RGB", (1, 1), (0, 127, 255)))
    torch.testing.assert_close(rgb[0, :, 0, 0], torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]))


def test_pad_to_multiple_reflects_on_the_bottom_right_and_reports_the_original_size():
    x = torch.arange(16 * 15, dtype=torch.float32).view(1, 1, 16, 15)
    padded, size = pad_to_multiple(x)
    assert (padded.shape, size) == ((1, 1, 16, 16), (16, 15))
    assert torch.equal(padded[..., :15], x) and torch.equal(padded[..., 15], x[..., 13])
    y = x.transpose(-1, -2)  # 15 rows, 16 columns
    padded, size = pad_to_multiple(y)
    assert (padded.shape, size) == ((1, 1, 16, 16), (15, 16))
    assert torch.equal(padded[..., 15, :], y[..., 13, :])
    same, size = pad_to_multiple(torch.ones(1, 3, 32, 16))
    assert (same.shape, size) == ((1, 3, 32, 16), (32, 16))


def test_pil_to_tensor_is_float32_whatever_the_default_dtype():
    with default_dtype(torch.float64):
        x = pil_to_tensor(Image.new("RGB", (2, 1), (0, 51, 255)))
    assert x.dtype == torch.float32
    assert torch.equal(x[0, :, 0, 0], torch.tensor([-1.0, 51 / 127.5 - 1, 1.0], dtype=torch.float32))


def test_pad_to_multiple_pads_the_last_two_dimensions_of_a_single_image_too():
    x = torch.arange(12.0).view(1, 3, 4)  # [C, H, W]
    padded, size = pad_to_multiple(x, 8)
    assert size == (3, 4) and padded.shape == (1, 8, 8)
    assert torch.equal(padded[:, :3, :4], x)


def test_list_images_skips_hidden_files_and_everything_in_hidden_folders(tmp_path):
    for rel in ("a.png", ".b.png", ".cache/c.png", "sub/d.jpg", "sub/.e.jpg", "sub/.hid/f.png", "x.p.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert imaging.list_images(tmp_path) == [tmp_path / "a.png", tmp_path / "sub/d.jpg", tmp_path / "x.p.png"]


def test_pad_to_multiple_replicates_edges_of_an_image_smaller_than_the_pad():
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    padded, size = pad_to_multiple(x, 4)
    assert size == (2, 3)
    assert padded[0, 0].tolist() == [[1, 2, 3, 3], [4, 5, 6, 6], [4, 5, 6, 6], [4, 5, 6, 6]]


def test_pad_mode_reflects_only_while_each_side_is_longer_than_its_pad():
    # to 16: a side of 9 needs 7 more (reflects), 8 needs 8 (cannot), 16 needs none
    assert pad_mode((9, 9), 16) == pad_mode((16, 9), 16) == pad_mode((9, 16), 16) == "reflect"
    assert pad_mode((8, 9), 16) == pad_mode((9, 8), 16) == pad_mode((1, 1), 16) == "replicate"
    assert pad_mode((2, 3), 4) == "replicate" and pad_mode((3, 3), 4) == "reflect"


def test_tensor_to_pil_takes_one_image_and_refuses_a_batch_saying_its_size():
    from diffusers_mdiffae.imaging import tensor_to_pil

    assert tensor_to_pil(torch.zeros(1, 3, 2, 4)).size == (4, 2)
    with pytest.raises(ValueError) as e:
        tensor_to_pil(torch.zeros(2, 3, 2, 4))
    assert str(e.value) == "expected a single image, got a batch of 2"
