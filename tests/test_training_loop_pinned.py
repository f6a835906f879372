"""The training loop pinned: TrainConfig's refusals, log.jsonl truncation, the resume messages, and what a
run shows and writes (its messages, its progress bar, its preview crops, its learning rates)."""

import json
import math
import re
import types

import numpy as np
import pytest
import torch
from fixtures.dtypes import default_dtype
from fixtures.hostile import photo
from fixtures.models import TINY
from PIL import Image

from diffusers_mdiffae.atomic import TMP_DIR_TAG, TMP_FILE_TAG
from diffusers_mdiffae.training import CheckpointError, TrainConfig, train
from diffusers_mdiffae.training import loop as training_loop

DEAD_PID = 2**22 + 1  # above the kernel's pid_max ceiling: no live process has it


def config(tmp_path, **kw):
    data = tmp_path / "data"
    for i in range(3):
        photo(data / f"p{i}.png", 48 + 8 * i, 48, seed=i)
    base = {
        "data": str(data),
        "output_dir": str(tmp_path / "run"),
        "model_config": dict(TINY),
        "steps": 2,
        "batch_size": 2,
        "crop": 32,
        "warmup_steps": 1,
        "checkpoint_every": 0,
        "preview_every": 0,
    }
    base.update(kw)
    return TrainConfig(**base)


# -- TrainConfig.validate --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,low", [("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("checkpoint_every", 0), ("preview_every", 0)]
)
def test_integer_fields_accept_their_lowest_value_and_refuse_one_below_or_another_type(field, low):
    TrainConfig(data="d", output_dir="o", **{field: low}).validate()
    for bad in (low - 1, True, 2.0, "3"):
        with pytest.raises(ValueError) as e:
            TrainConfig(data="d", output_dir="o", **{field: bad}).validate()
        assert str(e.value) == f"{field} must be an integer >= {low}, got {bad!r}"


@pytest.mark.parametrize("field", ["lr", "ema_decay", "weight_decay", "grad_clip", "scale_min", "lr_min_ratio"])
def test_number_fields_must_be_finite_and_non_negative(field):
    for bad in (-0.5, float("nan"), float("inf"), "0.1", None):
        with pytest.raises(ValueError) as e:
            TrainConfig(data="d", output_dir="o", **{field: bad}).validate()
        assert str(e.value) == f"{field} must be a finite non-negative number, got {bad!r}"


def test_scale_min_is_in_0_to_1_ema_decay_below_1_crop_a_multiple_of_16_and_model_config_a_dict():
    for ok in (1, 1.0, 0.01):
        TrainConfig(data="d", output_dir="o", scale_min=ok).validate()
    for bad in (0, 0.0, 1.01, 1.5, 2):
        with pytest.raises(ValueError) as e:
            TrainConfig(data="d", output_dir="o", scale_min=bad).validate()
        assert str(e.value) == f"scale_min must be in (0, 1], got {bad!r}"
    TrainConfig(data="d", output_dir="o", ema_decay=0.0).validate()
    for bad in (1, 1.0, 1.5):
        with pytest.raises(ValueError) as e:
            TrainConfig(data="d", output_dir="o", ema_decay=bad).validate()
        assert str(e.value) == f"ema_decay must be below 1, got {bad!r}"
    TrainConfig(data="d", output_dir="o", crop=16).validate()
    for bad in (0, 8, 24, 32.0, "32"):
        with pytest.raises(ValueError) as e:
            TrainConfig(data="d", output_dir="o", crop=bad).validate()
        assert str(e.value) == f"crop must be a positive multiple of 16, got {bad!r}"
    with pytest.raises(ValueError) as e:
        TrainConfig(data="d", output_dir="o", model_config=[]).validate()
    assert str(e.value) == "model_config must be a dict, got list"


# -- truncate_log ----------------------------------------------------------------------------


def test_truncate_log_keeps_readable_records_up_to_the_step_and_rewrites_only_when_it_drops(tmp_path):
    from diffusers_mdiffae.training.loop import truncate_log

    assert truncate_log(tmp_path / "missing.jsonl", 3) == 0 and not (tmp_path / "missing.jsonl").exists()
    log = tmp_path / "log.jsonl"
    lines = [
        b'{"step": 1, "loss": 0.5}',
        b'{"step": 2, "note": "\xff"}',  # a byte that is not UTF-8: kept, as the replacement character
        b'"step 2"',  # not a record
        b'{"step": "2"}',  # a step that is not an integer
        b'{"loss": 1}',  # no step
        b'{"step": 3}',
        b'{"step": 4}',
        b'{"step": 2, "lo',  # cut short by a kill
    ]
    log.write_bytes(b"\n".join(lines) + b"\n")
    assert truncate_log(log, 3) == 5
    assert log.read_bytes() == b'{"step": 1, "loss": 0.5}\n{"step": 2, "note": "\xef\xbf\xbd"}\n{"step": 3}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]  # no temporary left
    before = log.stat().st_ino
    assert truncate_log(log, 3) == 0 and log.stat().st_ino == before  # nothing dropped: not rewritten
    assert truncate_log(log, 0) == 3 and log.read_bytes() == b""


# -- _resume ---------------------------------------------------------------------------------


def test_resume_messages_for_no_checkpoint_corrupt_ones_and_none_restorable(tmp_path):
    messages = []
    out = tmp_path / "run"
    resume = training_loop._resume
    assert resume(config(tmp_path, resume=None), out, None, None, None, messages.append) == (0, [])
    assert messages == []
    assert resume(config(tmp_path, resume="latest"), out, None, None, None, messages.append) == (0, [])
    assert messages == ["no checkpoint to resume from; starting at step 0"]
    for step in (3, 6):
        folder = out / "checkpoints" / f"step_{step:07d}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{")  # the model folder is missing too
    messages.clear()
    with pytest.raises(CheckpointError) as e:
        resume(config(tmp_path, resume="latest"), out, None, None, None, messages.append)
    assert str(e.value) == (
        f"{out / 'checkpoints'}: none of the 2 checkpoint(s) can be restored; "
        "pass --resume FOLDER, or start a new --output-dir"
    )
    assert len(messages) == 2
    for message, step in zip(messages, (6, 3)):  # newest first
        assert message.startswith(f"skipping checkpoint {out / 'checkpoints' / f'step_{step:07d}'}: cannot restore")
        assert message.endswith("; trying the previous one")
    explicit = out / "checkpoints" / "step_0000003"
    with pytest.raises(CheckpointError) as e:  # an explicit folder is not skipped
        resume(config(tmp_path, resume=str(explicit)), out, None, None, None, messages.append)
    assert str(e.value).startswith(f"{explicit}: cannot restore checkpoint (")


def test_a_checkpoint_without_a_history_resumes_with_an_empty_one(tmp_path, monkeypatch):
    """Older checkpoints hold only the step; the run then appends to a fresh history."""
    out = tmp_path / "run"
    folder = out / "checkpoints" / "step_0000005"
    monkeypatch.setattr(training_loop, "load_checkpoint", lambda *args: {"step": 5})
    monkeypatch.setattr(training_loop, "complete_checkpoints", lambda run: [folder])
    for resume in ("latest", str(folder)):
        assert training_loop._resume(config(tmp_path, resume=resume), out, None, None, None, print) == (5, [])


# -- a whole run -----------------------------------------------------------------------------


def _fake_clock(monkeypatch, tick):
    """``time.perf_counter`` of the loop advancing by ``tick`` seconds per reading.

    Its origin is far from zero, as the real one's is arbitrary: only differences of readings mean anything.
    """
    readings = iter(range(10_000))
    monkeypatch.setattr(
        training_loop, "time", types.SimpleNamespace(perf_counter=lambda: 1000.0 + tick * next(readings))
    )


def _bar_texts(err):
    return [part.strip() for part in err.replace("\n", "\r").split("\r") if part.strip().startswith("train")]


def test_a_run_logs_its_steps_shows_one_bar_named_train_and_its_true_image_rate(tmp_path, monkeypatch, capsys):
    _fake_clock(monkeypatch, 0.25)  # 2 images per step every 0.25 s: 8 images/s
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".final{TMP_DIR_TAG}{DEAD_PID}-x"
    stale.mkdir()
    stale_log = out / f".log.jsonl{TMP_FILE_TAG}{DEAD_PID}-y"
    stale_log.write_text("partial")
    messages = []
    history = train(config(tmp_path, steps=3), log=messages.append)
    assert messages == [
        f"removed {stale_log.name}, left by an interrupted run",
        f"removed {stale.name}, left by an interrupted run",
        f"training on 3, skipped 0 ({tmp_path / 'data'})",
        f"saved EMA weights to {out / 'final'}",
    ]
    assert [r["step"] for r in history] == [1, 2, 3]
    assert [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] == history
    bars = _bar_texts(capsys.readouterr().err)
    assert bars and all(b.startswith("train: ") for b in bars)
    assert "3/3" in bars[-1]
    rates = [re.search(r"img_s=([0-9.]+)", b) for b in bars]
    assert [r[1] for r in rates if r] == ["8.0"] * (len(bars) - 1), bars  # all but the bar before step 1
    losses = [re.search(r"loss=([0-9.]+)", b) for b in bars]
    assert [m is not None for m in losses] == [False] + [True] * (len(bars) - 1), bars
    assert {m[1] for m in losses if m} == {f"{r['loss']:.4f}" for r in history}, bars
    assert sorted(p.name for p in out.iterdir()) == ["final", "log.jsonl"]


def test_a_fast_step_is_not_rounded_up_to_a_second_in_the_image_rate(tmp_path, monkeypatch, capsys):
    _fake_clock(monkeypatch, 0.001)
    train(config(tmp_path, steps=1), log=lambda _: None)
    bars = _bar_texts(capsys.readouterr().err)
    rates = [re.search(r"img_s=([0-9.]+)", b) for b in bars]
    assert {r[1] for r in rates if r} == {"2000.0"}, bars


def test_a_resumed_run_counts_its_bar_from_the_checkpoint_to_the_last_step(tmp_path, capsys):
    first = train(config(tmp_path, steps=2, checkpoint_every=1), log=lambda _: None)
    capsys.readouterr()
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / "step_0000001"
    messages = []
    again = train(config(tmp_path, steps=2, resume=str(checkpoint)), log=messages.append)
    assert messages[-3:] == [
        f"resumed from {checkpoint} at step 1",
        "log.jsonl: dropped 1 record(s) after step 1 (they are redone now)",
        f"saved EMA weights to {out / 'final'}",
    ]
    assert [r["step"] for r in again] == [1, 2] and again[0] == first[0]
    bars = _bar_texts(capsys.readouterr().err)
    assert bars[0].startswith("train:  50%") and "1/2 " in bars[0]
    assert bars[-1].startswith("train: 100%") and "2/2 " in bars[-1] and all("/2 " in b for b in bars)


def test_the_learning_rate_of_each_step_is_the_schedule_times_lr(tmp_path):
    history = train(config(tmp_path, steps=4, warmup_steps=2, lr=0.01, lr_min_ratio=0.3), log=lambda _: None)
    # warm-up 1/2 and 2/2, then the cosine at progress 0 and 1/2 of the remaining two steps
    want = [0.01 * 0.5, 0.01 * 1.0, 0.01 * 1.0, 0.01 * (0.3 + 0.7 * (1 + math.cos(math.pi / 2)) / 2)]
    assert [r["lr"] for r in history] == pytest.approx(want, abs=1e-12)
    assert want[3] == pytest.approx(0.0065)


def test_the_preview_shows_fixed_crops_of_the_training_images_beside_their_reconstruction(tmp_path):
    from diffusers_mdiffae.imaging import tensor_to_pil
    from diffusers_mdiffae.training import ImageFolderCrops, step_generator

    cfg = config(tmp_path, steps=1, preview_every=1, exclude=["p1.png"], scale_min=0.7, seed=5)
    messages = []
    train(cfg, log=messages.append)
    assert f"training on 2, skipped 0 ({tmp_path / 'data'})" in messages
    assert any(m.startswith("step 1: preview PSNR (EMA, 1-step) ") and m.endswith(" dB") for m in messages)
    preview = np.array(Image.open(tmp_path / "run" / "previews" / "step_0000001.png"))
    data = ImageFolderCrops(tmp_path / "data", crop=32, scale_range=(0.7, 1.0), exclude=["p1.png"], log=print)
    crops = data.batch(2, step_generator(5, -1, 0, 99))  # min(4, images): one row per image
    assert preview.shape == (64, 64, 3)
    assert np.array_equal(preview[:, :32], np.array(tensor_to_pil(torch.cat(list(crops), dim=-2))))


class _OtherProcess:
    """An accelerate.Accelerator that says whether it is the main process (and, if given, how many processes
    there are), recording its arguments."""

    made = []

    @classmethod
    def make(cls, base, main, num_processes=None):
        class Accelerator(base):
            def __init__(self, **kw):
                cls.made.append(kw)
                super().__init__(**kw)

            @property
            def is_main_process(self):
                return main

            @property
            def num_processes(self):
                return super().num_processes if num_processes is None else num_processes

        return Accelerator


def test_a_process_that_is_not_the_main_one_trains_silently_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import accelerate

    monkeypatch.setattr(accelerate, "Accelerator", _OtherProcess.make(accelerate.Accelerator, False))
    messages = []
    history = train(config(tmp_path, steps=2, checkpoint_every=1, preview_every=1), log=messages.append)
    assert [r["step"] for r in history] == [1, 2]
    assert messages == [] and capsys.readouterr().err == ""  # no bar, no message
    assert not (tmp_path / "run").exists()


def test_the_image_rate_counts_the_images_of_every_process(tmp_path, monkeypatch, capsys):
    import accelerate

    monkeypatch.setattr(accelerate, "Accelerator", _OtherProcess.make(accelerate.Accelerator, True, num_processes=2))
    _fake_clock(monkeypatch, 0.25)  # 2 images per step on each of 2 processes every 0.25 s: 16 images/s
    train(config(tmp_path, steps=2), log=lambda _: None)
    bars = _bar_texts(capsys.readouterr().err)
    rates = [re.search(r"img_s=([0-9.]+)", b) for b in bars]
    assert {r[1] for r in rates if r} == {"16.0"}, bars


def test_without_cuda_the_run_asks_accelerate_for_the_cpu_and_the_configured_precision(tmp_path, monkeypatch):
    import accelerate

    _OtherProcess.made.clear()
    monkeypatch.setattr(accelerate, "Accelerator", _OtherProcess.make(accelerate.Accelerator, True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train(config(tmp_path, steps=1), log=lambda _: None)
    assert _OtherProcess.made == [{"mixed_precision": "no", "cpu": True}]


def test_each_step_draws_its_batch_and_its_loss_noise_from_the_generator_of_seed_step_and_process(
    tmp_path, monkeypatch
):
    from diffusers_mdiffae.training import ImageFolderCrops, step_generator

    seen = []
    real = training_loop.diffusion_loss

    def recording(vae, images, generator, objective):
        seen.append((images.clone(), generator.get_state()))
        return real(vae, images, generator, objective)

    monkeypatch.setattr(training_loop, "diffusion_loss", recording)
    torch.manual_seed(123)  # the global generator plays no part
    train(config(tmp_path, steps=2, seed=7), log=lambda _: None)
    data = ImageFolderCrops(tmp_path / "data", crop=32, scale_range=(0.5, 1.0), log=lambda _: None)
    assert len(seen) == 2
    for step, (images, state) in enumerate(seen):
        g = step_generator(7, step, 0)
        assert torch.equal(images, data.batch(2, g))
        assert torch.equal(state, g.get_state())  # the loss draws next from the same generator


def test_the_last_step_gets_a_preview_off_the_schedule_and_its_checkpoint_holds_the_whole_run_config(
    tmp_path, monkeypatch
):
    from dataclasses import asdict

    handed = []
    real = training_loop.save_checkpoint

    def recording(folder, model, ema, optimizer, trainer_state):
        handed.append(type(optimizer))
        return real(folder, model, ema, optimizer, trainer_state)

    monkeypatch.setattr(training_loop, "save_checkpoint", recording)
    cfg = config(tmp_path, steps=3, preview_every=2, checkpoint_every=2)
    history = train(cfg, log=lambda _: None)
    out = tmp_path / "run"
    # step 2 is on the schedule, step 3 is the last one; step 1 is neither
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_0000002.png", "step_0000003.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    state = json.loads((out / "checkpoints" / "step_0000003" / "trainer_state.json").read_text())
    assert state == {"step": 3, "history": history, "config": asdict(cfg)}
    # accelerate's wrapper is not a torch optimizer: the checkpoint gets the AdamW inside it
    assert handed == [torch.optim.AdamW, torch.optim.AdamW]


class _Accelerator:
    """What the loop's per-step helpers use of accelerate.Accelerator, on a chosen process and device."""

    is_main_process = True

    def __init__(self, process_index=0, device="cpu"):
        self.process_index = process_index
        self.device = torch.device(device)

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()

    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, parameters, max_norm):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def unwrap_model(self, module):
        return module

    def wait_for_everyone(self):
        pass


def test_a_step_draws_its_batch_for_its_own_process_moves_it_to_the_device_and_frees_the_gradients():
    from diffusers_mdiffae.training import step_generator
    from diffusers_mdiffae.training.state import EMA

    seen = {}

    class Data:
        def batch(self, n, generator):
            seen["batch"] = (n, generator.get_state())
            return torch.zeros(n, 3, 16, 16)

    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = torch.nn.Linear(2, 2)

        def forward(self, images, generator):
            seen["device"] = images.device
            return self.vae.weight.sum(), {"mse": 0.0}

    module = Module()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    cfg = TrainConfig(data="d", output_dir="o", seed=7, batch_size=2)
    accelerator = _Accelerator(process_index=3, device="meta")  # meta: a device the batch is not made on
    training_loop._optimize_step(module, optimizer, accelerator, EMA(module.vae), Data(), 5, cfg)
    n, state = seen["batch"]
    assert n == 2 and torch.equal(state, step_generator(7, 5, 3).get_state())
    assert not torch.equal(state, step_generator(7, 5, 0).get_state())  # the process index matters
    assert seen["device"] == torch.device("meta")
    # set to None, not zeroed: no gradient memory is held between steps
    assert [p.grad for p in module.parameters()] == [None, None]


def test_a_checkpoint_gets_a_plain_optimizer_as_it_is_and_the_one_inside_a_wrapper(tmp_path, monkeypatch):
    handed = []
    monkeypatch.setattr(training_loop, "save_checkpoint", lambda folder, model, ema, opt, state: handed.append(opt))
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    wrapper = types.SimpleNamespace(optimizer=plain)  # accelerate's AcceleratedOptimizer keeps it there
    module = types.SimpleNamespace(vae="the model")
    cfg = TrainConfig(data="d", output_dir="o", steps=4, checkpoint_every=1, preview_every=0)
    for optimizer in (plain, wrapper):
        training_loop._after_step(1, cfg, _Accelerator(), module, optimizer, None, [], None, tmp_path, print)
    assert len(handed) == 2 and all(opt is plain for opt in handed)


def test_the_bar_follows_the_terminal_width_when_it_is_resized_during_a_run(tmp_path, monkeypatch, capfd):
    import os

    width = [60]
    # capfd gives the bar a real file descriptor; its terminal size is what this says
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((width[0], 20)))
    real = training_loop._optimize_step

    def widening(*args):
        width[0] = 100
        return real(*args)

    monkeypatch.setattr(training_loop, "_optimize_step", widening)
    train(config(tmp_path, steps=2), log=lambda _: None)
    bars = _bar_texts(capfd.readouterr().err)
    # tqdm leaves the last column free
    assert [len(b) for b in bars] == [59] + [99] * (len(bars) - 1), bars


def test_each_step_records_its_step_loss_mse_and_learning_rate(tmp_path, monkeypatch):
    returned = []
    real = training_loop.diffusion_loss

    def recording(vae, images, generator, objective):
        loss, stats = real(vae, images, generator, objective)
        returned.append((loss.item(), stats["mse"]))
        return loss, stats

    monkeypatch.setattr(training_loop, "diffusion_loss", recording)
    history = train(config(tmp_path, steps=2, warmup_steps=2, lr=0.01), log=lambda _: None)
    (loss1, mse1), (loss2, mse2) = returned
    assert history == [
        {"step": 1, "loss": loss1, "mse": mse1, "lr": 0.005},
        {"step": 2, "loss": loss2, "mse": mse2, "lr": 0.01},
    ]
    assert [list(r) for r in history] == [["step", "loss", "mse", "lr"]] * 2  # the key order of log.jsonl


def test_a_run_trains_on_crops_with_the_configured_channel_shuffle_and_colour_jitter(tmp_path, monkeypatch):
    from diffusers_mdiffae.training import ImageFolderCrops, step_generator

    seen = []
    real = training_loop.diffusion_loss

    def recording(vae, images, generator, objective):
        seen.append(images.clone())
        return real(vae, images, generator, objective)

    monkeypatch.setattr(training_loop, "diffusion_loss", recording)
    train(config(tmp_path, steps=1, seed=3, permute_channels=True, color_jitter=0.4), log=lambda _: None)

    def crops(**kw):
        data = ImageFolderCrops(tmp_path / "data", crop=32, scale_range=(0.5, 1.0), log=lambda _: None, **kw)
        return data.batch(2, step_generator(3, 0, 0))

    assert len(seen) == 1 and torch.equal(seen[0], crops(permute_channels=True, color_jitter=0.4))
    # each setting alone changes these crops, so neither can go missing unnoticed
    assert not torch.equal(seen[0], crops(permute_channels=True))
    assert not torch.equal(seen[0], crops(color_jitter=0.4))


def test_an_init_checkpoint_is_loaded_in_float32_whatever_the_process_default_dtype(tmp_path):
    from fixtures.models import make_tiny

    init = tmp_path / "init"
    saved = make_tiny(seed=4).to(torch.bfloat16)
    saved.save_pretrained(init)
    with default_dtype(torch.float64):  # a script may set it; the trained weights stay float32
        model = training_loop._build_model(config(tmp_path, init=str(init)))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(torch.equal(p, q.float()) for p, q in zip(model.parameters(), saved.parameters()))
    assert model.training


def test_with_an_ema_decay_of_zero_the_final_weights_are_those_of_the_last_step(tmp_path):
    from diffusers_mdiffae import AutoencoderMDiffAE

    train(config(tmp_path, steps=2, checkpoint_every=2, ema_decay=0.0), log=lambda _: None)
    out = tmp_path / "run"
    final = AutoencoderMDiffAE.from_pretrained(out / "final").state_dict()
    last = AutoencoderMDiffAE.from_pretrained(out / "checkpoints" / "step_0000002" / "model").state_dict()
    assert final.keys() == last.keys()
    assert all(torch.equal(v, last[k]) for k, v in final.items())


def test_the_optimizer_uses_betas_0_9_and_0_99_and_the_configured_weight_decay(tmp_path):
    from safetensors import safe_open

    train(config(tmp_path, steps=1, checkpoint_every=1, weight_decay=0.25), log=lambda _: None)
    written = tmp_path / "run" / "checkpoints" / "step_0000001" / "optimizer.safetensors"
    with safe_open(str(written), "pt") as f:
        [group] = json.loads(f.metadata()["meta"])["param_groups"]
    assert (group["betas"], group["weight_decay"]) == ([0.9, 0.99], 0.25)


def test_the_preview_shows_at_most_four_crops(tmp_path):
    cfg = config(tmp_path, steps=1, preview_every=1)
    for i in range(3, 6):
        photo(tmp_path / "data" / f"p{i}.png", 48, 48, seed=i)
    train(cfg, log=lambda _: None)
    preview = Image.open(tmp_path / "run" / "previews" / "step_0000001.png")
    assert preview.size == (64, 4 * 32)  # four of the six images, each crop beside its reconstruction


def test_a_run_creates_its_output_folder_with_any_missing_parents(tmp_path):
    out = tmp_path / "runs" / "tiny" / "run"
    train(config(tmp_path, steps=1, output_dir=str(out)), log=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == ["final", "log.jsonl"]
