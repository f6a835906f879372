"""encode-dataset's options, entry points, model hash, sources and reader pinned in-process
(the encoder itself is replaced where only the hand-off is under test)."""

import hashlib
import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from diffusers_mdiffae.dataset_encoding import encode
from diffusers_mdiffae.dataset_encoding.options import EncodeConfig, build_parser, config_from_args
from diffusers_mdiffae.dataset_encoding.reader import LatentShardDataset, load_manifest
from diffusers_mdiffae.dataset_encoding.sources import FolderSource, HFDatasetSource, open_source
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


# -- open_source: which kind of source a path or object is ---------------------------------------


class _ImageColumnDataset:
    column_names = ["image", "label"]

    def __len__(self):
        return 2


@pytest.fixture
def fake_datasets(monkeypatch):
    """A ``datasets`` module whose ``load_from_disk`` records the folder it is given."""
    loaded = []
    fake = types.ModuleType("datasets")
    fake.load_from_disk = lambda path: loaded.append(path) or _ImageColumnDataset()
    monkeypatch.setitem(sys.modules, "datasets", fake)
    return loaded


@pytest.mark.parametrize("marker", ["dataset_info.json", "dataset_dict.json"])
def test_a_saved_datasets_folder_is_opened_with_load_from_disk_and_the_image_column(tmp_path, fake_datasets, marker):
    (tmp_path / marker).write_text("{}")
    Image.new("RGB", (8, 8)).save(tmp_path / "stray.png")  # the marker wins over images beside it
    src = open_source(tmp_path)
    assert isinstance(src, HFDatasetSource) and isinstance(src.ds, _ImageColumnDataset)
    assert fake_datasets == [str(tmp_path)]
    assert (src.column, src.name(1)) == ("image", "image[1]")
    assert open_source(str(tmp_path), column="label").column == "label"
    with pytest.raises(ValueError) as e:
        open_source(tmp_path, column="img")
    assert str(e.value) == "dataset has no column 'img' (columns: ['image', 'label'])"


class _SplitsDataset:
    """What ``load_from_disk`` returns for a saved DatasetDict: column names per split."""

    column_names = {"train": ["image"], "test": ["image"]}


def test_a_saved_dataset_of_several_splits_is_refused_asking_for_one_split(tmp_path, monkeypatch):
    fake = types.ModuleType("datasets")
    fake.load_from_disk = lambda path: _SplitsDataset()
    monkeypatch.setitem(sys.modules, "datasets", fake)
    (tmp_path / "dataset_dict.json").write_text("{}")
    with pytest.raises(ValueError) as e:
        open_source(tmp_path)
    assert str(e.value) == (
        f"{tmp_path} holds several splits (train, test), not one dataset: give one split "
        "(its subfolder, or dataset[split])"
    )
    with pytest.raises(ValueError, match=r"^dataset holds several splits \(train, test\)"):
        open_source(_SplitsDataset())


def test_a_datasets_object_is_used_as_it_is_with_the_image_column(fake_datasets):
    ds = _ImageColumnDataset()
    src = open_source(ds)
    assert isinstance(src, HFDatasetSource) and src.ds is ds and src.column == "image"
    assert open_source(ds, "label").column == "label"
    assert fake_datasets == []


def test_a_plain_folder_is_an_image_folder_named_relative_to_it(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b.png", "sub/a.jpg"]:
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "dataset_info.txt").write_text("not the marker")
    src = open_source(tmp_path)
    assert isinstance(src, FolderSource)
    assert [src.name(i) for i in range(len(src))] == ["b.png", "sub/a.jpg"]


def test_a_folder_without_images_or_a_missing_path_is_refused_with_a_sentence(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError) as e:
        open_source(empty)
    assert str(e.value) == f"{empty}: no images found"
    with pytest.raises(ValueError) as e:
        FolderSource(str(empty))
    assert str(e.value) == f"{empty}: no images found"
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError) as e:
        open_source(missing)
    assert str(e.value) == f"{missing}: not a folder of images or a saved datasets folder"


# -- the reader: manifest and normalisation -------------------------------------------------------


def test_load_manifest_of_an_unfinished_run_says_to_run_it_again(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_manifest(tmp_path)
    assert str(e.value) == (
        f"{tmp_path / 'manifest.json'} not found: the encoding run has not finished (run it again to complete it)"
    )
    (tmp_path / "manifest.json").write_text('{"num_samples": 3}')
    assert load_manifest(str(tmp_path)) == {"num_samples": 3}


def _one_shard_run(folder, z, mean, std):
    (folder / "shards").mkdir(parents=True)
    sample = {"source": "a.png", "flip": True, "original_size": [20, 30], "crop_box": [0, 1, 16, 17]}
    save_file({"latent.0": z}, str(folder / "shards" / "s0.safetensors"), metadata={"samples": json.dumps([sample])})
    manifest = {
        "latent_channels": z.shape[0],
        "latents_mean": mean,
        "latents_std": std,
        "shards": [{"file": "shards/s0.safetensors", "num_samples": 1}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return sample


def test_normalized_latents_are_z_minus_mean_over_std_per_channel_with_std_floored_at_1e_6(tmp_path):
    z = torch.tensor([[[1.0, 2.0]], [[4.0, -4.0]], [[3.0, 3.5]]])
    sample = _one_shard_run(tmp_path, z, mean=[1.0, 0.0, 3.0], std=[0.5, 2.0, 0.0])
    item = LatentShardDataset(tmp_path, normalize=True)[0]
    # by hand: channel 0 (z - 1) / 0.5, channel 1 z / 2, channel 2 (z - 3) / 1e-6 (a zero std is floored)
    expected = torch.tensor([[[0.0, 2.0]], [[2.0, -2.0]], [[0.0, 0.5e6]]])
    torch.testing.assert_close(item["latent"], expected, rtol=1e-6, atol=0)
    assert item["latent"].dtype == torch.float32
    assert {k: item[k] for k in sample} == sample
    raw = LatentShardDataset(tmp_path)[0]["latent"]
    assert torch.equal(raw, z)


# -- the run's fingerprint, run.json and the model hash of a folder -------------------------------


def test_model_fingerprint_of_a_local_folder_hashes_its_config_and_weight_files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(b'{"a": 1}')
    (folder / "w.safetensors").write_bytes(b"WEIGHTS")
    (folder / "README.md").write_text("not hashed")
    expected = hashlib.sha256(b"config.json\0" + b'{"a": 1}' + b"w.safetensors\0" + b"WEIGHTS").hexdigest()
    link = tmp_path / "link"
    link.symlink_to(folder)
    model = _FakeModel({"a": 1}, {"w": torch.ones(2)})
    for spec in [str(folder), link]:
        assert encode.model_fingerprint(model, spec) == {
            "model_sha256": expected,
            "model_path": os.path.realpath(folder),
        }
    # a folder without such files (a Hub cache layout, say): the loaded weights are hashed
    (tmp_path / "bare").mkdir()
    assert encode.model_fingerprint(model, str(tmp_path / "bare")) == {
        "model_sha256": encode._sha256_model(model),
        "model_path": str(tmp_path / "bare"),
    }


class _Named:
    def __init__(self, names):
        self.names = names

    def __len__(self):
        return len(self.names)

    def name(self, i):
        return self.names[i]


def test_fingerprint_holds_the_config_model_image_count_and_a_hash_of_the_names():
    cfg = EncodeConfig(resolution=32, flip=True)
    fp = encode._fingerprint(_Named(["a.png", "sub/b.png"]), cfg, {"model_sha256": "h", "model_path": "/m"})
    assert fp == {
        "config": {
            "resolution": 32,
            "crop": True,
            "flip": True,
            "dtype": "float16",
            "shard_size": 256,
            "batch_size": 16,
            "column": "image",
        },
        "model_sha256": "h",
        "model_path": "/m",
        "num_images": 2,
        "names_sha256": hashlib.sha256(b"a.png\nsub/b.png").hexdigest(),
    }


_DEAD_PID = 4_999_999  # above Linux's largest pid_max (2**22): never a running process


def test_claim_run_writes_run_json_and_removes_only_its_own_stale_temporaries(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = [out / f".run.json.tmp-{_DEAD_PID}-a", out / f".manifest.json.tmp-{_DEAD_PID}-b"]
    others = [out / f".notes.txt.tmp-{_DEAD_PID}-c", out / f".image.png.tmp-{_DEAD_PID}-d"]
    for p in mine + others:
        p.write_bytes(b"partial")
    fp = {"config": {"resolution": 16}, "model_sha256": "h", "model_path": "/m", "num_images": 1}
    encode._claim_run(out, fp)
    assert (out / "shards").is_dir()
    assert json.loads((out / "run.json").read_text()) == fp
    assert not any(p.exists() for p in mine)
    assert all(p.exists() for p in others)


def test_claim_run_resumes_the_same_run_from_anywhere_and_refuses_another(tmp_path):
    out = tmp_path / "out"
    fp = {"config": {"resolution": 16}, "model_sha256": "h", "model_path": "/m", "num_images": 1}
    encode._claim_run(out, fp)
    encode._claim_run(out, {**fp, "model_path": "/elsewhere/m"})  # the same weights reached another way
    assert json.loads((out / "run.json").read_text()) == fp
    for other in [{**fp, "model_sha256": "g"}, {**fp, "num_images": 2}, [fp]]:
        (out / "run.json").write_text(json.dumps(other))
        with pytest.raises(ValueError) as e:
            encode._claim_run(out, fp)
        assert str(e.value) == (
            f"{out}: holds a run with other settings, inputs or model weights (run.json differs); "
            "use a new output folder"
        )
    (out / "run.json").write_text("{half")
    with pytest.raises(ValueError) as e:
        encode._claim_run(out, fp)
    assert str(e.value) == f"{out / 'run.json'}: unreadable (not JSON); use a new output folder"


def test_latents_may_be_written_inside_the_image_folder_they_encode(tmp_path):
    """Shards are not images, so an output folder inside the input is never read back as input."""
    from fixtures.models import make_tiny

    src = tmp_path / "photos"
    src.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (40 * i, 80, 120)).save(src / f"p{i}.png")
    cfg = EncodeConfig(resolution=16, shard_size=2, batch_size=2, dtype="float32")
    out = src / "latents"
    manifest = encode.encode_dataset(src, out, model=make_tiny(), config=cfg, log=lambda _: None)
    assert manifest["num_samples"] == 2 and manifest["num_images"] == 2
    again = encode.encode_dataset(str(src), str(out), model=make_tiny(), config=cfg, log=lambda _: None)
    assert again["num_images"] == 2  # the shards now inside the input folder are not counted as images
    assert sorted(os.listdir(out / "shards")) == ["shard-000000.safetensors"]


@pytest.mark.parametrize("resolution", [16, 32, 256, 1024])
def test_config_accepts_every_positive_multiple_of_16_from_16(resolution):
    EncodeConfig(resolution=resolution).validate()


def test_config_accepts_shards_and_batches_of_one_image():
    EncodeConfig(shard_size=1, batch_size=1).validate()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"resolution": 0}, "resolution must be a positive multiple of 16, got 0"),
        ({"resolution": -16}, "resolution must be a positive multiple of 16, got -16"),
        ({"resolution": 8}, "resolution must be a positive multiple of 16, got 8"),
        ({"resolution": 24}, "resolution must be a positive multiple of 16, got 24"),
        ({"resolution": 32.0}, "resolution must be a positive multiple of 16, got 32.0"),
        ({"resolution": "32"}, "resolution must be a positive multiple of 16, got '32'"),
        ({"dtype": "int8"}, "dtype must be one of ['bfloat16', 'float16', 'float32'], got 'int8'"),
        ({"shard_size": 0}, "shard_size must be a positive integer, got 0"),
        ({"shard_size": True}, "shard_size must be a positive integer, got True"),
        ({"batch_size": 2.0}, "batch_size must be a positive integer, got 2.0"),
        ({"batch_size": -1}, "batch_size must be a positive integer, got -1"),
    ],
)
def test_config_refuses_each_bad_setting_with_its_sentence(kw, message):
    with pytest.raises(ValueError) as e:
        EncodeConfig(**kw).validate()
    assert str(e.value) == message


# -- encode_dataset: what it hands to torch, accelerate, the source and the model ------------------


class _Stop(Exception):
    pass


class _OneProcessAccelerator:
    """Records how ``accelerate.Accelerator`` was built; one process, main unless told otherwise."""

    built = []
    is_main_process = True
    num_processes, process_index = 1, 0
    device = torch.device("cpu")

    def __init__(self, **kwargs):
        self.built.append(kwargs)

    def wait_for_everyone(self):
        pass


@pytest.fixture
def stop_before_encoding(monkeypatch):
    """encode_dataset up to the shard loop: the loop is replaced by one that records its log and stops."""
    import accelerate

    _OneProcessAccelerator.built = []
    monkeypatch.setattr(accelerate, "Accelerator", _OneProcessAccelerator)
    handed = {}

    def encode_shards(model, src, todo, cfg, out, log, accelerator):
        handed.update(model=model, log=log, todo=list(todo))
        raise _Stop

    monkeypatch.setattr(encode, "_encode_shards", encode_shards)
    return handed


def _images(folder, n=2):
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (16, 16), (30 * i, 60, 90)).save(folder / f"p{i}.png")
    return folder


@pytest.mark.parametrize("cuda", [False, True])
def test_the_accelerator_is_cpu_exactly_when_cuda_is_absent(tmp_path, monkeypatch, stop_before_encoding, cuda):
    from fixtures.models import make_tiny

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    with pytest.raises(_Stop):
        encode.encode_dataset(_images(tmp_path / "in"), tmp_path / "out", model=make_tiny(), log=lambda _: None)
    assert _OneProcessAccelerator.built == [{"cpu": not cuda}]


def test_the_model_is_put_in_eval_mode_on_the_accelerators_device(tmp_path, monkeypatch, stop_before_encoding):
    from fixtures.models import make_tiny

    model = make_tiny().train()
    moved = []
    monkeypatch.setattr(model, "to", lambda *a, **kw: moved.append((a, kw)) or model)
    with pytest.raises(_Stop):
        encode.encode_dataset(_images(tmp_path / "in"), tmp_path / "out", model=model, log=lambda _: None)
    assert moved == [((torch.device("cpu"),), {})]
    assert stop_before_encoding["model"] is model and not model.training


@pytest.mark.parametrize("threads", [None, 3])
def test_num_threads_sets_torchs_thread_count_only_when_given(tmp_path, monkeypatch, stop_before_encoding, threads):
    from fixtures.models import make_tiny

    model = make_tiny()  # built before torch.set_num_threads is recorded
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    with pytest.raises(_Stop):
        encode.encode_dataset(
            _images(tmp_path / "in"), tmp_path / "out", model=model, num_threads=threads, log=lambda _: None
        )
    assert calls == ([] if threads is None else [threads])


def test_the_configured_column_is_the_one_opened(tmp_path, monkeypatch, stop_before_encoding):
    opened = []

    def open_source(source, column="image"):
        opened.append((source, column))
        raise _Stop

    monkeypatch.setattr(encode, "open_source", open_source)
    ds = _ImageColumnDataset()
    with pytest.raises(_Stop):
        encode.encode_dataset(ds, tmp_path / "out", config=EncodeConfig(column="label"), log=lambda _: None)
    assert opened == [(ds, "label")]


@pytest.mark.parametrize("main", [True, False])
def test_only_the_main_process_logs(tmp_path, monkeypatch, stop_before_encoding, main):
    from fixtures.models import make_tiny

    monkeypatch.setattr(_OneProcessAccelerator, "is_main_process", main)
    messages = []
    with pytest.raises(_Stop):
        encode.encode_dataset(_images(tmp_path / "in"), tmp_path / "out", model=make_tiny(), log=messages.append)
    stop_before_encoding["log"]("from the shard loop")
    if main:
        assert messages == [
            "2 images in 1 shards; 1 process(es); main process: 0 of its 1 shards already done",
            "from the shard loop",
        ]
    else:
        assert messages == []


def test_the_progress_bar_shows_images_per_second_over_the_elapsed_time(tmp_path, monkeypatch):
    """Under a second too: 8 images in 0.25 s on 2 processes is 64 img/s."""
    import tqdm.auto

    postfixes = []

    class Bar:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def update(self, n):
            pass

        def set_postfix(self, **kwargs):
            postfixes.append(kwargs)

        def close(self):
            pass

    clock = iter([10.0, 10.25])
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    monkeypatch.setattr(encode.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(encode, "_encode_shard", lambda model, src, k, cfg, out, log: 8)
    accelerator = types.SimpleNamespace(is_main_process=True, num_processes=2)
    encode._encode_shards(None, [0] * 8, [0], EncodeConfig(shard_size=8), tmp_path, None, accelerator)
    assert postfixes == [{"img_s": "64.0"}]


def test_a_run_from_a_model_folder_records_its_file_hash_and_logs_its_progress(tmp_path):
    """Three images in shards of two; the restart finds both shards done and removes its stale temporary."""
    from fixtures.models import make_tiny

    folder = tmp_path / "model"
    make_tiny().save_pretrained(folder)
    src, out = _images(tmp_path / "in", n=3), tmp_path / "out"
    cfg = EncodeConfig(resolution=16, shard_size=2, batch_size=2, dtype="float32")
    messages = []
    encode.encode_dataset(src, out, model=str(folder), config=cfg, log=messages.append)
    run = json.loads((out / "run.json").read_text())
    assert {k: run[k] for k in ("model_sha256", "model_path")} == encode.model_fingerprint(None, folder)
    manifest_path = out / "manifest.json"
    assert messages == [
        "3 images in 2 shards; 1 process(es); main process: 0 of its 2 shards already done",
        f"wrote 3 sample(s), skipped 0 image(s) ({manifest_path})",
    ]
    stale = out / "shards" / ".shard-000001.tmp-12345"
    stale.write_bytes(b"left by a killed run")
    messages.clear()
    encode.encode_dataset(src, out, model=str(folder), config=cfg, log=messages.append)
    assert messages[0] == "3 images in 2 shards; 1 process(es); main process: 2 of its 2 shards already done"
    assert not stale.exists()


def test_shards_missing_after_the_run_are_named_up_to_ten(tmp_path, monkeypatch):
    from fixtures.models import make_tiny

    monkeypatch.setattr(encode, "_encode_shards", lambda *args: None)  # a run that wrote nothing
    cfg = EncodeConfig(resolution=16, shard_size=1, batch_size=1, dtype="float32")
    with pytest.raises(RuntimeError) as e:
        encode.encode_dataset(
            _images(tmp_path / "in", n=12), tmp_path / "out", model=make_tiny(), config=cfg, log=lambda _: None
        )
    assert str(e.value) == (
        "shards [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] are missing after the run; run the same command again"
    )
