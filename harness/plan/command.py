"""The plan's two entry points: `harness plan` (the whole text) and the one line `harness bench` prints first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.plan import calibration
from harness.plan.check_runs import check_runs, render_check
from harness.plan.estimate import make_plan, plan_entry
from harness.plan.render import interval_text, one_line, render


def plan_command(
    model: str | None,
    quant: str | None,
    tasks: list[str],
    limit: int | None,
    full: bool,
    budget: float | None,
    parallel: int,
    gpu_layers: int,
    kind: str | None,
    rate_source: str,
    check: bool,
    calibrate: bool,
    results_dir: Path,
    log: Callable[[str], None] | None = None,
) -> str:
    """`harness plan`: the text to print (the CLI's options, see harness/cli/cmd_bench.py). ``log``: progress lines
    (building a probe slice)."""
    from harness.backends.llamacpp.settings import EngineSettings

    if calibrate:
        out = calibration.calibrate(n_parallel=parallel)
        return (
            f"wrote {calibration.CALIBRATION_FILE} (the numpy fallback's factors and the reference machine class; "
            "`harness plan` times llama.cpp itself otherwise):\n" + yaml.safe_dump(out, sort_keys=False)
        )
    if check:
        return render_check(*check_runs(results_dir, rate_source, log))
    if not model:
        raise HarnessError(
            "harness plan needs a MODEL (a catalogue name, a .gguf path or hf:...)",
            "e.g. `harness plan llama3.1-8b-instruct`; `harness models` lists the catalogue.",
        )
    settings = EngineSettings(n_parallel=parallel, gpu_layers=gpu_layers)
    probe = calibration.reference_probe() if rate_source == "reference" else None
    return render(make_plan(model, quant, tasks, limit, full, budget, settings, probe, kind, log=log))


def bench_plan(
    entry,
    tasks: list[str],
    limit: int | None,
    full: bool,
    settings,
    budget_hours: float | None,
    kind: str | None,
    echo: Callable[[str], None],
) -> None:
    """`harness bench`'s plan: one line before it starts; over ``budget_hours`` a refusal with the plan."""
    try:
        plan = plan_entry(entry, True, tasks, limit, full, budget_hours, settings, kind=kind, network=False)
    except HarnessError as exc:
        if budget_hours is not None:
            raise HarnessError(
                f"--budget {budget_hours:g} h cannot be judged: {exc.message}", exc.hint
            ) from None
        echo(f"plan: not available ({exc.message})")
        return
    echo(one_line(plan, entry.quant))
    q = plan.quants[0]
    if budget_hours is not None and q.seconds is None:
        raise HarnessError(
            f"--budget {budget_hours:g} h cannot be judged: the size or shape of {entry.name} "
            f"{entry.quant} is unknown before download",
            "run without --budget, or `harness download` it first (its header then gives the shape).",
        )
    if budget_hours is not None and q.seconds[1] > budget_hours * 3600:
        raise HarnessError(
            f"{entry.name} {entry.quant} is estimated at {interval_text(q.seconds)}, over --budget "
            f"{budget_hours:g} h\n{render(plan)}",
            "run fewer questions (--limit), fewer tasks, a smaller quant, or raise --budget.",
        )
