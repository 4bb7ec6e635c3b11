"""Run one planned task through lm-eval on a bench backend (harness/backends/base.py); write its run record.

harness/run/bench.py drives a whole bench (every task, one backend) through :func:`run_task`."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import __version__
from harness.analysis.estimate import (
    Stratum,
    combined_stderr,
    estimate,
    macro_stderr,
    mean_stderr,
    wald_interval,
    wilson_interval,
)
from harness.atomic import write_json
from harness.backends.base import BenchBackend, TooLong
from harness.backends.llamacpp.speed import floor_seconds
from harness.models.catalogue import ModelEntry
from harness.models.chat_format import template_sha256
from harness.records.build import build_record
from harness.records.identity import key as identity_hash
from harness.records.journal import Journal
from harness.records.record import (
    command_line,
    file_slug,
    hardware,
    harness_commit,
    package_versions,
    run_stem,
    write_record,
)
from harness.records.schema import RunRecord
from harness.run import console
from harness.tasks.settings import TaskPlan, task_manager


def summarise(plan: TaskPlan, samples: dict[str, list[dict]]) -> tuple[dict, dict, list[dict]]:
    """Headline metrics (micro and, over subjects, macro), per-subtask scores, and the per-sample log."""
    metrics: dict[str, dict] = {}
    per_task: dict[str, dict] = {}
    log: list[dict] = []
    for metric, filt in plan.metrics:
        key = f"{metric},{filt}"
        values, task_means = [], {}
        for task, rows in samples.items():
            vals = [float(r[metric]) for r in rows if r.get("filter") == filt]
            if vals:
                values += vals
                se = mean_stderr(vals)
                task_means[task] = (sum(vals) / len(vals), se, len(vals))
                per_task.setdefault(task, {})[key] = {
                    "value": task_means[task][0],
                    "stderr": se,
                    "n": len(vals),
                }
        if not values:
            continue
        n = len(values)
        p = sum(values) / n
        metrics[key] = {
            "average": "micro",
            "value": p,
            "stderr": mean_stderr(values),
            "ci95": list(wilson_interval(p, n)),
            "n": n,
        }
        if len(task_means) > 1:
            k = len(task_means)
            # Binary metrics: the stratified estimate (harness/analysis/estimate.py) also copes with 1 question per
            # subject, where the per-subject stderr is undefined; other metrics: combined stderrs.
            strata = [Stratum(t, m * c, c, c) for t, (m, _, c) in task_means.items()]
            binary = all(float(v).is_integer() for v in values)
            est = estimate(strata, "macro") if binary else None
            macro = sum(m for m, _, _ in task_means.values()) / k
            if binary:
                se = macro_stderr(strata)
                ci = [est.lo, est.hi]
            elif any(s is None for _, s, _ in task_means.values()):  # a one-question subject: undefined
                se, ci = None, [0.0, 1.0]
            else:
                se = combined_stderr([s for _, s, _ in task_means.values()])
                ci = list(wald_interval(macro, se))
            metrics[f"{key},macro"] = {
                "average": "macro",
                "value": macro,
                "stderr": se,
                "ci95": ci,
                "n": n,
                "n_subtasks": k,
            }
    head_metric, head_filter = plan.metrics[0]
    for task, rows in samples.items():
        for r in rows:
            if r.get("filter") != head_filter:
                continue
            prompt = prompt_of(r.get("arguments"))
            resp = r.get("resps")
            filtered = r.get("filtered_resps")
            log.append(
                {
                    "task": task,
                    "doc_id": r["doc_id"],
                    "prompt_sha256": hashlib.sha256(str(prompt).encode()).hexdigest()[:16],
                    "response": _flat(resp),
                    "extracted": _flat(filtered),
                    "target": r.get("target"),
                    "correct": bool(float(r[head_metric])),
                }
            )
    log.sort(key=lambda x: (x["task"], x["doc_id"]))
    return metrics, per_task, log


def prompt_of(args) -> str:
    """The context string of lm-eval's logged request arguments (dict or nested-list form)."""
    while isinstance(args, dict) and args:
        args = next(iter(args.values()))
    while isinstance(args, (list, tuple)) and args:
        args = args[0]
    return args if isinstance(args, str) else ""


def _finite(obj):
    """lm-eval's own results with its undefined numbers (a NaN stderr of one sample) as null: the file beside
    a record is strict JSON too (harness.atomic)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _flat(x):
    """lm-eval nests responses ([[text]] / [[ll, greedy], ...]); keep them readable and JSON-safe."""
    if isinstance(x, list) and len(x) == 1:
        return _flat(x[0])
    if isinstance(x, (list, tuple)):
        return [_flat(v) for v in x]
    return x


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (``ru_maxrss``: KiB on Linux, bytes on macOS). For a second
    task in the same command it is the peak of both: memory a user must have free for the whole command."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


# A run is marked contended when its CPU seconds fall below this share of wall time x threads. Why: an
# undisturbed in-process run keeps its `threads` llama.cpp workers busy through each decode (ggml's workers
# spin at their barriers rather than sleep), and decoding fills most of a task's wall time on a quiet machine
# (wall_over_floor 1.03-1.10 in the README's Speed table), so its CPU seconds come close to wall x threads.
# When other processes want the same cores, Linux's fair scheduler gives this one about its share: with one
# equal competitor per core, half. Below half, the figures were taken on a machine busy with something else
# (issue #26: a `make bench` recorded wall_over_floor 14.5 that way), and timings from it calibrate nothing.
CONTENDED_CPU_SHARE = 0.5


def contended(cpu_seconds: float, wall_seconds: float, threads: int | None) -> bool:
    """Whether the process got well short of the CPU time its threads could use over the wall time
    (see :data:`CONTENDED_CPU_SHARE`); False when the thread count is unknown or no time passed."""
    if not threads or threads < 1 or wall_seconds <= 0:
        return False
    return cpu_seconds < CONTENDED_CPU_SHARE * wall_seconds * threads


def load_avg_1min() -> float | None:
    """The 1-minute load average (``os.getloadavg``), or None where the platform has none (Windows)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run_task(
    plan: TaskPlan, model: ModelEntry, backend: BenchBackend, results_dir: Path, journal: Journal
) -> Path:
    """Evaluate one planned task on a started backend and write its record (plus lm-eval's own results
    JSON beside it)."""
    import lm_eval

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    counters = backend.stats(plan)
    stats0 = dict(counters.as_record())
    config_hash = journal.identity["task_config_hash"]  # computed once by the caller for the journal
    lm = backend.make_lm(
        plan, progress=console.task_progress(plan.name, plan.n_samples, counters), journal=journal
    )
    started = datetime.now(UTC)
    engine_cpu = getattr(
        backend, "engine_cpu_seconds", lambda: 0.0
    )  # llama.cpp's threads in engine processes
    load_start, cpu0 = load_avg_1min(), time.process_time() + engine_cpu()
    t0 = time.perf_counter()
    try:
        with (
            console.quiet()
        ):  # one bar per task; lm-eval's own bars and warnings go to the log (--verbose: shown)
            try:
                res, too_long = evaluate(lm_eval, lm, plan), None
            except TooLong as exc:  # found before any decoding: --skip-bad-rows leaves those questions out
                if not plan.skip_bad_rows:
                    raise
                res, too_long = None, exc.rows
        if too_long:
            plan = plan.without(too_long)
            print(
                f"{plan.name}: left out {len({(r['task'], r['row']) for r in too_long})} question(s) too long "
                "for the model's context (--skip-bad-rows; listed in the record's task.skipped_rows)",
                file=sys.stderr,
            )
            lm.samples = plan.samples  # messages name data rows through the new subset
            with console.quiet():
                res = evaluate(lm_eval, lm, plan)
    except KeyboardInterrupt:  # the caller closes the journal on every way out
        print(
            f"\ninterrupted: {len(journal)} finished request(s) of {plan.name} are kept in {journal.path};"
            " rerun the same command to resume.",
            file=sys.stderr,
        )
        raise
    wall = time.perf_counter() - t0
    cpu = time.process_time() + engine_cpu() - cpu0
    stats = counters.as_record()
    delta = {
        k: v - stats0.get(k, 0) for k, v in stats.items() if k != "n_ctx" and isinstance(v, (int, float))
    }
    # Start-up (#18 item 6): process start to this task's first llama_decode, as the engine reports it.
    delta["setup_seconds"] = lm.setup_seconds() if hasattr(lm, "setup_seconds") else None
    # Engine processes (harness/backends/llamacpp/engine_proc.py) hold the model: their peak counts too.
    delta["peak_rss_mb"] = round(peak_rss_mb() + getattr(backend, "engine_rss_mb", lambda: 0.0)(), 1)
    # The conditions the figures were taken in (#26 item 8): the CPU seconds over the task (every thread's, user +
    # system, of this process and of its engine processes) and the 1-minute load average at its start and end.
    delta["cpu_seconds"] = round(cpu, 3)
    delta["load_avg_start"], delta["load_avg_end"] = load_start, load_avg_1min()
    metrics, per_task, log = summarise(plan, res["samples"])
    stem = run_stem(model.name, model.quant, plan.name, config_hash, started.strftime("%Y%m%dT%H%M%SZ"))
    out_dir = results_dir / "runs"
    efficiency = None
    facts = backend.backend_facts(plan)
    if backend.speed:
        floor = floor_seconds(backend.speed, delta["prompt_tokens"], delta["generated_tokens"])
        efficiency = {
            "speed_probe": backend.speed,
            "floor_seconds": round(floor, 3),
            "wall_over_floor": round(wall / floor, 3) if floor else None,
            "contended": contended(cpu, wall, facts.get("threads")),
        }
    resume = {
        "journal": journal.path.name,
        "requests_from_journal": len(journal) - journal.added,
        "requests_computed": journal.added,
        "torn_lines_skipped": journal.torn,
        "requests_replayed": delta.get("replayed_requests", 0),
    }
    # The engine processes' deaths during this task (harness/backends/llamacpp/engine_proc.py); backends without
    # an engine process (a server, the in-process engine) have none to report.
    resume |= getattr(backend, "resume_facts", lambda p: {})(plan)
    # One hash for the same GGUF on every route: of the template right-stripped (chat_format.template_sha256).
    facts["chat_template_sha256"] = (
        template_sha256(getattr(lm, "_template", None) or "") if plan.chat else None
    )
    record = _record(
        plan,
        model,
        backend.model_facts(),
        facts,
        config_hash,
        stem,
        started,
        metrics,
        per_task,
        log,
        wall,
        backend.load_seconds,
        delta,
        resume,
        efficiency,
    )
    lm_eval_out = {
        k: res[k] for k in ("results", "configs", "versions", "n-shot", "higher_is_better") if k in res
    }
    write_json(out_dir / f"{stem}.lm_eval.json", _finite(json.loads(json.dumps(lm_eval_out, default=str))))
    path = out_dir / f"{stem}.json"
    write_record(path, record)
    journal.remove()  # the record now holds every result
    return path


def open_journal(results_dir: Path, model: ModelEntry, task: str, ident: dict) -> Journal:
    """The journal of this exact measurement (harness.records.identity): created empty, or holding an interrupted
    run's results."""
    name = f"{file_slug(model.name)}-{file_slug(model.quant, 24)}-{task}-{identity_hash(ident)}.jsonl"
    path = Path(results_dir) / ".journal" / name
    j = Journal(path, ident)
    if len(j):
        print(
            f"resuming {task}: {len(j)} finished request(s) from {path}"
            + (f" ({j.torn} torn line(s) skipped)" if j.torn else ""),
            file=sys.stderr,
        )
    return j


def evaluate(lm_eval, lm, plan: TaskPlan) -> dict:
    import lm_eval.evaluator

    # lm-eval records `git describe` of the current directory: outside a repository git prints "fatal: not
    # a git repository", inside another one it names the wrong code. Name the harness's own commit instead.
    lm_eval.evaluator.get_git_commit_hash = harness_commit
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=plan.configs,
        samples=plan.samples,
        apply_chat_template=plan.chat,
        fewshot_as_multiturn=plan.chat,
        log_samples=True,
        bootstrap_iters=0,
        task_manager=task_manager(),
        random_seed=plan.seed,
        numpy_random_seed=plan.seed,
        torch_random_seed=plan.seed,
        fewshot_random_seed=plan.seed,
        verbosity="ERROR",
    )


def task_facts(plan: TaskPlan, config_hash: str) -> dict:
    """The record's ``task`` part for a planned task."""
    return {
        "name": plan.name,
        "title": plan.title,
        "lm_eval_tasks": [c["task"] for c in plan.configs],
        "config_hash": config_hash,
        "num_fewshot": plan.num_fewshot,
        "chat": plan.chat,
        "fewshot_as_multiturn": plan.chat,
        "limit": plan.limit,
        "seed": plan.seed,
        "full": plan.is_full,
        "n": plan.n_samples,
        "n_total": sum(plan.sizes.values()),
        "subtask_sizes": plan.sizes,  # test-split sizes: reweights a stratified subset to the full test
        "data_sha256": plan.data_files,
        "sample_ids": plan.samples if plan.samples is not None else "all",
        "skipped_rows": plan.skipped_rows,
        **({"data_modified": plan.data_modified} if plan.data_modified else {}),  # absent: the pinned data
    }


def _record(
    plan,
    model,
    model_facts,
    backend,
    config_hash,
    stem,
    started,
    metrics,
    per_task,
    log,
    wall,
    load_seconds,
    delta,
    resume,
    efficiency,
) -> RunRecord:
    """The run record (harness/records/schema.py), through the one builder."""
    return build_record(
        created=started.isoformat(timespec="seconds"),
        stem=stem,
        harness_version=__version__,
        harness_commit=harness_commit(),
        command=command_line(),
        model=model.describe() | model_facts,
        backend=backend,
        packages=package_versions(),
        hardware=hardware(),
        task=task_facts(plan, config_hash),
        metrics=metrics,
        per_subtask=per_task,
        timing={
            "wall_seconds": round(wall, 3),
            "model_load_seconds": round(load_seconds, 3),
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in delta.items()},
            "samples_per_second": round(plan.n_samples / wall, 3) if wall else None,
        },
        resume=resume,
        samples=_finite(log),  # a log-likelihood of -inf is kept as null: the record is strict JSON
        efficiency=efficiency,
    )
