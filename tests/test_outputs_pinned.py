"""The output rule (outputs.py) pinned to its exact messages and names."""

import os
from pathlib import Path

import pytest

from diffusers_mdiffae.outputs import (
    DEFAULT_IMAGE_EXT,
    IMAGE_FORMATS,
    OutputError,
    check_output_not_input,
    check_planned_outputs,
    image_format,
    is_folder_target,
    mirror_outputs,
    names_from_sources,
    normalise_ext,
)


def test_formats_and_their_messages():
    assert IMAGE_FORMATS == {
        ".png": "PNG",
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".webp": "WEBP",
        ".bmp": "BMP",
        ".tif": "TIFF",
        ".tiff": "TIFF",
    }
    assert DEFAULT_IMAGE_EXT == ".png" and image_format(Path("x/Y.WebP")) == "WEBP"
    known = ".bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp"
    with pytest.raises(OutputError) as e:
        image_format("dir/out.gif")
    assert str(e.value) == f"dir/out.gif: cannot write .gif images (GIF keeps only 256 colours); use one of {known}"
    with pytest.raises(OutputError) as e:
        image_format("out.exr")
    assert str(e.value) == f"out.exr: cannot write .exr images; use one of {known}"
    with pytest.raises(OutputError) as e:
        image_format("a/decoded")
    assert str(e.value) == (
        "a/decoded: no image extension; name the format (e.g. decoded.png) or end the path with / to write a folder"
    )
    assert issubclass(OutputError, ValueError)


def test_normalise_ext():
    assert normalise_ext(None) == ".png" and normalise_ext("") == ".png"
    assert normalise_ext("JPG") == ".jpg" and normalise_ext(".TIFF") == ".tiff" and normalise_ext("webp") == ".webp"
    with pytest.raises(OutputError) as e:
        normalise_ext("gif")
    assert str(e.value).startswith("x.gif: cannot write .gif images (GIF keeps only 256 colours); use one of")


def test_folder_targets(tmp_path):
    assert is_folder_target("out/") and is_folder_target("out" + os.sep) and is_folder_target(tmp_path)
    (tmp_path / "f.png").write_bytes(b"x")
    assert not is_folder_target(tmp_path / "f.png") and not is_folder_target(tmp_path / "new")


def test_output_rule_messages(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"x")
    with pytest.raises(OutputError) as e:
        check_output_not_input(src / "a.png", [src / "a.png"])
    assert str(e.value) == f"{src / 'a.png'}: is the input {src / 'a.png'}; choose another output"
    with pytest.raises(OutputError) as e:
        check_output_not_input(src / "deep" / "o.png", [src])
    assert str(e.value) == (
        f"{src / 'deep' / 'o.png'}: is inside the input folder {src} (outputs would be read "
        "back as inputs); choose an output outside it"
    )
    with pytest.raises(OutputError) as e:
        check_output_not_input(tmp_path, [src / "a.png"], replaces_folder=True)
    assert (
        str(e.value) == f"{tmp_path}: contains the input {src / 'a.png'} and would be replaced; choose another output"
    )
    # an output folder next to the input, or around it when it is not replaced whole, is fine
    check_output_not_input(tmp_path / "out", [src], replaces_folder=True)
    check_output_not_input(tmp_path, [src / "a.png"])
    # a file input is never "a folder the output is inside"
    check_output_not_input(src / "a.png.out", [src / "a.png"])
    check_output_not_input(tmp_path / "in2", [src], replaces_folder=True)  # a name that only starts alike


def test_planned_output_clashes_list_up_to_three_then_count(tmp_path):
    outs = [tmp_path / "a.png"] * 6
    with pytest.raises(OutputError) as e:
        check_planned_outputs(outs, ["s0", "s1", "s2", "s3", "s4", "s5"])
    assert str(e.value) == (
        f"{tmp_path / 'a.png'}: two inputs would write the same file: "
        f"{tmp_path / 'a.png'} from both s0 and s1; {tmp_path / 'a.png'} from both s0 and s2; "
        f"{tmp_path / 'a.png'} from both s0 and s3 (and 2 more); rename one of them"
    )
    with pytest.raises(OutputError) as e:
        check_planned_outputs([tmp_path / "b.png", tmp_path / "sub" / ".." / "b.png"], ["x", "y"])
    assert str(e.value).endswith("from both x and y; rename one of them")  # the same file by another spelling
    check_planned_outputs([tmp_path / "c.png", tmp_path / "d.png"], ["x", "y"])
    with pytest.raises(OutputError) as e:
        check_planned_outputs(
            [
                tmp_path / "p1.png",
                tmp_path / "p2.png",
                tmp_path / "p3.png",
                tmp_path / "p1.png",
                tmp_path / "p2.png",
                tmp_path / "p3.png",
            ],
            list("abcdef"),
        )
    assert "(and" not in str(e.value)  # exactly three clashes: all listed
    with pytest.raises(OutputError) as e:
        check_planned_outputs([tmp_path / "q.png"] * 5, list("abcde"))
    assert str(e.value).endswith("from both a and d (and 1 more); rename one of them")  # four clashes
    spaced = tmp_path / "my photo.png"
    with pytest.raises(OutputError) as e:
        check_planned_outputs([spaced, spaced], ["a", "b"])
    assert str(e.value).startswith(f"{spaced}: two inputs would write the same file: ")


def test_a_planned_output_onto_an_input_file(tmp_path):
    inp = tmp_path / "x.png"
    inp.write_bytes(b"x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError) as e:
        check_planned_outputs([tmp_path / "y.png", tmp_path / "x.png"], ["l0", "l1"], [tmp_path / "folder", inp])
    assert str(e.value) == f"{tmp_path / 'x.png'}: is the input {inp}; choose another output"


def test_mirror_outputs_keep_the_tree_and_take_the_asked_extension(tmp_path):
    root = tmp_path / "src"
    files = [root / "a.jpg", root / "sub" / "b.PNG"]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    out = tmp_path / "out"
    assert mirror_outputs(files, root, out) == [out / "a.png", out / "sub" / "b.png"]
    assert mirror_outputs(files, root, out, "jpg") == [out / "a.jpg", out / "sub" / "b.jpg"]
    with pytest.raises(OutputError, match="is the input"):
        mirror_outputs([root / "a.jpg"], root, root, ".jpg")


def test_decode_names():
    assert names_from_sources(["d/a/x.png", "d/b/y.jpg"], ext="webp") == [Path("a/x.webp"), Path("b/y.webp")]
    assert names_from_sources(["a/x.png", "a/y.png"]) == [Path("x.png"), Path("y.png")]
    assert names_from_sources(["/r/x.png", "rel/y.png"]) == [Path("r/x.png"), Path("rel/y.png")]
    assert names_from_sources(["", None, "../../up.png"]) == [Path("image_0.png"), Path("image_1.png"), Path("up.png")]
    assert names_from_sources(["/"]) == [Path("image_0.png")]
    assert names_from_sources(["./a/./b.png"]) == [Path("b.png")]
    # mixed absolute and relative sources have no common folder: ".." parts are still dropped
    assert names_from_sources(["/r/x.png", "../up/y.png"]) == [Path("r/x.png"), Path("up/y.png")]
