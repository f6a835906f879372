"""Converting a published-layout snapshot: strict matching, verification, atomic output."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import make_tiny
from fixtures import fake_m_diffae
from diffusers_mdiffae import AutoencoderMDiffAE
from diffusers_mdiffae.conversion.convert import (
    CheckpointError,
    convert_original_snapshot,
    is_original_snapshot,
    main,
    map_key,
)

FAKE_PACKAGE = Path(__file__).parent / "fixtures" / "fake_m_diffae.py"

ORIGINAL_CONFIG = {
    "in_channels": 3, "patch_size": 16, "model_dim": 32, "encoder_depth": 1, "decoder_depth": 2,
    "bottleneck_dim": 64, "mlp_ratio": 2.0, "depthwise_kernel_size": 7, "adaln_low_rank_rank": 8,
    "logsnr_min": -10.0, "logsnr_max": 10.0, "pixel_noise_std": 0.558, "pdg_mask_ratio": 0.75,
}


def to_original_layout(model):
    return fake_m_diffae.to_original_layout(model.state_dict())


@pytest.fixture
def original():
    return make_tiny(seed=3)


@pytest.fixture
def snapshot(tmp_path, original):
    snap = tmp_path / "mdiffae_v1"
    (snap / "m_diffae").mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(ORIGINAL_CONFIG, indent=2) + "\n")
    save_file(to_original_layout(original), snap / "model.safetensors")
    shutil.copy(FAKE_PACKAGE, snap / "m_diffae" / "__init__.py")
    return snap


def test_snapshot_converts_to_the_same_weights(snapshot, original):
    assert is_original_snapshot(snapshot)
    model = convert_original_snapshot(snapshot)
    ref = original.state_dict()
    assert model.state_dict().keys() == ref.keys()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


def test_cli_writes_a_loadable_diffusers_folder_and_reports_psnr(snapshot, original, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out)]) == 0
    text = capsys.readouterr()
    assert "every tensor matched" in text.out and "sample image PSNR" in text.out
    assert "implausibly low" in text.err  # random weights: the loud warning fires
    loaded = AutoencoderMDiffAE.from_pretrained(out)
    assert not is_original_snapshot(out)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_verify_runs_the_original_package_and_passes(snapshot, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "verify encode: max |original - converted|" in text and "verify decoder(t=1.0)" in text
    assert "verify: passed" in text
    assert "m_diffae" not in sys.modules  # the snapshot's package does not leak into the process


def test_verify_catches_a_wrong_architecture_reading_and_writes_nothing(snapshot, tmp_path, capsys):
    pkg = snapshot / "m_diffae" / "__init__.py"
    pkg.write_text(pkg.read_text().replace("SWAP_FUSE_ORDER = False", "SWAP_FUSE_ORDER = True"))
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out), "--verify"]) == 1
    assert "verification failed" in capsys.readouterr().err
    assert not out.exists()


def _leftovers(parent: Path):
    return [p.name for p in parent.iterdir() if p.name.startswith(".converted")]


def test_truncated_checkpoint_lists_the_tensors_past_the_end(snapshot, tmp_path, capsys):
    path = snapshot / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out)]) == 1
    err = capsys.readouterr().err
    assert "is truncated" in err and "lie past the end of the file" in err and "nothing written" in err
    assert "weight  needs bytes up to" in err  # the offending tensors are named
    assert not out.exists() and not _leftovers(tmp_path)


def test_mismatched_checkpoint_lists_every_offending_tensor(snapshot, tmp_path, capsys):
    cfg = dict(ORIGINAL_CONFIG, model_dim=48)
    (snapshot / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "converted"
    assert main([str(snapshot), str(out)]) == 1
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "encoder.norm_in.weight  [32] vs [48]" in err
    assert not out.exists() and not _leftovers(tmp_path)


def test_unknown_and_missing_tensors_are_listed_by_name_and_shape(snapshot, original):
    sd = to_original_layout(original)
    sd.pop("decoder.fuse.bias")
    sd["decoder.mystery.weight"] = torch.zeros(5, 7)
    save_file(sd, snapshot / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        convert_original_snapshot(snapshot)
    msg = str(info.value)
    assert "decoder.mystery.weight  [5, 7]" in msg
    assert "missing from the checkpoint" in msg and "decoder.fuse.bias  [32]" in msg


def test_nan_weights_are_refused(snapshot, original):
    sd = to_original_layout(original)
    sd["decoder.fuse.bias"] = torch.full_like(sd["decoder.fuse.bias"], float("nan"))
    save_file(sd, snapshot / "model.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        convert_original_snapshot(snapshot)


def test_pickle_checkpoints_are_never_loaded(snapshot):
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.bin").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        convert_original_snapshot(snapshot)


def test_not_a_safetensors_file(snapshot):
    (snapshot / "model.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(CheckpointError, match="too short"):
        convert_original_snapshot(snapshot)


@pytest.mark.parametrize("extra, match", [
    ({"bottleneck_posterior_kind": "diagonal_gaussian"}, "not implemented yet"),
    ({"some_new_field": 1}, "does not know"),
])
def test_unsupported_configs_are_refused(snapshot, extra, match):
    (snapshot / "config.json").write_text(json.dumps({**ORIGINAL_CONFIG, **extra}))
    with pytest.raises(CheckpointError, match=match):
        convert_original_snapshot(snapshot)


def test_a_diffusers_folder_is_pointed_to_from_pretrained(tmp_path):
    make_tiny().save_pretrained(tmp_path / "ours")
    with pytest.raises(CheckpointError, match="already a diffusers folder"):
        convert_original_snapshot(tmp_path / "ours")


def test_existing_output_needs_overwrite(snapshot, tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    assert main([str(snapshot), str(out)]) == 2
    assert main([str(snapshot), str(out), "--overwrite"]) == 0
    assert (out / "config.json").is_file()


def test_key_aliases():
    assert map_key("encoder.patchify.conv.weight") == "encoder.patchify.proj.weight"
    assert map_key("decoder.blocks.3.cca.1.bias") == "decoder.blocks.3.cca.proj.bias"
    assert map_key("decoder.latent_mask_feature") == "decoder.mask_feature"
    assert map_key("encoder.blocks.0.conv1.weight") == "encoder.blocks.0.conv1.weight"


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "diffusers_mdiffae.conversion.convert", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--verify" in res.stdout


def test_from_pretrained_converts_a_local_original_snapshot(snapshot, original):
    model = AutoencoderMDiffAE.from_pretrained(snapshot)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())
    half = AutoencoderMDiffAE.from_pretrained(snapshot, torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16


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
    assert calls[1][0] == "snapshot" and "model.safetensors" not in calls[1][2] and "*.safetensors" in calls[1][2]
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())


def test_unreachable_hub_falls_back_to_the_diffusers_error(monkeypatch):
    import huggingface_hub

    def offline(*a, **kw):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OSError):
        AutoencoderMDiffAE.from_pretrained("someone/not-here", local_files_only=True)
