"""Hostile: training and dataset encoding after kills, corruption and bad settings."""

import json
import os

import fixtures.hostile as hostile_helpers
import numpy as np
import pytest
from fixtures.hostile import bomb_png, cli, photo
from fixtures.models import TINY

from diffusers_mdiffae.atomic import TMP_DIR_TAG, TMP_FILE_TAG
from diffusers_mdiffae.dataset_encoding import EncodeConfig, encode_dataset
from diffusers_mdiffae.training import CheckpointError, TrainConfig, complete_checkpoints, train

DEAD_PID = 2**22 + 1  # above the kernel's pid_max ceiling: no live process has it

model_dir = hostile_helpers.model_dir  # the shared session fixture (a tiny saved model)


def config(tmp_path, **kw):
    data = tmp_path / "data"
    for i in range(2):
        photo(data / f"p{i}.png", 48, 48 + 8 * i, seed=i)
    base = {
        "data": str(data),
        "output_dir": str(tmp_path / "run"),
        "model_config": dict(TINY),
        "steps": 6,
        "batch_size": 2,
        "crop": 32,
        "warmup_steps": 2,
        "checkpoint_every": 3,
        "preview_every": 0,
    }
    base.update(kw)
    return TrainConfig(**base)


def log_steps(run):
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One 6-step run with checkpoints at 3 and 6, copied by each test that damages it."""
    tmp = tmp_path_factory.mktemp("finished")
    history = train(config(tmp), log=lambda _: None)
    return tmp, history


def copy_run(finished_run, tmp_path):
    import shutil

    src, history = finished_run
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    cfg_file = tmp_path / "run" / "checkpoints" / "step_0000006" / "trainer_state.json"
    state = json.loads(cfg_file.read_text())
    assert state["step"] == 6
    return history


def test_killed_checkpoint_write_leaves_a_temporary_that_the_restart_removes(tmp_path, finished_run):
    copy_run(finished_run, tmp_path)
    ckpts = tmp_path / "run" / "checkpoints"
    leftover = ckpts / f".step_0000009{TMP_DIR_TAG}{DEAD_PID}-x"
    (leftover / "model").mkdir(parents=True)
    (leftover / "model" / "config.json").write_text("{")
    log_tmp = tmp_path / "run" / f".log.jsonl{TMP_FILE_TAG}{DEAD_PID}-y"
    log_tmp.write_text("partial")
    messages = []
    train(config(tmp_path, resume="latest", steps=7, checkpoint_every=0), log=messages.append)
    assert not leftover.exists() and not log_tmp.exists()  # before: kept forever
    assert any("left by an interrupted run" in m for m in messages)
    assert [p.name for p in complete_checkpoints(tmp_path / "run")] == ["step_0000006", "step_0000003"]


def test_resume_never_repeats_a_step_in_the_log(tmp_path, finished_run):
    copy_run(finished_run, tmp_path)
    run = tmp_path / "run"
    # as if killed after step 6 was logged but before its checkpoint: only step 3 is complete
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_0000006")
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # a line cut by the kill
    train(config(tmp_path, resume="latest"), log=lambda _: None)
    assert log_steps(run) == [1, 2, 3, 4, 5, 6]  # before: 1..6, 4, 5, 6 (and a broken line)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, finished_run):
    full = copy_run(finished_run, tmp_path)
    run = tmp_path / "run"
    ema = run / "checkpoints" / "step_0000006" / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[:100])  # truncated by a disk fault
    messages = []
    resumed = train(config(tmp_path, resume="latest"), log=messages.append)
    text = "\n".join(messages)
    assert "skipping checkpoint" in text and "step_0000006" in text and "resumed from" in text
    assert "step_0000003" in text
    assert np.allclose([r["loss"] for r in resumed], [r["loss"] for r in full], atol=1e-6)
    assert log_steps(run) == [1, 2, 3, 4, 5, 6]


def test_every_checkpoint_corrupt_is_an_error_not_a_silent_fresh_start(tmp_path, finished_run):
    copy_run(finished_run, tmp_path)
    run = tmp_path / "run"
    for c in complete_checkpoints(run):
        (c / "trainer_state.json").write_text("{")
    with pytest.raises(CheckpointError, match="none of the 2 checkpoint"):
        train(config(tmp_path, resume="latest"), log=lambda _: None)
    with pytest.raises(CheckpointError, match="cannot restore checkpoint"):
        train(config(tmp_path, resume=str(run / "checkpoints" / "step_0000003")), log=lambda _: None)


def test_corrupt_checkpoint_through_the_cli_is_one_error(tmp_path, finished_run, capsys):
    copy_run(finished_run, tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints" / "step_0000003" / "optimizer.safetensors").write_bytes(b"")
    rc, _, err = cli(
        capsys,
        "train",
        "--data",
        tmp_path / "data",
        "--output-dir",
        run,
        "--steps",
        "6",
        "--crop",
        "32",
        "--batch-size",
        "2",
        "--model-config",
        json.dumps(TINY),
        "--checkpoint-every",
        "0",
        "--preview-every",
        "0",
        "--resume",
        run / "checkpoints" / "step_0000003",
    )
    assert rc == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "step_0000003" in errors[0] and "cannot restore checkpoint" in errors[0]


@pytest.mark.parametrize(
    "field,value",
    [
        ("steps", 0),
        ("batch_size", 0),
        ("crop", 40),
        ("lr", float("nan")),
        ("ema_decay", 1.0),
        ("steps", "10"),
        ("model_config", "{}"),
    ],
)
def test_train_config_refuses_wrong_values_and_types(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        config(tmp_path, **{field: value}).validate()


@pytest.mark.parametrize(
    "field,value",
    [("resolution", "256"), ("resolution", 8), ("shard_size", 0), ("batch_size", True), ("dtype", "int8")],
)
def test_encode_config_refuses_wrong_values_and_types(field, value):
    with pytest.raises(ValueError, match=field):
        EncodeConfig(**{field: value}).validate()


def test_encode_dataset_skips_a_bomb_and_every_restart_succeeds(tmp_path, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    bomb_png(src / "bomb.png")
    cfg = EncodeConfig(resolution=32, shard_size=4, batch_size=2, dtype="float32")
    for _ in range(2):  # before: the bomb crashed the run, and every restart the same way
        manifest = encode_dataset(src, tmp_path / "out", model=model_dir, config=cfg, log=lambda _: None)
        assert manifest["num_samples"] == 1 and [s["source"] for s in manifest["skipped"]] == ["bomb.png"]
        assert "too large" in manifest["skipped"][0]["reason"]


def test_encode_dataset_knows_a_model_by_its_weights_not_its_path(tmp_path, model_dir):
    import shutil

    src = tmp_path / "imgs"
    photo(src / "a.png")
    cfg = EncodeConfig(resolution=32, shard_size=4, batch_size=2, dtype="float32")
    encode_dataset(src, tmp_path / "out", model=model_dir, config=cfg, log=lambda _: None)
    moved = tmp_path / "elsewhere"
    shutil.copytree(model_dir, moved)
    (tmp_path / "link").symlink_to(moved)
    for same in (moved, tmp_path / "link", str(model_dir) + "/"):  # same weights, other paths: resume
        encode_dataset(src, tmp_path / "out", model=str(same), config=cfg, log=lambda _: None)
    from fixtures.models import make_tiny

    other = tmp_path / "other"
    make_tiny(seed=9).save_pretrained(other)
    with pytest.raises(ValueError, match="model weights"):  # another model at the same path would be too
        encode_dataset(src, tmp_path / "out", model=str(other), config=cfg, log=lambda _: None)


def test_encode_dataset_refuses_writing_into_its_own_input(tmp_path, model_dir, capsys):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    rc, _, err = cli(capsys, "encode-dataset", src, src, "--model", model_dir, "--resolution", "32")
    assert rc == 1 and err.startswith("error:") and "is the input" in err and len(err.splitlines()) == 1
    (tmp_path / "file").write_text("x")
    rc, _, err = cli(capsys, "encode-dataset", src, tmp_path / "file", "--model", model_dir, "--resolution", "32")
    assert rc == 1 and "is a file" in err and "Traceback" not in err


def test_encode_dataset_of_only_bad_images_fails(tmp_path, model_dir):
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "x.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="nothing encoded"):
        encode_dataset(src, tmp_path / "out", model=model_dir, config=EncodeConfig(resolution=32), log=lambda _: None)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_run_json_corrupted_is_a_sentence(tmp_path, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="run.json: unreadable"):
        encode_dataset(src, out, model=model_dir, config=EncodeConfig(resolution=32), log=lambda _: None)
    assert os.path.exists(out / "run.json")
