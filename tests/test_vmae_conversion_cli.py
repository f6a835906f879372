"""The VMAE ``.pth`` branch of ``python -m diffusers_mdiffae.conversion``, latent statistics files and
the model's latent normalisation / forward options, pinned by what a user sees (in-process, tiny models)."""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fixtures.dtypes import default_dtype
from safetensors import safe_open

import diffusers_mdiffae.metrics
from diffusers_mdiffae import AutoencoderVMAE
from diffusers_mdiffae.conversion.cli import main as convert_main
from diffusers_mdiffae.conversion.layouts import CheckpointError
from diffusers_mdiffae.conversion.vmae_pth import load_latent_stats
from diffusers_mdiffae.verify import load_sample_image
from tests.fixtures.models import write_vmae_pth

SIZE = 32  # not the sample photo's 256, so the conversion resizes it
TINY = {"img_size": SIZE, "embed_dim": 24, "depth": 1, "num_heads": 12, "decoder_embed_dim": 24}
TINY.update(decoder_depth=1, decoder_num_heads=12, latent_dim=4)
REFUSAL_TAIL = (
    ". A VMAE checkpoint needs only tensors, plain containers and argparse.Namespace; anything else could run "
    "code on this machine, so the file was not loaded and nothing in it ran. If you trust its origin, re-save "
    "just the weights from trusted code, e.g. torch.save(checkpoint['model'], 'weights.pth'), or convert them "
    "to safetensors"
)


def tiny(**config) -> AutoencoderVMAE:
    torch.manual_seed(0)
    return AutoencoderVMAE(**{**TINY, **config}).eval()


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    """A tiny VMAE as LDMAE saves it; its stored factory name gives the head counts (no CLI flags needed)."""
    return write_vmae_pth(tiny(), tmp_path_factory.mktemp("vmae") / "vmaef8d16.pth")


@pytest.fixture(scope="module")
def sample():
    """The sample photo as the conversion feeds it to a 32 px model, and that model's PSNR on it."""
    x = load_sample_image()
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
    with torch.no_grad():
        value = diffusers_mdiffae.metrics.psnr(tiny()(x).sample, x)
    return x, value


def _warning(value: float, bar: float) -> str:
    return (
        f"{'!' * 78}\nWARNING: {value:.2f} dB is implausibly low for a trained VMAE (expected > {bar:.0f} dB).\n"
        f"Check the head counts (--num-heads / --decoder-num-heads) and the checkpoint.\n{'!' * 78}\n"
    )


# -- python -m diffusers_mdiffae.conversion model.pth OUT ------------------------------------------


def test_cli_prints_the_load_the_sample_psnr_and_the_folder_and_warns_below_20_db(pth, sample, tmp_path, capsys):
    out = tmp_path / "out"
    assert convert_main([str(pth), str(out)]) == 0  # head counts from the stored factory name
    captured = capsys.readouterr()
    n = tiny().num_parameters()
    assert captured.out == (
        f"loaded {pth}: AutoencoderVMAE, {n:,} values, every tensor matched; dropped 0 training-only tensor(s)\n"
        f"sample image PSNR (32x32, posterior mean, float32): {sample[1]:.2f} dB\n"
        f"wrote {out}\n"
    )
    assert sample[1] < 20  # random weights: the warning is due, on stderr, with the default bar
    assert captured.err == _warning(sample[1], 20.0)
    assert AutoencoderVMAE.from_pretrained(out).config.num_heads == 12


def test_cli_resizes_the_sample_photo_with_antialiased_bicubic_clamped_to_the_image_range(
    pth, sample, tmp_path, monkeypatch
):
    seen = []
    real = diffusers_mdiffae.metrics.psnr
    monkeypatch.setattr(diffusers_mdiffae.metrics, "psnr", lambda a, b: seen.append(b) or real(a, b))
    assert convert_main([str(pth), str(tmp_path / "out")]) == 0
    (x,) = seen
    assert torch.equal(x, sample[0]) and x.min() == -1 and x.max() == 1  # bicubic overshoots on both sides


def test_min_psnr_sets_the_warning_bar_and_a_value_exactly_at_it_is_not_warned(pth, sample, tmp_path, capsys):
    value = sample[1]
    assert convert_main([str(pth), str(tmp_path / "a"), "--min-psnr", repr(value)]) == 0
    assert capsys.readouterr().err == ""
    assert convert_main([str(pth), str(tmp_path / "b"), "--min-psnr", "33"]) == 0
    assert capsys.readouterr().err == _warning(value, 33.0)


def test_dropped_training_tensors_are_counted_and_their_groups_named(tmp_path, capsys):
    state = {**tiny().state_dict(), "perceptual_loss.net.w": torch.zeros(2), "perceptual_loss.lin.w": torch.zeros(2)}
    state["mask_token"] = torch.zeros(1, 1, 24)

    args = argparse.Namespace(model="mae_for_ldmae_f8d16_prev", input_size=SIZE, smooth_output=True, no_cls=True)
    torch.save({"model": state, "args": args}, tmp_path / "c.pth")
    assert convert_main([str(tmp_path / "c.pth"), str(tmp_path / "out")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("dropped 3 training-only tensor(s) (mask_token, perceptual_loss)")


def test_cli_replaces_an_existing_folder_only_with_overwrite(pth, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker").write_text("old")
    assert convert_main([str(pth), str(out)]) == 2
    assert capsys.readouterr().err == f"error: {out}: exists; pass --overwrite to replace it\n"
    assert (out / "marker").is_file()
    assert convert_main([str(pth), str(out), "--overwrite"]) == 0
    assert capsys.readouterr().out.endswith(f"wrote {out}\n")
    assert sorted(p.name for p in out.iterdir()) == [
        "LICENSE_NOTE.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind


def test_cli_saves_the_requested_dtype(pth, tmp_path):
    assert convert_main([str(pth), str(tmp_path / "out"), "--dtype", "bfloat16"]) == 0
    with safe_open(str(tmp_path / "out" / "diffusion_pytorch_model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118


def test_verify_is_refused_for_a_pth_with_the_reason(pth, tmp_path, capsys):
    assert convert_main([str(pth), str(tmp_path / "out"), "--verify"]) == 2
    assert capsys.readouterr().err == (
        f"error: {pth}: --verify needs the original code, which a .pth does not ship; the re-implementation's "
        "parity is pinned by tests/test_vmae.py against a fixture made with LDMAE's code\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_mismatching_pth_is_refused_naming_the_file_and_its_entry(tmp_path, capsys):
    pth = tmp_path / "extra.pth"
    torch.save({"model": {**tiny().state_dict(), "extra.weight": torch.zeros(2)}}, pth)
    assert convert_main([str(pth), str(tmp_path / "out"), "--num-heads", "12", "--decoder-num-heads", "12"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pth} (entry 'model') does not match AutoencoderVMAE({{")
    assert "extra.weight" in err and err.endswith("; nothing written\n") and not (tmp_path / "out").exists()


def test_a_bad_latent_stats_file_is_refused_and_nothing_written(pth, tmp_path, capsys):
    stats = tmp_path / "latents_stats.pt"
    torch.save({"mean": torch.zeros(4)}, stats)
    assert convert_main([str(pth), str(tmp_path / "out"), "--latent-stats", str(stats)]) == 1
    assert capsys.readouterr().err == (
        f"error: {stats}: expected a dict with tensors 'mean' and 'std' (LDMAE's latents_stats.pt); nothing written\n"
    )
    assert not (tmp_path / "out").exists()


# -- latents_stats.pt ------------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_latent_stats_that_would_run_code_are_refused_and_never_run(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "latents_stats.pt"
    torch.save({"mean": torch.zeros(4), "std": torch.ones(4), "x": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_latent_stats(path)
    assert str(info.value) == f"{path}: refused to unpickle: it references ['{os.name}.system']" + REFUSAL_TAIL
    assert not marker.exists()


def test_latent_stats_with_another_global_are_refused_with_the_whole_explanation(tmp_path):
    path = tmp_path / "latents_stats.pt"
    torch.save({"mean": torch.zeros(4), "std": torch.ones(4), "when": datetime.date(2024, 1, 1)}, path)
    with pytest.raises(CheckpointError) as info:
        load_latent_stats(path)
    assert str(info.value) == f"{path}: refused to unpickle: it references ['datetime.date']" + REFUSAL_TAIL


def test_an_empty_latent_stats_file_is_refused_naming_the_error(tmp_path):
    path = tmp_path / "latents_stats.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        load_latent_stats(path)
    assert str(info.value) == f"{path}: cannot read it as a torch file (EOFError: )"


# -- the model: latent normalisation and forward ---------------------------------------------------


def test_without_latent_stats_normalize_is_shift_then_scale_in_float32():
    m = tiny(shift_factor=0.5, scaling_factor=2.0)
    z = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    got = m.normalize_latents(z)
    assert got.dtype == torch.float32 and torch.equal(got, (z.float() - 0.5) * 2.0)
    back = m.denormalize_latents(got)
    assert back.dtype == torch.float32 and torch.equal(back, got / 2.0 + 0.5)


def test_with_latent_stats_normalize_divides_by_std_then_scales():
    m = tiny(latents_mean=[0.0, 1.0, 2.0, 3.0], latents_std=[1.0, 2.0, 4.0, 8.0], scaling_factor=2.0)
    z = torch.randn(1, 4, 2, 2)
    mean, std = torch.arange(4.0).view(1, 4, 1, 1), torch.tensor([1.0, 2.0, 4.0, 8.0]).view(1, 4, 1, 1)
    assert torch.allclose(m.normalize_latents(z), (z - mean) / std * 2.0)
    assert torch.allclose(m.denormalize_latents(z), z * std / 2.0 + mean)


def test_normalisation_is_float32_even_under_a_float64_default_dtype():
    m = tiny(latents_mean=[0.0, 1.0, 2.0, 3.0], latents_std=[1.0, 2.0, 4.0, 8.0])
    plain = tiny()
    with default_dtype(torch.float64):
        z = torch.randn(1, 4, 2, 2)
        for model in (m, plain):
            assert model.normalize_latents(z).dtype == torch.float32
            assert model.denormalize_latents(z).dtype == torch.float32


def test_forward_samples_the_posterior_with_the_given_generator_and_honours_return_dict():
    m = tiny()
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    with torch.no_grad():
        dist = m.encode(x).latent_dist
        mean_rec = m.decode(dist.mode()).sample
        want = m.decode(dist.sample(generator=torch.Generator().manual_seed(3))).sample
        got = m(x, sample_posterior=True, generator=torch.Generator().manual_seed(3)).sample
        assert torch.equal(got, want) and not torch.equal(got, mean_rec)
        assert torch.equal(m(x).sample, mean_rec)
        out = m(x, return_dict=False)
    assert isinstance(out, tuple) and torch.equal(out[0], mean_rec)
