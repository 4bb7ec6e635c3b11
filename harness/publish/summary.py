"""The top of the published report: what was measured (headline scores with intervals, the claims that could
be judged, verdict first), then the claims still awaiting a measurement, grouped by model, each group with the
one command that would measure it and that command's `harness plan` estimate on the reference machine class
(tasks/plan_calibration.yaml): stored figures, so the published files stay byte-deterministic."""

from __future__ import annotations

from harness.analysis.compare import NOT_COMPARABLE, Comparison
from harness.errors import HarnessError
from harness.records.runs import Run
from harness.tasks.settings import task_spec

VERDICT_MARK = {
    "holds": "✅",
    "holds within quantization allowance": "☑️",
    "inconclusive": "❔",
    "not reproduced": "❌",
    "exceeded": "🔼",
    "not comparable": "⚪",
}
NO_MEASUREMENT = "no measurement"


def headline_rows(runs: list[Run]) -> list[dict]:
    """One row per run: the task's headline metric (its first in tasks/tasks.yaml, micro average) in points,
    with its 95% interval; models in name order, then task and quant."""
    rows = []
    for r in runs:
        head = ",".join(task_spec(r.task, r.rec.model.kind)["metrics"][0])
        m = r.rec.metrics.get(head)
        if not m:
            continue
        t = r.rec.task
        rows.append(
            {
                "model": r.model,
                "quant": r.quant,
                "task": r.task,
                "metric": head.replace(",", " "),
                "score": f"{100 * m.value:.1f}",
                "ci": f"[{100 * m.ci95[0]:.1f}, {100 * m.ci95[1]:.1f}]",
                "n": f"{t.n}" if t.full else f"{t.n}/{t.n_total}",
            }
        )
    return sorted(rows, key=lambda x: (x["model"], x["task"], x["quant"]))


def judged_rows(comps: list[Comparison]) -> list[dict]:
    """The claims a measurement could judge, verdict first."""
    out = []
    for c in comps:
        if c.verdict == NOT_COMPARABLE:
            continue
        n = "-" if c.n is None else (f"{c.n}" if c.n == c.n_total else f"{c.n}/{c.n_total}")
        measured = (
            "-"
            if c.measured is None
            else (f"{c.measured:.2f}B" if c.claim.kind == "params" else f"{c.measured:.1f}")
        )
        out.append(
            {
                "verdict": c.verdict,
                "mark": VERDICT_MARK.get(c.verdict, ""),
                "claim": c.claim.id,
                "strength": c.strength(),
                "model": c.claim.model,
                "claimed": c.claim.claim_text(),
                "setting": c.claim.setting_text(),
                "quant": c.quant or "-",
                "measured": measured,
                "ci": "-" if c.lo is None else f"[{c.lo:.1f}, {c.hi:.1f}]",
                "n": n,
                "note": c.note,
            }
        )
    return out


def awaiting(comps: list[Comparison], estimate=None) -> list[dict]:
    """Claims with no measurement, grouped by model (catalogue order of the claims), each group with the
    command that measures them and its estimate (``estimate(model, tasks) -> str``)."""
    groups: dict[str, list[Comparison]] = {}
    for c in comps:
        if c.verdict == NOT_COMPARABLE and c.note.startswith(NO_MEASUREMENT):
            groups.setdefault(c.claim.model, []).append(c)
    out = []
    for model, cs in groups.items():
        tasks = sorted({c.claim.task for c in cs if c.claim.task}) or ["gsm8k"]
        command = f"make bench MODEL={model} TASKS={','.join(tasks)}"
        claims = [
            {
                "claim": c.claim.id,
                "claimed": c.claim.claim_text(),
                "setting": c.claim.setting_text(),
                "note": c.note,
            }
            for c in cs
        ]
        out.append(
            {
                "model": model,
                "tasks": tasks,
                "command": command,
                "claims": claims,
                "estimate": estimate(model, tasks) if estimate else "",
            }
        )
    return out


def reference_estimate(model: str, tasks: list[str]) -> str:
    """`harness plan`'s verdict for ``make bench MODEL=model TASKS=tasks`` (default quant and subsets) on the
    reference machine class, from stored figures only (no probe, no file, no network)."""
    from harness.disk import GIB
    from harness.models.catalogue import resolve
    from harness.plan import calibration
    from harness.plan.estimate import plan_entry
    from harness.plan.render import interval_text

    try:
        ref = calibration.reference_machine()
        plan = plan_entry(
            resolve(model),
            True,
            tasks,
            probe=ref["probe"],
            network=False,
            machine={"available": ref["ram_bytes"], "gpus": [], "disk_free": 10**15},
        )
    except HarnessError as exc:
        return f"no estimate ({exc.message})"
    q = plan.quants[0]
    if q.size is None or q.shape is None:
        return f"{q.quant}: no estimate (size or shape unknown)"
    need = f"{(q.size + q.kv) / GIB:.1f} GiB"
    if not q.fits_ram:
        return f"{q.quant}: does not fit (needs {need} of {ref['ram_bytes'] / GIB:.0f} GiB RAM)"
    return f"{q.quant}: ~{interval_text(q.seconds)}, needs {need}"


def reference_text() -> str:
    """The reference machine class as the page states it."""
    from harness.disk import GIB
    from harness.plan import calibration

    ref = calibration.reference_machine()
    cal = calibration.calibration()
    return (
        f"{ref['name']}, {ref['ram_bytes'] / GIB:.0f} GiB RAM, no GPU (probes: {ref['probe'].flops / 1e9:.0f} "
        f"GFLOP/s, {ref['probe'].bandwidth / 1e9:.0f} GB/s; calibrated {cal.date} with `{cal.command}`)"
    )
