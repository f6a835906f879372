"""Per-module mutation score from ``mutmut results --all true`` (README, "Development").

    mutmut results --all true | python tests/mutation_summary.py [--equivalents tests/mutation_equivalents.md]

Prints killed/total per module, counting timeouts as killed (the mutant hung the tests) and leaving
out mutants that were never checked. Mutants listed in the equivalents file (one ``name`` in
backticks per line) are reported apart, not as survivors.
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
    args = parser.parse_args(argv)
    equivalent = set()
    if args.equivalents:
        with open(args.equivalents, encoding="utf-8") as f:
            text = f.read().split("## Not equivalent", 1)[0]  # later sections count as survivors
            equivalent = set(re.findall(r"`([\w.\u01c1]+__mutmut_\d+)`", text))
    counts = defaultdict(lambda: defaultdict(int))
    for line in sys.stdin:
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        status = status.strip()
        if status == "not checked":
            continue
        kind = "killed" if status in KILLED else ("equivalent" if name in equivalent else status)
        counts[module_of(name)][kind] += 1
    total = defaultdict(int)
    print(f"{'module':58s} {'killed':>7s} {'total':>6s} {'score':>6s}  other")
    for module in sorted(counts):
        c = counts[module]
        n = sum(c.values()) - c["equivalent"]
        other = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k != "killed" and v)
        print(f"{module:58s} {c['killed']:7d} {n:6d} {100 * c['killed'] / max(n, 1):5.1f}%  {other}")
        for k, v in c.items():
            total[k] += v
    n = sum(total.values()) - total["equivalent"]
    print(
        f"{'all checked':58s} {total['killed']:7d} {n:6d} {100 * total['killed'] / max(n, 1):5.1f}%  "
        f"equivalent {total['equivalent']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
