"""The `mdiffae` command's checks and hand-offs, the argument types and the lazy package exports,
pinned to their exact sentences and arguments (in-process, no model loaded)."""

import argparse
import json
import types
from pathlib import Path

import pytest
import torch
from fixtures.hostile import cli, photo
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

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


def test_train_requires_its_data_and_its_output_folder(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--output-dir", tmp_path / "run")
    assert rc == 2 and "the following arguments are required: --data" in err
    rc, _, err = cli(capsys, "train", "--data", tmp_path)
    assert rc == 2 and "the following arguments are required: --output-dir" in err


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


def test_train_resume_latest_is_not_a_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _check_train_args(_train_args(tmp_path, resume="latest")) == tmp_path / "run"
    with pytest.raises(CLIError) as e:
        _check_train_args(_train_args(tmp_path, resume="nowhere"))
    assert str(e.value) == "nowhere: no such checkpoint folder (--resume takes one, or 'latest')"


def test_train_warns_only_when_warmup_exceeds_the_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _check_train_args(_train_args(tmp_path, warmup_steps=10, steps=10))
    assert capsys.readouterr().err == ""
    _check_train_args(_train_args(tmp_path, warmup_steps=11, steps=10))
    assert capsys.readouterr().err == (
        "note: --warmup-steps 11 exceeds --steps 10; the learning rate never reaches --lr\n"
    )


@pytest.fixture
def recorded_train(monkeypatch):
    """``train`` and ``export_skimage_photos`` replaced: records the config and the export folder."""
    import diffusers_mdiffae.training as training

    rec = {"train": [], "export": [], "raise": None}

    def train(cfg, log=None):
        rec["train"].append((cfg, log))
        if rec["raise"]:
            raise rec["raise"]

    monkeypatch.setattr(training, "train", train)
    monkeypatch.setattr(training, "export_skimage_photos", lambda folder: rec["export"].append(folder))
    return rec


def test_train_hands_every_option_to_the_training_config(tmp_path, monkeypatch, capsys, recorded_train):
    from diffusers_mdiffae.training import TrainConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "init").mkdir()
    out = tmp_path / "out"
    args = ["train", "--data", "skimage", "--output-dir", out, "--model-config", '{"model_dim": 64}']
    args += ["--init", tmp_path / "init", "--resume", "latest", "--steps", "7", "--batch-size", "3"]
    args += ["--crop", "32", "--lr", "0.01", "--warmup-steps", "2", "--ema-decay", "0.5", "--seed", "9"]
    args += ["--mixed-precision", "bf16", "--gradient-checkpointing", "--checkpoint-every", "4"]
    args += ["--preview-every", "5", "--exclude", "a.png", "b.png", "--permute-channels"]
    args += ["--umd-ratio", "0.25", "--umd-mask-ratio", "0.5"]
    args += ["--token-mask-prob", "0.3", "--sigmoid-bias", "-11.5", "--gradient-weight", "2", "--color-jitter", "0.2"]
    assert cli(capsys, *args) == (0, "", "")
    assert recorded_train["export"] == [str(out / "skimage_photos")]
    assert recorded_train["train"] == [
        (
            TrainConfig(
                data=str(out / "skimage_photos"),
                output_dir=str(out),
                model_config={"model_dim": 64},
                init=str(tmp_path / "init"),
                resume="latest",
                steps=7,
                batch_size=3,
                crop=32,
                lr=0.01,
                seed=9,
                mixed_precision="bf16",
                gradient_checkpointing=True,
                checkpoint_every=4,
                preview_every=5,
                exclude=["a.png", "b.png", "astronaut.png", "coffee.png", "rocket.png", "camera.png"],
                ema_decay=0.5,
                warmup_steps=2,
                permute_channels=True,
                color_jitter=0.2,
                objective={
                    "umd_ratio": 0.25,
                    "umd_mask_ratio": 0.5,
                    "token_mask_prob": 0.3,
                    "sigmoid_bias": -11.5,
                    "gradient_weight": 2.0,
                },
            ),
            cli_module.say,
        )
    ]


def test_train_defaults_reach_the_training_config(tmp_path, capsys, recorded_train):
    from diffusers_mdiffae.training import TrainConfig

    data, out = tmp_path / "photos", tmp_path / "out"
    data.mkdir()
    assert cli(capsys, "train", "--data", data, "--output-dir", out) == (0, "", "")
    assert recorded_train["export"] == []
    cfg = recorded_train["train"][0][0]
    assert cfg == TrainConfig(data=str(data), output_dir=str(out))
    assert (cfg.model_config, cfg.exclude, cfg.objective) == ({}, [], {})  # the published objective


@pytest.mark.parametrize(
    "option,value",
    [
        ("--gradient-weight", "-1"),
        ("--gradient-weight", "nan"),
        ("--gradient-weight", "1000000.5"),
        ("--umd-ratio", "1.5"),
        ("--token-mask-prob", "1.5"),
        ("--sigmoid-bias", "inf"),
        ("--color-jitter", "1"),
    ],
)
def test_train_refuses_objective_values_out_of_range_by_option_name(tmp_path, capsys, recorded_train, option, value):
    data = tmp_path / "photos"
    data.mkdir()
    code, out, err = cli(capsys, "train", "--data", data, "--output-dir", tmp_path / "out", option, value)
    assert code == 2 and option in err and recorded_train["train"] == []


def test_train_objective_options_accept_their_bounds_and_leave_the_rest_to_the_objective(
    tmp_path, capsys, recorded_train
):
    from diffusers_mdiffae.training.objective import ObjectiveConfig

    data = tmp_path / "photos"
    data.mkdir()
    base = ["train", "--data", data, "--output-dir", tmp_path / "out"]
    for extra, objective in (
        (["--gradient-weight", "0.5"], {"gradient_weight": 0.5}),
        (["--gradient-weight", "1e6"], {"gradient_weight": 1e6}),
        (["--umd-ratio", "1"], {"umd_ratio": 1.0}),
    ):
        assert cli(capsys, *base, *extra) == (0, "", "")
        assert recorded_train["train"][-1][0].objective == objective
    # --umd-ratio alone blanks the objective's default fraction of pixel patches, 0.9
    assert ObjectiveConfig(**recorded_train["train"][-1][0].objective).umd_mask_ratio == 0.9


@pytest.mark.parametrize(
    ("model_config", "error", "line"),
    [
        (
            True,
            TypeError("__init__() got an unexpected keyword argument 'foo'"),
            "error: --model-config: __init__() got an unexpected keyword argument 'foo'",
        ),
        (True, TypeError("boom"), "error: TypeError: boom"),
        (False, TypeError("bad argument"), "error: TypeError: bad argument"),
    ],
)
def test_train_names_model_config_only_for_its_own_type_errors(
    tmp_path, capsys, recorded_train, model_config, error, line
):
    data = tmp_path / "photos"
    data.mkdir()
    recorded_train["raise"] = error
    extra = ["--model-config", '{"foo": 1}'] if model_config else []
    rc, _, err = cli(capsys, "train", "--data", data, "--output-dir", tmp_path / "out", *extra)
    assert (rc, err) == (1, line + "\n")


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


def test_seed_accepts_zero_to_two_to_the_63_exclusive():
    assert argtypes.seed_int("0") == 0 and argtypes.seed_int(str(2**63 - 1)) == 2**63 - 1
    for bad in ("-1", str(2**63)):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            argtypes.seed_int(bad)
        assert str(e.value) == f"must be in [0, 2**63), got {bad}"
    with pytest.raises(argparse.ArgumentTypeError) as e:
        argtypes.seed_int("1.5")
    assert str(e.value) == "expected an integer, got '1.5'"


def test_image_extension_option_names_the_formats_it_can_write():
    assert cli_module._ext_type("JPG") == ".jpg"
    with pytest.raises(argparse.ArgumentTypeError) as e:
        cli_module._ext_type("gif")
    assert str(e.value) == "cannot write 'gif' images; use png, jpg, webp, bmp or tiff"


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


# -- eval: what it hands the evaluation and what it writes (the model and the evaluation replaced) ----


@pytest.fixture
def recorded_eval(monkeypatch):
    import diffusers_mdiffae.evaluation as evaluation

    rec = {"load": [], "evaluate": [], "skips": [], "report": None}

    def evaluate_files(model, paths, out_dir, decode_kwargs=None, root=None, on_skip=None):
        rec["evaluate"].append((model, list(paths), out_dir, decode_kwargs, root))
        for name, reason in rec["skips"]:
            on_skip(name, reason)
        return rec["report"]

    monkeypatch.setattr(cli_module, "load_model", lambda spec, dtype: rec["load"].append((spec, dtype)) or "MODEL")
    monkeypatch.setattr(evaluation, "evaluate_files", evaluate_files)
    return rec


def _two_photos(folder):
    from fixtures.hostile import photo

    return [photo(folder / "a.png", 16, 16), photo(folder / "sub" / "b.png", 16, 16, seed=1)]


def test_eval_folder_hands_over_model_options_and_writes_json_without_the_table(tmp_path, capsys, recorded_eval):
    src = tmp_path / "photos"
    a, b = _two_photos(src)
    out = tmp_path / "pictures"
    out.mkdir()  # an existing folder is fine
    report = {"rows": [{"image": "a.png"}, {"image": "sub/b.png"}], "mean": {"psnr": 30.0}, "markdown": "TABLE"}
    recorded_eval["report"] = report
    js = src / "report.json"  # a .json inside the input folder is never read back as an image
    args = ["eval", src, "--out", out, "--json", js, "--model", "m", "--dtype", "bfloat16", "--steps", "3"]
    args += ["--seed", "5", "--pdg-strength", "1.5"]
    rc, stdout, err = cli(capsys, *args)
    assert (rc, err) == (0, "")
    assert stdout == f"TABLE\nevaluated 2, skipped 0 ({src})\n"
    assert recorded_eval["load"] == [("m", "bfloat16")]
    model, paths, out_dir, decode_kwargs, root = recorded_eval["evaluate"][0]
    assert (model, sorted(paths), out_dir, root) == ("MODEL", sorted([a, b]), out, src)
    assert decode_kwargs == {
        "num_inference_steps": 3,
        "pdg_strength": 1.5,
        "seed": 5,
        "sampler": None,
        "schedule": None,
        "strength": None,
    }
    assert js.read_text() == json.dumps({"rows": report["rows"], "mean": report["mean"]}, indent=1)


def test_eval_folder_skips_unreadable_files_and_fails_when_none_was_evaluated(tmp_path, capsys, recorded_eval):
    src = tmp_path / "photos"
    _two_photos(src)
    recorded_eval["skips"] = [("a.png", "cannot read"), ("sub/b.png", "too small")]
    rc, stdout, err = cli(capsys, "eval", src)
    assert (rc, stdout) == (1, "")
    assert err == (
        "skipped a.png: cannot read\nskipped sub/b.png: too small\n"
        f"error: {src}: nothing written, all 2 input(s) skipped\n"
    )


def test_eval_one_file_fails_with_its_reason(tmp_path, capsys, recorded_eval):
    (a, _) = _two_photos(tmp_path / "photos")
    recorded_eval["skips"] = [("a.png", "cannot read")]
    rc, stdout, err = cli(capsys, "eval", a)
    assert (rc, stdout, err) == (1, "", "error: a.png: cannot read\n")
    assert recorded_eval["evaluate"][0][4] == a.parent  # names are relative to the file's folder


def test_eval_one_file_prints_the_table_and_no_tally(tmp_path, capsys, recorded_eval):
    (a, _) = _two_photos(tmp_path / "photos")
    recorded_eval["report"] = {"rows": [{}], "markdown": "TABLE"}
    assert cli(capsys, "eval", a) == (0, "TABLE\n", "")
    assert recorded_eval["load"] == [(None, "float32")]


def test_eval_refuses_a_file_for_out_and_a_folder_for_json(tmp_path, capsys, recorded_eval):
    (a, _) = _two_photos(tmp_path / "photos")
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    rc, _, err = cli(capsys, "eval", a, "--out", taken)
    assert (rc, err) == (1, f"error: {taken}: is a file; --out takes a folder for the pictures\n")
    rc, _, err = cli(capsys, "eval", a, "--json", tmp_path)
    assert (rc, err) == (1, f"error: {tmp_path}: is a folder; --json takes a file name\n")
    assert recorded_eval["load"] == []


# -- encode / decode: which latents are read, which files are written (a stand-in model) -------------


class _CodecModel:
    """Encodes to a constant latent at 1/8 size and refuses 32 px wide images, as a model refuses a
    size it cannot take; decodes a [C, h, w] latent to an 8h x 8w black image."""

    dtype = torch.float32

    def encode(self, x):
        if x.shape[-1] == 32:
            raise ValueError("this model takes no 32 px wide image")
        return types.SimpleNamespace(latent=x[:, :, ::8, ::8] * 0 + 0.5)

    def decode(self, z, **kwargs):
        return types.SimpleNamespace(sample=z.repeat_interleave(8, -1).repeat_interleave(8, -2) * 0)


@pytest.fixture
def codec(monkeypatch):
    monkeypatch.setattr(cli_module, "load_model", lambda spec, dtype: _CodecModel())


def _latent_file(path, tensors, meta):
    # one tensor may be given under several keys: safetensors wants each stored on its own
    save_file({k: v.clone() for k, v in tensors.items()}, str(path), metadata={"images": json.dumps(meta)})
    return path


def test_encode_folder_skips_an_image_the_model_refuses_and_encodes_the_rest(tmp_path, capsys, codec):
    src, out = tmp_path / "in", tmp_path / "z.safetensors"
    # the refused image comes first: the ones after it must still be encoded
    a, b, c = photo(src / "a.png", 32, 16), photo(src / "b.png", 16, 16), photo(src / "c.png", 16, 16)
    rc, stdout, err = cli(capsys, "encode", src, out)
    assert rc == 0
    assert f"skipped {a}: this model takes no 32 px wide image\n" in err
    assert stdout == f"wrote 2 latent(s) to {out}\nencoded 2, skipped 1 ({out})\n"
    with safe_open(str(out), "pt") as f:
        assert sorted(f.keys()) == ["latent.0", "latent.1"]
        assert [v["source"] for v in json.loads(f.metadata()["images"]).values()] == [str(b), str(c)]


def test_encode_one_file_the_model_refuses_fails_naming_it(tmp_path, capsys, codec):
    a = photo(tmp_path / "a.png", 32, 16)
    rc, stdout, err = cli(capsys, "encode", a, tmp_path / "z.safetensors")
    assert (rc, stdout, err) == (1, "", f"error: {a}: this model takes no 32 px wide image\n")
    assert not (tmp_path / "z.safetensors").exists()


def test_decode_reads_only_latent_keys_with_a_plain_decimal_index(tmp_path, capsys, codec):
    # Keys that only look like indices are ignored like any other tensor, not parsed (or crashed on):
    # '²' passes str.isdigit but int() refuses it, so the index must be decimal digits.
    z = torch.zeros(3, 2, 2)
    src = _latent_file(
        tmp_path / "z.safetensors",
        {"latent.0": z, "latent.1.2": z, "latent.x.3": z, "latent.\u00b2": z, "latent.": z},
        {},
    )
    out = tmp_path / "o.png"
    rc, stdout, err = cli(capsys, "decode", src, out)
    assert (rc, stdout, err) == (0, f"wrote {out}\n", "")  # one latent: one file, no tally


def test_decode_numbers_unnamed_outputs_in_index_order_not_text_order(tmp_path, capsys, codec):
    # Without sources the outputs are image_<position>; positions follow 2 < 9 < 10, not "10" < "2".
    z = torch.zeros(3, 2, 2)
    meta = {"2": {"height": 1, "width": 1}, "9": {"height": 2, "width": 2}, "10": {"height": 3, "width": 3}}
    src = _latent_file(tmp_path / "z.safetensors", {"latent.10": z, "latent.2": z, "latent.9": z}, meta)
    out = tmp_path / "out"
    rc, stdout, _ = cli(capsys, "decode", src, out)
    assert (rc, stdout) == (0, f"wrote 3, skipped 0 ({out})\n")
    sizes = {p.name: Image.open(p).size for p in out.iterdir()}
    assert sizes == {"image_0.png": (1, 1), "image_1.png": (2, 2), "image_2.png": (3, 3)}


def test_decode_crops_a_wide_image_to_its_stored_width(tmp_path, capsys, codec):
    # A 2x3 latent decodes to 16 high, 24 wide; width 20 fits the width (24) though not the height.
    src = _latent_file(
        tmp_path / "z.safetensors", {"latent.0": torch.zeros(3, 2, 3)}, {"0": {"height": 10, "width": 20}}
    )
    rc, _, _ = cli(capsys, "decode", src, tmp_path / "o.png")
    assert rc == 0 and Image.open(tmp_path / "o.png").size == (20, 10)


def test_decode_names_outputs_from_sources_with_the_requested_extension(tmp_path, capsys, codec):
    z = torch.zeros(3, 2, 2)
    meta = {"0": {"source": "/p/a.png"}, "1": {"source": "/p/sub/b.jpg"}}
    src = _latent_file(tmp_path / "z.safetensors", {"latent.0": z, "latent.1": z}, meta)
    out = tmp_path / "out"
    rc, _, _ = cli(capsys, "decode", src, out, "--ext", "jpg")
    assert rc == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.*")) == ["a.jpg", "sub/b.jpg"]


def test_decode_ignores_a_source_that_is_not_text(tmp_path, capsys, codec):
    # Hand-edited metadata: a number or a list where the source path should be names nothing.
    z = torch.zeros(3, 2, 2)
    meta = {"0": {"source": 5}, "1": {"source": ["/p/a.png"]}}
    src = _latent_file(tmp_path / "z.safetensors", {"latent.0": z, "latent.1": z}, meta)
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "decode", src, out)
    assert (rc, stdout) == (0, f"wrote 2, skipped 0 ({out})\n")
    assert sorted(p.name for p in out.iterdir()) == ["image_0.png", "image_1.png"]


# -- the model argument and loading --------------------------------------------------------------


def test_model_spec_that_names_a_missing_local_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")  # a local name, though it reads like a Hub id
    for spec in ["./missing", "../missing", "a/b/c", str(tmp_path / "missing"), "dangling"]:
        with pytest.raises(CLIError) as e:
            cli_module.check_model_spec(spec)
        assert str(e.value) == f"{spec}: cannot load model: no such folder"


def test_model_spec_that_looks_like_a_hub_id_is_left_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in ["org/name", "name", None]:
        cli_module.check_model_spec(spec)  # no error: the Hub (or the demo) decides
    (tmp_path / "org" / "name").mkdir(parents=True)
    cli_module.check_model_spec("org/name")  # an existing local folder is fine too


def test_model_spec_that_names_a_file_is_refused_naming_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CLIError) as e:
        cli_module.check_model_spec("m/config.json")
    assert str(e.value) == "m/config.json: --model takes the folder that holds config.json, not a file (pass m)"
    with pytest.raises(CLIError) as e:
        cli_module.check_model_spec("config.json", option="--init")
    assert str(e.value) == "config.json: --init takes the folder that holds config.json, not a file (pass .)"


@pytest.fixture
def saved_tiny_model(tmp_path):
    from fixtures.models import make_tiny

    path = tmp_path / "tiny"
    make_tiny().save_pretrained(path)
    return path


def test_load_model_runs_in_float32_unless_a_dtype_is_named(saved_tiny_model):
    model = cli_module.load_model(str(saved_tiny_model))
    assert model.dtype == torch.float32 and not model.training
    assert cli_module.load_model(str(saved_tiny_model), "bfloat16").dtype == torch.bfloat16
    assert cli_module.load_model(str(saved_tiny_model), "float16").dtype == torch.float16


def test_load_model_failure_is_one_sentence_naming_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MDIFFAE_TRACEBACK", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CLIError) as e:
        cli_module.load_model(str(empty))
    assert str(e.value).startswith(f"{empty}: cannot load model (") and str(e.value).endswith(")")
    assert "\n" not in str(e.value)


# -- reconstruct: inputs, outputs, the model's dtype, the one-file report (a stand-in model) --------


@pytest.fixture
def recorded_codec(monkeypatch):
    """``load_model`` replaced by the stand-in codec; the ``(spec, dtype)`` of every load recorded."""
    loads = []
    monkeypatch.setattr(cli_module, "load_model", lambda spec, dtype: loads.append((spec, dtype)) or _CodecModel())
    return loads


def _white(path, w=16, h=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (255, 255, 255)).save(path)
    return path


def test_reconstruct_hands_the_model_and_dtype_options_to_the_loader(tmp_path, capsys, recorded_codec):
    src = _white(tmp_path / "a.png")
    assert cli(capsys, "reconstruct", src, tmp_path / "o.png", "--dtype", "bfloat16", "--model", "org/m")[0] == 0
    assert cli(capsys, "reconstruct", src, tmp_path / "p.png")[0] == 0
    assert recorded_codec == [("org/m", "bfloat16"), (None, "float32")]


@pytest.mark.parametrize("ext, name", [(None, "a.png"), ("webp", "a.webp"), (".JPG", "a.jpg")])
def test_reconstruct_one_file_into_a_folder_names_it_after_the_input_with_the_extension(
    tmp_path, capsys, codec, ext, name
):
    src = _white(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    assert cli(capsys, "reconstruct", src, out, *(["--ext", ext] if ext else []))[0] == 0
    assert [p.name for p in out.iterdir()] == [name]


def test_reconstruct_one_file_reports_size_latent_psnr_and_elapsed_time(tmp_path, capsys, recorded_codec, monkeypatch):
    clock = iter([100.0, 101.25])
    monkeypatch.setattr(cli_module, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    src, out = _white(tmp_path / "a.png"), tmp_path / "o.png"
    rc, stdout, err = cli(capsys, "reconstruct", src, out)
    # a white image (1.0) decoded black (0.0): MSE 1 on a peak-to-peak of 2, 10 log10(4) = 6.02 dB
    assert (rc, err) == (0, "")
    assert stdout == f"wrote {out} (16x16, latent (3, 2, 2), PSNR 6.02 dB, 1.25 s)\n"
    assert Image.open(out).size == (16, 16)


def test_reconstruct_an_empty_folder_fails_saying_so(tmp_path, capsys, recorded_codec):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    rc, stdout, err = cli(capsys, "reconstruct", tmp_path / "empty", tmp_path / "out")
    assert (rc, stdout, err) == (1, "", f"error: {tmp_path / 'empty'}: no images found\n")
    assert recorded_codec == []


def test_reconstruct_a_folder_onto_a_file_fails_and_into_an_existing_folder_works(tmp_path, capsys, recorded_codec):
    src = tmp_path / "in"
    _white(src / "a.png")
    _white(src / "sub" / "b.png")
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"keep me")
    rc, stdout, err = cli(capsys, "reconstruct", src, taken)
    assert (rc, stdout) == (1, "")
    assert err == f"error: {taken}: is a file, but the input {src} is a folder; name an output folder\n"
    assert taken.read_bytes() == b"keep me" and recorded_codec == []

    out = tmp_path / "existing"
    out.mkdir()
    rc, stdout, err = cli(capsys, "reconstruct", src, out)
    assert (rc, stdout) == (0, f"wrote 2, skipped 0 ({out})\n")
    assert "error" not in err and "skipped" not in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]


_DEAD_PID = 4_999_999  # above Linux's largest pid_max (2**22): never a running process


def test_reconstruct_removes_only_its_own_outputs_stale_temporaries(tmp_path, capsys, recorded_codec):
    src = tmp_path / "in"
    _white(src / "a.png")
    _white(src / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    mine = out / f".a.png.tmp-{_DEAD_PID}-abc"
    others = [out / f".c.png.tmp-{_DEAD_PID}-abc", out / f".notes.txt.tmp-{_DEAD_PID}-abc"]
    for p in [mine, *others]:
        p.write_bytes(b"partial")
    rc, _, _ = cli(capsys, "reconstruct", src, out)
    assert rc == 0
    assert not mine.exists()
    assert all(p.exists() for p in others)  # not this run's outputs: another command's business

    single_mine = tmp_path / f".one.png.tmp-{_DEAD_PID}-x"
    single_other = tmp_path / f".two.png.tmp-{_DEAD_PID}-x"
    single_mine.write_bytes(b"partial")
    single_other.write_bytes(b"partial")
    assert cli(capsys, "reconstruct", src / "a.png", tmp_path / "one.png")[0] == 0
    assert not single_mine.exists() and single_other.exists()


def test_reconstruct_one_file_says_it_pads_a_size_not_a_multiple_of_16_width_first(tmp_path, capsys, codec):
    # 40 wide, 10 high: both sides differ, so a swapped or repeated side shows
    src, out = _white(tmp_path / "a.png", w=40, h=10), tmp_path / "o.png"
    rc, _, err = cli(capsys, "reconstruct", src, out)
    assert (rc, err) == (0, f"{src}: 40x10 is not a multiple of 16: padded to 48x16 (reflection) and cropped back\n")
    assert Image.open(out).size == (40, 10)


def test_reconstruct_says_edges_were_replicated_when_a_side_is_too_short_to_reflect(tmp_path, capsys, codec):
    # 5 rows need 11 more: a reflection reaches only 4 rows back, so the pad repeats the edge instead
    src, out = _white(tmp_path / "a.png", w=40, h=5), tmp_path / "o.png"
    rc, _, err = cli(capsys, "reconstruct", src, out)
    assert (rc, err) == (
        0,
        f"{src}: 40x5 is not a multiple of 16: padded to 48x16 (edge replication) and cropped back\n",
    )
    assert Image.open(out).size == (40, 5)


def _messages_beside_the_bar(err, label):
    """stderr's lines without the progress bar's redraws (which all start with ``label``)."""
    parts = err.replace("\n", "\r").split("\r")
    return [p for p in parts if p.strip() and not p.startswith(f"{label}: ")]


def test_reconstruct_folder_skips_what_it_cannot_read_or_the_model_refuses_and_does_the_rest(tmp_path, capsys, codec):
    src, out = tmp_path / "in", tmp_path / "out"
    # the refused image comes first: one failure must not end the run
    a, b = photo(src / "a.png", 32, 16), src / "b.png"
    b.write_bytes(b"not an image")
    _white(src / "c.png")
    _white(src / "d.png")
    rc, stdout, err = cli(capsys, "reconstruct", src, out)
    assert (rc, stdout) == (0, f"wrote 2, skipped 2 ({out})\n")
    assert _messages_beside_the_bar(err, "reconstruct") == [
        f"skipped {a}: this model takes no 32 px wide image",
        f"skipped {b}: cannot read image (UnidentifiedImageError: cannot identify image file '{b}')",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["c.png", "d.png"]


def test_reconstruct_folder_shows_a_progress_bar_named_reconstruct(tmp_path, capsys, codec):
    src = tmp_path / "in"
    _white(src / "a.png")
    _white(src / "b.png")
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "out")
    assert rc == 0
    bars = [p for p in err.replace("\n", "\r").split("\r") if p.strip()]
    assert bars[0].startswith("reconstruct:   0%|") and bars[-1].startswith("reconstruct: 100%|")
    assert all(p.startswith("reconstruct: ") for p in bars)


class _RecordingCodecModel(_CodecModel):
    """The stand-in codec in bfloat16, refusing an input of another dtype as torch layers do, and
    recording the options each decode gets."""

    dtype = torch.bfloat16

    def __init__(self):
        self.decode_options = []

    def encode(self, x):
        if x.dtype != self.dtype:
            raise RuntimeError(f"Input type ({x.dtype}) and weight type ({self.dtype}) should be the same")
        return super().encode(x)

    def decode(self, z, **kwargs):
        self.decode_options.append(kwargs)
        return super().decode(z)


def test_reconstruct_hands_a_bfloat16_model_bfloat16_input_and_every_decoder_option(tmp_path, capsys, monkeypatch):
    model = _RecordingCodecModel()
    monkeypatch.setattr(cli_module, "load_model", lambda spec, dtype: model)
    src, out = _white(tmp_path / "a.png"), tmp_path / "o.png"
    options = ["--steps", "2", "--pdg-strength", "1.1", "--seed", "3", "--sampler", "dpmpp_2m"]
    options += ["--schedule", "cosine", "--strength", "0.5", "--dtype", "bfloat16"]
    rc, _, err = cli(capsys, "reconstruct", src, out, *options)
    assert (rc, err) == (0, "")
    assert model.decode_options == [
        {
            "num_inference_steps": 2,
            "pdg_strength": 1.1,
            "seed": 3,
            "sampler": "dpmpp_2m",
            "schedule": "cosine",
            "strength": 0.5,
        }
    ]
    assert Image.open(out).size == (16, 16)


def _help_text(capsys, monkeypatch, command):
    """``mdiffae COMMAND --help`` unwrapped, its whitespace collapsed to single spaces."""
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as e:
        cli_module.main([command, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


MODEL_OPTION_HELP = [
    "--model MODEL diffusers folder, published snapshot folder or Hub id (default: the bundled demo checkpoint)",
    "--dtype {bfloat16,float16,float32} dtype the model runs in (default: float32)",
]
DECODER_OPTION_HELP = [
    "--steps STEPS decoder steps (default: model config, 1)",
    "--pdg-strength PDG_STRENGTH path-drop guidance strength (1.0 = off; 1.01-1.2 sharpens with --steps > 1)",
    "--seed SEED noise seed (default: model config)",
    "--sampler {ddim,dpmpp_2m} ddim (default) or dpmpp_2m (DPM-Solver++(2M), better at few steps)",
    "--schedule {linear,cosine} time grid of the sampler: linear (default) or cosine",
    "--strength STRENGTH start the sampler at t = STRENGTH in (0, 1] instead of 1 (default 1)",
]
EXT_OPTION_HELP = "--ext EXT image format of folder outputs: png (default, lossless), jpg, webp, bmp or tiff"
IMAGE_INPUT_HELP = "input an image file, or a folder (every image below it)"
ENCODE_DATASET_HELP = [
    "input image folder (recursive) or a datasets folder saved with save_to_disk",
    "output output folder for shards/, run.json and manifest.json (a rerun resumes it)",
    "--model MODEL diffusers folder, published snapshot folder or Hub id (default: bundled demo)",
    "--resolution RESOLUTION shorter side after resizing, a multiple of 16; centre-cropped square (default: 256)",
    "--no-crop keep the aspect ratio (sides cropped to multiples of 16)",
    "--flip also encode horizontal flips",
    "--dtype {bfloat16,float16,float32} storage dtype of the latents (default: float16)",
    "--shard-size SHARD_SIZE images per shard (default: 256)",
    "--batch-size BATCH_SIZE images per encoder call (default: 16)",
    "--column COLUMN image column of a datasets dataset (default: image)",
    "--threads THREADS torch CPU threads per process",
]

# What `mdiffae COMMAND --help` says: the description, then each argument with its help sentence.
COMMAND_HELP = {
    "reconstruct": [
        "Encode and decode images; a folder input gives a folder output with the same structure.",
        IMAGE_INPUT_HELP,
        "output an image file (its extension names the format) or, for a folder input or a path ending in /, a folder",
        *MODEL_OPTION_HELP,
        *DECODER_OPTION_HELP,
        EXT_OPTION_HELP,
    ],
    "encode": [
        "Encode images to one safetensors file (latents + source/size metadata).",
        IMAGE_INPUT_HELP,
        "output the .safetensors file to write",
        *MODEL_OPTION_HELP,
    ],
    "decode": [
        "Decode the latents of a file written by `mdiffae encode`.",
        "input a .safetensors file written by `mdiffae encode`",
        "output an image file (one latent), or a folder (several latents, or a path ending in /); folder outputs "
        "keep the sources' relative folders",
        *MODEL_OPTION_HELP,
        *DECODER_OPTION_HELP,
        EXT_OPTION_HELP,
    ],
    "eval": [
        "Reconstruction quality against bicubic-from-1/4 and -1/8 baselines.",
        IMAGE_INPUT_HELP,
        "--out OUT folder for comparison grids and latent PCA images",
        "--json JSON also write the figures to this JSON file",
        *MODEL_OPTION_HELP,
        *DECODER_OPTION_HELP,
    ],
    "convert": [
        "Convert a published mDiffAE snapshot (config.json + model.safetensors) to a diffusers folder; nothing is "
        "written unless every check passes.",
        "snapshot the downloaded original repository folder",
        "out output folder (written only if every check passes; never inside the snapshot)",
        "--verify run the original m_diffae package from the snapshot and compare outputs",
        "--dtype {bfloat16,float16,float32} dtype of the saved weights",
        "--overwrite replace OUT if it exists (the old one is removed only after the new one is complete)",
        "--min-psnr MIN_PSNR warn when the sample reconstruction is below this PSNR in dB (default: the "
        "converter's, 25)",
    ],
    "encode-dataset": [
        "Encode an image dataset to sharded mDiffAE latents (resumable; `accelerate launch -m "
        "diffusers_mdiffae.dataset_encoding` for several processes).",
        *ENCODE_DATASET_HELP,
    ],
    "train": [
        "Train or fine-tune with the published objective, on accelerate.",
        "--data DATA image folder (recursive), or 'skimage' for scikit-image's samples",
        "--output-dir OUTPUT_DIR folder for checkpoints, previews, log.jsonl and final/",
        "--model-config MODEL_CONFIG JSON object of AutoencoderMDiffAE arguments for a fresh model",
        "--init INIT fine-tune from this model (diffusers folder, snapshot folder or Hub id)",
        "--resume RESUME a checkpoint folder, or 'latest' (falls back past a corrupt one)",
        "--steps STEPS total optimizer steps (default: 1000)",
        "--batch-size BATCH_SIZE images per step and process (default: 8)",
        "--crop CROP crop side in pixels, a multiple of 16 (default: 128)",
        "--lr LR peak learning rate, in (0, 1] (default: 5e-4)",
        "--warmup-steps WARMUP_STEPS linear warm-up steps (default: 100)",
        "--ema-decay EMA_DECAY EMA decay in [0, 1) (default: 0.999)",
        "--seed SEED seed of the initialisation and every batch (default: 0)",
        "--mixed-precision {no,bf16,fp16} autocast dtype (default: no)",
        "--gradient-checkpointing trade compute for activation memory",
        "--checkpoint-every CHECKPOINT_EVERY steps between checkpoints (and one at the end), 0 = none (default: 500)",
        "--preview-every PREVIEW_EVERY steps between preview grids, 0 = never (default: 500)",
        "--exclude [EXCLUDE ...] file names to hold out",
        "--permute-channels shuffle RGB channels of every crop (colour diversity for small folders)",
        "--color-jitter COLOR_JITTER per-crop brightness, contrast and saturation factors drawn from "
        "[1 - s, 1 + s] (default: 0)",
        "--token-mask-prob TOKEN_MASK_PROB fraction of samples whose latent tokens are masked, 3 of each 2x2 "
        "group (default: 0.5)",
        "--sigmoid-bias SIGMOID_BIAS SiD2 bias b of the loss weight sigmoid(logsnr - b); lower puts more weight "
        "near pure noise, where the 1-step decode runs (default: -8)",
        "--gradient-weight GRADIENT_WEIGHT add this times the squared error of neighbour differences to the "
        "loss, against a 16-px grid in flat regions (default: 0 = the published loss)",
        "--umd-ratio UMD_RATIO UMD objective: fraction of samples given a noise-free step with masked pixel "
        "patches (r_{t=0}; default 0 = the published objective)",
        "--umd-mask-ratio UMD_MASK_RATIO UMD: fraction of pixel patches blanked in those samples, in [0, 1) "
        "(default: 0.9)",
    ],
}


@pytest.mark.parametrize("command", sorted(COMMAND_HELP))
def test_help_of_each_command_gives_its_description_and_every_arguments_sentence(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        cli_module.main([command, "--help"])
    raw = capsys.readouterr().out
    description, *arguments = COMMAND_HELP[command]
    assert f"\n\n{description}\n\n" in raw  # its own paragraph, unwrapped at this width
    text = " ".join(raw.split())
    for expected in arguments:
        assert f" {expected} " in f"{text} "


def test_help_of_encode_has_no_decoder_options(capsys, monkeypatch):
    text = _help_text(capsys, monkeypatch, "encode")
    for decoder_option in ["--steps", "--pdg-strength", "--seed", "--sampler", "--schedule", "--strength", "--ext"]:
        assert decoder_option not in text


def test_top_level_help_lists_every_command_with_its_one_line_summary(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        cli_module.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: mdiffae [-h] COMMAND ... mDiffAE image tokenizer (diffusers-mdiffae).")
    assert (
        "COMMAND reconstruct encode and decode images encode encode images to a safetensors file of latents "
        "decode decode a latent file written by `mdiffae encode` eval PSNR/SSIM(/LPIPS) against bicubic "
        "baselines, with pictures convert convert a published snapshot to a diffusers folder encode-dataset "
        "encode an image dataset to sharded latents (resumable) train train or fine-tune (`accelerate launch "
        "-m diffusers_mdiffae.cli train ...`)"
    ) in text


def test_standalone_encode_dataset_help_matches_the_subcommands(capsys, monkeypatch):
    from diffusers_mdiffae.dataset_encoding.options import build_parser as encode_dataset_parser

    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        encode_dataset_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in ENCODE_DATASET_HELP:
        assert expected in text


# -- parsing: what the command line accepts and refuses before any work ------------------------------


def test_no_command_is_a_one_line_usage_error(capsys):
    assert cli(capsys) == (2, "", "error: the following arguments are required: COMMAND (see `mdiffae -h`)\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "snap", "out", "--dtype", "int8"],
        ["encode-dataset", "in", "out", "--dtype", "int8"],
        ["encode", "in", "out", "--dtype", "int8"],
    ],
)
def test_dtype_options_accept_only_the_three_float_types(capsys, argv):
    rc, stdout, err = cli(capsys, *argv)
    assert (rc, stdout) == (2, "")
    assert err.startswith("error: --dtype: invalid choice: 'int8' (choose from ")
    assert err.endswith(f" (see `mdiffae {argv[0]} -h`)\n")
    for name in ["bfloat16", "float16", "float32"]:
        assert name in err
        assert cli_module.build_parser().parse_args(argv[:-1] + [name]).dtype == name


def test_schedule_and_strength_reach_the_decoder_and_are_checked(capsys):
    args = cli_module.build_parser().parse_args(["decode", "z", "o", "--schedule", "cosine", "--strength", "1"])
    assert cli_module._decode_kwargs(args) == {
        "num_inference_steps": None,
        "pdg_strength": None,
        "seed": None,
        "sampler": None,
        "schedule": "cosine",
        "strength": 1.0,
    }
    args = cli_module.build_parser().parse_args(
        ["reconstruct", "a", "b", "--schedule", "linear", "--strength", "1e-3"]
    )
    assert (args.schedule, args.strength) == ("linear", 0.001)
    rc, _, err = cli(capsys, "decode", "z", "o", "--strength", "0")
    assert (rc, err) == (2, "error: --strength: must be in (0, 1], got 0 (see `mdiffae decode -h`)\n")
    rc, _, err = cli(capsys, "decode", "z", "o", "--strength", "1.5")
    assert (rc, err) == (2, "error: --strength: must be in (0, 1], got 1.5 (see `mdiffae decode -h`)\n")
    rc, _, err = cli(capsys, "eval", "x", "--schedule", "LINEAR")
    assert rc == 2 and err.startswith("error: --schedule: invalid choice: 'LINEAR'")


def test_an_interrupted_command_says_so_in_one_line_with_status_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "cmd_reconstruct", interrupted)
    assert cli(capsys, "reconstruct", "a.png", "b.png") == (130, "", "error: interrupted\n")


def test_a_failed_command_is_one_error_line_unless_tracebacks_are_asked_for(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli_module, "cmd_encode", broken)
    monkeypatch.delenv("MDIFFAE_TRACEBACK", raising=False)
    assert cli(capsys, "encode", "a.png", "z.safetensors") == (
        1,
        "",
        "error: RuntimeError: disk on fire; second line\n",
    )
    monkeypatch.setenv("MDIFFAE_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli_module.main(["encode", "a.png", "z.safetensors"])


def test_load_model_without_a_spec_loads_the_bundled_checkpoint_in_eval_mode():
    from diffusers_mdiffae import DEMO_MODEL_DIR

    model = cli_module.load_model(None, "float32")
    assert model.config._name_or_path == str(DEMO_MODEL_DIR) and not model.training


def test_a_one_file_failure_names_the_file_once(tmp_path, capsys, codec):
    src = tmp_path / "broken.png"
    src.write_bytes(b"not an image")
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "o.png")
    # the loader's message already starts with the file's name: it is said once, not twice
    assert rc == 1 and err.startswith(f"error: {src}: cannot read image (")


def test_progress_bars_follow_the_terminal_width(monkeypatch):
    import tqdm.auto

    made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda items, **kwargs: made.append(kwargs) or items)
    assert cli_module._progress([1, 2], "reconstruct") == [1, 2]
    assert made == [{"desc": "reconstruct", "disable": False, "dynamic_ncols": True}]


def test_a_folder_that_is_not_a_model_is_refused_with_the_loaders_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli_module.CLIError) as e:
        cli_module.load_model(str(tmp_path / "empty"), "float32")
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'empty'}: cannot load model (") and "config.json" in message


def test_the_parsed_arguments_name_their_command():
    args = cli_module.build_parser().parse_args(["reconstruct", "a.png", "b.png"])
    assert args.command == "reconstruct" and (args.input, args.output) == ("a.png", "b.png")


def test_a_model_folder_refusal_names_the_folder_once(tmp_path):
    """The snapshot reader's message starts with the folder too; the CLI's sentence says it once."""
    from test_convert import ORIGINAL

    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "config.json").write_text(json.dumps(ORIGINAL["mdiffae_v1"][0]))
    with pytest.raises(cli_module.CLIError) as e:
        cli_module.load_model(str(snap), "float32")
    assert str(e.value) == f"{snap}: cannot load model (expected model.safetensors)"
