"""`harness plan --check-runs`: the plan's estimate of each recorded run beside its measured wall time."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.plan.assumptions import plan_model, task_costs
from harness.plan.calibration import reference_probe
from harness.plan.estimate import QuantPlan, estimate_seconds, quant_facts, quant_rates
from harness.plan.render import duration_text, interval_text


def check_runs(
    results_dir: Path, rate_source: str = "here", log: Callable[[str], None] | None = None
) -> tuple[list[dict], int]:
    """The estimate of each run's own plan (its model, task, subset size and engine settings) beside its measured
    wall time and tokens, and how many runs were left out as contended (``efficiency.contended``: the machine was
    busy with other work, so its wall time says nothing of the machine). Each row says whether the run is one the
    plan's figures were fitted on (tasks/plan_model.yaml ``fitted_runs``) or out of sample. Rates: ``here``, llama.cpp
    timed now on a slice of each run's model (runs taken on this machine); ``reference``, the stored reference
    machine class's (the committed runs' machine)."""
    from harness.records.runs import load_runs

    out, contended, cache = [], 0, {}
    fitted = set(plan_model()["fitted_runs"])
    for run in load_runs(Path(results_dir)).runs:
        rec = run.rec.as_json()  # the record as written (harness.records.schema)
        if ((rec.get("efficiency") or {}).get("contended")) is True:
            contended += 1
            continue
        try:
            row = _check_one(rec, rate_source, cache, log)
        except (HarnessError, KeyError, TypeError, ValueError) as exc:
            out.append({"run": _run_name(rec), "skipped": str(getattr(exc, "message", exc))})
            continue
        row["sample"] = "fitted" if Path(run.path).stem in fitted else "out of sample"
        row["load"] = "quiet" if (rec.get("efficiency") or {}).get("contended") is False else "load unknown"
        out.append(row)
    return out, contended


def _run_name(rec: dict) -> str:
    """A run as the table names it: model, quant, task[questions]."""
    m, t = rec.get("model") or {}, rec.get("task") or {}
    return f"{m.get('name')} {m.get('quant')} {t.get('name')}[{t.get('n')}]"


def _check_one(rec: dict, rate_source: str, cache: dict, log: Callable[[str], None] | None) -> dict:
    """One run's row: its plan (rates cached per model, quant and settings) beside what it measured."""
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.catalogue import resolve

    m, t, timing = rec["model"], rec["task"], rec["timing"]
    entry = dataclasses.replace(resolve(m["name"], m.get("quant")), kind=m.get("kind") or "instruct")
    cost = task_costs(entry, [t["name"]], limit=int(t["n"]))[0]
    if bool(t.get("chat")) != cost.chat:
        raise HarnessError(f"the run's prompt format (chat={t.get('chat')}) is not the plan's", "")
    weights = int(m.get("size_bytes") or 0)
    params = float(m.get("n_params") or m.get("catalogue_params") or entry.params or 0)
    size, _, _, shape, _ = quant_facts(entry, network=False, local=rate_source == "here")
    if not weights or not shape:
        raise HarnessError("the run names no weight size, or its model's shape is unknown", "")
    fields = {f.name for f in dataclasses.fields(EngineSettings)}
    recorded = {k: v for k, v in (((rec.get("backend") or {}).get("settings")) or {}).items() if k in fields}
    recorded["rpc_servers"] = tuple(recorded.get("rpc_servers") or ())
    settings = EngineSettings(**recorded)
    key = (m["name"], m.get("quant"), settings.n_parallel, settings.threads, rate_source)
    if key not in cache:
        q = QuantPlan(m.get("quant") or entry.quant, weights, "record", 0, 0, shape, "", params=params)
        probe = reference_probe() if rate_source == "reference" else None
        cache[key] = quant_rates(entry, q, settings, probe, rate_source == "here", log)
    (lo, pt, hi), _ = estimate_seconds([cost], cache[key])
    wall = float(timing["wall_seconds"])
    return {
        "run": _run_name(rec),
        "created": rec.get("created"),
        "prompt_est": cost.prompt_tokens,
        "prompt_actual": int(timing.get("prompt_tokens") or 0),
        "gen_est": round(cost.n * cost.gen_point),
        "gen_actual": int(timing.get("generated_tokens") or 0),
        "seconds": (lo, pt, hi),
        "wall": wall,
        "ratio": pt / wall if wall else math.nan,
        "within": lo <= wall <= hi,
        "rates": cache[key].method.split(":")[0],
    }


def render_check(rows: list[dict], contended: int = 0) -> str:
    """:func:`check_runs`'s rows as a table, and how many contended runs were left out."""
    lines = [
        f"{'run':<40} {'sample':<13} {'prompt tok est/actual':>22} {'gen tok est/actual':>19} "
        f"{'wall est (interval)':>26} {'actual':>8} {'est/actual':>10}"
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['run']:<40} skipped: {r['skipped']}")
            continue
        lines.append(
            f"{r['run']:<40} {r['sample']:<13} {r['prompt_est']:>10} / {r['prompt_actual']:<9} "
            f"{r['gen_est']:>8} / {r['gen_actual']:<8} {interval_text(r['seconds']):>26} "
            f"{duration_text(r['wall']):>8} {r['ratio']:>9.2f}{'' if r['within'] else ' (outside the interval)'}"
        )
    lines.append(
        f"{contended} contended run(s) left out (efficiency.contended: the machine was busy with other "
        "work); runs without that mark are kept"
        if contended
        else "no contended run left out (runs recorded before efficiency.contended existed are kept)"
    )
    return "\n".join(lines)
