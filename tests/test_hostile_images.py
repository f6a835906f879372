"""Hostile: image files of every awkward kind, boundary sizes, bombs, links that loop."""

import os
import time

import fixtures.hostile as hostile_helpers
import numpy as np
import pytest
from fixtures.hostile import bomb_png, cli, photo, truncated_png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from diffusers_mdiffae.imaging import ImageLoadError, list_images, load_rgb

model_dir = hostile_helpers.model_dir  # the shared session fixture (a tiny saved model)


@pytest.mark.parametrize("w,h", [(1, 1), (15, 15), (16, 16), (17, 17), (1, 40), (40, 1), (33, 16)])
def test_boundary_sizes_come_back_at_their_size(tmp_path, capsys, model_dir, w, h):
    src = photo(tmp_path / "x.png", w, h)
    rc, out, err = cli(capsys, "reconstruct", src, tmp_path / "o.png", "--model", model_dir)
    assert rc == 0, err
    assert Image.open(tmp_path / "o.png").size == (w, h)


def test_a_decompression_bomb_is_refused_quickly_not_decoded(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ImageLoadError, match="too large"):
        load_rgb(bomb_png(tmp_path / "bomb.png"))
    assert time.perf_counter() - t0 < 2  # refused from the header, nothing allocated


def test_a_bomb_in_a_folder_is_one_skipped_file(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "a.png")
    bomb_png(src / "bomb.png")
    rc, out, err = cli(capsys, "reconstruct", src, tmp_path / "out", "--model", model_dir)
    assert rc == 0 and "wrote 1, skipped 1" in out and "bomb.png" in err and "too large" in err


@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "text", "wrong-suffix", "header-only"])
def test_corrupt_files_raise_image_load_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        truncated_png(path)
    elif kind == "text":
        path.write_text("hello, I am not an image\n" * 10)
    elif kind == "wrong-suffix":  # a JPEG named .png loads fine: the content decides
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, format="JPEG")
        assert load_rgb(path)[0].size == (8, 8)
        return
    else:
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImageLoadError) as e:
        load_rgb(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=300), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a"]))
def test_random_bytes_either_load_as_rgb_or_raise_image_load_error(tmp_path, data, magic):
    path = tmp_path / "fuzz.png"
    path.write_bytes(magic + data)
    try:
        image, notes = load_rgb(path)
    except ImageLoadError:
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0


def test_symlink_loops_and_broken_links_are_listed_and_skipped_not_followed(tmp_path, capsys, model_dir):
    src = tmp_path / "imgs"
    photo(src / "real.png")
    (src / "sub").mkdir()
    (src / "sub" / "up").symlink_to(src, target_is_directory=True)  # a folder loop
    (src / "a.png").symlink_to(src / "b.png")
    (src / "b.png").symlink_to(src / "a.png")  # a file loop
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (src / "dir.png").mkdir()  # a folder with an image suffix
    listed = sorted(p.name for p in list_images(src))
    assert listed == ["a.png", "b.png", "gone.png", "real.png"]
    rc, out, err = cli(capsys, "reconstruct", src, tmp_path / "out", "--model", model_dir)
    assert rc == 0 and "wrote 1, skipped 3" in out
    assert "gone.png" in err and "a.png" in err


def test_input_that_is_a_symlink_loop_is_one_error(tmp_path, capsys, model_dir):
    (tmp_path / "x.png").symlink_to(tmp_path / "x.png")
    rc, _, err = cli(capsys, "reconstruct", tmp_path / "x.png", tmp_path / "o.png", "--model", model_dir)
    assert rc == 1 and err.startswith("error:") and "symlink loop" in err and len(err.splitlines()) == 1


def test_unreadable_file_is_skipped_with_the_system_reason(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads chmod-000 files; the broken-link case covers a system error")
    path = photo(tmp_path / "x.png")
    path.chmod(0)
    with pytest.raises(ImageLoadError, match="Permission denied"):
        load_rgb(path)


def test_odd_modes_load_as_rgb(tmp_path):
    for mode, arr in (
        ("I;16", np.full((9, 7), 60000, np.uint16)),
        ("F", np.linspace(0, 1, 63).reshape(9, 7)),
        ("1", np.eye(9, 7, dtype=bool)),
    ):
        path = tmp_path / f"{mode.replace(';', '')}.tif"
        Image.fromarray(arr if mode != "F" else arr.astype(np.float32)).save(path)
        image, notes = load_rgb(path)
        assert image.mode == "RGB" and image.size == (7, 9) and notes
