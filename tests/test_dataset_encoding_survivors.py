"""encode-dataset's encoder job pinned piece by piece: preprocessing geometry and filtering, what a
shard holds, the manifest, stale temporaries, the progress bar and the JSON files.

The model is a stand-in whose latent is its input, so every stored latent and statistic is known
exactly; the images are a few pixels wide. Written against the mutation-testing survivors of
``diffusers_mdiffae/dataset_encoding/encode.py``.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open

from diffusers_mdiffae.atomic import save_safetensors
from diffusers_mdiffae.dataset_encoding import encode
from diffusers_mdiffae.dataset_encoding.options import EncodeConfig
from diffusers_mdiffae.dataset_encoding.sources import ImageSource
from diffusers_mdiffae.imaging import ImageLoadError

# ---------------------------------------------------------------------------------------------
# helpers


def rgb(h, w, seed=0):
    """A random (so neither left-right nor up-down symmetric) 8-bit RGB image."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def pixels(image):
    """The definition of the pixel scale: uint8 v -> v / 127.5 - 1, as ``[3, H, W]`` float32."""
    arr = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1) / 127.5 - 1.0


class ListSource(ImageSource):
    """Named images in a fixed order; an Exception in place of an image is raised by ``load``."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def name(self, i):
        return self.items[i][0]

    def load(self, i):
        image = self.items[i][1]
        if isinstance(image, Exception):
            raise image
        return image, []


class IdentityEncoder:
    """Stand-in model: the latent is the input itself (3 channels), so shards are known exactly.

    It records the shape, dtype and device of every batch it is given. Its dtype is float64 so
    that a batch not converted to the model's dtype shows up as float32.
    """

    def __init__(self, dtype=torch.float64, device=torch.device("cpu")):
        self.dtype, self.device = dtype, device
        self.config = SimpleNamespace(latent_channels=3)
        self.calls = []

    def encode(self, x):
        self.calls.append((tuple(x.shape), x.dtype, x.device.type))
        # a meta tensor has no values: give zeros of its shape so the shard can still be written
        return SimpleNamespace(latent=torch.zeros(x.shape) if x.is_meta else x.clone())


def read_shard(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def shard_cfg(**kw):
    return EncodeConfig(**{"resolution": 16, "shard_size": 2, "batch_size": 3, "dtype": "float32", **kw})


# ---------------------------------------------------------------------------------------------
# preprocess: resize so the short side is the resolution, then centre-crop


@pytest.mark.parametrize(
    "h, w, crop, resized, box",
    [
        # upscaled x2 (short side 16 -> 32), wide: the crop takes the middle 32 columns of 48
        (16, 24, True, [32, 48], [0, 8, 32, 40]),
        # the same, tall: the middle 32 rows of 48
        (24, 16, True, [48, 32], [8, 0, 40, 32]),
        # downscaled by 2: 64 x 96 -> 32 x 48
        (64, 96, True, [32, 48], [0, 8, 32, 40]),
        # no crop: short side already 32 (no resize); the long side 50 is cut to 48 = 3 * 16, centred
        (32, 50, False, [32, 50], [0, 1, 32, 49]),
        (50, 32, False, [50, 32], [1, 0, 49, 32]),
    ],
)
def test_preprocess_resizes_short_side_and_centre_crops_with_recorded_geometry(h, w, crop, resized, box):
    x, geom = encode.preprocess(rgb(h, w), EncodeConfig(resolution=32, crop=crop))
    assert geom == {"original_size": [h, w], "resized_size": resized, "crop_box": box}
    assert x.shape == (3, box[2] - box[0], box[3] - box[1]) and x.dtype == torch.float32


def test_preprocess_without_resize_is_an_exact_crop_of_the_pixels():
    image = rgb(50, 32, seed=3)
    x, _ = encode.preprocess(image, EncodeConfig(resolution=32, crop=False))
    assert torch.equal(x, pixels(image)[:, 1:49, :])


def test_preprocess_upscale_samples_at_pixel_centres_then_crops_the_middle():
    # Antialiased bicubic (Keys' a = -0.5, as Pillow) reproduces a linear ramp exactly away from
    # the border (torch's plain bicubic, a = -0.75, is off by ~4e-3 even there), so the output
    # pins the filter and where each output pixel samples the input: align_corners=False puts
    # output pixel j of an x2 upscale at input coordinate (j + 0.5) / 2 - 0.5; the crop starts
    # at column (48 - 32) // 2 = 8.
    r, c = np.mgrid[0:16, 0:24]
    arr = np.repeat((5 * r + 7 * c).astype(np.uint8)[..., None], 3, axis=2)
    x, _ = encode.preprocess(Image.fromarray(arr), EncodeConfig(resolution=32))
    i, j = np.mgrid[0:32, 0:32]
    ur, uc = (i + 0.5) / 2 - 0.5, (j + 8 + 0.5) / 2 - 0.5
    expected = (5 * ur + 7 * uc) / 127.5 - 1
    inside = (ur >= 2) & (ur <= 13) & (uc >= 2) & (uc <= 21)  # every bicubic tap inside the image
    assert inside.sum() > 500
    for ch in range(3):
        assert np.abs(x[ch].numpy() - expected)[inside].max() < 1e-5


def test_preprocess_downscale_is_antialiased():
    # One-pixel stripes downscaled by 3: point-sampling bicubic lands on pixel centres and keeps
    # full-contrast stripes (|x| = 1); an antialiasing filter averages them to nearly grey.
    arr = np.zeros((96, 96, 3), np.uint8)
    arr[:, ::2] = 255
    x, _ = encode.preprocess(Image.fromarray(arr), EncodeConfig(resolution=32))
    assert x.shape == (3, 32, 32)
    assert x.abs().max() < 0.25


def test_preprocess_clamps_bicubic_ringing_to_the_pixel_range():
    # A black/white step upscaled x2 rings past both ends of [-1, 1] (checked below on the raw
    # interpolation); the result must stay in range and still reach both ends.
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[:, 8:] = 255
    raw = F.interpolate(pixels(arr)[None], size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
    assert raw.min() < -1.05 and raw.max() > 1.05
    x, _ = encode.preprocess(Image.fromarray(arr), EncodeConfig(resolution=32))
    assert x.min() == -1.0 and x.max() == 1.0


# ---------------------------------------------------------------------------------------------
# _encode_shard: what one shard file holds


def test_shard_holds_each_image_then_its_mirror_with_exact_metadata_and_stats(tmp_path):
    images = [rgb(16, 16, seed=s) for s in range(4)]
    src = ListSource([(f"img{i}.png", im) for i, im in enumerate(images)])
    model = IdentityEncoder()
    # shard 1 of size 2 holds images 2 and 3; with flips that is 4 samples, in batches of 3 + 1
    assert encode._encode_shard(model, src, 1, shard_cfg(flip=True), tmp_path, print) == 4
    meta, tensors = read_shard(tmp_path / "shards" / "shard-000001.safetensors")
    geom = {"original_size": [16, 16], "resized_size": [16, 16], "crop_box": [0, 0, 16, 16]}
    assert json.loads(meta.pop("samples")) == [
        {"source": "img2.png", "index": 2, "flip": False, "notes": [], **geom},
        {"source": "img2.png", "index": 2, "flip": True, "notes": [], **geom},
        {"source": "img3.png", "index": 3, "flip": False, "notes": [], **geom},
        {"source": "img3.png", "index": 3, "flip": True, "notes": [], **geom},
    ]
    assert meta == {"skipped": "[]", "shard": "1", "format": "mdiffae-latent-shard-v1"}
    # the mirror is left-right: reverse the columns of the pixel array
    expected = []
    for im in images[2:]:
        arr = np.asarray(im)
        expected += [pixels(arr), pixels(arr[:, ::-1])]
    assert sorted(tensors) == [
        "latent.0",
        "latent.1",
        "latent.2",
        "latent.3",
        "stats.count",
        "stats.sum",
        "stats.sumsq",
    ]
    for j, z in enumerate(expected):
        assert tensors[f"latent.{j}"].dtype == torch.float32 and torch.equal(tensors[f"latent.{j}"], z)
    # per-channel float64 sums over every stored latent, and the number of positions summed
    z = torch.stack(expected).double()
    assert tensors["stats.sum"].dtype == torch.float64 and torch.allclose(tensors["stats.sum"], z.sum(dim=(0, 2, 3)))
    assert tensors["stats.sumsq"].dtype == torch.float64
    assert torch.allclose(tensors["stats.sumsq"], z.square().sum(dim=(0, 2, 3)))
    assert tensors["stats.count"].dtype == torch.float64 and tensors["stats.count"].tolist() == [4 * 16 * 16]
    # same-size images go to the model as batches (3 then 1), converted to the model's dtype
    assert model.calls == [((3, 3, 16, 16), torch.float64, "cpu"), ((1, 3, 16, 16), torch.float64, "cpu")]


def test_without_flip_each_image_is_stored_once_unmirrored(tmp_path):
    image = rgb(16, 16, seed=7)
    src = ListSource([("a.png", image)])
    assert encode._encode_shard(IdentityEncoder(), src, 0, shard_cfg(), tmp_path, print) == 1
    meta, tensors = read_shard(tmp_path / "shards" / "shard-000000.safetensors")
    assert [(s["index"], s["flip"]) for s in json.loads(meta["samples"])] == [(0, False)]
    assert torch.equal(tensors["latent.0"], pixels(image))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_latents_are_stored_in_the_configured_dtype(tmp_path, dtype):
    image = rgb(16, 16, seed=1)
    name = str(dtype).removeprefix("torch.")
    encode._encode_shard(IdentityEncoder(), ListSource([("a.png", image)]), 0, shard_cfg(dtype=name), tmp_path, print)
    _, tensors = read_shard(tmp_path / "shards" / "shard-000000.safetensors")
    assert tensors["latent.0"].dtype == dtype and torch.equal(tensors["latent.0"], pixels(image).to(dtype))
    assert tensors["stats.sum"].dtype == torch.float64  # statistics stay exact whatever the storage


def test_uncropped_batch_of_different_sizes_is_encoded_one_by_one_in_order(tmp_path):
    # crop=False keeps each image's own (16-multiple) size: a batch mixing sizes cannot be
    # stacked, so each image goes alone; a batch of one size is still stacked.
    images = [rgb(16, 16, 0), rgb(16, 16, 1), rgb(16, 32, 2), rgb(16, 48, 3)]
    src = ListSource([(f"{i}.png", im) for i, im in enumerate(images)])
    model = IdentityEncoder()
    cfg = shard_cfg(crop=False, shard_size=4, batch_size=2)
    assert encode._encode_shard(model, src, 0, cfg, tmp_path, print) == 4
    assert model.calls == [
        ((2, 3, 16, 16), torch.float64, "cpu"),
        ((1, 3, 16, 32), torch.float64, "cpu"),
        ((1, 3, 16, 48), torch.float64, "cpu"),
    ]
    _, tensors = read_shard(tmp_path / "shards" / "shard-000000.safetensors")
    for j, im in enumerate(images):
        assert torch.equal(tensors[f"latent.{j}"], pixels(im))
    # positions summed: 16*16 + 16*16 + 16*32 + 16*48 (the latents are not square)
    assert tensors["stats.count"].tolist() == [256 + 256 + 512 + 768]


def test_pixels_are_moved_to_the_models_device_in_its_dtype(tmp_path):
    # The "meta" device stands in for an accelerator: a batch left on the CPU shows up as such.
    model = IdentityEncoder(device=torch.device("meta"))
    images = [rgb(16, 16, 0), rgb(16, 16, 1), rgb(16, 32, 2)]
    src = ListSource([(f"{i}.png", im) for i, im in enumerate(images)])
    encode._encode_shard(model, src, 0, shard_cfg(crop=False, shard_size=3, batch_size=2), tmp_path, print)
    # two stacked batches: the two 16 x 16 images, then the 16 x 32 one alone
    assert model.calls == [((2, 3, 16, 16), torch.float64, "meta"), ((1, 3, 16, 32), torch.float64, "meta")]
    # a mixed batch (encoded one by one) goes to the device too
    model = IdentityEncoder(device=torch.device("meta"))
    src = ListSource([("0.png", rgb(16, 16, 0)), ("1.png", rgb(16, 32, 1))])
    encode._encode_shard(model, src, 0, shard_cfg(crop=False, shard_size=2, batch_size=2), tmp_path, print)
    assert model.calls == [((1, 3, 16, 16), torch.float64, "meta"), ((1, 3, 16, 32), torch.float64, "meta")]


def test_unreadable_image_is_skipped_with_its_reason_once_without_its_name(tmp_path):
    # load errors name their file ("b.png: ..."); the shard and the log name it once, separately
    src = ListSource([("a.png", rgb(16, 16)), ("b.png", ImageLoadError("b.png: cannot read image (truncated)"))])
    messages = []
    assert encode._encode_shard(IdentityEncoder(), src, 0, shard_cfg(), tmp_path, messages.append) == 1
    meta, _ = read_shard(tmp_path / "shards" / "shard-000000.safetensors")
    assert json.loads(meta["skipped"]) == [{"source": "b.png", "reason": "cannot read image (truncated)"}]
    assert [s["source"] for s in json.loads(meta["samples"])] == ["a.png"]
    assert messages == ["skipped b.png: cannot read image (truncated)"]


# ---------------------------------------------------------------------------------------------
# _shard_done: only a complete, readable shard counts as done


def test_shard_is_done_only_when_readable_and_complete(tmp_path):
    path = tmp_path / "shard-000000.safetensors"
    assert not encode._shard_done(path)  # missing
    path.write_bytes(b"not a safetensors file")
    assert not encode._shard_done(path)  # unreadable: encode it again
    save_safetensors({"latent.0": torch.zeros(1)}, path)
    assert not encode._shard_done(path)  # no statistics: not written by a finished _encode_shard
    save_safetensors({"latent.0": torch.zeros(1), "stats.count": torch.zeros(1)}, path)
    assert encode._shard_done(path)


# ---------------------------------------------------------------------------------------------
# _collect_manifest


def _hand_shard(out, k, samples, skipped, total, total_sq, count):
    tensors = {
        "stats.sum": torch.tensor(total, dtype=torch.float64),
        "stats.sumsq": torch.tensor(total_sq, dtype=torch.float64),
        "stats.count": torch.tensor([count], dtype=torch.float64),
    }
    meta = {"samples": json.dumps(samples), "skipped": json.dumps(skipped), "shard": str(k), "format": "x"}
    save_safetensors(tensors, encode.shard_path(out, k), metadata=meta)


def test_manifest_lists_every_shard_with_its_sample_count_and_exact_float64_statistics(tmp_path):
    # Channel 0 has a single value 2**25 + 1, which float32 cannot hold (it rounds to 2**25), so
    # its mean is exact only if the sums are accumulated in float64; its std is then exactly 0.
    # Channel 1: one value with sum 3 and sum of squares 13 -> mean 3, std sqrt(13 - 9) = 2.
    # Shard 1 has every image skipped (count 0): it adds nothing but its skip record.
    big = 2.0**25 + 1
    _hand_shard(tmp_path, 0, [{"source": "a.png"}], [], [big, 3.0], [big * big, 13.0], 1.0)
    _hand_shard(tmp_path, 1, [], [{"source": "b.png", "reason": "corrupt"}], [0.0, 0.0], [0.0, 0.0], 0.0)
    fingerprint = {"config": {"resolution": 16}, "model_sha256": "abc", "num_images": 2}
    manifest = encode._collect_manifest(tmp_path, 2, fingerprint, 2)
    assert manifest == {
        "format": "mdiffae-latent-dataset-v1",
        "config": {"resolution": 16},
        "model_sha256": "abc",
        "num_images": 2,
        "latent_channels": 2,
        "num_samples": 1,
        "shards": [
            {"file": "shards/shard-000000.safetensors", "num_samples": 1},
            {"file": "shards/shard-000001.safetensors", "num_samples": 0},
        ],
        "skipped": [{"source": "b.png", "reason": "corrupt"}],
        "latents_mean": [33554433.0, 3.0],
        "latents_std": [0.0, 2.0],
        "hint": "normalise with (z - latents_mean) / latents_std per channel; "
        "a single scalar scale is 1 / mean(latents_std)",
    }


# ---------------------------------------------------------------------------------------------
# _remove_my_stale_shards: a process removes the temporaries of its own shards only


def _temporary(shards, k, pid, tag):
    # the name atomic_file gives a shard's temporary: ".<name>.tmp-<pid>-<random>"
    path = shards / f".shard-{k:06d}.safetensors.tmp-{pid}-{tag}"
    path.write_bytes(b"partial")
    return path


def test_stale_temporaries_of_my_shards_are_removed_and_others_kept(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    mine = _temporary(shards, 3, 4242, "abc123")
    other = _temporary(shards, 4, 4242, "def456")
    finished = shards / "shard-000003.safetensors"
    finished.write_bytes(b"done")
    encode._remove_my_stale_shards(tmp_path, [1, 3])
    assert not mine.exists()
    assert other.exists() and finished.exists()


class _VanishingFolder:
    """``out`` whose shard temporaries disappear (another process removed them) once listed."""

    def __init__(self, real):
        self.real = real

    def __truediv__(self, name):
        return _VanishingFolder(self.real / name)

    def glob(self, pattern):
        for path in self.real.glob(pattern):
            path.unlink()
            yield path


def test_a_stale_temporary_that_vanished_meanwhile_is_not_an_error(tmp_path):
    (tmp_path / "shards").mkdir()
    _temporary(tmp_path / "shards", 0, 77, "xyz")
    encode._remove_my_stale_shards(_VanishingFolder(tmp_path), [0])
    assert list((tmp_path / "shards").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# _encode_shards: the work loop's progress bar and test pause


class FakeBar:
    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.updates, self.postfix, self.closed = kwargs, [], [], False
        FakeBar.made.append(self)

    def update(self, n):
        self.updates.append(n)

    def set_postfix(self, **kw):
        self.postfix.append(kw)

    def close(self):
        self.closed = True


@pytest.fixture
def loop(monkeypatch):
    """_encode_shards with a fake bar, a fake clock (+4 s per reading after the start) and sleep,
    and shard encoding replaced by "2 samples per image" (flip on)."""
    FakeBar.made = []
    monkeypatch.setattr("tqdm.auto.tqdm", FakeBar)
    sleeps, ticks = [], iter([10.0, 14.0, 18.0, 22.0, 26.0])
    monkeypatch.setattr(encode, "time", SimpleNamespace(perf_counter=lambda: next(ticks), sleep=sleeps.append))
    cfg = EncodeConfig(shard_size=3)
    shards = []

    def fake_encode_shard(model, src, k, cfg, out, log):
        shards.append(k)
        return 2 * (min((k + 1) * cfg.shard_size, len(src)) - k * cfg.shard_size)

    monkeypatch.setattr(encode, "_encode_shard", fake_encode_shard)
    monkeypatch.delenv(encode._PAUSE_ENV, raising=False)

    def run(todo, main=True, processes=2):
        accelerator = SimpleNamespace(is_main_process=main, num_processes=processes)
        src = ListSource([(f"{i}.png", None) for i in range(7)])  # shards of 3, 3, 1 images
        encode._encode_shards(None, src, todo, cfg, None, print, accelerator)
        return FakeBar.made[-1]

    return SimpleNamespace(run=run, sleeps=sleeps, shards=shards)


def test_progress_bar_counts_this_processs_images_and_shows_the_overall_rate(loop):
    bar = loop.run([0, 2])
    assert loop.shards == [0, 2]
    # shard 0 has 3 images, the last shard (2) the 1 image left of 7
    assert bar.kwargs == {"total": 4, "disable": False, "desc": "encode", "unit": "img", "dynamic_ncols": True}
    assert bar.updates == [3, 1] and bar.closed
    # samples done so far x processes / seconds since the start: 6 * 2 / 4, then 8 * 2 / 8
    assert bar.postfix == [{"img_s": "3.0"}, {"img_s": "2.0"}]
    assert loop.sleeps == []  # no pause unless asked for


def test_progress_bar_is_hidden_on_other_processes(loop):
    assert loop.run([1], main=False).kwargs["disable"] is True


@pytest.mark.parametrize("value, sleeps", [("0.25", [0.25, 0.25]), ("", []), ("0", [])])
def test_pause_after_each_shard_comes_from_the_environment(loop, monkeypatch, value, sleeps):
    monkeypatch.setenv(encode._PAUSE_ENV, value)
    loop.run([0, 1])
    assert loop.sleeps == sleeps


# ---------------------------------------------------------------------------------------------
# _write_atomic_json


def test_json_files_are_written_with_one_space_indentation(tmp_path):
    path = tmp_path / "run.json"
    encode._write_atomic_json(path, {"a": [1, 2], "b": "x"})
    assert path.read_text() == '{\n "a": [\n  1,\n  2\n ],\n "b": "x"\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left behind
