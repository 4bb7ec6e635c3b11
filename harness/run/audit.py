"""``harness audit RECORD``: is a run record what its weights and settings give? Checked in two steps.

1. **The record agrees with itself** (nothing is run): the task is planned again from the record (its
   config hash must match: same prompts, data bytes and sample ids), and every sample's response goes
   through the task's own lm-eval filters and ``process_results`` (the code that scored it): the extracted
   answer, the target and the correctness must come out as recorded, and every metric (each filter,
   micro and macro, per subtask) must be the mean the samples give. A response changed by hand that
   changes its answer, or a score raised, fails here.
2. **Re-execution**: a seeded random sample of K of the record's questions is run again on the record's
   own weights (their sha256 is checked first), engine settings and batching scheme. llama.cpp's logits
   depend on the batch a token is decoded in, and the engine's prefix plan depends on *which* prompts it is
   given (``cluster_by_prefix``: fewer prompts can share a longer prefix, so a question's suffix would be
   decoded from another position, in another batch). Re-running the K questions as a smaller subset would
   therefore not reproduce the record's bytes. Instead every recorded request is planned, as in the
   recorded run, and only the K chosen are computed: the engine's resume path (``skip``), which keeps the
   prefix plan of all requests and replays a generation unit whole so every request meets the batch mates
   it met (harness/backends/llamacpp/engine.py). Each re-run sample's prompt hash must equal the record's.
   - Same device class and build (CPU model, GPU, llama.cpp build and CPU features, llama-cpp-python
     version, batching scheme): every response and log-prob must be bit-identical; the first question
     that differs is named with how.
   - Otherwise: the agreement rate and the largest log-prob difference, labelled as such (not a check).

The result is written to ``<results>/audits/<record stem>.json`` (when, where, K, seed, result); ``harness
publish`` lists each record's latest audit in the manifest and the report.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import HarnessError
from harness.records.audits import AUDITS
from harness.records.record import hardware, harness_commit, package_versions, read_record, wilson_interval
from harness.records.schema import RunRecord

IDENTICAL, DIFFERS, INCONSISTENT, COMPARED = "identical", "differs", "inconsistent", "compared"
CONSISTENT = "consistent, not re-run"  # --no-rerun: step 1 only


@dataclass
class Audit:
    """What an audit found; ``result`` is one of identical / differs / inconsistent / compared."""

    record: str
    result: str
    problems: list[str] = field(default_factory=list)  # self-consistency, in record order
    first_difference: str | None = None
    k: int = 0
    seed: int = 0
    sample: list[list] = field(default_factory=list)  # [task, doc_id] of the re-run questions
    other_class: list[str] = field(default_factory=list)  # why bit-identity is not expected here
    agreement: float | None = None  # share of re-run questions with identical responses
    max_logprob_diff: float | None = None
    wall_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.result in (IDENTICAL, COMPARED, CONSISTENT)

    def summary(self) -> str:
        """One line for the console and the report."""
        if self.result == INCONSISTENT:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return f"INCONSISTENT: {self.problems[0]}{more}"
        if self.result == DIFFERS:
            return f"DIFFERS on re-execution: {self.first_difference}"
        if self.result == CONSISTENT:
            return (
                "consistent, not re-run: every sample's extraction and correctness and every metric follow "
                "from the recorded responses"
            )
        if self.result == IDENTICAL:
            return (
                f"identical: {self.k} re-run question(s) (seed {self.seed}) bit-identical to the record; "
                "the record agrees with itself"
            )
        lp = (
            ""
            if self.max_logprob_diff is None
            else f", largest log-prob difference {self.max_logprob_diff:.3g}"
        )
        return (
            f"compared, bit-identity not required ({'; '.join(self.other_class)}): {self.agreement:.0%} of {self.k} "
            f"re-run question(s) identical{lp}; the record agrees with itself"
        )


# ------------------------------------------------------------------------------------ self-consistency


def _plain(x: object) -> object:
    """As JSON data (tuples as lists), the form the record stores."""
    return json.loads(json.dumps(x))


def _rescore(task, doc: dict, response: object, filters) -> tuple[object, dict]:
    """Run one sample's recorded response through one of the task's lm-eval filter ensembles and its
    ``process_results``: (the extracted answer as the record stores it, the metrics)."""
    # The record keeps the responses flattened (harness.run.runner.summarise): a generation's text, or one
    # [log-prob, is-greedy] pair per answer choice (one lm-eval request per choice).
    per_request = [tuple(p) for p in response] if isinstance(response, list) else [response]
    resps = [[r] for r in per_request]
    docs = [doc] * len(resps)
    for f in filters.filters:
        resps = f().apply(resps, docs)
    filtered = list(resps)
    metrics = task.process_results(doc, filtered)
    extracted = filtered[0] if len(filtered) == 1 else filtered
    return _plain(extracted), metrics


def _sorted_ids(rec: RunRecord, task: str, n_docs: int) -> list[int]:
    ids = rec.task.sample_ids
    return sorted(ids[task]) if isinstance(ids, dict) else list(range(n_docs))


def self_check(rec: RunRecord, plan, tasks: dict) -> list[str]:
    """Every way the record disagrees with itself (empty: none): samples against the task's own filters and
    metrics, metrics against the samples. ``tasks``: lm-eval task objects of ``plan`` by name."""
    problems: list[str] = []
    head_metric, head_filter = plan.metrics[0]
    values: dict[str, dict[str, list[float]]] = {}  # "metric,filter" -> task -> per-sample values
    seen = set()
    for s in rec.samples:
        where = f"{s.task} doc {s.doc_id}"
        task = tasks.get(s.task)
        if task is None:
            problems.append(f"{where}: task {s.task} is not part of {rec.task.name}")
            continue
        seen.add((s.task, s.doc_id))
        docs = task.eval_docs
        if not 0 <= s.doc_id < len(docs):
            problems.append(f"{where}: no such question")
            continue
        doc = docs[s.doc_id]
        target = task.doc_to_target(doc)
        if _plain(target) != s.target:
            problems.append(f"{where}: target {s.target!r} in the record, the data says {target!r}")
        # lm-eval keeps a task's filter pipelines only as ``_filters`` (ConfigurableTask builds them from the
        # config's filter_list; ``apply_filters`` runs them): the very code that extracted the recorded answers.
        ensembles = {f.name: f for f in task._filters} if hasattr(task, "_filters") else {}
        for metric, filt in plan.metrics:
            if filt not in ensembles:
                problems.append(f"{where}: the task has no filter {filt!r}")
                continue
            try:
                extracted, m = _rescore(task, doc, s.response, ensembles[filt])
            except (
                Exception
            ) as exc:  # a response of the wrong shape (edited by hand) is a finding, not a crash
                problems.append(f"{where}: its response cannot be scored ({type(exc).__name__}: {exc})")
                break
            if metric not in m:
                continue
            v = float(m[metric])
            values.setdefault(f"{metric},{filt}", {}).setdefault(s.task, []).append(v)
            if (metric, filt) == (head_metric, head_filter):
                if extracted != s.extracted:
                    problems.append(
                        f"{where}: extracted {s.extracted!r} in the record, its response gives {extracted!r}"
                    )
                if bool(v) != s.correct:
                    problems.append(
                        f"{where}: recorded {'correct' if s.correct else 'wrong'}, its response is "
                        f"{'correct' if v else 'wrong'}"
                    )
    names = [c["task"] for c in plan.configs]
    expected = {(t, i) for t in names if t in tasks for i in _sorted_ids(rec, t, len(tasks[t].eval_docs))}
    if seen != expected:
        missing, extra = sorted(expected - seen), sorted(seen - expected)
        problems.append(
            f"the samples are not the recorded subset: {len(missing)} missing, {len(extra)} extra"
            + (f" (first missing: {missing[0][0]} doc {missing[0][1]})" if missing else "")
        )
    problems += _metric_problems(rec, values)
    return problems


def _close(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _metric_problems(rec: RunRecord, values: dict[str, dict[str, list[float]]]) -> list[str]:
    """Recorded metrics against the means of the per-sample values (micro, macro over subtasks, per subtask)."""
    out = []
    for key, m in rec.metrics.items():
        base = key.removesuffix(",macro")
        per = values.get(base)
        if per is None:
            out.append(f"metric {key}: not given by the task's filters and metrics")
            continue
        flat = [v for vs in per.values() for v in vs]
        if m.average == "macro":
            want = sum(sum(v) / len(v) for v in per.values()) / len(per)
        else:
            want = sum(flat) / len(flat)
            lo, hi = wilson_interval(want, len(flat))
            if not (_close(m.ci95[0], lo) and _close(m.ci95[1], hi)):
                out.append(f"metric {key}: interval {m.ci95} recorded, the samples give [{lo}, {hi}]")
        if m.n != len(flat):
            out.append(f"metric {key}: n={m.n} recorded, {len(flat)} samples")
        if not _close(m.value, want):
            out.append(f"metric {key}: {m.value!r} recorded, the samples give {want!r}")
    for task, metrics in rec.per_subtask.items():
        for key, m in metrics.items():
            vs = (values.get(key) or {}).get(task)
            if not vs:
                out.append(f"{task} {key}: no samples")
            elif not _close(m.value, sum(vs) / len(vs)) or m.n != len(vs):
                out.append(
                    f"{task} {key}: {m.value!r} (n={m.n}) recorded, the samples give "
                    f"{sum(vs) / len(vs)!r} (n={len(vs)})"
                )
    return out


# -------------------------------------------------------------------------------------- re-execution


def choose(rec: RunRecord, k: int, seed: int) -> list[tuple[str, int]]:
    """The seeded sample of the record's questions to re-run (all of them when k >= n)."""
    ids = sorted((s.task, s.doc_id) for s in rec.samples)
    if k >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, k))


def other_class(rec: RunRecord, system_info: str) -> list[str]:
    """Why this machine and build cannot be expected to give the record's bits (empty: they can)."""
    from harness.backends.llamacpp.settings import SCHEME

    here = hardware()
    out = []
    if rec.hardware.cpu != here["cpu"]:
        out.append(f"CPU {rec.hardware.cpu!r} recorded, {here['cpu']!r} here")
    if (rec.hardware.gpu or None) != (here["gpu"] or None) or bool(rec.backend.gpu_offload):
        out.append(
            f"GPU {rec.hardware.gpu or 'none'} recorded (offload {bool(rec.backend.gpu_offload)}), "
            f"{here['gpu'] or 'none'} here"
        )
    have = package_versions().get("llama-cpp-python")
    want = rec.packages.llama_cpp_python if rec.packages else None
    if want != have:
        out.append(f"llama-cpp-python {want} recorded, {have} here")
    if (rec.backend.llama_cpp_system_info or "") != system_info:
        was, now = _features(rec.backend.llama_cpp_system_info or ""), _features(system_info)
        delta = [f"+{f}" for f in sorted(now - was)] + [f"-{f}" for f in sorted(was - now)]
        out.append(f"llama.cpp CPU features differ ({' '.join(delta) or 'same features, other text'} here)")
    scheme = rec.backend.settings.get("scheme")
    if scheme != SCHEME:
        out.append(f"batching scheme {scheme} recorded, {SCHEME} here")
    return out


def _features(system_info: str) -> set[str]:
    """The features llama.cpp reports as on ("AVX2 = 1 | AMX_INT8 = 1 | ...")."""
    return {
        part.split("=")[0].strip().split(":")[-1].strip()
        for part in system_info.split("|")
        if part.strip().endswith("= 1")
    }


def _engine_settings(rec: RunRecord, threads: int):
    from dataclasses import fields

    from harness.backends.llamacpp.settings import EngineSettings

    names = {f.name for f in fields(EngineSettings)} - {"threads", "rpc_servers"}
    kw = {k: v for k, v in rec.backend.settings.items() if k in names}
    return EngineSettings(threads=threads, **kw)


def _audit_lm(engine, wanted: set[tuple[str, int]], positions: dict[str, list[int]]):
    """An lm-eval model over ``engine`` that computes only the ``wanted`` questions' requests; every other
    request of the plan is handed to the engine as already done (its resume ``skip``), so the prefix plan
    and the generation units are those of the recorded run. lm-eval numbers a subset's documents by
    position (``doc_id`` of an Instance), ``positions`` maps them back to the data's row ids."""
    from harness.backends.llamacpp.lm_model import LlamaBenchLM

    class AuditLM(LlamaBenchLM):
        def _mask(self, requests, placeholder) -> None:
            self._wanted = [(r.task_name, positions[r.task_name][r.doc_id]) in wanted for r in requests]
            self._placeholder = placeholder

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            self._mask(requests, (0.0, False))
            return super().loglikelihood(requests, disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False):
            self._mask(requests, "")
            return super().generate_until(requests, disable_tqdm)

        def _resume(self, keys):
            return {i: self._placeholder for i, w in enumerate(self._wanted) if not w}, None

    return AuditLM(engine=engine)


def _compare_samples(
    rec: RunRecord, rerun: list[dict], chosen: list[tuple[str, int]]
) -> tuple[str | None, float, float | None]:
    """(first difference in words or None, share identical, largest log-prob difference)."""
    got = {(s["task"], s["doc_id"]): s for s in rerun}
    first, same, worst = None, 0, None
    for s in sorted(rec.samples, key=lambda s: (s.task, s.doc_id)):
        k = (s.task, s.doc_id)
        if k not in chosen:
            continue
        r = got.get(k)
        where = f"{s.task} doc {s.doc_id}"
        if r is None:
            first = first or f"{where}: not re-run"
            continue
        if r["prompt_sha256"] != s.prompt_sha256:
            first = (
                first or f"{where}: prompt sha256 {s.prompt_sha256} recorded, {r['prompt_sha256']} rebuilt"
            )
            continue
        resp = _plain(r["response"])
        if isinstance(resp, list) and isinstance(s.response, list) and len(resp) == len(s.response):
            for j, (a, b) in enumerate(zip(s.response, resp)):
                if isinstance(a, list) and isinstance(b, list) and isinstance(a[0], (int, float)):
                    d = abs(float(a[0]) - float(b[0]))
                    worst = d if worst is None else max(worst, d)
        if resp == s.response:
            same += 1
        elif first is None:
            first = f"{where}: {_how(s.response, resp)}"
    return first, same / max(1, len(chosen)), worst


def _how(recorded: object, rerun: object) -> str:
    """How a re-run response differs from the recorded one, in words."""
    if isinstance(recorded, str) and isinstance(rerun, str):
        i = next(
            (i for i in range(min(len(recorded), len(rerun))) if recorded[i] != rerun[i]),
            min(len(recorded), len(rerun)),
        )
        return (
            f"response differs from character {i}: recorded {recorded[i : i + 40]!r}, "
            f"re-run {rerun[i : i + 40]!r}"
        )
    if isinstance(recorded, list) and isinstance(rerun, list):
        for j, (a, b) in enumerate(zip(recorded, rerun)):
            if a != b:
                return f"choice {j}: recorded {a}, re-run {b}"
    return f"response recorded {str(recorded)[:80]!r}, re-run {str(rerun)[:80]!r}"


def _model_entry(rec: RunRecord, model_path: Path | None):
    """The catalogue entry the record was planned with (its kind as recorded) and the weights' file."""
    from dataclasses import replace

    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    m = rec.model
    if m.family in ("local", "hub"):
        if model_path is None:
            raise HarnessError(
                f"{rec.model.name} was run from a file ({m.file}) the catalogue does not know",
                "give the file with --model PATH.",
            )
        entry = resolve(str(model_path), m.quant)
    else:
        entry = resolve(m.name, m.quant)
    entry = replace(entry, kind=m.kind)
    path = model_path or local_model_path(entry)
    if path is None:
        raise HarnessError(
            f"the weights of {m.name} {m.quant} are not on this machine",
            f"`harness download {m.name} --quant {m.quant}`, or give the file with --model PATH.",
        )
    return entry, Path(path)


def audit(
    record_path: Path,
    k: int = 10,
    seed: int = 0,
    model_path: Path | None = None,
    data_dir: Path | None = None,
    threads: int = 0,
    rerun: bool = True,
) -> Audit:
    """Audit one record (see the module docstring); ``rerun`` False stops after the self-consistency check."""
    from harness.hashing import file_sha256
    from harness.tasks.settings import plan_task, task_manager

    t0 = time.perf_counter()
    rec = read_record(record_path)
    out = Audit(record=Path(record_path).name, result=IDENTICAL, seed=seed)
    if rec.model.sha256 is None:
        raise HarnessError(
            f"{out.record} is a server run: there are no weights' bytes to re-run",
            "audit it with the server that made it (not supported yet).",
        )
    entry, path = _model_entry(rec, model_path)
    t = rec.task
    limit = None if t.full else t.limit
    from harness.run import console

    with console.quiet():  # datasets' and lm-eval's own progress lines go to the log
        plan = plan_task(
            t.name,
            entry,
            limit=limit,
            full=t.full,
            seed=t.seed or 0,
            data_dir=data_dir,
            num_fewshot=t.num_fewshot,
        )
        tasks = task_manager().load(plan.configs)["tasks"]
    recorded_ids = None if t.sample_ids == "all" else t.sample_ids
    if plan.samples != recorded_ids or plan.data_files != t.data_sha256:
        raise HarnessError(
            f"{out.record}: its questions cannot be rebuilt here: the "
            + ("sample ids" if plan.samples != recorded_ids else "data files' sha256")
            + " differ from the record's",
            "audit with the data the record names (task.data_sha256), e.g. --data-dir pointing at that mirror.",
        )
    config_changed = plan.config_hash() != t.config_hash
    tasks = {
        name if isinstance(name, str) else getattr(name, "task_name", str(name)): tk
        for name, tk in tasks.items()
    }
    out.problems = self_check(rec, plan, tasks)
    if out.problems:
        out.result = INCONSISTENT
    if not rerun:
        out.result = out.result if out.problems else CONSISTENT
        out.wall_seconds = round(time.perf_counter() - t0, 3)
        return out
    sha = file_sha256(path)
    if sha != rec.model.sha256:
        out.result, out.first_difference = (
            DIFFERS,
            (
                f"the weights are not the record's: {path.name} has sha256 {sha}, the record names {rec.model.sha256}"
            ),
        )
        out.wall_seconds = round(time.perf_counter() - t0, 3)
        return out
    chosen = choose(rec, k, seed)
    out.k, out.sample = len(chosen), [list(c) for c in chosen]
    samples = _rerun(rec, plan, path, set(chosen), threads, out)
    if config_changed:  # the harness's task code changed since the record: its prompts are checked one by one
        out.other_class.append(f"task config hash {t.config_hash} recorded, {plan.config_hash()} now")
    first, share, worst = _compare_samples(rec, samples, chosen)
    out.agreement, out.max_logprob_diff = share, worst
    if out.result != INCONSISTENT:
        if out.other_class:
            out.result = COMPARED
            if first and "prompt sha256" in first:  # prompts do not depend on the device
                out.result, out.first_difference = DIFFERS, first
        elif first:
            out.result, out.first_difference = DIFFERS, first
    out.wall_seconds = round(time.perf_counter() - t0, 3)
    return out


def _rerun(
    rec: RunRecord, plan, path: Path, wanted: set[tuple[str, int]], threads: int, out: Audit
) -> list[dict]:
    """Run the plan on the record's weights and settings, computing only the ``wanted`` questions; their
    per-sample log (harness.run.runner.summarise)."""
    import lm_eval

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.run import console
    from harness.run.runner import evaluate, summarise

    engine = LlamaEngine(path, _engine_settings(rec, threads))
    try:
        info = engine.lc.llama_print_system_info().decode().strip()
        out.other_class = other_class(rec, info)
        positions = {name: sorted(ids) for name, ids in (plan.samples or {}).items()}
        for c in plan.configs:
            positions.setdefault(c["task"], list(range(plan.sizes[c["task"]])))
        lm = _audit_lm(engine, wanted, positions)
        with console.quiet():
            res = evaluate(lm_eval, lm, plan)
    finally:
        engine.close()
    _, _, log = summarise(plan, res["samples"])
    return [s for s in log if (s["task"], s["doc_id"]) in wanted]


def write_audit(results_dir: Path, a: Audit, record_path: Path) -> Path:
    """``<results>/audits/<record stem>.json``: when, where, K, seed, result, and what was found."""
    from harness.atomic import write_json
    from harness.hashing import file_sha256

    here = hardware()
    info = {
        "record": a.record,
        "record_sha256": file_sha256(Path(record_path), fresh=True),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "where": {
            "cpu": here["cpu"],
            "cores": here["cores"],
            "gpu": here["gpu"],
            "host": here.get("host"),
            "llama-cpp-python": package_versions().get("llama-cpp-python"),
        },
        "harness_commit": harness_commit(),
        "k": a.k,
        "seed": a.seed,
        "result": a.result,
        "summary": a.summary(),
        "problems": a.problems[:20],
        "n_problems": len(a.problems),
        "first_difference": a.first_difference,
        "other_class": a.other_class,
        "agreement": a.agreement,
        "max_logprob_diff": a.max_logprob_diff,
        "sample": a.sample,
        "wall_seconds": a.wall_seconds,
    }
    path = Path(results_dir) / AUDITS / (Path(a.record).stem + ".json")
    write_json(path, info)
    return path
