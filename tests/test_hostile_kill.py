"""Hostile, slow: SIGKILL at random moments, then check nothing partial is visible and a rerun completes.

Run with ``python -m pytest -m slow tests/test_hostile_kill.py`` (deselected by default).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import fixtures.hostile as hostile_helpers
import pytest
from fixtures.hostile import ROOT, cli_subprocess, photo
from fixtures.models import TINY
from PIL import Image

pytestmark = pytest.mark.slow

model_dir = hostile_helpers.model_dir  # the shared session fixture (a tiny saved model)


def _start(*args, env=None):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "diffusers_mdiffae.cli", *map(str, args)],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.01)


def test_reconstruct_killed_at_random_moments_never_leaves_a_partial_image(tmp_path, model_dir):
    src = tmp_path / "imgs"
    for i in range(24):
        photo(src / f"sub{i % 3}" / f"p{i:02d}.jpg", 96, 80, seed=i)
    out = tmp_path / "out"
    rng = random.Random(0)
    for trial in range(4):
        proc = _start("reconstruct", src, out, "--model", model_dir)
        _wait_for(lambda: out.exists() and any(out.rglob("*.png")), proc)
        time.sleep(rng.uniform(0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for png in out.rglob("*.png"):  # whatever is visible under a final name is complete
            with Image.open(png) as im:
                im.load()
                assert im.size == (96, 80)
    res = cli_subprocess("reconstruct", src, out, "--model", model_dir)
    assert res.returncode == 0 and "wrote 24, skipped 0" in res.stdout, res.stderr[-2000:]
    assert len(list(out.rglob("*.png"))) == 24
    assert [p.name for p in out.rglob(".*")] == []  # the rerun cleared the killed runs' temporaries


def test_training_killed_inside_a_checkpoint_write_resumes_cleanly(tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        photo(data / f"p{i}.png", 48, 56, seed=i)
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        data,
        "--output-dir",
        run,
        "--model-config",
        json.dumps(TINY),
        "--steps",
        "6",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--warmup-steps",
        "2",
        "--checkpoint-every",
        "3",
        "--preview-every",
        "0",
    ]
    proc = _start(*args, env={"MDIFFAE_TRAIN_PAUSE_IN_CHECKPOINT": "30"})
    ckpts = run / "checkpoints"
    _wait_for(lambda: ckpts.is_dir() and any(p.name.startswith(".step_0000003") for p in ckpts.iterdir()), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = sorted(p.name for p in ckpts.iterdir())
    assert len(names) == 1 and names[0].startswith(".step_0000003")  # hidden, and no partial step_0000003
    res = cli_subprocess(*args, "--resume", "latest")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "left by an interrupted run" in res.stderr and "no checkpoint to resume from" in res.stderr
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000003", "step_0000006"]
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_training_killed_at_random_moments_resumes_to_the_same_log(tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        photo(data / f"p{i}.png", 48, 56, seed=i)
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        data,
        "--output-dir",
        run,
        "--model-config",
        json.dumps(TINY),
        "--steps",
        "12",
        "--batch-size",
        "2",
        "--crop",
        "32",
        "--warmup-steps",
        "2",
        "--checkpoint-every",
        "2",
        "--preview-every",
        "4",
    ]
    rng = random.Random(1)
    for _ in range(3):
        proc = _start(*args, "--resume", "latest")
        _wait_for(lambda: (run / "log.jsonl").exists(), proc)
        time.sleep(rng.uniform(0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = cli_subprocess(*args, "--resume", "latest")
    assert res.returncode == 0, res.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
    assert not list(run.rglob(".*"))
