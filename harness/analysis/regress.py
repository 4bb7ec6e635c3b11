"""Regression check: new run records against baselines committed under ``results/baselines/``.

Two runs of the same task on the same questions are compared question by question: an exact one-sided
McNemar test (the paired two-proportion test) on the questions where they disagree. A drop fails the
check when it is both significant (p < alpha) and larger than ``max_drop`` points; a run whose weights,
task config or batching scheme differ from the baseline's is "not comparable", never passed or failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.records import identity
from harness.records.record import read_record
from harness.records.runs import Run, load_runs
from harness.records.schema import RunRecord

OK, IMPROVED, REGRESSED, NOT_COMPARABLE, MISSING = (
    "ok",
    "improved",
    "REGRESSED",
    "not comparable",
    "no new run",
)


def mcnemar_one_sided(worse: int, better: int) -> float:
    """P(at least ``worse`` of the ``worse + better`` discordant questions go against the new run | no change)."""
    n = worse + better
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(worse, n + 1)) / 2**n


@dataclass
class Check:
    """One baseline against the newest matching run."""

    model: str
    quant: str
    task: str
    status: str
    baseline: float | None = None
    new: float | None = None
    n: int = 0
    worse: int = 0  # questions the baseline got right and the new run wrong
    better: int = 0
    p_value: float | None = None
    note: str = ""


def _differences(base: RunRecord, new: RunRecord) -> list[str]:
    """Why two records are not the same measurement (harness.records.identity); empty when they are."""
    return identity.differences(identity.of_record(base), identity.of_record(new))


def check_one(base: RunRecord, new: RunRecord | None, alpha: float, max_drop: float) -> Check:
    """Compare one baseline record with the new record of the same model, quant and task."""
    c = Check(base.model.name, base.model.quant, base.task.name, MISSING)
    key, bm = base.headline()
    c.baseline = 100 * bm.value
    if new is None:
        c.note = "no new run of this model, quant and task"
        return c
    nm = new.metrics.get(key)
    c.new = 100 * nm.value if nm else float("nan")
    diff = _differences(base, new)
    if diff:
        c.status, c.note = NOT_COMPARABLE, "; ".join(diff)
        return c
    a = {(s.task, s.doc_id): s.correct for s in base.samples}
    b = {(s.task, s.doc_id): s.correct for s in new.samples}
    shared = set(a) & set(b)
    c.n = len(shared)
    c.worse = sum(1 for k in shared if a[k] and not b[k])
    c.better = sum(1 for k in shared if b[k] and not a[k])
    c.p_value = mcnemar_one_sided(c.worse, c.better)
    drop = 100 * (c.worse - c.better) / c.n if c.n else 0.0
    if c.p_value < alpha and drop > max_drop:
        c.status = REGRESSED
        c.note = f"-{drop:.1f} points on {c.n} shared questions (p={c.p_value:.3g} < {alpha})"
    elif c.better > c.worse and mcnemar_one_sided(c.better, c.worse) < alpha:
        c.status, c.note = IMPROVED, f"+{-drop:.1f} points"
    else:
        c.status = OK
        if c.worse or c.better:
            c.note = f"{c.worse} worse / {c.better} better: within noise (p={c.p_value:.3g})"
    return c


def regress(
    baselines_dir: Path, results_dir: Path, alpha: float = 0.05, max_drop: float = 0.0
) -> list[Check]:
    """Check every baseline record against the newest run of its model, quant and task in results_dir."""
    base_paths = sorted(p for p in Path(baselines_dir).glob("*.json") if not p.name.endswith(".lm_eval.json"))
    runs = load_runs(results_dir).runs
    out = []
    for p in base_paths:
        base = read_record(p)
        cands = [
            r
            for r in runs
            if (r.model, r.quant, r.task) == (base.model.name, base.model.quant, base.task.name)
        ]
        # Prefer a run of the very same setting; else the newest, which will be flagged not comparable.
        same = [r for r in cands if not _differences(base, r.rec)]
        pick: Run | None = max(same or cands, key=lambda r: r.sort_key(), default=None)
        out.append(check_one(base, pick.rec if pick else None, alpha, max_drop))
    return out


def failed(checks: list[Check], strict: bool = False) -> bool:
    """A regression or a missing run fails; a changed setting fails only with ``strict``."""
    bad = {REGRESSED, MISSING} | ({NOT_COMPARABLE} if strict else set())
    return any(c.status in bad for c in checks)
