"""Training: the published objective's pieces, exact resume, and robust image folders."""

import numpy as np
import pytest
import torch
from fixtures.models import TINY, make_tiny, write_odd_images
from PIL import Image

from diffusers_mdiffae.training import (
    EMA,
    ImageFolderCrops,
    ObjectiveConfig,
    TrainConfig,
    diffusion_loss,
    latest_checkpoint,
    step_generator,
    train,
)
from diffusers_mdiffae.training.objective import beta22


def write_photos(folder, n=3, size=48):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + 8 * i, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def tiny_config(tmp_path, **kw):
    data = write_photos(tmp_path / "data")
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


def test_resumed_run_has_the_same_loss_curve_as_an_uninterrupted_one(tmp_path):
    full = train(tiny_config(tmp_path / "a"), log=lambda _: None)
    first = train(tiny_config(tmp_path / "b", steps=6), log=lambda _: None)  # noqa: F841 (writes checkpoints)
    # Restart the second run from its step-3 checkpoint, as if it had been killed after it.
    cfg = tiny_config(tmp_path / "b", resume=str(tmp_path / "b" / "run" / "checkpoints" / "step_0000003"))
    resumed = train(cfg, log=lambda _: None)
    assert [r["step"] for r in resumed] == list(range(1, 7))
    assert np.allclose([r["loss"] for r in resumed], [r["loss"] for r in full], rtol=0, atol=1e-6)


def test_training_writes_checkpoints_and_a_loadable_final_model(tmp_path):
    from diffusers_mdiffae import AutoencoderMDiffAE

    cfg = tiny_config(tmp_path, preview_every=3)
    history = train(cfg, log=lambda _: None)
    run = tmp_path / "run"
    assert len(history) == 6 and all(np.isfinite(r["loss"]) for r in history)
    assert latest_checkpoint(run).name == "step_0000006"
    assert sorted(p.name for p in (run / "checkpoints" / "step_0000006").iterdir()) == [
        "ema.safetensors",
        "model",
        "optimizer.safetensors",
        "trainer_state.json",
    ]
    assert (run / "previews" / "step_0000003.png").is_file()
    model = AutoencoderMDiffAE.from_pretrained(run / "final")
    assert model.config.model_dim == TINY["model_dim"]
    assert len((run / "log.jsonl").read_text().splitlines()) == 6


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    messages = []
    history = train(tiny_config(tmp_path, steps=2, resume="latest", checkpoint_every=0), log=messages.append)
    assert len(history) == 2 and any("starting at step 0" in m for m in messages)


def test_fine_tuning_starts_from_init_weights(tmp_path):
    init = tmp_path / "init"
    make_tiny(seed=4).save_pretrained(init)
    cfg = tiny_config(tmp_path, init=str(init), steps=1, checkpoint_every=0, lr=0.0, warmup_steps=1)
    train(cfg, log=lambda _: None)
    from diffusers_mdiffae import AutoencoderMDiffAE

    final = AutoencoderMDiffAE.from_pretrained(tmp_path / "run" / "final")
    ref = make_tiny(seed=4)
    assert all(torch.allclose(a, b) for a, b in zip(final.state_dict().values(), ref.state_dict().values()))


def test_odd_image_files_are_handled_with_a_message_each(tmp_path):
    folder = write_odd_images(write_photos(tmp_path / "mixed", n=1))
    messages = []
    data = ImageFolderCrops(folder, crop=32, log=messages.append)
    assert sorted(p.name for p in data.paths) == ["deep16.png", "gray.png", "p0.png", "rgba.png"]
    text = "\n".join(messages)
    assert "corrupt.png: cannot read image" in text
    assert "gray.png: grayscale image converted to RGB" in text
    assert "rgba.png: alpha channel composited onto white" in text
    assert "deep16.png" in text and "16-bit" in text
    batch = data.batch(4, step_generator(0, 0))
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1


def test_folder_without_usable_images_is_an_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="no usable images"):
        ImageFolderCrops(tmp_path, crop=32, log=lambda _: None)


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    data = ImageFolderCrops(write_photos(tmp_path / "d"), crop=32, log=lambda _: None)
    a = data.batch(3, step_generator(1, 5))
    b = data.batch(3, step_generator(1, 5))
    c = data.batch(3, step_generator(1, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_color_jitter_is_optional_deterministic_and_keeps_gray_gray(tmp_path):
    folder = write_photos(tmp_path / "d")
    Image.fromarray(np.full((48, 48), 90, np.uint8), "L").save(folder / "gray.png")
    plain = ImageFolderCrops(folder, crop=32, log=lambda _: None)
    off = ImageFolderCrops(folder, crop=32, log=lambda _: None, color_jitter=0.0)
    on = ImageFolderCrops(folder, crop=32, log=lambda _: None, color_jitter=0.3)
    assert torch.equal(plain.batch(4, step_generator(2, 3)), off.batch(4, step_generator(2, 3)))
    a, b = on.batch(4, step_generator(2, 3)), on.batch(4, step_generator(2, 3))
    assert torch.equal(a, b) and not torch.equal(a, plain.batch(4, step_generator(2, 3)))
    assert a.min() >= -1 and a.max() <= 1
    gray = on.crop_one(on.paths.index(folder / "gray.png"), torch.Generator().manual_seed(1))
    assert torch.allclose(gray[0], gray[1], atol=1e-5) and torch.allclose(gray[1], gray[2], atol=1e-5)
    assert not torch.allclose(
        gray, plain.crop_one(plain.paths.index(folder / "gray.png"), torch.Generator().manual_seed(1))
    )
    with pytest.raises(ValueError, match="color_jitter"):
        ImageFolderCrops(folder, crop=32, log=lambda _: None, color_jitter=1.5)


def test_beta22_has_the_right_moments():
    x = beta22(20000, torch.Generator().manual_seed(0))
    assert abs(float(x.mean()) - 0.5) < 0.01 and abs(float(x.var()) - 0.05) < 0.005


def test_loss_uses_masking_and_latent_noise_and_is_differentiable():
    model = make_tiny().train()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    cfg = ObjectiveConfig(token_mask_prob=1.0, latent_noise_prob=1.0)
    loss, stats = diffusion_loss(model, x, torch.Generator().manual_seed(0), cfg)
    loss.backward()
    assert torch.isfinite(loss) and stats["mse"] > 0
    assert model.decoder.mask_feature.grad is not None and model.decoder.mask_feature.grad.abs().sum() > 0
    assert model.encoder.patchify.proj.weight.grad is not None


def test_ema_tracks_parameters():
    model = make_tiny()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    target = make_tiny()
    ema.copy_to(target)
    assert not torch.equal(target.decoder.fuse_in.weight, model.decoder.fuse_in.weight)
