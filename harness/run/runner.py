"""Run harness tasks on one model through lm-eval and our llama.cpp backend; write the run records."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness import __version__
from harness.analysis.estimate import Stratum, estimate, macro_var
from harness.atomic import write_json
from harness.backends.llamacpp.engine import EngineSettings, LlamaEngine
from harness.backends.llamacpp.speed import floor_seconds, probe
from harness.hashing import file_sha256
from harness.models.catalogue import ModelEntry
from harness.models.download import quant_sizes
from harness.records.identity import measurement
from harness.records.record import (
    SCHEMA_VERSION,
    command_line,
    file_slug,
    hardware,
    harness_commit,
    package_versions,
    run_stem,
    wilson_interval,
)
from harness.run import console
from harness.run.journal import Journal, identity_hash
from harness.run.preflight import check_writable, preflight_file
from harness.tasks.settings import TaskPlan, plan_task, task_manager


@dataclass
class Session:
    """What run_task needs of a loaded backend (in-process engine or remote server): an lm-eval LM
    factory, its token counters, and the record's ``model`` and ``backend`` facts."""

    make_lm: Callable[..., object]  # (progress=, journal=) -> lm-eval LM
    stats: object  # .prompt_tokens, .generated_tokens, .as_record()
    model: dict
    backend: Callable[[], dict]  # called after the run: some facts (n_ctx, retries) are known only then
    load_seconds: float = 0.0
    speed: dict | None = None  # this machine's rates (in-process only): the floor of each run


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
                se = _stderr(vals)
                task_means[task] = (sum(vals) / len(vals), se, len(vals))
                per_task.setdefault(task, {})[key] = {"value": task_means[task][0], "stderr": se, "n": len(vals)}
        if not values:
            continue
        n = len(values)
        p = sum(values) / n
        metrics[key] = {
            "average": "micro",
            "value": p,
            "stderr": _stderr(values),
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
                se = math.sqrt(sum(macro_var(s) for s in strata)) / k
                ci = [est.lo, est.hi]
            else:
                se = math.sqrt(sum(s * s for _, s, _ in task_means.values())) / k
                ci = [max(0.0, macro - 1.96 * se), min(1.0, macro + 1.96 * se)]
            metrics[f"{key},macro"] = {"average": "macro", "value": macro, "stderr": se, "ci95": ci, "n": n,
                                       "n_subtasks": k}
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


def _stderr(vals: list[float]) -> float:
    n = len(vals)
    if n < 2:
        return float("nan")
    m = sum(vals) / n
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1) / n)


def _flat(x):
    """lm-eval nests responses ([[text]] / [[ll, greedy], ...]); keep them readable and JSON-safe."""
    if isinstance(x, list) and len(x) == 1:
        return _flat(x[0])
    if isinstance(x, (list, tuple)):
        return [_flat(v) for v in x]
    return x


def run_task(plan: TaskPlan, model: ModelEntry, session: Session, results_dir: Path, journal: Journal) -> Path:
    """Evaluate one planned task and write its record (plus lm-eval's own results JSON beside it)."""
    import lm_eval

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    stats0 = dict(session.stats.as_record())
    config_hash = journal.identity["task_config_hash"]  # computed once by the caller for the journal
    lm = session.make_lm(progress=console.task_progress(plan.name, plan.n_samples, session.stats), journal=journal)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        with console.quiet():  # one bar per task; lm-eval's own bars and warnings go to the log (--verbose: shown)
            res = evaluate(lm_eval, lm, plan)
    except KeyboardInterrupt:  # the caller closes the journal on every way out
        print(f"\ninterrupted: {len(journal)} finished request(s) of {plan.name} are kept in {journal.path};"
              " rerun the same command to resume.", file=sys.stderr)
        raise
    wall = time.perf_counter() - t0
    stats = session.stats.as_record()
    delta = {k: v - stats0.get(k, 0) for k, v in stats.items() if k != "n_ctx" and isinstance(v, (int, float))}
    # Start-up (#18 item 6): process start to this task's first llama_decode, as the engine reports it.
    delta["setup_seconds"] = lm.setup_seconds() if hasattr(lm, "setup_seconds") else None
    metrics, per_task, log = summarise(plan, res["samples"])
    stem = run_stem(model.name, model.quant, plan.name, config_hash, started.strftime("%Y%m%dT%H%M%SZ"))
    out_dir = results_dir / "runs"
    efficiency = None
    if session.speed:
        floor = floor_seconds(session.speed, delta["prompt_tokens"], delta["generated_tokens"])
        efficiency = {"speed_probe": session.speed, "floor_seconds": round(floor, 3),
                      "wall_over_floor": round(wall / floor, 3) if floor else None}
    resume = {"journal": journal.path.name, "requests_from_journal": len(journal) - journal.added,
              "requests_computed": journal.added, "torn_lines_skipped": journal.torn,
              "requests_replayed": delta.get("replayed_requests", 0)}
    backend = session.backend()
    backend["chat_template_sha256"] = (
        hashlib.sha256((getattr(lm, "_template", None) or "").encode()).hexdigest()[:16] if plan.chat else None)
    record = _record(plan, model, session.model, backend, config_hash, stem, started, metrics, per_task, log, wall,
                     session.load_seconds, delta, resume)
    record["efficiency"] = efficiency
    lm_eval_out = {k: res[k] for k in ("results", "configs", "versions", "n-shot", "higher_is_better") if k in res}
    write_json(out_dir / f"{stem}.lm_eval.json", json.loads(json.dumps(lm_eval_out, default=str)))
    path = out_dir / f"{stem}.json"
    write_json(path, record)
    journal.remove()  # the record now holds every result
    return path


def engine_session(engine: LlamaEngine, model_path: Path, sha: str, load_seconds: float, speed: dict | None) -> Session:
    """The in-process backend as a :class:`Session`."""
    from harness.backends.llamacpp.lm_model import LlamaBenchLM, prompt_format

    model = {
        "file": model_path.name,
        "sha256": sha,
        "size_bytes": model_path.stat().st_size,
        "n_params": engine.n_params,
        "architecture": engine.meta("general.architecture"),
        "gguf_name": engine.meta("general.name"),
        "n_ctx_train": engine.n_ctx_train,
    }

    def backend() -> dict:
        out = {
            "name": "llama-bench (in-process llama.cpp, low-level API)",
            "settings": engine.settings.as_record(),
            "threads": engine.threads,
            "gpu_offload": engine.gpu_offload,
            "n_ctx": engine.stats.n_ctx,
            "llama_cpp_system_info": _system_info(engine),
            # BOS rule, stop tokens, chat template source/sha256 and its fixed date (harness/backends/llamacpp/lm_model.py)
            "prompt_format": prompt_format(engine),
        }
        if engine.settings.rpc_servers:
            out["rpc_workers"] = engine.rpc_devices
        if engine.gpu_offload and engine.gpus:
            out["gpus"] = [{k: d[k] for k in ("device", "description", "total_bytes")} for d in engine.gpus]
            out["gpu_layers_offloaded"] = engine.layers_offloaded
        return out

    return Session(lambda **kw: LlamaBenchLM(engine=engine, **kw), engine.stats, model, backend, load_seconds, speed)


def open_journal(results_dir: Path, model: ModelEntry, task: str, ident: dict) -> Journal:
    """The journal of this exact measurement (harness.records.identity): created empty, or holding an interrupted
    run's results."""
    name = f"{file_slug(model.name)}-{file_slug(model.quant, 24)}-{task}-{identity_hash(ident)}.jsonl"
    path = Path(results_dir) / ".journal" / name
    j = Journal(path, ident)
    if len(j):
        print(f"resuming {task}: {len(j)} finished request(s) from {path}"
              + (f" ({j.torn} torn line(s) skipped)" if j.torn else ""), file=sys.stderr)
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


def _record(plan, model, model_facts, backend, config_hash, stem, started, metrics, per_task, log, wall,
            load_seconds, delta, resume) -> dict:
    """The run record (schema in harness/records/record.py)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": hashlib.sha256(f"{stem}{model_facts.get('sha256')}".encode()).hexdigest()[:12],
        "created": started.isoformat(timespec="seconds"),
        "harness_version": __version__,
        "harness_commit": harness_commit(),
        "command": command_line(),
        "status": "complete",
        "model": model.describe() | model_facts,
        "backend": backend,
        "packages": package_versions(),
        "hardware": hardware(),
        "task": {
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
        },
        "metrics": metrics,
        "per_subtask": per_task,
        "timing": {
            "wall_seconds": round(wall, 3),
            "model_load_seconds": round(load_seconds, 3),
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in delta.items()},
            "samples_per_second": round(plan.n_samples / wall, 3) if wall else None,
        },
        "resume": resume,
        "lm_eval_results_file": f"{stem}.lm_eval.json",
        "samples": log,
    }


def _system_info(engine: LlamaEngine) -> str:
    try:
        return engine.lc.llama_print_system_info().decode().strip()
    except Exception:
        return ""


def run_bench(
    model: ModelEntry,
    model_path: Path,
    tasks: list[str],
    limit: int | None,
    full: bool,
    seed: int,
    data_dir: Path | None,
    settings: EngineSettings,
    results_dir: Path,
    verbose: bool = False,
    skip_bad_rows: bool = False,
) -> list[Path]:
    """Plan every task first (so bad input fails before the model loads), then run them in turn."""
    plans = [plan_task(t, model, limit=limit, full=full, seed=seed, data_dir=data_dir, skip_bad_rows=skip_bad_rows)
             for t in tasks]
    check_writable(results_dir)
    _, gpu = preflight_file(model, Path(model_path), plans, settings, quant_sizes(model, remote=False))  # weights + planned KV cache fit?
    # Journals first: a second identical run is refused at once, before it loads anything.
    sha = file_sha256(model_path)
    journals: list[Journal] = []
    try:
        for p in plans:
            ident = measurement(sha, p.config_hash(), settings.as_record(), gpu)
            journals.append(open_journal(results_dir, model, p.name, ident))
        t0 = time.perf_counter()
        engine = LlamaEngine(model_path, settings, verbose=verbose)
        load = time.perf_counter() - t0
        try:
            speed = probe(engine)  # this machine's rates, for each record's floor and efficiency
            session = engine_session(engine, Path(model_path), sha, load, speed)
            return [run_task(p, model, session, results_dir, j) for p, j in zip(plans, journals)]
        finally:
            engine.close()
    finally:
        for j in journals:
            j.close()
