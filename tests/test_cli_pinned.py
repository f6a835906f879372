"""The `mdiffae` command's checks and hand-offs, the argument types and the lazy package exports,
pinned to their exact sentences and arguments (in-process, no model loaded)."""

import argparse
import types
from pathlib import Path

import pytest
from fixtures.hostile import cli

import diffusers_mdiffae
import diffusers_mdiffae.dataset_encoding as dataset_encoding
from diffusers_mdiffae import argtypes
from diffusers_mdiffae import cli as cli_module
from diffusers_mdiffae.cli import CLIError, _check_train_args

# -- convert -------------------------------------------------------------------------------------


@pytest.fixture
def converter_calls(monkeypatch):
    """``run_converter`` replaced by a recorder returning status 7 (the converter's status is the command's)."""
    calls = []

    def fake(argv):
        calls.append(argv)
        return 7

    monkeypatch.setattr(cli_module, "run_converter", fake)
    return calls


def test_convert_hands_the_converter_exactly_the_checked_options(tmp_path, capsys, converter_calls):
    snap, out = tmp_path / "snap", tmp_path / "out"
    snap.mkdir()
    rc, _, err = cli(capsys, "convert", snap, out)
    assert (rc, err) == (7, "")
    rc, _, err = cli(
        capsys, "convert", snap, out, "--verify", "--overwrite", "--dtype", "float16", "--min-psnr", "30.5"
    )
    assert (rc, err) == (7, "")
    assert converter_calls == [
        [str(snap), str(out), "--dtype", "float32"],
        [str(snap), str(out), "--dtype", "float16", "--verify", "--overwrite", "--min-psnr", "30.5"],
    ]


def test_convert_refuses_a_snapshot_file_naming_its_folder(tmp_path, capsys, converter_calls):
    snap = tmp_path / "snap" / "model.safetensors"
    snap.parent.mkdir()
    snap.write_bytes(b"x")
    rc, _, err = cli(capsys, "convert", snap, tmp_path / "out")
    assert rc == 1 and converter_calls == []
    assert err == f"error: {snap}: is a file; pass the snapshot folder that holds it ({snap.parent})\n"


def test_convert_refuses_an_existing_output_without_overwrite(tmp_path, capsys, converter_calls):
    snap, out = tmp_path / "snap", tmp_path / "out"
    snap.mkdir()
    out.mkdir()
    rc, _, err = cli(capsys, "convert", snap, out)
    assert rc == 1 and converter_calls == []
    assert err == f"error: {out}: exists; pass --overwrite to replace it\n"
    rc, _, err = cli(capsys, "convert", snap, out, "--overwrite")  # with it, the old one may go
    assert (rc, err) == (7, "")


def test_convert_refuses_an_output_folder_holding_the_snapshot(tmp_path, capsys, converter_calls):
    out = tmp_path / "out"
    snap = out / "snap"
    snap.mkdir(parents=True)
    rc, _, err = cli(capsys, "convert", snap, out, "--overwrite")
    assert rc == 1 and converter_calls == []
    assert err == f"error: {out}: contains the input {snap} and would be replaced; choose another output\n"


def test_run_converter_passes_argv_to_the_converter_and_returns_its_status(monkeypatch):
    seen = []
    fake = types.SimpleNamespace(main=lambda argv: seen.append(argv) or 3)
    monkeypatch.setattr(cli_module, "converter_module", lambda: fake)
    assert cli_module.run_converter(["a", "b", "--verify"]) == 3
    assert seen == [["a", "b", "--verify"]]


# -- encode-dataset and train: checks before any work ----------------------------------------------


def test_encode_dataset_checks_model_then_hands_over_with_say(tmp_path, capsys, monkeypatch):
    import diffusers_mdiffae.dataset_encoding.encode as encode

    calls = []
    monkeypatch.setattr(encode, "run_from_args", lambda a, log=None: calls.append((a.input, a.model, log)) or 0)
    missing = tmp_path / "no_model"
    rc, _, err = cli(capsys, "encode-dataset", tmp_path, tmp_path / "out", "--model", missing)
    assert rc == 1 and calls == []
    assert err == f"error: {missing}: cannot load model: no such folder\n"
    rc, _, err = cli(capsys, "encode-dataset", tmp_path, tmp_path / "out")
    assert (rc, err) == (0, "")
    assert calls == [(str(tmp_path), None, cli_module.say)]


def _train_args(tmp_path, **kw):
    base = {
        "output_dir": str(tmp_path / "run"),
        "data": "skimage",
        "init": None,
        "resume": None,
        "warmup_steps": 0,
        "steps": 10,
    }
    return argparse.Namespace(**{**base, **kw})


def test_train_data_skimage_is_not_a_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder called skimage here
    assert _check_train_args(_train_args(tmp_path)) == tmp_path / "run"


def test_train_init_file_is_refused_naming_the_init_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    init = tmp_path / "weights" / "model.safetensors"
    init.parent.mkdir()
    init.write_bytes(b"x")
    with pytest.raises(CLIError) as e:
        _check_train_args(_train_args(tmp_path, init=str(init)))
    assert str(e.value) == (f"{init}: --init takes the folder that holds config.json, not a file (pass {init.parent})")


# -- argument types ----------------------------------------------------------------------------------


def test_int_at_least_accepts_the_bound_and_refuses_below_it_with_a_sentence():
    at_least_5 = argtypes._int_at_least(5)
    assert at_least_5.__name__ == "integer >= 5"
    assert at_least_5("5") == 5 and at_least_5(" 12 ") == 12
    with pytest.raises(argparse.ArgumentTypeError) as e:
        at_least_5("4")
    assert str(e.value) == "must be at least 5, got 4"
    with pytest.raises(argparse.ArgumentTypeError) as e:
        at_least_5("five")
    assert str(e.value) == "expected an integer, got 'five'"


def test_json_object_names_the_type_it_got():
    assert argtypes.json_object('{"model_dim": 64}') == {"model_dim": 64}
    with pytest.raises(argparse.ArgumentTypeError) as e:
        argtypes.json_object("[1, 2]")
    assert str(e.value) == "expected a JSON object like '{\"model_dim\": 128}', got list"


def test_one_line_parser_error_is_one_line_without_the_argument_prefix(capsys):
    p = argtypes.OneLineParser(prog="tool")
    p.add_argument("--n", type=argtypes.positive_int)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--n", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: --n: must be at least 1, got 0 (see `tool -h`)\n"
    with pytest.raises(SystemExit):
        p.error("first line\n   second line\n\n")
    assert capsys.readouterr().err == "error: first line; second line (see `tool -h`)\n"


# -- the packages' lazy names ------------------------------------------------------------------------


def test_package_getattr_imports_each_export_from_its_module_and_caches_it(monkeypatch):
    from diffusers_mdiffae.schedulers.scheduling_vp_ddim import VPDDIMScheduler

    monkeypatch.delitem(vars(diffusers_mdiffae), "VPDDIMScheduler", raising=False)
    assert diffusers_mdiffae.__getattr__("VPDDIMScheduler") is VPDDIMScheduler
    assert vars(diffusers_mdiffae)["VPDDIMScheduler"] is VPDDIMScheduler
    with pytest.raises(AttributeError) as e:
        diffusers_mdiffae.__getattr__("NoSuchThing")
    assert str(e.value) == "module 'diffusers_mdiffae' has no attribute 'NoSuchThing'"


def test_package_dir_lists_exactly_the_public_names():
    assert dir(diffusers_mdiffae) == sorted(diffusers_mdiffae.__all__)
    assert "AutoencoderMDiffAE" in dir(diffusers_mdiffae) and "import_module" not in dir(diffusers_mdiffae)


def test_dataset_encoding_getattr_imports_each_name_from_its_module_and_caches_it(monkeypatch):
    from diffusers_mdiffae.dataset_encoding.options import EncodeConfig

    monkeypatch.delitem(vars(dataset_encoding), "EncodeConfig", raising=False)
    assert dataset_encoding.__getattr__("EncodeConfig") is EncodeConfig
    assert vars(dataset_encoding)["EncodeConfig"] is EncodeConfig
    with pytest.raises(AttributeError) as e:
        dataset_encoding.__getattr__("encode")
    assert str(e.value) == "module 'diffusers_mdiffae.dataset_encoding' has no attribute 'encode'"


def test_dataset_encoding_dir_lists_its_globals_and_lazy_names():
    names = dir(dataset_encoding)
    assert names == sorted(names)
    assert {"__name__", "import_module", *dataset_encoding.__all__} <= set(names)


def test_package_paths_point_into_the_package():
    assert diffusers_mdiffae.DEMO_MODEL_DIR == Path(diffusers_mdiffae.__file__).parent / "assets" / "demo_model"
