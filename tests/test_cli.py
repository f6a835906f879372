"""The `mdiffae` command on files and folders, offline, with a tiny model."""

import json

import numpy as np
import pytest
from fixtures.models import make_tiny
from PIL import Image

from diffusers_mdiffae.cli import main


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "model"
    make_tiny().save_pretrained(path)
    return str(path)


def photo(path, w=64, h=48, mode="RGB"):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def test_reconstruct_one_file(tmp_path, model_dir, capsys):
    out = tmp_path / "out.png"
    assert main(["reconstruct", str(photo(tmp_path / "in.png")), str(out), "--model", model_dir]) == 0
    assert Image.open(out).size == (64, 48)
    assert "PSNR" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_reconstruct_pads_odd_sizes_and_says_so(tmp_path, model_dir, capsys):
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "reconstruct",
                str(photo(tmp_path / "odd.png", w=50, h=37)),
                str(out),
                "--model",
                model_dir,
                "--steps",
                "2",
                "--pdg-strength",
                "1.1",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert Image.open(out).size == (50, 37)
    assert "not a multiple of 16: padded to 64x48" in capsys.readouterr().err


def test_reconstruct_a_folder_mirrors_it(tmp_path, model_dir):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    photo(src / "a.png")
    photo(src / "sub" / "b.jpg", mode="L")
    assert main(["reconstruct", str(src), str(tmp_path / "dst"), "--model", model_dir]) == 0
    # folder outputs are PNG unless asked: a JPEG input must not come back as lossy JPEG
    assert (tmp_path / "dst" / "a.png").is_file() and (tmp_path / "dst" / "sub" / "b.png").is_file()
    assert Image.open(tmp_path / "dst" / "sub" / "b.png").format == "PNG"
    assert main(["reconstruct", str(src), str(tmp_path / "jpg"), "--model", model_dir, "--ext", "jpg"]) == 0
    assert Image.open(tmp_path / "jpg" / "a.jpg").format == "JPEG"


def test_encode_then_decode_round_trip(tmp_path, model_dir):
    img = photo(tmp_path / "in.png", w=40, h=40)
    lat = tmp_path / "z.safetensors"
    assert main(["encode", str(img), str(lat), "--model", model_dir]) == 0
    from safetensors.torch import load_file

    z = load_file(lat)["latent.0"]
    assert z.shape == (64, 3, 3)
    out = tmp_path / "dec.png"
    assert main(["decode", str(lat), str(out), "--model", model_dir]) == 0
    assert Image.open(out).size == (40, 40)
    direct = tmp_path / "direct.png"
    main(["reconstruct", str(img), str(direct), "--model", model_dir])
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(direct)))


def test_bad_inputs_give_one_line_errors(tmp_path, model_dir, capsys):
    assert main(["reconstruct", str(tmp_path / "missing.png"), str(tmp_path / "o.png"), "--model", model_dir]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert main(["reconstruct", str(bad), str(tmp_path / "o.png"), "--model", model_dir]) == 1
    assert "cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    assert main(["decode", str(bad), str(tmp_path / "o.png"), "--model", model_dir]) == 1
    assert "not a latent file" in capsys.readouterr().err
    assert (
        main(
            [
                "reconstruct",
                str(photo(tmp_path / "ok.png")),
                str(tmp_path / "o.png"),
                "--model",
                str(tmp_path / "nowhere"),
            ]
        )
        == 1
    )
    assert "cannot load model" in capsys.readouterr().err


def test_eval_reports_baselines_and_writes_pictures(tmp_path, model_dir, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    photo(src / "a.png")
    photo(src / "b.png", w=48, h=48)
    out = tmp_path / "eval"
    js = tmp_path / "eval.json"
    assert main(["eval", str(src), "--out", str(out), "--json", str(js), "--model", model_dir]) == 0
    text = capsys.readouterr().out
    assert "bicubic 1/4 PSNR" in text and "**mean**" in text and "vs bicubic 1/8" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "a_grid.png",
        "a_latent_pca.png",
        "b_grid.png",
        "b_latent_pca.png",
    ]
    assert Image.open(out / "a_grid.png").size == (3 * 64, 48)
    report = json.loads(js.read_text())
    assert len(report["rows"]) == 2 and "psnr_bicubic8" in report["mean"]


def test_convert_subcommand_delegates(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 1
    assert "not a directory" in capsys.readouterr().err
