"""Per-module mutation score from ``mutmut results --all true`` (README, "Development").

    mutmut results --all true | python tests/mutation_summary.py [--equivalents tests/mutation_equivalents.md]
        [--sample NAMES_FILE]

Prints killed/total per module, counting timeouts as killed (the mutant hung the tests), and how many
mutants were never checked. Mutants listed in the equivalents file (one ``name`` in backticks per
line) are reported apart, not as survivors. With ``--sample`` (one mutant name per line, drawn at
random from the unchecked ones before a run), it also prints the score of the sampled mutants alone,
an unbiased estimate for the module's mutants that no run has reached yet, and ``est.``: the score
expected over all the module's mutants when those still unchecked score like the sample (a module
without sampled results borrows the whole sample's rate).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict

KILLED = {"killed", "timeout", "caught by type check"}


def module_of(mutant: str) -> str:
    return re.split(r"\.x_|\.x\u01c1", mutant, maxsplit=1)[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equivalents", help="markdown file listing equivalent mutants in backticks")
    parser.add_argument("--sample", help="file of mutant names drawn at random (one per line)")
    args = parser.parse_args(argv)
    sample = set()
    if args.sample:
        with open(args.sample, encoding="utf-8") as f:
            sample = {line.strip() for line in f if line.strip()}
    equivalent = set()
    if args.equivalents:
        with open(args.equivalents, encoding="utf-8") as f:
            text = f.read().split("## Not equivalent", 1)[0]  # later sections count as survivors
            equivalent = set(re.findall(r"`([\w.\u01c1]+__mutmut_\d+)`", text))
    counts = defaultdict(lambda: defaultdict(int))
    sampled = defaultdict(lambda: defaultdict(int))
    for line in sys.stdin:
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        status = status.strip()
        if status == "not checked":
            kind = "not checked"
        else:
            kind = "killed" if status in KILLED else ("equivalent" if name in equivalent else status)
        counts[module_of(name)][kind] += 1
        if name in sample and kind != "not checked":
            sampled[module_of(name)][kind] += 1
    total = defaultdict(int)
    total_sampled = defaultdict(int)
    for module in counts:
        for k, v in sampled[module].items():
            total_sampled[k] += v
    header = f"{'module':58s} {'killed':>7s} {'total':>6s} {'score':>6s}"
    print(header + (f" {'sample':>9s} {'score':>6s} {'est.':>6s}" if sample else "") + "  other")
    estimated = [0.0, 0.0]
    for module in sorted(counts):
        c, s = counts[module], sampled[module]
        est = _estimate(c, s if _checked(s) else total_sampled) if sample else None
        print(_row(module, c, s if sample else None, est))
        for k, v in c.items():
            total[k] += v
        if est:
            estimated = [estimated[0] + est[0], estimated[1] + est[1]]
    print(_row("all", total, total_sampled if sample else None, estimated if sample else None))
    return 0


def _estimate(c, s):
    """``(killed, total)`` expected over all of a module's mutants: the unchecked ones scored like the
    sample (its own, or the whole sample's where the module has none), equivalents in the same share."""
    unchecked = c["not checked"]
    m = _checked(s)
    if not m:
        return None
    counted = unchecked * m / (m + s["equivalent"])
    return c["killed"] + counted * s["killed"] / m, _checked(c) + counted


def _checked(c) -> int:
    return sum(c.values()) - c["equivalent"] - c["not checked"]


def _row(label: str, c, s, est=None) -> str:
    n = _checked(c)
    row = f"{label:58s} {c['killed']:7d} {n:6d} {100 * c['killed'] / max(n, 1):5.1f}%"
    if s is not None:
        m = _checked(s)
        row += f" {s['killed']:4d}/{m:<4d} " + (f"{100 * s['killed'] / m:5.1f}%" if m else "     -")
        row += f" {100 * est[0] / est[1]:5.1f}%" if est and est[1] else "      -"
    other = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "killed" and v)
    return f"{row}  {other}"


if __name__ == "__main__":
    sys.exit(main())
