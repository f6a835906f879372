"""AutoencoderVMAE (LDMAE's VMAE): parity with the original through a synthetic ``.pth``, safe loading, checks.

The parity reference is ``tests/fixtures/parity/vmae.safetensors``, made by running LDMAE's own
``MaskedAutoencoderViT`` (see ``make_vmae_fixture.py``). Each test writes the ``.pth`` the original
training script would have written (``misc.save_model``'s dict: model state with the LPIPS tensors
attached, optimizer, epoch, scaler, an ``argparse.Namespace`` of args) from the fixture's state dict.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from safetensors import safe_open

import diffusers_mdiffae  # noqa: F401  (diffusers resolves the saved class name from sys.modules)
from diffusers_mdiffae import AutoencoderVMAE
from diffusers_mdiffae.conversion.cli import main as convert_main
from diffusers_mdiffae.conversion.layouts import CheckpointError
from diffusers_mdiffae.conversion.vmae_pth import (
    config_from_state_dict,
    convert_vmae_pth,
    load_vmae_pth,
    read_vmae_pth,
    select_state_dict,
    strip_training_keys,
)

FIXTURE = Path(__file__).parent / "fixtures" / "parity" / "vmae.safetensors"
PARITY_ATOL = 1e-5
HEADS = {"num_heads": 2, "decoder_num_heads": 4}  # the fixture's (not a published factory's)


@pytest.fixture(scope="module")
def fixture():
    with safe_open(str(FIXTURE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        meta = f.metadata()
    state = {k: v for k, v in tensors.items() if not k.startswith("case.")}
    cases = {k: v for k, v in tensors.items() if k.startswith("case.")}
    return state, cases, meta


def lpips_junk():
    """Stand-ins for the LPIPS tensors LDMAE's training attaches under ``perceptual_loss.``."""
    g = torch.Generator().manual_seed(1)
    return {
        "perceptual_loss.scaling_layer.shift": torch.randn(1, 3, 1, 1, generator=g),
        "perceptual_loss.scaling_layer.scale": torch.randn(1, 3, 1, 1, generator=g),
        "perceptual_loss.net.slice1.0.weight": torch.randn(64, 3, 3, 3, generator=g),
        "perceptual_loss.net.slice1.0.bias": torch.randn(64, generator=g),
        "perceptual_loss.lin0.model.1.weight": torch.randn(1, 64, 1, 1, generator=g),
    }


def write_pth(path: Path, state: dict, model_name: str = "vmae_fixture_tiny", **extra_model) -> Path:
    """A training checkpoint laid out as LDMAE's ``misc.save_model`` writes it."""
    model_state = {**state, **lpips_junk(), **extra_model}
    param = torch.zeros(3)
    optimizer = torch.optim.AdamW([param], lr=1e-4)
    param.grad = torch.ones(3)
    optimizer.step()
    args = argparse.Namespace(
        model=model_name,
        input_size=32,
        smooth_output=True,
        pred_with_conv=False,
        no_cls=True,
        kl_loss_weight=1e-6,
        perceptual_loss_ratio=1.0,
        output_dir="./output_dir",
        lr=None,
        blr=1e-3,
        seed=0,
    )
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }
    payload = {"model": model_state, "optimizer": optimizer.state_dict(), "epoch": 7, "scaler": scaler, "args": args}
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def pth(fixture, tmp_path_factory):
    return write_pth(tmp_path_factory.mktemp("vmae") / "checkpoint-7.pth", fixture[0])


@pytest.fixture(scope="module")
def model(pth):
    return AutoencoderVMAE.from_pretrained(pth, **HEADS)


def _report(name: str, got: torch.Tensor, want: torch.Tensor) -> float:
    assert got.shape == want.shape, name
    diff = (got - want).abs().max().item()
    print(f"parity {name}: max |ours - original| = {diff:.3e}{' (bit-exact)' if torch.equal(got, want) else ''}")
    assert diff <= PARITY_ATOL, (name, diff)
    return diff


# -- parity ---------------------------------------------------------------------------------------


def test_pth_converts_and_encodes_like_the_original(model, fixture):
    _, cases, _ = fixture
    x = cases["case.encode.images"]
    with torch.no_grad():
        moments = model.encode_moments(x)
        dist = model.encode(x).latent_dist
        sample = dist.sample(generator=torch.Generator().manual_seed(99))
    assert isinstance(dist, DiagonalGaussianDistribution)
    assert dist.mode().shape == (2, 4, 4, 4)
    _report("encode.moments", moments, cases["case.encode.moments"])
    _report("encode.latents (mode)", dist.mode(), cases["case.encode.latents"])
    _report("encode.std (clamped logvar)", dist.std, cases["case.encode.std"])
    _report("encode.sample (seed 99)", sample, cases["case.encode.sample"])


def test_pth_converts_and_decodes_like_the_original(model, fixture):
    _, cases, _ = fixture
    with torch.no_grad():
        out = model.decode(cases["case.decode.latents"])
        roundtrip = model(cases["case.encode.images"]).sample
    assert isinstance(out, DecoderOutput) and out.sample.shape == (2, 3, 32, 32)
    _report("decode.images", out.sample, cases["case.decode.images"])
    _report("roundtrip.images", roundtrip, cases["case.roundtrip.images"])


def test_config_is_read_from_the_tensors_with_the_original_names(model, fixture):
    _, _, meta = fixture
    original = json.loads(meta["config"])
    for key in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "decoder_embed_dim"):
        assert model.config[key] == original[key], key
    for key in ("decoder_depth", "decoder_num_heads", "mlp_ratio", "norm_layer_eps", "latent_dim"):
        assert model.config[key] == original[key], key
    assert model.latent_channels == 4 and model.spatial_compression_ratio == 8
    assert (model.config.scaling_factor, model.config.shift_factor, model.config.latents_mean) == (1.0, 0.0, None)
    assert not model.training and not model.pos_embed.requires_grad


def test_published_configuration_has_the_published_tensor_count():
    with torch.device("meta"):
        m = AutoencoderVMAE()
    state = m.state_dict()
    assert len(state) == 306 and sum(v.numel() for v in state.values()) == 11_191_412
    assert state["pos_embed"].shape == (1, 1024, 192) and state["to_latent.weight"].shape == (32, 192)


def test_training_only_tensors_are_dropped_and_the_args_kept(pth):
    ckpt = read_vmae_pth(pth)
    assert ckpt.entry == "model" and ckpt.args["model"] == "vmae_fixture_tiny"
    assert ckpt.dropped == sorted(lpips_junk())
    assert not any(k.startswith("perceptual_loss.") for k in ckpt.state_dict)


def test_stage1_mask_token_is_tolerated(fixture, tmp_path):
    path = write_pth(tmp_path / "stage1.pth", fixture[0], mask_token=torch.zeros(1, 1, 32))
    assert "mask_token" in read_vmae_pth(path).dropped
    load_vmae_pth(path, **HEADS)


def test_published_factory_name_gives_the_head_counts(fixture):
    state = strip_training_keys(fixture[0])[0]
    config = config_from_state_dict(state, {"model": "mae_for_ldmae_f8d16_prev"})
    assert (config["num_heads"], config["decoder_num_heads"]) == (12, 12)


def test_unknown_factory_without_head_counts_is_refused_with_the_fix(pth):
    with pytest.raises(CheckpointError, match="vmae_fixture_tiny.*num_heads=... and decoder_num_heads"):
        load_vmae_pth(pth)


# -- strictness -----------------------------------------------------------------------------------


def test_missing_tensor_is_named(fixture, tmp_path):
    state = dict(fixture[0])
    del state["decoder_blocks.1.attn.proj.bias"]
    path = write_pth(tmp_path / "missing.pth", state)
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint:\s+decoder_blocks\.1\.attn\.proj\.bias"):
        load_vmae_pth(path, **HEADS)


def test_unexpected_tensor_is_named(fixture, tmp_path):
    path = write_pth(tmp_path / "extra.pth", fixture[0], **{"head.weight": torch.zeros(10, 4)})
    with pytest.raises(CheckpointError, match=r"match no model tensor:\s+head\.weight  \[10, 4\]"):
        load_vmae_pth(path, **HEADS)


def test_wrong_head_count_fails_loudly_not_silently(pth):
    with pytest.raises(CheckpointError, match="divisible by num_heads"):
        load_vmae_pth(pth, num_heads=3, decoder_num_heads=4)


def test_nonfinite_weights_are_named(fixture, tmp_path):
    state = dict(fixture[0])
    state["norm.weight"] = state["norm.weight"].clone()
    state["norm.weight"][0] = float("nan")
    path = write_pth(tmp_path / "nan.pth", state)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values:\s+norm\.weight"):
        load_vmae_pth(path, **HEADS)


def test_unsupported_variant_is_named():
    state = {"cls_token": torch.zeros(1, 1, 8), "patch_embed.proj.weight": torch.zeros(8, 3, 8, 8)}
    with pytest.raises(CheckpointError, match="class token"):
        config_from_state_dict(state, None, HEADS)


def _z(*shape):
    return torch.zeros(*shape)


@pytest.mark.parametrize(
    "state, problem",
    [
        ({"cls_token": _z(1, 1, 8)}, "it has a class token (trained with no_cls=False)"),
        (
            {"to_latent.layers.0.weight": _z(4, 8)},
            "its latent maps are MLPs (a down_nonlinear factory such as mae_for_ldmae_f8d16)",
        ),
        (
            {"from_latent.layers.0.weight": _z(8, 4)},
            "its latent maps are MLPs (a down_nonlinear factory such as mae_for_ldmae_f8d16)",
        ),
        (
            {"to_latent.weight": _z(4, 8), "from_latent.weight": _z(8, 4)},
            "its encoder predicts the latent itself, not a mean and a log-variance (trained without kl_loss_weight)",
        ),
        ({"decoder_pred.weight": _z(192, 8)}, "its pixel head is a plain Linear (trained without smooth_output)"),
        (
            {"decoder_pred.conv_smoother.weight": _z(3, 3, 3, 3)},
            "its pixel head is a convolution (trained with pred_with_conv)",
        ),
        ({"blocks.1.conv.weight": _z(8, 8, 3, 3)}, "it has Down/Upsample blocks (a gradual_resol model)"),
        ({"decoder_blocks.0.conv.weight": _z(8, 8, 3, 3)}, "it has Down/Upsample blocks (a gradual_resol model)"),
    ],
)
def test_each_unsupported_variant_is_named_with_the_supported_one(state, problem):
    state = {"patch_embed.proj.weight": _z(8, 3, 8, 8), "from_latent.weight": _z(8, 4), **state}
    with pytest.raises(CheckpointError) as info:
        config_from_state_dict(state, None, HEADS)
    assert str(info.value) == (
        f"unsupported LDMAE variant: {problem}; AutoencoderVMAE implements mae_for_ldmae_f8d16_prev"
    )


def test_a_supported_variant_with_both_pixel_head_parts_is_not_refused(fixture):
    state = fixture[0]
    assert "decoder_pred.conv_smoother.weight" in state and "decoder_pred.linear_pred.weight" in state
    assert config_from_state_dict(state, None, HEADS)["latent_dim"] == 4


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("pos_embed"), "the checkpoint has no pos_embed tensor, which every VMAE has"),
        (
            lambda s: s.update({"pos_embed": _z(16, 24)}),
            "pos_embed has shape [16, 24], expected 3 dimensions",
        ),
        (
            lambda s: s.update({"patch_embed.proj.weight": _z(24, 3, 8, 4)}),
            "patch_embed.proj.weight has a non-square kernel 8x4",
        ),
        (lambda s: s.update({"pos_embed": _z(1, 15, 24)}), "pos_embed holds 15 tokens, not a square grid"),
        (
            lambda s: s.update({"from_latent.weight": _z(24)}),
            "from_latent.weight has shape [24], expected 2 dimensions",
        ),
        (
            lambda s: s.update({"blocks.5.norm1.weight": _z(24)}),
            "blocks block indices are not 0..2: [0, 1, 5]",
        ),
    ],
)
def test_a_state_dict_of_another_shape_is_refused_naming_the_tensor(fixture, edit, message):
    state = dict(fixture[0])
    edit(state)
    with pytest.raises(CheckpointError) as info:
        config_from_state_dict(state, None, HEADS)
    assert str(info.value) == message


def _refused(call, *args):
    with pytest.raises(CheckpointError) as info:
        call(*args)
    return str(info.value)


def test_what_is_not_a_state_dict_is_refused_saying_what_it_holds():
    assert _refused(select_state_dict, [1, 2], "c.pth") == "c.pth: holds a list, not a checkpoint dictionary"
    assert _refused(select_state_dict, {"model": {"epoch": 3}, "lr": 0.1}, "c.pth") == (
        "c.pth: entry 'model' holds no tensors (keys: ['lr', 'model'])"
    )
    mixed = {"state_dict": {"w": torch.zeros(1), "step": 3, 7: torch.zeros(1)}}
    assert _refused(select_state_dict, mixed, "c.pth") == (
        "c.pth: entry 'state_dict' mixes tensors with other values: ['7', 'step']"
    )
    name, state = select_state_dict({"state_dict": {"module.w": torch.zeros(1), "module.b": torch.zeros(1)}})
    assert name == "state_dict" and sorted(state) == ["b", "w"]


def test_finding_the_pth_of_a_folder(tmp_path):
    from diffusers_mdiffae.conversion.vmae_pth import find_vmae_pth

    (tmp_path / "notes.txt").write_text("x")
    assert (
        _refused(find_vmae_pth, tmp_path / "notes.txt")
        == f"{tmp_path / 'notes.txt'}: not a .pth checkpoint or a model folder"
    )
    assert find_vmae_pth(tmp_path) is None
    (tmp_path / "b.pth").write_bytes(b"")
    assert find_vmae_pth(tmp_path) == tmp_path / "b.pth"
    assert find_vmae_pth(tmp_path / "b.pth") == tmp_path / "b.pth"
    (tmp_path / "a.PT").write_bytes(b"")
    assert _refused(find_vmae_pth, tmp_path) == (
        f"{tmp_path} holds several checkpoints ['a.PT', 'b.pth']; pass the file to load"
    )
    (tmp_path / "config.json").write_text("{}")
    assert find_vmae_pth(tmp_path) is None
    assert find_vmae_pth(tmp_path / "missing") is None


def test_unreadable_files_are_refused_naming_the_file(tmp_path):
    from diffusers_mdiffae.conversion.vmae_pth import load_latent_stats

    assert _refused(read_vmae_pth, tmp_path / "none.pth") == f"{tmp_path / 'none.pth'}: no such file"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"")
    assert _refused(read_vmae_pth, junk).startswith(f"{junk}: cannot read it as a torch checkpoint (")
    assert _refused(load_latent_stats, junk).startswith(f"{junk}: cannot read it as a torch file (")
    stats = tmp_path / "stats.pt"
    torch.save({"mean": torch.zeros(4)}, stats)
    assert _refused(load_latent_stats, stats) == (
        f"{stats}: expected a dict with tensors 'mean' and 'std' (LDMAE's latents_stats.pt)"
    )
    torch.save({"mean": torch.zeros(4), "std": torch.tensor([1.0, 1.0, 0.0, 1.0])}, stats)
    assert _refused(load_latent_stats, stats) == f"{stats}: 'mean'/'std' must be finite, of one length, std > 0"


def test_the_mlp_width_is_read_from_the_first_block(fixture):
    state = dict(fixture[0])
    embed = state["patch_embed.proj.weight"].shape[0]
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(2 * embed, embed)
    assert config_from_state_dict(state, None, HEADS)["mlp_ratio"] == 2.0
    del state["blocks.0.mlp.fc1.weight"]
    assert config_from_state_dict(state, None, HEADS)["mlp_ratio"] == 4.0


def test_a_bare_state_dict_is_accepted_too():
    name, state = select_state_dict({"module.pos_embed": torch.zeros(1)})
    assert name == "(top level)" and list(state) == ["pos_embed"]


# -- malicious pickles ----------------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["torch_zip", "raw_pickle"])
def test_pickle_that_would_run_code_is_refused_and_never_runs(fixture, tmp_path, layout):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    payload = {"model": dict(fixture[0]), "args": _RunsCode(marker)}
    if layout == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps({"args": payload["args"]}, protocol=2))
    with pytest.raises(
        CheckpointError, match=r"refused to unpickle: it references \['(posix|nt).system'\].*nothing in it ran"
    ):
        AutoencoderVMAE.from_pretrained(path, **HEADS)
    assert not marker.exists()
    assert convert_main([str(path), str(tmp_path / "out"), *heads_cli()]) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_pickled_tensors_outside_torch_save_are_refused_without_allowlisting_advice(fixture, tmp_path):
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"model": dict(fixture[0])}, protocol=2))
    with pytest.raises(CheckpointError, match=r"it references \['torch.storage._load_from_bytes'\]") as info:
        read_vmae_pth(path)
    assert "add_safe_globals" not in str(info.value) and "weights_only" not in str(info.value)


# -- saving, loading, converting ------------------------------------------------------------------


def heads_cli():
    return ["--num-heads", "2", "--decoder-num-heads", "4"]


def test_save_pretrained_round_trip_is_bit_identical(model, fixture, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").is_file()
    assert "CC BY-NC 4.0" in (tmp_path / "m" / "LICENSE_NOTE.md").read_text()
    again = AutoencoderVMAE.from_pretrained(tmp_path / "m")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = fixture[1]["case.encode.images"]
    with torch.no_grad():
        assert torch.equal(model(x).sample, again(x).sample)
    assert not again.training


def test_folder_holding_the_pth_loads_through_the_converter(pth, tmp_path):
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "vmaef8d16.pth").write_bytes(pth.read_bytes())
    m = AutoencoderVMAE.from_pretrained(folder, **HEADS)
    assert m.config.latent_dim == 4


def test_saved_folder_with_a_tampered_tensor_is_refused(model, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["decoder_norm.bias"]
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="decoder_norm.bias"):
        AutoencoderVMAE.from_pretrained(tmp_path / "m")


def test_conversion_cli_writes_a_loadable_folder(pth, model, tmp_path, capsys):
    stats = tmp_path / "latents_stats.pt"
    torch.save({"mean": torch.arange(4.0).view(1, 4, 1, 1), "std": torch.full((1, 4, 1, 1), 2.0)}, stats)
    out = tmp_path / "converted"
    assert convert_main([str(pth), str(out), *heads_cli(), "--latent-stats", str(stats)]) == 0
    text = capsys.readouterr().out
    assert "every tensor matched" in text and "dropped 5 training-only tensor(s) (perceptual_loss)" in text
    loaded = AutoencoderVMAE.from_pretrained(out)
    assert loaded.config.latents_mean == [0.0, 1.0, 2.0, 3.0] and loaded.config.latents_std == [2.0] * 4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    z = torch.randn(1, 4, 4, 4)
    assert torch.allclose(loaded.denormalize_latents(loaded.normalize_latents(z)), z, atol=1e-6)
    assert torch.equal(loaded.normalize_latents(z), (z - torch.arange(4.0).view(1, 4, 1, 1)) / 2.0)
    assert convert_main([str(pth), str(out), *heads_cli()]) == 2  # exists, no --overwrite


def test_convert_function_writes_atomically_and_refuses_verify(pth, tmp_path, capsys):
    out = convert_vmae_pth(pth, tmp_path / "o", **HEADS)
    assert sorted(p.name for p in out.iterdir()) == [
        "LICENSE_NOTE.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert convert_main([str(pth), str(tmp_path / "v"), "--verify", *heads_cli()]) == 2
    assert "--verify needs the original code" in capsys.readouterr().err


def test_convert_function_keeps_an_existing_folder_unless_told_to_replace_it(pth, tmp_path):
    out = convert_vmae_pth(pth, tmp_path / "o", **HEADS)
    (out / "marker").write_text("old")
    with pytest.raises(FileExistsError):
        convert_vmae_pth(pth, out, **HEADS)
    assert (out / "marker").is_file()
    convert_vmae_pth(pth, out, overwrite=True, **HEADS)
    assert not (out / "marker").exists() and (out / "config.json").is_file()


def test_convert_function_applies_latent_stats_and_dtype(pth, tmp_path):
    stats = tmp_path / "latents_stats.pt"
    torch.save({"mean": torch.arange(4.0), "std": torch.full((4,), 0.5)}, stats)
    out = convert_vmae_pth(pth, tmp_path / "o", torch_dtype=torch.bfloat16, latent_stats=stats, **HEADS)
    config = json.loads((out / "config.json").read_text())
    assert config["latents_mean"] == [0.0, 1.0, 2.0, 3.0] and config["latents_std"] == [0.5] * 4
    with safe_open(str(out / "diffusion_pytorch_model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118


def test_a_checkpoint_with_another_global_is_refused_with_the_whole_explanation(fixture, tmp_path):
    import datetime

    # both of torch's formats: the zip one is checked before loading, the legacy one as it is unpickled
    for zipped in (True, False):
        path = tmp_path / f"dated-{zipped}.pth"
        obj = {"model": dict(fixture[0]), "args": datetime.date(2024, 1, 1)}
        torch.save(obj, path, _use_new_zipfile_serialization=zipped)
        with pytest.raises(CheckpointError) as info:
            read_vmae_pth(path)
        assert str(info.value) == (
            f"{path}: refused to unpickle: it references ['datetime.date']. A VMAE checkpoint needs only tensors, "
            "plain containers and argparse.Namespace; anything else could run code on this machine, so the file "
            "was not loaded and nothing in it ran. If you trust its origin, re-save just the weights from trusted "
            "code, e.g. torch.save(checkpoint['model'], 'weights.pth'), or convert them to safetensors"
        )


def test_torch_refusal_is_reduced_to_its_last_reason_without_the_allowlisting_advice():
    from diffusers_mdiffae.conversion.vmae_pth import _torch_reason

    error = pickle.UnpicklingError(
        "Weights only load failed.\nTrying to load a legacy file.\n\n"
        "Unsupported operand 149. Please use `torch.serialization.add_safe_globals` to allow it.\n"
        "Re-running with weights_only=False will run arbitrary code.\n"
    )
    assert _torch_reason(error) == "Unsupported operand 149"
    assert _torch_reason(pickle.UnpicklingError("Unsupported global: GLOBAL a.b and GLOBAL a.b")) == (
        "it references ['a.b']"
    )
    assert _torch_reason(RuntimeError("")) == "RuntimeError"
    assert _torch_reason(EOFError("see weights_only\n   \n")) == "EOFError"


# -- input checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(3, 32, 32), "rank 4.*unsqueeze"),
        (torch.zeros(1, 4, 32, 32), "3 channels"),
        (torch.zeros(1, 3, 64, 64), "exactly 32x32.*resize or centre-crop"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point.*127.5"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    ],
)
def test_bad_images_are_refused_with_the_fix(model, x, message):
    with pytest.raises(ValueError, match=message):
        model.encode(x)


def test_image_and_latent_refusals_in_full():
    from diffusers_mdiffae.models.autoencoders.autoencoder_vmae import check_vmae_images, check_vmae_latents

    def refusal(check, *args):
        with pytest.raises(ValueError) as info:
            check(*args)
        return str(info.value)

    assert refusal(check_vmae_images, torch.zeros(1, 4, 32, 32), 3, 32) == (
        "images must have 3 channels in dim 1, got shape (1, 4, 32, 32); pass NCHW RGB (convert grayscale/RGBA to "
        "RGB, permute NHWC with x.permute(0, 3, 1, 2))"
    )
    assert refusal(check_vmae_images, torch.zeros(1, 3, 48, 40), 3, 32) == (
        "images must be exactly 32x32 (the position tables are fixed), got 48x40; resize or centre-crop first, "
        "e.g. torch.nn.functional.interpolate(x, size=(32, 32), mode='bicubic', antialias=True), or crop the "
        "centre square and resize it as LDMAE does"
    )
    assert refusal(check_vmae_latents, torch.zeros(1, 8, 4, 4), 4, 4, 8) == (
        "latents must have 4 channels in dim 1, got shape (1, 8, 4, 4); were they produced by a different "
        "autoencoder (or are they the 2x-channel moments? take DiagonalGaussianDistribution(moments).mode())"
    )
    assert refusal(check_vmae_latents, torch.zeros(1, 4, 6, 5), 4, 4, 8) == (
        "latents must be on the fixed 4x4 grid (images of 32x32), got 6x5; this model cannot decode other sizes"
    )


@pytest.mark.parametrize(
    "z, message",
    [
        (torch.zeros(1, 8, 4, 4), "4 channels.*moments"),
        (torch.zeros(1, 4, 8, 8), "fixed 4x4 grid"),
        (torch.full((1, 4, 4, 4), float("inf")), "NaN or infinite"),
    ],
)
def test_bad_latents_are_refused_with_the_fix(model, z, message):
    with pytest.raises(ValueError, match=message):
        model.decode(z)


def test_tiling_refusal_names_the_class_the_size_and_the_alternatives():
    from fixtures.models import make_tiny_tokenizer

    with pytest.raises(NotImplementedError) as err:
        make_tiny_tokenizer("vmae").enable_tiling()
    assert str(err.value) == (
        "AutoencoderVMAE cannot tile: its position tables are checkpoint weights for exactly one 256x256 image, so "
        "a tile would be encoded as if it were a whole image. Resize or centre-crop inputs to 256x256; use "
        "enable_slicing() to bound memory for large batches."
    )


def test_tiling_is_refused_and_slicing_gives_the_same_result(model, fixture):
    with pytest.raises(NotImplementedError, match="position tables"):
        model.enable_tiling()
    x = fixture[1]["case.encode.images"]
    with torch.no_grad():
        whole = model(x, return_dict=False)[0]
        model.enable_slicing()
        try:
            sliced = model(x, return_dict=False)[0]
        finally:
            model.disable_slicing()
    assert torch.allclose(whole, sliced, atol=1e-6)


VALID = {
    **dict.fromkeys(("in_chans", "depth", "num_heads", "decoder_depth", "decoder_num_heads", "latent_dim"), 1),
    **{"img_size": 16, "patch_size": 8, "embed_dim": 4, "decoder_embed_dim": 4, "mlp_ratio": 0.25},
    **{"norm_layer_eps": 1e-6, "scaling_factor": 1.0, "latents_mean": [0.0], "latents_std": [1.0]},
}


@pytest.mark.parametrize(
    "edit, message",
    [
        *[({k: 0}, f"{k} must be >= 1, got 0") for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth")],
        *[
            ({k: 0}, f"{k} must be >= 1, got 0")
            for k in ("num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "latent_dim")
        ],
        ({"img_size": 20}, "img_size (20) must be a multiple of patch_size (8)"),
        (
            {"decoder_embed_dim": 8},
            "decoder_embed_dim (8) must equal embed_dim (4): LDMAE's VMAE maps the latent to decoder_embed_dim and "
            "then applies decoder_embed, a Linear(embed_dim, decoder_embed_dim)",
        ),
        ({"num_heads": 3}, "embed_dim (4) must be divisible by num_heads (3)"),
        ({"decoder_num_heads": 3}, "decoder_embed_dim (4) must be divisible by decoder_num_heads (3)"),
        ({"mlp_ratio": 0.0}, "mlp_ratio must be > 0, got 0.0"),
        ({"mlp_ratio": 0.2}, "mlp_ratio must be > 0, got 0.2"),
        ({"norm_layer_eps": 0.0}, "norm_layer_eps must be > 0, got 0.0"),
        ({"scaling_factor": 0.0}, "scaling_factor must not be 0"),
        ({"latents_std": None}, "latents_mean and latents_std must be given together (or both left None)"),
        ({"latents_mean": [0.0, 1.0]}, "latents_mean must hold 1 finite numbers (one per latent channel)"),
        ({"latents_std": [float("inf")]}, "latents_std must hold 1 finite numbers (one per latent channel)"),
        ({"latents_std": [True]}, "latents_std must hold 1 finite numbers (one per latent channel)"),
        ({"latents_std": [0.0]}, "latents_std must be > 0 in every channel"),
    ],
)
def test_each_bad_config_value_is_refused_with_its_sentence(edit, message):
    from diffusers_mdiffae.models.autoencoders.autoencoder_vmae import check_vmae_config

    check_vmae_config(dict(VALID))  # every bound is inclusive at its smallest valid value
    with pytest.raises(ValueError) as info:
        check_vmae_config({**VALID, **edit})
    assert str(info.value) == message


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="decoder_embed_dim .* must equal embed_dim"):
        AutoencoderVMAE(img_size=32, embed_dim=32, decoder_embed_dim=64, num_heads=2, decoder_num_heads=2)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        AutoencoderVMAE(img_size=36, embed_dim=32, decoder_embed_dim=32, num_heads=2, decoder_num_heads=2)
    with pytest.raises(ValueError, match="latents_mean and latents_std"):
        AutoencoderVMAE(
            img_size=32, embed_dim=32, decoder_embed_dim=32, num_heads=2, decoder_num_heads=2, latents_mean=[0.0] * 16
        )


def test_an_old_torch_without_safe_unpickling_is_refused_by_version(pth, monkeypatch):
    import torch

    from diffusers_mdiffae.conversion.layouts import CheckpointError
    from diffusers_mdiffae.conversion.vmae_pth import read_vmae_pth

    monkeypatch.delattr(torch.serialization, "safe_globals")
    with pytest.raises(
        CheckpointError, match=r"needs torch 2\.5 or later \(torch\.serialization\.safe_globals\); this is torch"
    ):
        read_vmae_pth(pth)
