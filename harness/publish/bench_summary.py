"""What ``harness bench`` prints when it ends: the score table of the records it wrote, the claims about the
model that could now be judged (verdict first), and one line naming the record files."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.compare import NOT_COMPARABLE, compare_all
from harness.publish.report import claims_table, score_table
from harness.records.runs import load_runs


def final_summary(paths: list[Path], results_dir: Path, model: str) -> str:
    """The end of a bench: the score table, the claims that could be judged (verdict first), and one line
    naming the record files."""
    out = [score_table(paths)]
    loaded = load_runs(results_dir)
    if loaded.warning():
        print(loaded.warning(), file=sys.stderr)
    comps = compare_all(loaded.runs, model=model)
    judged = [c for c in comps if c.verdict != NOT_COMPARABLE]
    waiting = len(comps) - len(judged)
    if judged:
        out.append(f"\njudged claims about {model}:")
        out.append(claims_table(judged, verdict_first=True))
    if waiting:
        out.append(
            f"{waiting} claim(s) about {model} not comparable yet (`harness compare -m {model}` lists them)"
        )
    names = " ".join(str(p) for p in paths)
    out.append(f"\nrecord{'s' if len(paths) > 1 else ''}: {names}")
    return "\n".join(out)
