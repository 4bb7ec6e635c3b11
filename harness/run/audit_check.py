"""Step 1 of ``harness audit`` (harness/run/audit.py): does a record agree with itself? Nothing is run: every
sample's recorded response goes through the task's own lm-eval filters and ``process_results`` (the code that
scored it), and every metric must be the mean the samples give."""

from __future__ import annotations

import json
import math

from harness.analysis.estimate import wilson_interval
from harness.records.schema import RunRecord


def as_stored(x: object) -> object:
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
    return as_stored(extracted), metrics


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
        if as_stored(target) != s.target:
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
