"""encode-dataset's options, entry points, model hash, sources and reader pinned in-process
(the encoder itself is replaced where only the hand-off is under test)."""

import hashlib
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

from diffusers_mdiffae.dataset_encoding import encode
from diffusers_mdiffae.dataset_encoding.options import EncodeConfig, build_parser, config_from_args
from diffusers_mdiffae.dataset_encoding.reader import LatentShardDataset
from diffusers_mdiffae.dataset_encoding.sources import HFDatasetSource
from diffusers_mdiffae.imaging import ImageLoadError

ALL_OPTIONS = [
    "in/",
    "out/",
    "--model",
    "m/",
    "--resolution",
    "128",
    "--no-crop",
    "--flip",
    "--dtype",
    "bfloat16",
    "--shard-size",
    "3",
    "--batch-size",
    "5",
    "--column",
    "img",
    "--threads",
    "2",
]


def test_standalone_parser_names_the_command_and_says_what_it_does():
    p = build_parser()
    assert p.prog == "mdiffae encode-dataset"
    assert p.description == "Encode an image dataset to sharded mDiffAE latents (resumable)."
    assert p.parse_args(["a", "b"]).resolution == 256


def test_every_option_reaches_the_config():
    cfg = config_from_args(build_parser().parse_args(ALL_OPTIONS))
    assert cfg == EncodeConfig(
        resolution=128, crop=False, flip=True, dtype="bfloat16", shard_size=3, batch_size=5, column="img"
    )
    assert config_from_args(build_parser().parse_args(["a", "b"])) == EncodeConfig()
    assert EncodeConfig() == EncodeConfig(
        resolution=256, crop=True, flip=False, dtype="float16", shard_size=256, batch_size=16, column="image"
    )


def test_run_from_args_hands_every_option_to_encode_dataset(monkeypatch):
    calls = []
    monkeypatch.setattr(encode, "encode_dataset", lambda *a, **kw: calls.append((a, kw)))

    def log(msg):
        pass

    a = build_parser().parse_args(ALL_OPTIONS)
    assert encode.run_from_args(a, log=log) == 0
    cfg = config_from_args(a)
    assert calls == [(("in/", "out/"), {"model": "m/", "config": cfg, "num_threads": 2, "log": log})]


def test_main_parses_argv_and_turns_failures_into_one_line(monkeypatch, capsys):
    seen = []

    def fails(a, log=None):
        seen.append(a.input)
        raise ValueError("in/: no images found")

    monkeypatch.setattr(encode, "run_from_args", fails)
    monkeypatch.delenv("MDIFFAE_TRACEBACK", raising=False)
    assert encode.main(["in/", "out/"]) == 1
    assert seen == ["in/"]
    assert capsys.readouterr().err == "error: in/: no images found\n"

    monkeypatch.setenv("MDIFFAE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="no images found"):
        encode.main(["in/", "out/"])


def test_main_with_args_interrupted_is_status_130(monkeypatch, capsys):
    def interrupted(a, log=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(encode, "run_from_args", interrupted)
    assert encode.main_with_args(build_parser().parse_args(["a", "b"])) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    monkeypatch.setattr(encode, "run_from_args", lambda a, log=None: 0)
    assert encode.main_with_args(build_parser().parse_args(["a", "b"])) == 0


class _FakeModel:
    def __init__(self, config, tensors):
        self.config, self._tensors = config, tensors

    def state_dict(self):
        return dict(self._tensors)


def _reference_hash(config: str, entries) -> str:
    h = hashlib.sha256(config.encode())
    for name, dtype, data in entries:
        h.update(name.encode() + b"\0" + dtype.encode())
        h.update(data)
    return h.hexdigest()


def test_model_hash_is_config_without_private_keys_then_sorted_weights():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    b = torch.tensor([1, 258], dtype=torch.int16)
    model = _FakeModel({"z": 1, "_class_name": "X", "a": Path("p")}, {"w": w, "b": b})
    expected = _reference_hash(
        '{"a": "p", "z": 1}',
        [("b", "torch.int16", b.numpy().tobytes()), ("w", "torch.float32", w.numpy().tobytes())],
    )
    assert encode._sha256_model(model) == expected
    # the same model described in another order, or under another private name, hashes the same
    same = _FakeModel({"a": Path("p"), "_diffusers_version": "1", "z": 1}, {"b": b, "w": w})
    assert encode._sha256_model(same) == expected
    assert encode._sha256_model(_FakeModel({"a": "p", "z": 1}, {"w": w, "b": b.float()})) != expected


def test_model_fingerprint_of_an_in_memory_model_hashes_its_weights():
    model = _FakeModel({"a": 1}, {"w": torch.ones(3)})
    assert encode.model_fingerprint(model) == {
        "model_sha256": encode._sha256_model(model),
        "model_path": "in-memory model",
    }


class _FakeDataset:
    column_names = ["img"]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise ValueError("broken bytes")


def test_datasets_folder_is_loaded_and_its_column_checked(tmp_path, monkeypatch):
    loaded = []
    fake = types.ModuleType("datasets")
    fake.load_from_disk = lambda path: loaded.append(path) or _FakeDataset()
    monkeypatch.setitem(sys.modules, "datasets", fake)
    src = HFDatasetSource(tmp_path, column="img")
    assert loaded == [str(tmp_path)] and isinstance(src.ds, _FakeDataset) and len(src) == 4
    with pytest.raises(ValueError) as e:
        HFDatasetSource(tmp_path)  # the default column is "image"
    assert str(e.value) == "dataset has no column 'image' (columns: ['img'])"


def test_unreadable_dataset_row_names_its_row_and_the_error():
    src = HFDatasetSource(_FakeDataset(), column="img")
    with pytest.raises(ImageLoadError) as e:
        src.load(3)
    assert str(e.value) == "img[3]: cannot read image (ValueError: broken bytes)"


def test_shard_dataset_pickles_without_its_open_shards():
    ds = LatentShardDataset.__new__(LatentShardDataset)
    ds.__dict__.update(folder=Path("x"), index=[("f", 0, {})], _handles={"f": object()})
    state = ds.__getstate__()
    assert state == {"folder": Path("x"), "index": [("f", 0, {})], "_handles": {}}
    assert "f" in ds._handles  # the live dataset keeps its handles
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._handles == {} and copy.index == [("f", 0, {})]
