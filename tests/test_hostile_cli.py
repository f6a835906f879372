"""Hostile: the `mdiffae` command on inputs and outputs meant to break it.

Every failure must be one ``error: <file>: <reason>`` line, a non-zero status and no traceback;
nothing the user had may be lost.
"""

import json
import os

import fixtures.hostile as hostile_helpers
import pytest
import torch
from fixtures.hostile import assert_one_error, cli, cli_subprocess, photo, tmpfs
from PIL import Image
from safetensors.torch import save_file

model_dir = hostile_helpers.model_dir  # the shared session fixture (a tiny saved model)


def latents(path, sources=None, dtype=torch.float32, shape=(64, 3, 3)):
    z = torch.randn(*shape).to(dtype) if dtype.is_floating_point else torch.randint(0, 5, shape, dtype=dtype)
    tensors = {f"latent.{i}": z.clone() for i in range(len(sources or [None]))}
    meta = {str(i): {"source": s, "height": 48, "width": 48} for i, s in enumerate(sources or [None]) if s}
    save_file(tensors, path, metadata={"images": json.dumps(meta)})
    return path


# -- data loss ----------------------------------------------------------------------------------


def test_decode_keeps_same_named_sources_apart(tmp_path, capsys, model_dir):
    z = latents(tmp_path / "z.safetensors", ["imgs/a/x.png", "imgs/b/x.png"])
    rc, out, _ = cli(capsys, "decode", z, tmp_path / "dec", "--model", model_dir)
    assert rc == 0 and "wrote 2, skipped 0" in out  # before: one dec/x.png, "wrote 2 image(s)"
    assert sorted(p.relative_to(tmp_path / "dec").as_posix() for p in (tmp_path / "dec").rglob("*.png")) == [
        "a/x.png",
        "b/x.png",
    ]


def test_decode_refuses_two_latents_of_one_source(tmp_path, capsys, model_dir):
    z = latents(tmp_path / "z.safetensors", ["x.png", "x.png"])
    rc, _, err = cli(capsys, "decode", z, tmp_path / "dec", "--model", model_dir)
    assert_one_error(rc, err, "two inputs would write the same file", "latent.0", "latent.1")
    assert not (tmp_path / "dec").exists()


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
def test_reconstruct_never_overwrites_its_input(tmp_path, capsys, model_dir, spelling):
    src = photo(tmp_path / "photo.png")
    before = src.read_bytes()
    out = {
        "same": src,
        "dot": tmp_path / "." / "photo.png",
        "symlink": tmp_path / "l.png",
        "hardlink": tmp_path / "h.png",
    }[spelling]
    if spelling == "symlink":
        out.symlink_to(src)
    if spelling == "hardlink":
        os.link(src, out)
    rc, _, err = cli(capsys, "reconstruct", src, out, "--model", model_dir)
    assert_one_error(rc, err, "is the input", str(out))
    assert src.read_bytes() == before


def test_reconstruct_folder_onto_or_into_itself_is_refused(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    before = (src / "a.png").read_bytes()
    for out in (src, str(src) + "/", src / "recon"):
        rc, _, err = cli(capsys, "reconstruct", src, out, "--model", model_dir)
        assert_one_error(rc, err, str(out).rstrip("/"))
    assert (src / "a.png").read_bytes() == before and not (src / "recon").exists()


def test_convert_snapshot_onto_itself_keeps_the_weights(tmp_path, capsys):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"weights")
    for out in (snap, snap / "sub", tmp_path):
        rc, _, err = cli(capsys, "convert", snap, out, "--overwrite")
        assert_one_error(rc, err, str(out))
    assert (snap / "model.safetensors").read_bytes() == b"weights"  # before: deleted by --overwrite


def test_folder_outputs_are_png_unless_asked(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.jpg")
    rc, out, _ = cli(capsys, "reconstruct", src, tmp_path / "out", "--model", model_dir)
    assert rc == 0 and Image.open(tmp_path / "out" / "a.png").format == "PNG"
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "out2", "--model", model_dir, "--ext", "gif")
    assert_one_error(rc, err, "--ext")


# -- one file must not stop everything ------------------------------------------------------------


def test_reconstruct_folder_skips_unreadable_files(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    (src / "c.png").write_bytes(b"")
    photo(src / "d.png")
    rc, out, err = cli(capsys, "reconstruct", src, tmp_path / "out", "--model", model_dir)
    assert rc == 0 and "wrote 2, skipped 2" in out  # before: stopped at b.png
    assert "skipped " in err and "b.png" in err and "c.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "d.png"]


def test_folder_of_only_bad_files_fails_with_one_error(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    src.mkdir()
    (src / "b.png").write_bytes(b"nope")
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "out", "--model", model_dir)
    assert_one_error(rc, err, "nothing written", alone=False)


def test_eval_skips_a_bad_file_and_single_bad_file_is_one_error(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    (src / "bad.png").write_bytes(b"garbage")
    rc, out, err = cli(capsys, "eval", src, "--model", model_dir, "--json", tmp_path / "e.json")
    assert rc == 0 and "evaluated 1, skipped 1" in out and "bad.png" in err  # before: traceback
    assert len(json.loads((tmp_path / "e.json").read_text())["rows"]) == 1
    rc, _, err = cli(capsys, "eval", src / "bad.png", "--model", model_dir)
    assert_one_error(rc, err, "bad.png", "cannot read image")


def test_encode_folder_skips_and_records_only_good_files(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    (src / "bad.png").write_bytes(b"garbage")
    rc, out, _ = cli(capsys, "encode", src, tmp_path / "z.safetensors", "--model", model_dir)
    assert rc == 0 and "encoded 1, skipped 1" in out


# -- silent garbage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("int32", "dtype int32"),
        ("nan", "NaN"),
        ("rank", "shape [64, 9]"),
    ],
)
def test_decode_refuses_latents_that_are_not_latents(tmp_path, capsys, model_dir, kind, fragment):
    path = tmp_path / "z.safetensors"
    if kind == "int32":
        latents(path, dtype=torch.int32)
    elif kind == "nan":
        save_file({"latent.0": torch.full((64, 3, 3), float("nan"))}, path)
    else:
        save_file({"latent.0": torch.zeros(64, 9)}, path)
    rc, _, err = cli(capsys, "decode", path, tmp_path / "o.png", "--model", model_dir)
    assert_one_error(rc, err, "z.safetensors", fragment)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":',
        b"\xff" * 100,
        b'\x1e\x00\x00\x00\x00\x00\x00\x00{"latent.0": {"dtype": "F32"',
    ],
)
def test_malformed_safetensors_is_one_error(tmp_path, capsys, model_dir, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    rc, _, err = cli(capsys, "decode", path, tmp_path / "o.png", "--model", model_dir)
    assert_one_error(rc, err, "bad.safetensors", "not a latent file")


def test_decode_with_unreadable_metadata_still_decodes(tmp_path, capsys, model_dir):
    path = tmp_path / "z.safetensors"
    save_file({"latent.0": torch.randn(64, 2, 2)}, path, metadata={"images": "{not json"})
    rc, _, err = cli(capsys, "decode", path, tmp_path / "o.png", "--model", model_dir)
    assert rc == 0 and "not valid JSON" in err and Image.open(tmp_path / "o.png").size == (32, 32)


# -- output paths ----------------------------------------------------------------------------------


def test_trailing_slash_or_existing_folder_means_a_folder(tmp_path, capsys, model_dir):
    z = latents(tmp_path / "one.safetensors", ["photo.png"])
    rc, out, _ = cli(capsys, "decode", z, str(tmp_path / "decoded") + "/", "--model", model_dir)
    assert rc == 0 and (tmp_path / "decoded" / "photo.png").is_file()  # before: a FILE named decoded
    rc, _, err = cli(capsys, "decode", z, tmp_path / "decoded2", "--model", model_dir)
    assert_one_error(rc, err, "decoded2", "no image extension")
    (tmp_path / "existing").mkdir()
    src = photo(tmp_path / "x.png")
    rc, _, _ = cli(capsys, "reconstruct", src, tmp_path / "existing", "--model", model_dir)
    assert rc == 0 and (tmp_path / "existing" / "x.png").is_file()


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("out.png", "PNG"),
        ("out.jpg", "JPEG"),
        ("out.bmp", "BMP"),
        ("out.tiff", "TIFF"),
        ("out.gif", None),
        ("out.xyz", None),
    ],
)
def test_the_extension_names_the_format(tmp_path, capsys, model_dir, name, fmt):
    src = photo(tmp_path / "x.png")
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / name, "--model", model_dir)
    if fmt is None:
        assert_one_error(rc, err, name, "cannot write")  # before: PNG bytes under .gif
        assert not (tmp_path / name).exists()
    else:
        assert rc == 0 and Image.open(tmp_path / name).format == fmt


def test_encode_output_that_is_a_folder_or_not_safetensors(tmp_path, capsys, model_dir):
    src = photo(tmp_path / "x.png")
    (tmp_path / "dir").mkdir()
    rc, _, err = cli(capsys, "encode", src, tmp_path / "dir", "--model", model_dir)
    assert_one_error(rc, err, "dir", "is a folder")  # before: IsADirectoryError traceback
    rc, _, err = cli(capsys, "encode", src, tmp_path / "z.npy", "--model", model_dir)
    assert_one_error(rc, err, "z.npy", "safetensors")


def test_read_only_filesystem_is_one_error_naming_the_file(tmp_path, capsys, model_dir):
    src = photo(tmp_path / "x.png")
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        rc, _, err = cli(capsys, "reconstruct", src, ro / "o.png", "--model", model_dir)
        assert_one_error(rc, err, str(ro / "o.png"), "Read-only file system")


def test_full_disk_is_one_error_and_leaves_no_partial_file(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    for i in range(3):
        photo(src / f"p{i}.png", 64, 64, seed=i)
    with tmpfs(tmp_path / "full", "16k") as full:
        (full / "filler").write_bytes(os.urandom(12 * 1024))
        rc, _, err = cli(capsys, "encode", src, full / "z.safetensors", "--model", model_dir)
        assert_one_error(rc, err, str(full / "z.safetensors"), "No space left", alone=False)  # after a progress bar
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
        rc, _, err = cli(capsys, "reconstruct", src, full / "out", "--model", model_dir)
        assert_one_error(rc, err, "No space left", alone=False)
        assert not any(p.name.startswith(".") for p in full.rglob("*"))


# -- unclear errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["train", "--data", "D", "--output-dir", "R", "--batch-size", "0"], "--batch-size: must be at least 1"),
        (["train", "--data", "D", "--output-dir", "R", "--lr", "nan"], "--lr: must be a finite number"),
        (["train", "--data", "D", "--output-dir", "R", "--lr", "-1"], "--lr: must be in (0, 1]"),
        (["train", "--data", "D", "--output-dir", "R", "--steps", "0"], "--steps: must be at least 1"),
        (["train", "--data", "D", "--output-dir", "R", "--crop", "40"], "--crop: must be a positive multiple of 16"),
        (["train", "--data", "D", "--output-dir", "R", "--ema-decay", "1"], "--ema-decay: must be in [0, 1)"),
        (["train", "--data", "D", "--output-dir", "R", "--model-config", "{bad"], "--model-config: not valid JSON"),
        (
            ["train", "--data", "D", "--output-dir", "R", "--model-config", "[1]"],
            "--model-config: expected a JSON object",
        ),
        (["reconstruct", "a.png", "b.png", "--steps", "0"], "--steps: must be at least 1"),
        (["reconstruct", "a.png", "b.png", "--pdg-strength", "inf"], "--pdg-strength: must be a finite number"),
        (["reconstruct", "a.png", "b.png", "--seed", "-3"], "--seed: must be in [0, 2**63)"),
        (["reconstruct", "a.png", "b.png", "--dtype", "int8"], "--dtype: invalid choice"),
        (["encode-dataset", "a", "b", "--resolution", "17"], "--resolution: must be a positive multiple of 16"),
        (["encode-dataset", "a", "b", "--shard-size", "0"], "--shard-size: must be at least 1"),
        (["reconstruct", "a.png"], "required"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(capsys, args, fragment):
    rc, _, err = cli(capsys, *args)
    assert rc == 2
    assert_one_error(rc, err, fragment)


def test_model_pointing_at_config_json_says_pass_the_folder(tmp_path, capsys, model_dir):
    src = photo(tmp_path / "x.png")
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "o.png", "--model", os.path.join(model_dir, "config.json"))
    assert_one_error(rc, err, "config.json", f"pass {model_dir}")  # before: KeyError 'weight_map' traceback
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "o.png", "--model", tmp_path / "nowhere")
    assert_one_error(rc, err, "nowhere", "cannot load model")
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "reconstruct", src, tmp_path / "o.png", "--model", tmp_path / "empty")
    assert_one_error(rc, err, "empty", "cannot load model")


def test_train_refuses_bad_folders_up_front(tmp_path, capsys):
    data = tmp_path / "data"
    photo(data / "a.png")
    for args, fragment in (
        (["--data", tmp_path / "missing", "--output-dir", tmp_path / "r"], "no such folder"),
        (["--data", data, "--output-dir", data / "run"], "inside the input folder"),
        (["--data", data, "--output-dir", tmp_path / "r", "--resume", tmp_path / "nope"], "no such checkpoint"),
        (["--data", data, "--output-dir", data / "a.png"], "is a file"),
    ):
        rc, _, err = cli(capsys, "train", *args)
        assert_one_error(rc, err, fragment)


def test_in_a_fresh_process_failures_are_one_line_without_traceback(tmp_path, model_dir):
    """What a user sees: the real entry point, stderr as printed, exit status."""
    (tmp_path / "d").mkdir()
    res = cli_subprocess("encode", photo(tmp_path / "x.png"), tmp_path / "d", "--model", model_dir)
    assert res.returncode == 1 and res.stderr.splitlines() == [
        f"error: {tmp_path / 'd'}: is a folder; name the .safetensors file to write"
    ]
    res = cli_subprocess("train", "--data", tmp_path, "--output-dir", tmp_path / "r", "--lr", "nan")
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr


def test_train_umd_flags_reach_the_objective(tmp_path, capsys, monkeypatch):
    import diffusers_mdiffae.training as training

    seen = []
    monkeypatch.setattr(training, "train", lambda cfg, log: seen.append(cfg.objective))
    data = tmp_path / "data"
    photo(data / "a.png")
    base = ["--data", data, "--output-dir", tmp_path / "r"]
    assert cli(capsys, "train", *base)[0] == 0
    assert cli(capsys, "train", *base, "--umd-ratio", "0.25", "--umd-mask-ratio", "0.8")[0] == 0
    assert seen == [{}, {"umd_ratio": 0.25, "umd_mask_ratio": 0.8}]
    rc, _, err = cli(capsys, "train", *base, "--umd-mask-ratio", "1")
    assert_one_error(rc, err, "--umd-mask-ratio", "[0, 1)")
