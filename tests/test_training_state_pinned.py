"""Training checkpoints pinned: what a checkpoint folder holds, what comes back, the refusals word for word,
which folders count as complete, and which leftovers of a killed run are removed."""

import json
import os

import pytest
import torch
from fixtures.models import make_tiny

from diffusers_mdiffae.atomic import OLD_DIR_TAG, TMP_DIR_TAG, TMP_FILE_TAG
from diffusers_mdiffae.training import EMA, CheckpointError, complete_checkpoints, latest_checkpoint
from diffusers_mdiffae.training.state import load_checkpoint, remove_killed_run_leftovers, save_checkpoint

DEAD_PID = 2**22 + 1  # above the kernel's pid_max ceiling: no live process has it


def _trained(seed=0):
    """A tiny model, its EMA after two updates and an AdamW after one step (plus a counter in its state)."""
    model = make_tiny(seed=seed).train()
    ema = EMA(model, decay=0.75)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.decoder.fuse_in.weight.sum().backward()
    opt.step()
    ema.update(model)
    ema.update(model)
    first = next(iter(opt.state))
    opt.state[first]["restarts"] = 3  # some optimizers keep plain numbers in their state
    return model, ema, opt


def test_a_checkpoint_holds_model_ema_optimizer_and_an_indented_trainer_state(tmp_path):
    model, ema, opt = _trained()
    state = {"step": 3, "history": [{"step": 1, "loss": 0.5}], "config": {"lr": 0.001}}
    folder = save_checkpoint(tmp_path / "ckpt" / "step_0000003", model, ema, opt, state)
    assert folder == tmp_path / "ckpt" / "step_0000003"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors",
        "model",
        "optimizer.safetensors",
        "trainer_state.json",
    ]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step_0000003"]  # no temporary left
    assert (folder / "trainer_state.json").read_text() == (
        '{\n "step": 3,\n "history": [\n  {\n   "step": 1,\n   "loss": 0.5\n  }\n ],\n "config": {\n  "lr": 0.001\n }\n}'
    )


def test_loading_a_checkpoint_restores_every_weight_average_and_optimizer_entry(tmp_path):
    model, ema, opt = _trained()
    folder = save_checkpoint(tmp_path / "step_0000003", model, ema, opt, {"step": 3, "history": []})
    fresh = make_tiny(seed=9).train()
    fresh_ema = EMA(fresh, decay=0.5)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    assert load_checkpoint(folder, fresh, fresh_ema, fresh_opt) == {"step": 3, "history": []}
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert (fresh_ema.decay, fresh_ema.num_updates) == (0.75, 2)
    assert fresh_ema.shadow.keys() == ema.shadow.keys()
    assert all(torch.equal(fresh_ema.shadow[k], v) for k, v in ema.shadow.items())
    got, want = fresh_opt.state_dict(), opt.state_dict()
    assert got["param_groups"] == json.loads(json.dumps(want["param_groups"]))  # as JSON keeps them: betas a list
    assert got["state"].keys() == want["state"].keys()
    for pid, entries in want["state"].items():
        assert got["state"][pid].keys() == entries.keys()
        for name, value in entries.items():
            if torch.is_tensor(value):
                assert torch.equal(got["state"][pid][name], value), (pid, name)
            else:
                assert got["state"][pid][name] == value, (pid, name)
    assert [entries.get("restarts") for entries in got["state"].values()] == [3]  # one parameter had a gradient


def test_a_checkpoint_without_an_integer_step_is_refused_by_name(tmp_path):
    model, ema, opt = _trained()
    folder = save_checkpoint(tmp_path / "step_0000003", model, ema, opt, {"step": 3})
    for bad in ('{"step": "3"}', '{"step": 3.0}', "[3]", '{"history": []}'):
        (folder / "trainer_state.json").write_text(bad)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(folder, model, ema, opt)
        assert str(e.value) == f"{folder}: cannot restore checkpoint (trainer_state.json has no integer 'step')"


def test_a_checkpoint_of_another_model_or_optimizer_is_refused_saying_so(tmp_path):
    model, ema, opt = _trained()
    folder = save_checkpoint(tmp_path / "step_0000003", model, ema, opt, {"step": 3})
    two_groups = torch.optim.AdamW(
        [{"params": [model.decoder.fuse_in.weight]}, {"params": [model.encoder.patchify.proj.weight]}]
    )
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder, model, ema, two_groups)
    assert str(e.value) == (
        f"{folder}: does not fit this model/optimizer (loaded state dict has a different number of parameter groups)"
    )
    wider = make_tiny(model_dim=48)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder, wider, EMA(wider), torch.optim.AdamW(wider.parameters()))
    assert str(e.value).startswith(f"{folder}: does not fit this model/optimizer (Error(s) in loading state_dict")
    assert "size mismatch" in str(e.value)


def test_complete_checkpoints_are_step_folders_with_a_trainer_state_newest_first(tmp_path):
    assert complete_checkpoints(tmp_path) == [] and latest_checkpoint(tmp_path) is None
    root = tmp_path / "checkpoints"
    for name in ("step_0000003", "step_0000010", "step_0000005", f".step_0000007{TMP_DIR_TAG}{DEAD_PID}-x", "notes"):
        (root / name).mkdir(parents=True)
        if name != "step_0000005":  # killed before its trainer state was written
            (root / name / "trainer_state.json").write_text('{"step": 1}')
    (root / "step_0000009").write_text("a file, not a folder")
    assert complete_checkpoints(tmp_path) == [root / "step_0000010", root / "step_0000003"]
    assert latest_checkpoint(tmp_path) == root / "step_0000010"


def test_a_restart_removes_the_dead_writers_temporaries_of_checkpoints_previews_log_and_final_only(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "previews").mkdir()
    dead = {
        "checkpoints": f".step_0000004{TMP_DIR_TAG}{DEAD_PID}-a",
        "previews": f".step_0000002.png{TMP_FILE_TAG}{DEAD_PID}-b",
        "log": f".log.jsonl{TMP_FILE_TAG}{DEAD_PID}-c",
        "final": f".final{TMP_DIR_TAG}{DEAD_PID}-d",
    }
    (out / "checkpoints" / dead["checkpoints"] / "model").mkdir(parents=True)
    (out / "previews" / dead["previews"]).write_bytes(b"png")
    (out / dead["log"]).write_text("partial")
    (out / dead["final"]).mkdir()
    kept = [
        out / f".run.json{TMP_FILE_TAG}{DEAD_PID}-e",  # not one of the run's names
        out / f".final{TMP_DIR_TAG}{os.getpid()}-f",  # its writer is alive
        out / "checkpoints" / f".other{TMP_DIR_TAG}{DEAD_PID}-g",
        out / "checkpoints" / "step_0000001",
        out / "previews" / f".notes.png{TMP_FILE_TAG}{DEAD_PID}-i",  # not a preview's name
    ]
    for path in kept:
        path.mkdir()
    moved = out / f".final{OLD_DIR_TAG}{DEAD_PID}-h"  # killed between moving the old final aside and the new in
    (moved / "previous").mkdir(parents=True)
    (moved / "previous" / "config.json").write_text("{}")
    removed = remove_killed_run_leftovers(out)
    assert removed[:3] == [dead["checkpoints"], dead["previews"], dead["log"]]
    assert sorted(removed[3:]) == sorted([dead["final"], moved.name])
    assert all(p.exists() for p in kept)
    assert json.loads((out / "final" / "config.json").read_text()) == {}  # put back, not lost
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted(["checkpoints", "previews", "final", kept[0].name, kept[1].name])
    assert remove_killed_run_leftovers(out) == [] and remove_killed_run_leftovers(tmp_path / "none") == []


def test_a_failed_write_is_an_oserror_naming_the_checkpoint_and_leaves_no_folder(tmp_path, monkeypatch):
    from diffusers_mdiffae.training import state

    def full_disk(*args, **kwargs):
        raise RuntimeError("No space left on device (os error 28)")  # safetensors' own error type

    monkeypatch.setattr(state, "save_file", full_disk)
    folder = tmp_path / "step_0000003"
    with pytest.raises(OSError) as e:
        save_checkpoint(folder, *_trained(), {"step": 3})
    assert (e.value.errno, e.value.filename) == (28, str(folder))
    assert os.listdir(tmp_path) == []


def test_the_pause_hook_sleeps_for_the_seconds_it_is_given(tmp_path, monkeypatch):
    """Only the kill tests set it (in a child process); here the sleep is recorded instead."""
    from diffusers_mdiffae.training import state

    slept = []
    monkeypatch.setenv(state._PAUSE_ENV, "0.25")
    monkeypatch.setattr(state.time, "sleep", slept.append)
    save_checkpoint(tmp_path / "step_0000003", *_trained(), {"step": 3})
    assert slept == [0.25]
