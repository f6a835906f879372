"""The README's two commands are the ones CI and a new user run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    blocks = bash_blocks((ROOT / "README.md").read_text())
    test_cmd = blocks[1].strip()
    assert "pytest" in test_cmd
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_readme_first_command_uses_the_bundled_sample_image():
    first = bash_blocks((ROOT / "README.md").read_text())[0]
    match = re.search(r"mdiffae reconstruct (\S+)", first)
    assert match and (ROOT / match.group(1)).is_file()
