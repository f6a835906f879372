"""The README's commands and Python blocks are the ones CI and a new user run."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = blocks("bash")[1].strip()
    assert "pytest" in test_cmd and ".[test]" in test_cmd  # sets up what the tests need, then runs them
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_readme_first_command_uses_the_bundled_sample_image_and_writes_outside_the_sources():
    first = blocks("bash")[0]
    match = re.search(r"mdiffae reconstruct (\S+) (\S+)", first)
    assert match and (ROOT / match.group(1)).is_file()
    assert match.group(2).startswith("out/")


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_every_python_block_runs_as_written(index, tmp_path):
    code = blocks("python")[index]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, f"README python block {index} failed:\n{code}\n{res.stderr[-3000:]}"
