"""export_skimage_photos against a stand-in scikit-image (none is installed or downloaded)."""

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
