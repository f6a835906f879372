"""encode-dataset: exact once after SIGKILL, odd files reported, stats, reader, 2-process equality."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.models import make_tiny, write_odd_images
from PIL import Image
from safetensors import safe_open

from diffusers_mdiffae.dataset_encoding import EncodeConfig, LatentShardDataset, encode_dataset, load_manifest

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int = 10):
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = 40 + 4 * (i % 3), 48 + 8 * (i % 2)
        target = folder / ("sub" if i % 4 == 0 else "") / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(target)
    return folder


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "model"
    make_tiny().save_pretrained(path)
    return path


def cfg(**kw):
    return EncodeConfig(**{"resolution": 32, "shard_size": 3, "batch_size": 2, "dtype": "float32", **kw})


def latents_by_source(out: Path):
    ds = LatentShardDataset(out)
    return {(item["source"], item["flip"]): item["latent"] for item in (ds[i] for i in range(len(ds)))}


def test_every_image_encoded_once_with_metadata_and_manifest(tmp_path, model_dir):
    src = make_images(tmp_path / "imgs")
    out = tmp_path / "out"
    manifest = encode_dataset(src, out, model=str(model_dir), config=cfg(flip=True), log=lambda _: None)
    assert manifest["num_samples"] == 20 and len(manifest["shards"]) == 4 and manifest["skipped"] == []
    ds = LatentShardDataset(out)
    assert len(ds) == 20
    item = ds[0]
    assert item["latent"].shape == (64, 2, 2) and item["latent"].dtype == torch.float32
    assert set(item) == {"latent", "source", "flip", "original_size", "crop_box"}
    sources = [ds[i]["source"] for i in range(len(ds))]
    assert sorted(set(sources)) == sorted(str(p.relative_to(src)) for p in src.rglob("*.png"))
    assert all(sources.count(s) == 2 for s in set(sources))  # original + flip


def test_statistics_match_a_direct_computation_and_normalise(tmp_path, model_dir):
    out = tmp_path / "out"
    encode_dataset(make_images(tmp_path / "imgs"), out, model=str(model_dir), config=cfg(), log=lambda _: None)
    manifest = load_manifest(out)
    ds = LatentShardDataset(out)
    z = torch.stack([ds[i]["latent"] for i in range(len(ds))]).double()
    assert np.allclose(manifest["latents_mean"], z.mean(dim=(0, 2, 3)).numpy(), atol=1e-6)
    assert np.allclose(manifest["latents_std"], z.std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-6)
    zn = torch.stack([item["latent"] for item in LatentShardDataset(out, normalize=True)]).double()
    assert np.allclose(zn.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)


def test_odd_files_are_skipped_or_converted_and_reported(tmp_path, model_dir):
    src = write_odd_images(make_images(tmp_path / "imgs", n=2))
    messages = []
    manifest = encode_dataset(src, tmp_path / "out", model=str(model_dir), config=cfg(), log=messages.append)
    assert [s["source"] for s in manifest["skipped"]] == ["corrupt.png"]
    assert "cannot read image" in manifest["skipped"][0]["reason"]
    assert any("skipped corrupt.png" in m for m in messages)
    assert manifest["num_samples"] == 5
    notes = {item["source"]: item for item in LatentShardDataset(tmp_path / "out")}
    assert {"gray.png", "rgba.png", "deep16.png"} <= set(notes)
    recorded = {}
    for shard in (tmp_path / "out" / "shards").glob("shard-*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            recorded.update({s["source"]: s["notes"] for s in json.loads(f.metadata()["samples"])})
    assert any("16-bit" in n for n in recorded["deep16.png"])
    assert any("grayscale" in n for n in recorded["gray.png"])
    assert any("alpha" in n for n in recorded["rgba.png"])


def test_restart_skips_finished_shards_and_refuses_other_settings(tmp_path, model_dir):
    src = make_images(tmp_path / "imgs")
    out = tmp_path / "out"
    encode_dataset(src, out, model=str(model_dir), config=cfg(), log=lambda _: None)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    (out / "shards" / "shard-000001.safetensors").unlink()
    encode_dataset(src, out, model=str(model_dir), config=cfg(), log=lambda _: None)
    again = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    assert again.keys() == first.keys()
    assert all(again[k] == first[k] for k in first if k != "shard-000001.safetensors")
    with pytest.raises(ValueError, match="other settings"):
        encode_dataset(src, out, model=str(model_dir), config=cfg(resolution=48), log=lambda _: None)


def _cli(src, out, model_dir, extra=(), env=None):
    return [
        sys.executable,
        "-m",
        "diffusers_mdiffae.dataset_encoding",
        str(src),
        str(out),
        "--model",
        str(model_dir),
        "--resolution",
        "32",
        "--shard-size",
        "2",
        "--batch-size",
        "2",
        "--dtype",
        "float32",
        "--threads",
        "1",
        *extra,
    ]


def test_sigkill_part_way_then_restart_encodes_every_image_exactly_once(tmp_path, model_dir):
    src = make_images(tmp_path / "imgs", n=12)
    out = tmp_path / "out"
    env = dict(os.environ, MDIFFAE_ENCODE_PAUSE_AFTER_SHARD="0.5", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(_cli(src, out, model_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "shards").glob("shard-*.safetensors"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "shards").glob("shard-*.safetensors")))
    assert 2 <= done_before < 6 and not (out / "manifest.json").exists()
    # plant the leftovers a kill can leave: a half-written temporary shard
    (out / "shards" / ".shard-000005.safetensors.tmp-99999").write_bytes(b"partial")
    res = subprocess.run(
        _cli(src, out, model_dir), env=dict(env, MDIFFAE_ENCODE_PAUSE_AFTER_SHARD="0"), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = load_manifest(out)
    sources = [item["source"] for item in LatentShardDataset(out)]
    assert len(sources) == 12 and len(set(sources)) == 12 and manifest["num_samples"] == 12
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"shard-{k:06d}.safetensors" for k in range(6)]


@pytest.mark.skipif(
    shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
    reason="accelerate CLI not installed",
)
def test_two_processes_give_bitwise_the_same_latents_as_one(tmp_path, model_dir):
    src = make_images(tmp_path / "imgs", n=9)
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    single = subprocess.run(_cli(src, tmp_path / "one", model_dir), env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    two = subprocess.run(
        [
            accelerate,
            "launch",
            "--num_processes",
            "2",
            "--cpu",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "diffusers_mdiffae.dataset_encoding",
            *_cli(src, tmp_path / "two", model_dir)[3:],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = latents_by_source(tmp_path / "one"), latents_by_source(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 9
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_manifest(tmp_path / "one")["latents_mean"] == load_manifest(tmp_path / "two")["latents_mean"]


class FakeImageDataset:
    """Quacks like a ``datasets.Dataset`` with an image column (the real package is optional)."""

    column_names = ["image", "label"]

    def __init__(self, n):
        rng = np.random.default_rng(1)
        self.rows = [
            {"image": Image.fromarray(rng.integers(0, 255, (36, 52, 3), dtype=np.uint8)), "label": i} for i in range(n)
        ]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def test_a_datasets_image_dataset_is_encoded(tmp_path, model_dir):
    manifest = encode_dataset(
        FakeImageDataset(5), tmp_path / "out", model=str(model_dir), config=cfg(), log=lambda _: None
    )
    assert manifest["num_samples"] == 5
    assert [item["source"] for item in LatentShardDataset(tmp_path / "out")] == [f"image[{i}]" for i in range(5)]
