"""Shared pieces of the hostile test suite: awkward files, CLI runners, small filesystems."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def photo(path: Path, w: int = 48, h: int = 48, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, w: int = 100_000, h: int = 100_000) -> Path:
    """A tiny, valid-looking PNG whose header claims ``w x h`` pixels (a decompression bomb)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))
    return path


def truncated_png(path: Path) -> Path:
    full = photo(path, 64, 64)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# -- running the CLI ---------------------------------------------------------------------------


def cli(capsys, *args) -> tuple:
    """``mdiffae ARGS`` in this process: ``(status, stdout, stderr)``; argparse exits become statuses."""
    from diffusers_mdiffae.cli import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def cli_subprocess(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """``python -m diffusers_mdiffae.cli ARGS`` in a fresh process (this checkout first on the path)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **(env or {}))
    full_env.pop("MDIFFAE_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "diffusers_mdiffae.cli", *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(err: str) -> list:
    return [line for line in err.splitlines() if line.startswith("error:")]


def assert_one_error(rc, err: str, *fragments: str, alone: bool = True) -> str:
    """A failure: non-zero status, exactly one ``error:`` line holding ``fragments``, no traceback.

    ``alone``: that line is all of stderr (one-file commands); folder commands may report skips first.
    """
    assert rc not in (0, None), f"expected a failure, got status {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    if alone:
        assert [line for line in err.splitlines() if line.strip()] == lines, f"stderr has more than the error:\n{err}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


# -- small filesystems ---------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str = "200k", read_only: bool = False):
    """A size-limited (or read-only) tmpfs at ``mountpoint``; skips the test where mounting is not allowed.

    Tests run as root here, and root writes into chmod-read-only folders anyway: a real read-only
    or full filesystem is the only honest test of those errors.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (and the mount command)")
    mountpoint.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mountpoint)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill a small filesystem to the last byte."""
    i = 0
    while True:
        try:
            with open(folder / f"filler{i}", "wb") as f:
                f.write(b"\0" * 4096)
        except OSError:
            break
        i += 1
    with contextlib.suppress(OSError):
        with open(folder / "filler_last", "wb") as f:
            while True:
                f.write(b"\0")
                f.flush()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    from conftest import make_tiny

    path = tmp_path_factory.mktemp("hostile_model") / "model"
    make_tiny().save_pretrained(path)
    return str(path)
