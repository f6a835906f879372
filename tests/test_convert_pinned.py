"""The converter's report for each single kind of problem on its own, through the API and the CLI, and the
pure pieces (header checks, tensor adaptation, layout mapping) pinned to their exact outputs."""

import json
import struct

import pytest
import torch
from fixtures import fake_original
from fixtures.models import make_tiny
from safetensors.torch import save_file
from test_convert import ORIGINAL, write_snapshot

from diffusers_mdiffae.conversion import convert
from diffusers_mdiffae.conversion.cli import main
from diffusers_mdiffae.conversion.convert import (
    MatchReport,
    adapt,
    find_weights,
    is_original_snapshot,
    match_state_dict,
    read_original_config,
    read_original_snapshot,
    safetensors_header,
)
from diffusers_mdiffae.conversion.layouts import (
    LAYOUTS,
    CheckpointError,
    detect_layout,
    is_original_config,
    layout_named,
    original_config_to_ours,
)
from diffusers_mdiffae.models.hub import convert_original_snapshot

# -- one problem at a time, API and CLI ----------------------------------------------------


def _snapshot_with(tmp_path, edit):
    model = make_tiny(seed=3)
    snap = write_snapshot(tmp_path, "mdiffae_v1", model)
    sd = fake_original.to_original_layout(model.state_dict())
    edit(sd)
    save_file(sd, snap / "model.safetensors")
    return snap


def _extra(sd):
    sd["decoder.extra.weight"] = torch.zeros(3, 2)


def _missing(sd):
    del sd["decoder.out_proj.bias"]


def _shape(sd):
    sd["decoder.out_proj.bias"] = torch.zeros(767)


def _nan(sd):
    sd["decoder.out_proj.bias"] = torch.full_like(sd["decoder.out_proj.bias"], float("inf"))


# (edit, the report's lines, the phrases of every other kind that must be absent)
KINDS = {
    "unexpected": (_extra, ["  1 checkpoint tensor(s) match no model tensor:", "    decoder.extra.weight  [3, 2]"]),
    "missing": (_missing, ["  1 model tensor(s) missing from the checkpoint:", "    decoder.out_proj.bias  [768]"]),
    "mismatched": (
        _shape,
        ["  1 shape mismatch(es) (checkpoint vs model):", "    decoder.out_proj.bias  [767] vs [768]"],
    ),
    "nonfinite": (_nan, ["  1 tensor(s) hold NaN or infinite values:", "    decoder.out_proj.bias"]),
}
HEADINGS = ["match no model tensor", "missing from the checkpoint", "shape mismatch", "NaN or infinite"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_problem_alone_through_the_api(tmp_path, kind):
    edit, lines = KINDS[kind]
    snap = _snapshot_with(tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        convert_original_snapshot(snap)
    message = str(info.value)
    assert message.startswith(f"{snap} (mdiffae_v1 layout) does not match AutoencoderMDiffAE(")
    report = message.split("\n", 1)[1]
    assert report == "\n".join(lines)
    assert sum(h in message for h in HEADINGS) == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_problem_alone_through_the_cli(tmp_path, kind, capsys):
    edit, lines = KINDS[kind]
    snap = _snapshot_with(tmp_path, edit)
    out = tmp_path / "converted"
    assert main([str(snap), str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")  # one line
    assert err.endswith("; " + "; ".join(line.strip() for line in lines) + "; nothing written")
    assert sum(h in err for h in HEADINGS) == 1
    assert "wrote" not in captured.out and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_report_lists_every_kind_together_in_a_fixed_order():
    r = MatchReport(unexpected=[("u", (1,))], missing=[("m", (2, 3))], mismatched=[("s", (4,), (5,))], nonfinite=["n"])
    assert not r.ok and MatchReport().ok and MatchReport().format() == ""
    assert r.format() == "\n".join(
        [
            "  1 checkpoint tensor(s) match no model tensor:",
            "    u  [1]",
            "  1 model tensor(s) missing from the checkpoint:",
            "    m  [2, 3]",
            "  1 shape mismatch(es) (checkpoint vs model):",
            "    s  [4] vs [5]",
            "  1 tensor(s) hold NaN or infinite values:",
            "    n",
        ]
    )
    for kind in ("unexpected", "missing", "mismatched", "nonfinite"):
        assert not MatchReport(**{kind: getattr(r, kind)}).ok


def test_match_renames_adapts_and_claims_each_target_once():
    expected = {"a.x": (2, 1), "b": (3,), "c": (2,)}
    original = {
        "a.y": torch.arange(2.0),
        "b": torch.ones(3),
        "c": torch.tensor([1.0, float("nan")]),
        "a.x": torch.zeros(2, 1),
    }
    converted, report = match_state_dict(original, expected, rules=[(r"\.y$", ".x")])
    assert list(converted) == ["a.x", "b", "c"]
    assert converted["a.x"].shape == (2, 1) and torch.equal(converted["a.x"].flatten(), torch.arange(2.0))
    assert report.unexpected == [("a.x", (2, 1))]  # the second claim of one target
    assert report.nonfinite == ["c"] and report.missing == [] and report.mismatched == []
    _, ints = match_state_dict({"i": torch.tensor([1, 2])}, {"i": (2,)})
    assert ints.ok  # integer tensors are never "non-finite"


def test_adapt_reshapes_only_weight_equivalent_layouts():
    t = torch.arange(6.0)
    assert adapt("x", t, (6,)) is t
    assert adapt("x", t, (1, 6, 1, 1)).shape == (1, 6, 1, 1)
    assert adapt("x", t, (2, 3)) is None  # same size, different non-unit dims
    assert adapt("x", t, (7,)) is None
    patch = torch.arange(2 * 3 * 4 * 4.0).reshape(2, 48, 1, 1)
    got = adapt("encoder.patchify.proj.weight", patch, (2, 3, 4, 4))
    assert torch.equal(got, patch.reshape(2, 3, 4, 4))  # (c, dy, dx): a row-major flatten
    assert adapt("encoder.other.weight", patch, (2, 3, 4, 4)) is None


# -- reading -------------------------------------------------------------------------------


def _raw(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def test_safetensors_header_checks(tmp_path):
    ok = tmp_path / "ok.safetensors"
    save_file({"a": torch.zeros(2), "b": torch.ones(3)}, ok, metadata={"k": "v"})
    header = safetensors_header(ok)
    assert sorted(header) == ["a", "b"] and header["b"]["data_offsets"] == [8, 20]
    (tmp_path / "s7").write_bytes(b"1234567")
    with pytest.raises(CheckpointError, match="7 bytes, too short"):
        safetensors_header(tmp_path / "s7")
    (tmp_path / "h").write_bytes(struct.pack("<Q", 100) + b"{}")
    with pytest.raises(CheckpointError, match="truncated inside its header"):
        safetensors_header(tmp_path / "h")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        safetensors_header(_raw(tmp_path / "j", b"{not json"))
    with pytest.raises(CheckpointError, match="not a JSON object"):
        safetensors_header(_raw(tmp_path / "l", b"[1, 2]"))
    with pytest.raises(CheckpointError, match="entry 'a' has no valid data_offsets"):
        safetensors_header(_raw(tmp_path / "o", json.dumps({"a": {"data_offsets": [0]}}).encode()))
    with pytest.raises(CheckpointError, match="entry 'a' has no valid data_offsets"):
        safetensors_header(_raw(tmp_path / "f", json.dumps({"a": {"data_offsets": [0, 1.5]}}).encode()))
    exact = _raw(tmp_path / "e", json.dumps({"a": {"data_offsets": [0, 4]}}).encode(), b"\0" * 4)
    assert list(safetensors_header(exact)) == ["a"]  # ends exactly at the end of the file
    with pytest.raises(CheckpointError) as info:
        safetensors_header(_raw(tmp_path / "t", json.dumps({"a": {"data_offsets": [0, 5]}}).encode(), b"\0" * 4))
    assert str(info.value) == (
        f"{tmp_path / 't'} is truncated: 1 tensor(s) lie past the end of the file:\n"
        "    a  needs bytes up to 5, file data has 4"
    )


def test_header_size_must_fit_in_the_file(tmp_path):
    (tmp_path / "h").write_bytes(struct.pack("<Q", 3) + b"{}")
    with pytest.raises(CheckpointError, match="truncated inside its header"):
        safetensors_header(tmp_path / "h")
    (tmp_path / "h2").write_bytes(struct.pack("<Q", 2) + b"{}")
    assert safetensors_header(tmp_path / "h2") == {}


def test_pickles_are_refused_before_reading_and_weights_are_found(tmp_path):
    for suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".PT"):
        with pytest.raises(CheckpointError, match="pickle checkpoints are not loaded"):
            convert.load_safetensors(tmp_path / f"model{suffix}")
    (tmp_path / "model.ckpt").write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        find_weights(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path}: expected model.safetensors (found ['model.ckpt']: pickle files are never loaded)"
    )
    save_file({"a": torch.zeros(1)}, tmp_path / "other.safetensors")
    assert find_weights(tmp_path) == tmp_path / "other.safetensors"  # the only one
    save_file({"a": torch.zeros(1)}, tmp_path / "second.safetensors")
    with pytest.raises(CheckpointError, match="expected model.safetensors"):
        find_weights(tmp_path)  # two candidates: no guess
    save_file({"a": torch.zeros(1)}, tmp_path / "model.safetensors")
    assert find_weights(tmp_path) == tmp_path / "model.safetensors"
    assert torch.equal(convert.load_safetensors(tmp_path / "model.safetensors")["a"], torch.zeros(1))


def test_config_reading_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        read_original_config(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        read_original_config(tmp_path)
    assert not is_original_snapshot(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderMDiffAE", "bottleneck_dim": 64}))
    with pytest.raises(CheckpointError, match=r"already a diffusers folder \(AutoencoderMDiffAE\)"):
        read_original_config(tmp_path)
    assert not is_original_snapshot(tmp_path) and not is_original_snapshot(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps(ORIGINAL["mdiffae_v1"][0]))
    assert is_original_snapshot(tmp_path)
    with pytest.raises(CheckpointError, match="is not a directory"):
        read_original_snapshot(tmp_path / "config.json")


# -- layouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(ORIGINAL))
def test_original_config_maps_to_exactly_our_arguments(family):
    config = ORIGINAL[family][0]
    layout, ours = original_config_to_ours(dict(config))
    assert layout.name == family and detect_layout(config) is layout
    assert ours["latent_channels"] == config["bottleneck_dim"] and "bottleneck_dim" not in ours
    assert ours["block_out_channels"] == [32] * 5  # log2(16) + 1 levels of model_dim
    for k, v in layout.fixed.items():
        assert ours[k] == v
    rest = {
        k: v for k, v in ours.items() if k not in layout.fixed and k not in ("latent_channels", "block_out_channels")
    }
    assert rest == {k: v for k, v in config.items() if k != "bottleneck_dim"}


def test_layout_facts():
    v1, v2, ir, fcdm = (layout_named(n) for n in ("mdiffae_v1", "mdiffae_v2", "irdiffae_v1", "semdisdiffae"))
    assert v1.fixed == {"outer_norms": True, "pdg_mode": "token_mask"}
    assert v2.fixed == {"outer_norms": False, "pdg_mode": "dual"}
    assert ir.fixed == {"outer_norms": False, "pdg_mode": "path_drop"}
    assert fcdm.class_name == "AutoencoderSemDisDiffAE" and v1.class_name == v2.class_name == ir.class_name
    assert [lay.name for lay in LAYOUTS] == ["semdisdiffae", "mdiffae_v1", "mdiffae_v2", "irdiffae_v1"]
    assert fcdm.packages[0] == ("fcdm_diffae", "FCDMDiffAE") and fcdm.packages[1][0] == "capacitor_diffae"
    with pytest.raises(KeyError, match="no layout 'x'"):
        layout_named("x")


def test_layout_detection_by_fields():
    base = {"bottleneck_dim": 64, "model_dim": 32, "patch_size": 16}
    assert detect_layout(base).name == "mdiffae_v1"
    assert detect_layout({**base, "decoder_start_blocks": 0, "decoder_end_blocks": 0}).name == "mdiffae_v1"
    assert detect_layout({**base, "decoder_end_blocks": 1, "pdg_mask_ratio": 0.75}).name == "mdiffae_v2"
    assert detect_layout({**base, "decoder_start_blocks": 1}).name == "irdiffae_v1"
    assert detect_layout({**base, "bottleneck_norm_mode": "disabled"}).name == "semdisdiffae"
    assert detect_layout({**base, "bottleneck_posterior_kind": "x", "decoder_start_blocks": 2}).name == "semdisdiffae"
    assert is_original_config(base) and not is_original_config({**base, "_class_name": "X"})
    assert not is_original_config([base]) and not is_original_config({"model_dim": 1})
    with pytest.raises(CheckpointError) as info:
        detect_layout({"model_dim": 32})
    assert str(info.value) == "config.json is not a published mDiffAE-family config (no 'bottleneck_dim')"


def test_layout_mapping_refusals():
    with pytest.raises(CheckpointError) as info:
        original_config_to_ours([1])
    assert str(info.value) == "config.json must hold a JSON object"
    with pytest.raises(CheckpointError, match=r"lacks \['model_dim', 'patch_size'\]"):
        original_config_to_ours({"bottleneck_dim": 64})
    with pytest.raises(CheckpointError, match=r"the mdiffae_v1 layout does not know: \['a', 'b'\]"):
        original_config_to_ours({"bottleneck_dim": 64, "model_dim": 8, "patch_size": 16, "b": 1, "a": 2})
    for patch in (12, 0, True, "16"):
        _, ours = original_config_to_ours({"bottleneck_dim": 64, "model_dim": 8, "patch_size": patch})
        assert "block_out_channels" not in ours  # left to the model's own check and message
    _, ours = original_config_to_ours({"bottleneck_dim": 64, "model_dim": 8, "patch_size": 8})
    assert ours["block_out_channels"] == [8, 8, 8, 8]
    _, ours = original_config_to_ours({"bottleneck_dim": 64, "model_dim": 8, "patch_size": 1})
    assert ours["block_out_channels"] == [8]


def test_header_length_is_unsigned_and_capped_at_100_mib(tmp_path):
    huge = tmp_path / "huge"
    huge.write_bytes(b"\xff" * 8 + b"{}")  # 2**64 - 1 unsigned (it would be -1 signed)
    with pytest.raises(CheckpointError, match="truncated inside its header"):
        safetensors_header(huge)

    def sparse(name, n):
        path = tmp_path / name
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", n))
            f.truncate(8 + n + 16)  # a sparse file: no disk is used
        return path

    with pytest.raises(CheckpointError, match="not a safetensors file or truncated inside its header"):
        safetensors_header(sparse("over", 100 * 2**20 + 1))  # refused before reading 100 MiB
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        safetensors_header(sparse("at", 100 * 2**20))  # the cap itself is read (and is not JSON)


def test_header_entries_must_be_objects(tmp_path):
    with pytest.raises(CheckpointError, match="entry 'a' has no valid data_offsets"):
        safetensors_header(_raw(tmp_path / "l", json.dumps({"a": [0, 4]}).encode(), b"\0" * 4))


def test_unreadable_tensor_data_is_a_checkpoint_error(tmp_path):
    bad = _raw(
        tmp_path / "bad.safetensors",
        json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode(),
        b"\0" * 4,
    )
    with pytest.raises(CheckpointError, match=r"bad.safetensors: cannot read safetensors data \("):
        convert.load_safetensors(bad)


def test_several_candidates_without_pickles_get_no_hint(tmp_path):
    for name in ("a.safetensors", "b.safetensors"):
        save_file({"x": torch.zeros(1)}, tmp_path / name)
    with pytest.raises(CheckpointError) as info:
        find_weights(tmp_path)
    assert str(info.value) == f"{tmp_path}: expected model.safetensors"


def test_adapt_edges():
    patch_like = torch.zeros(2, 3, 16, 1)  # 4-D with the patchify name, but not a [C, 3*p*p, 1, 1] layout
    assert adapt("encoder.patchify.proj.weight", patch_like, (2, 3, 4, 4)) is None
    t = torch.arange(6.0).reshape(2, 3)
    assert adapt("x", t, (1, 2, 3)).shape == (1, 2, 3)  # only unit dims differ


def test_an_unexpected_tensor_does_not_stop_the_matching():
    converted, report = match_state_dict({"zzz": torch.zeros(1), "a": torch.zeros(2)}, {"a": (2,)})
    assert list(converted) == ["a"] and report.unexpected == [("zzz", (1,))] and report.missing == []


def test_every_tensor_past_the_end_gets_its_own_line(tmp_path):
    header = json.dumps({"a": {"data_offsets": [0, 6]}, "b": {"data_offsets": [6, 9]}}).encode()
    with pytest.raises(CheckpointError) as info:
        safetensors_header(_raw(tmp_path / "t", header, b"\0" * 4))
    assert str(info.value).endswith(
        "2 tensor(s) lie past the end of the file:\n"
        "    a  needs bytes up to 6, file data has 4\n"
        "    b  needs bytes up to 9, file data has 4"
    )
