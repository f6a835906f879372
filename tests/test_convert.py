"""Converting the four published layouts: recognised from config.json, matched strictly, verified, written atomically."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures import fake_original
from fixtures.models import make_tiny
from safetensors.torch import save_file

from diffusers_mdiffae import AutoencoderMDiffAE, AutoencoderSemDisDiffAE
from diffusers_mdiffae.conversion.cli import main
from diffusers_mdiffae.conversion.convert import is_original_snapshot, map_key, match_state_dict
from diffusers_mdiffae.conversion.layouts import CheckpointError, detect_layout, layout_named
from diffusers_mdiffae.models.hub import convert_original_snapshot

FAKE_PACKAGE = Path(__file__).parent / "fixtures" / "fake_original.py"
COMMON = {
    "in_channels": 3,
    "patch_size": 16,
    "model_dim": 32,
    "encoder_depth": 1,
    "mlp_ratio": 2.0,
    "depthwise_kernel_size": 7,
    "adaln_low_rank_rank": 8,
    "logsnr_min": -10.0,
    "logsnr_max": 10.0,
    "pixel_noise_std": 0.558,
}
SKIP = {"decoder_depth": 4, "decoder_start_blocks": 1, "decoder_end_blocks": 1}
# The original config.json of each layout (field sets as published) and its package folder.
ORIGINAL = {
    "mdiffae_v1": ({**COMMON, "decoder_depth": 2, "bottleneck_dim": 64, "pdg_mask_ratio": 0.75}, "m_diffae"),
    "mdiffae_v2": ({**COMMON, **SKIP, "bottleneck_dim": 96, "pdg_mask_ratio": 0.75}, "m_diffae_v2"),
    "irdiffae_v1": ({**COMMON, **SKIP, "bottleneck_dim": 128}, "ir_diffae"),
    "semdisdiffae": (
        {
            **COMMON,
            **SKIP,
            "bottleneck_dim": 128,
            "bottleneck_posterior_kind": "diagonal_gaussian",
            "bottleneck_norm_mode": "disabled",
        },
        "fcdm_diffae",
    ),
}
CLASSES = {
    "mdiffae_v1": AutoencoderMDiffAE,
    "mdiffae_v2": AutoencoderMDiffAE,
    "irdiffae_v1": AutoencoderMDiffAE,
    "semdisdiffae": AutoencoderSemDisDiffAE,
}


def write_snapshot(root: Path, family: str, model, package=None) -> Path:
    config, default_package = ORIGINAL[family]
    snap = root / family
    pkg = snap / (package or default_package)
    pkg.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(fake_original.to_original_layout(model.state_dict()), snap / "model.safetensors")
    shutil.copy(FAKE_PACKAGE, pkg / "__init__.py")
    return snap


@pytest.fixture(params=list(ORIGINAL))
def family(request):
    return request.param


@pytest.fixture
def original(family):
    return make_tiny(seed=3, family=family)


@pytest.fixture
def snapshot(tmp_path, family, original):
    return write_snapshot(tmp_path, family, original)


def test_each_layout_is_recognised_from_its_config(family):
    assert detect_layout(ORIGINAL[family][0]).name == family


def test_snapshot_converts_to_the_same_weights(snapshot, original, family):
    assert is_original_snapshot(snapshot)
    model = convert_original_snapshot(snapshot)
    assert type(model) is CLASSES[family]
    ref = original.state_dict()
    assert model.state_dict().keys() == ref.keys()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_verify_runs_the_shipped_package_and_passes(snapshot, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    for what in ("verify encode", "verify decoder(t=1.0)", "verify decode(2 steps, seed 7)", "verify: passed"):
        assert what in text
    assert not any(m in sys.modules for m in ("m_diffae", "m_diffae_v2", "ir_diffae", "fcdm_diffae"))


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_verify_catches_a_wrong_architecture_reading_and_writes_nothing(snapshot, tmp_path, capsys):
    pkg = snapshot / "m_diffae" / "__init__.py"
    pkg.write_text(pkg.read_text().replace("SWAP_FUSE_ORDER = False", "SWAP_FUSE_ORDER = True"))
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out), "--verify"]) == 1
    assert "verification against m_diffae failed" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("family", ["semdisdiffae"])
def test_the_old_capacitor_diffae_package_name_verifies_too(tmp_path, original, family, capsys):
    snap = write_snapshot(tmp_path, family, original, package="capacitor_diffae")
    assert main([str(snap), str(tmp_path / "out"), "--verify"]) == 0
    assert "verify: passed" in capsys.readouterr().out


def test_cli_writes_a_loadable_diffusers_folder_and_reports_psnr(snapshot, original, family, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out)]) == 0
    text = capsys.readouterr()
    assert "every tensor matched" in text.out and "sample image PSNR" in text.out
    assert "implausibly low" in text.err  # random weights: the loud warning fires
    loaded = CLASSES[family].from_pretrained(out)
    assert not is_original_snapshot(out)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in loaded.state_dict().items())


def _leftovers(parent: Path):
    return [p.name for p in parent.iterdir() if p.name.startswith(".converted")]


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_truncated_checkpoint_lists_the_tensors_past_the_end(snapshot, tmp_path, capsys):
    path = snapshot / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out)]) == 1
    err = capsys.readouterr().err
    assert "is truncated" in err and "lie past the end of the file" in err and "nothing written" in err
    assert "weight  needs bytes up to" in err
    assert not out.exists() and not _leftovers(tmp_path)


@pytest.mark.parametrize("family", ["mdiffae_v1", "semdisdiffae"])
def test_mismatched_checkpoint_lists_every_offending_tensor(snapshot, tmp_path, capsys):
    cfg = json.loads((snapshot / "config.json").read_text())
    (snapshot / "config.json").write_text(json.dumps({**cfg, "model_dim": 48}))
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out)]) == 1
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "decoder.fuse_in.bias  [32] vs [48]" in err
    assert not out.exists() and not _leftovers(tmp_path)


def test_a_renamed_tensor_is_refused_with_its_name(snapshot, original):
    sd = fake_original.to_original_layout(original.state_dict())
    sd["decoder.fuse_input.bias"] = sd.pop("decoder.fuse_in.bias")
    save_file(sd, snapshot / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        convert_original_snapshot(snapshot)
    msg = str(info.value)
    assert "match no model tensor" in msg and "decoder.fuse_input.bias  [32]" in msg
    assert "missing from the checkpoint" in msg and "decoder.fuse_in.bias  [32]" in msg


def test_a_missing_tensor_alone_is_reported(snapshot, original):
    sd = fake_original.to_original_layout(original.state_dict())
    sd.pop("decoder.out_proj.weight")
    save_file(sd, snapshot / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        convert_original_snapshot(snapshot)
    msg = str(info.value)
    assert "1 model tensor(s) missing from the checkpoint" in msg and "decoder.out_proj.weight  [768, 32, 1, 1]" in msg
    assert "match no model tensor" not in msg and "shape mismatch" not in msg


def test_match_reports_each_kind_of_problem_on_its_own():
    expected = {"a": (2,), "b": (3,)}
    _, only_missing = match_state_dict({"a": torch.zeros(2)}, expected)
    assert only_missing.missing == [("b", (3,))] and not only_missing.unexpected and not only_missing.mismatched
    _, only_unexpected = match_state_dict({"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}, expected)
    assert only_unexpected.unexpected == [("c", (1,))] and not only_unexpected.missing
    _, only_shape = match_state_dict({"a": torch.zeros(2), "b": torch.zeros(4)}, expected)
    assert only_shape.mismatched == [("b", (4,), (3,))] and not only_shape.missing and not only_shape.unexpected


@pytest.mark.parametrize("family", ["mdiffae_v1", "semdisdiffae"])
def test_nan_weights_are_refused_by_name(snapshot, original):
    sd = fake_original.to_original_layout(original.state_dict())
    sd["decoder.fuse_in.bias"] = torch.full_like(sd["decoder.fuse_in.bias"], float("nan"))
    save_file(sd, snapshot / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values:\n    decoder.fuse_in.bias"):
        convert_original_snapshot(snapshot)


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_pickle_checkpoints_are_never_loaded(snapshot):
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.bin").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        convert_original_snapshot(snapshot)


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_not_a_safetensors_file(snapshot):
    (snapshot / "model.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(CheckpointError, match="too short"):
        convert_original_snapshot(snapshot)


@pytest.mark.parametrize("family", ["mdiffae_v1", "semdisdiffae"])
def test_unknown_config_fields_are_refused(snapshot):
    cfg = json.loads((snapshot / "config.json").read_text())
    (snapshot / "config.json").write_text(json.dumps({**cfg, "some_new_field": 1}))
    with pytest.raises(CheckpointError, match=r"does not know: \['some_new_field'\]"):
        convert_original_snapshot(snapshot)


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_a_config_value_of_the_wrong_type_is_named(snapshot):
    cfg = json.loads((snapshot / "config.json").read_text())
    (snapshot / "config.json").write_text(json.dumps({**cfg, "patch_size": "16"}))
    with pytest.raises(CheckpointError, match="patch_size must be an int, got '16'"):
        convert_original_snapshot(snapshot)


def test_a_diffusers_folder_is_pointed_to_from_pretrained(tmp_path):
    make_tiny().save_pretrained(tmp_path / "ours")
    with pytest.raises(CheckpointError, match="already a diffusers folder"):
        convert_original_snapshot(tmp_path / "ours")


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_existing_output_needs_overwrite_and_the_snapshot_is_never_the_output(snapshot, tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    assert main([str(snapshot), str(out)]) == 2
    assert main([str(snapshot), str(out), "--overwrite"]) == 0
    assert (out / "config.json").is_file()
    weights = (snapshot / "model.safetensors").read_bytes()
    assert main([str(snapshot), str(snapshot), "--overwrite"]) == 2
    assert main([str(snapshot), str(snapshot / "inside"), "--overwrite"]) == 2
    assert (snapshot / "model.safetensors").read_bytes() == weights


def test_key_aliases_are_only_for_the_unknown_dico_names():
    rules = layout_named("mdiffae_v1").key_rules
    assert map_key("decoder.blocks.3.cca.1.bias", rules) == "decoder.blocks.3.cca.proj.bias"
    assert map_key("encoder.blocks.0.conv1.weight", rules) == "encoder.blocks.0.conv1.weight"
    assert map_key("decoder.time_embed.proj_in.weight", rules) == "decoder.time_embed.proj_in.weight"
    assert layout_named("semdisdiffae").key_rules == ()


def test_module_entry_point_help():
    res = subprocess.run(
        [sys.executable, "-m", "diffusers_mdiffae.conversion", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "--verify" in res.stdout


def test_from_pretrained_converts_a_local_original_snapshot(snapshot, original, family):
    model = CLASSES[family].from_pretrained(snapshot)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())
    half = CLASSES[family].from_pretrained(snapshot, torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert half.decoder.time_embed.freqs.dtype == torch.float32


@pytest.mark.parametrize("family", ["semdisdiffae"])
def test_from_pretrained_of_the_wrong_class_says_which_to_use(snapshot):
    with pytest.raises(
        ValueError, match="holds a AutoencoderSemDisDiffAE, not a AutoencoderMDiffAE; load it with that class"
    ):
        AutoencoderMDiffAE.from_pretrained(snapshot)


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_from_pretrained_subfolder_of_a_published_snapshot(tmp_path, original, family):
    write_snapshot(tmp_path / "repo", family, original)
    model = AutoencoderMDiffAE.from_pretrained(tmp_path / "repo", subfolder=family)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", ["mdiffae_v1"])
def test_from_pretrained_converts_an_original_hub_repo(snapshot, original, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_hf_hub_download(repo_id, filename, subfolder=None, **kw):
        calls.append(("file", repo_id, filename))
        return str(snapshot / filename)

    def fake_snapshot_download(repo_id, allow_patterns=None, **kw):
        calls.append(("snapshot", repo_id, tuple(allow_patterns)))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = AutoencoderMDiffAE.from_pretrained("data-archetype/mdiffae_v1")
    assert calls[0] == ("file", "data-archetype/mdiffae_v1", "config.json")
    assert calls[1][0] == "snapshot" and "*.safetensors" in calls[1][2] and "m_diffae/*" in calls[1][2]
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())


def test_unreachable_hub_falls_back_to_the_diffusers_error(monkeypatch):
    import huggingface_hub

    def offline(*a, **kw):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OSError):
        AutoencoderMDiffAE.from_pretrained("someone/not-here", local_files_only=True)
