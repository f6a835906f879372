"""The per-module mutation score (README, "Development") counts what it says it counts."""

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import mutation_summary  # noqa: E402

RESULTS = """\
    a.x_f__mutmut_1: killed
    a.x_f__mutmut_2: survived
    a.x_f__mutmut_3: not checked
    a.x\u01c1C\u01c1m__mutmut_1: timeout
    b.x_g__mutmut_1: survived
    b.x_g__mutmut_2: survived
    c.x_h__mutmut_1: not checked
"""


def summarize(monkeypatch, capsys, tmp_path, *args):
    monkeypatch.setattr(sys, "stdin", io.StringIO(RESULTS))
    (tmp_path / "eq.md").write_text(
        "## Equivalent\n- `b.x_g__mutmut_1`: why\n## Not equivalent\n- `b.x_g__mutmut_2`: counted\n"
    )
    (tmp_path / "sample.txt").write_text("a.x_f__mutmut_2\na.x_f__mutmut_1\na.x_f__mutmut_3\n")
    assert mutation_summary.main([a.replace("DIR", str(tmp_path)) for a in args]) == 0
    return {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}


def test_timeouts_count_as_killed_and_unchecked_mutants_are_left_out_of_the_score(monkeypatch, capsys, tmp_path):
    rows = summarize(monkeypatch, capsys, tmp_path)
    assert rows["a"][:3] == ["2", "3", "66.7%"]
    assert "checked 1," in " ".join(rows["a"])
    assert rows["all"][:3] == ["2", "5", "40.0%"]


def test_equivalents_are_reported_apart_but_not_equivalent_section_still_counts(monkeypatch, capsys, tmp_path):
    rows = summarize(monkeypatch, capsys, tmp_path, "--equivalents", "DIR/eq.md")
    assert rows["b"][:3] == ["0", "1", "0.0%"]
    assert "equivalent 1" in " ".join(rows["b"])


def test_sample_score_covers_only_the_checked_sampled_mutants(monkeypatch, capsys, tmp_path):
    rows = summarize(monkeypatch, capsys, tmp_path, "--sample", "DIR/sample.txt")
    assert rows["a"][3:5] == ["1/2", "50.0%"]
    assert rows["b"][3:5] == ["0/0", "-"]


def test_the_estimate_scores_the_unchecked_like_the_sample_and_borrows_the_whole_samples_rate(
    monkeypatch, capsys, tmp_path
):
    rows = summarize(monkeypatch, capsys, tmp_path, "--sample", "DIR/sample.txt")
    # a: 2 killed of 3 checked, 1 unchecked scored at the sample's 1/2: 2.5 / 4
    assert rows["a"][5] == "62.5%"
    # b: nothing unchecked, no sample of its own: its checked score, 0 of 2
    assert rows["b"][5] == "0.0%"
    # c: only an unchecked mutant and no sample of its own: the whole sample's 1/2
    assert rows["c"][5] == "50.0%"
    assert rows["all"][5] == f"{100 * 3 / 7:.1f}%"
