"""Put each claim beside the measurement with the matching setting and give a plain verdict.

Verdicts (``holds`` means "not contradicted by the measurement at 95%"):
- holds: the claimed figure lies inside the 95% interval (for a relation: the interval reaches the
  threshold the relation sets);
- holds within quantization allowance: the interval falls short of the claim by no more than the
  allowance of the quant run (``tasks/quant_allowance.yaml``, sourced), since claims are made on
  full-precision weights;
- not reproduced: the interval falls short by more than that;
- exceeded: the whole interval lies above the claimed value;
- not comparable: no measurement, a setting that differs (shots, CoT, chat, metric), or a reference
  figure that no source gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.analysis.claims import Claim, allowance, load_claims, params_tolerance, reference_mismatch
from harness.analysis.estimate import Stratum, estimate, paired_difference
from harness.records.runs import Run, best_run
from harness.tasks.settings import task_spec

HOLDS = "holds"
WITHIN_QUANT = "holds within quantization allowance"
NOT_REPRODUCED = "not reproduced"
EXCEEDED = "exceeded"
NOT_COMPARABLE = "not comparable"
VERDICTS = (HOLDS, WITHIN_QUANT, NOT_REPRODUCED, EXCEEDED, NOT_COMPARABLE)


@dataclass
class Comparison:
    """One claim beside one measurement (one row per quant measured), all scores in points (0-100)."""

    claim: Claim
    verdict: str
    note: str = ""
    quant: str | None = None
    measured: float | None = None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None
    n_total: int | None = None
    delta: float | None = None
    allowance: float | None = None
    allowance_source: str = ""
    run_ids: tuple[str, ...] = field(default_factory=tuple)


def verdict_value(claimed: float, lo: float, hi: float, allowance_pts: float) -> str:
    """Verdict for a claimed value against a measured 95% interval [lo, hi] (points)."""
    if lo > claimed:
        return EXCEEDED
    if hi >= claimed:
        return HOLDS
    return WITHIN_QUANT if hi + allowance_pts >= claimed else NOT_REPRODUCED


def verdict_at_least(threshold: float, hi: float, allowance_pts: float, strict: bool = False) -> str:
    """Verdict for "score > threshold" (strict) or ">= threshold" given the interval's upper end."""
    if hi > threshold or (not strict and hi >= threshold):
        return HOLDS
    return WITHIN_QUANT if allowance_pts > 0 and hi + allowance_pts >= threshold else NOT_REPRODUCED


def setting_mismatch(claim: Claim, run: Run) -> list[str]:
    """How a run's setting differs from the claim's (empty when they match)."""
    s = claim.setting or {}
    spec = task_spec(run.task, run.rec.model.kind)
    t = run.rec.task
    out = []
    if s.get("shots") is not None and s["shots"] != t.num_fewshot:
        out.append(f"{s['shots']}-shot claimed, {t.num_fewshot}-shot run")
    if s.get("cot") is not None and bool(s["cot"]) != bool(spec.get("cot")):
        out.append("chain of thought differs")
    if s.get("chat") is not None and bool(s["chat"]) != t.chat:
        out.append(f"chat template {'used' if s['chat'] else 'not used'} in the claim, {'used' if t.chat else 'not'} here")
    if s.get("metric") not in (spec.get("claim_metrics") or {}):
        out.append(f"metric {s.get('metric')!r} is not what this task measures")
    if s.get("average") not in ("micro", "macro"):
        out.append("averaging not stated by the source")
    if t.data_modified:  # --allow-modified-data / --skip-bad-rows (harness/tasks/data.py): not the claim's data
        out.append("run on modified data (task.data_modified), not the data the claims were made on")
    return out


def _strata(run: Run, key: str) -> list[Stratum]:
    t = run.rec.task
    sizes = t.subtask_sizes or {}
    per = run.rec.per_subtask
    out = []
    for name, metrics in sorted(per.items()):
        m = metrics.get(key)
        if not m:
            continue
        # Older records lack subtask sizes: a single task's size is n_total; otherwise treat as full.
        size = sizes.get(name) or (t.n_total if len(per) == 1 else m.n)
        out.append(Stratum(name, round(m.value * m.n), m.n, int(size)))
    return out


def _metric_key(claim: Claim, run: Run) -> str:
    spec = task_spec(run.task, run.rec.model.kind)
    return spec["claim_metrics"][claim.setting["metric"]]


def _subset_note(n: int, n_total: int) -> str:
    return f"subset {n}/{n_total}: interval covers the full-test score" if n < n_total else "full test"


def _compare_measured(claim: Claim, run: Run) -> Comparison:
    """Value claims and relations to a published reference figure, on one run."""
    key = _metric_key(claim, run)
    est = estimate(_strata(run, key), claim.setting["average"])
    m, lo, hi = 100 * est.value, 100 * est.lo, 100 * est.hi
    allow = allowance(run.quant, run.rec.model.n_params, claim.task)
    base = dict(claim=claim, quant=run.quant, measured=m, lo=lo, hi=hi, n=est.n, n_total=est.n_total,
                allowance=allow.points, allowance_source=allow.source, run_ids=(run.rec.run_id,))
    notes = [_subset_note(est.n, est.n_total)]
    if allow.rule == "none":
        notes.append(f"no quantization allowance known for {run.quant} on {claim.task}")
    if not claim.confirmed:
        notes.append("claim unconfirmed")
    if claim.kind == "value":
        verdict = verdict_value(claim.claimed, lo, hi, allow.points)
        return Comparison(verdict=verdict, delta=m - claim.claimed, note="; ".join(notes), **base)
    rel = claim.relation
    ref = rel["reference"]
    if ref.get("value") is None:
        return Comparison(verdict=NOT_COMPARABLE, note=f"no source gives {ref.get('name')}'s figure", **base)
    ref_diff = reference_mismatch(claim)
    if ref_diff:  # e.g. a 5-shot MMLU figure against a 0-shot CoT claim: never compared
        return Comparison(verdict=NOT_COMPARABLE, note="reference figure from another setting: " + "; ".join(ref_diff),
                          **base)
    threshold = ref["value"] - float(rel.get("margin") or 0)
    verdict = verdict_at_least(threshold, hi, allow.points, strict=rel["op"] == ">")
    return Comparison(verdict=verdict, delta=m - ref["value"], note="; ".join(notes), **base)


def _compare_models(claim: Claim, run_a: Run, run_b: Run) -> Comparison:
    """A relation between two models: paired difference on the questions both runs scored."""
    rel = claim.relation
    head = task_spec(run_a.task, run_a.rec.model.kind)["metrics"][0]
    if _metric_key(claim, run_a) != ",".join(head):
        return Comparison(claim, NOT_COMPARABLE, "per-sample log holds only the headline metric")
    a = {(s.task, s.doc_id): s.correct for s in run_a.rec.samples}
    b = {(s.task, s.doc_id): s.correct for s in run_b.rec.samples}
    shared = sorted(set(a) & set(b))
    if not shared:
        return Comparison(claim, NOT_COMPARABLE, f"{run_a.model} and {run_b.model} share no scored questions")
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    for k in shared:
        pairs.setdefault(k[0], []).append((a[k], b[k]))
    sizes = run_a.rec.task.subtask_sizes or {}
    d = paired_difference(pairs, sizes, claim.setting["average"])
    margin = float(rel.get("margin") or 0)
    verdict = verdict_at_least(-margin, 100 * d.hi, 0.0, strict=rel["op"] == ">")
    note = (f"paired on {d.n} shared questions ({d.a_only} won by {run_a.model} only, {d.b_only} by "
            f"{run_b.model} only); {run_b.model} at {run_b.quant}")
    return Comparison(claim, verdict, note, quant=run_a.quant, measured=100 * d.value, lo=100 * d.lo,
                      hi=100 * d.hi, n=d.n, n_total=run_a.rec.task.n_total, delta=100 * d.value,
                      run_ids=(run_a.rec.run_id, run_b.rec.run_id))


def _compare_params(claim: Claim, runs: list[Run]) -> list[Comparison]:
    mine = [r for r in runs if r.model == claim.model and r.rec.model.n_params]
    if not mine:
        return [Comparison(claim, NOT_COMPARABLE, "no run of this model (parameter count comes from its GGUF)")]
    tol = params_tolerance()
    out = {}
    for r in mine:
        n = float(r.rec.model.n_params)
        rel = (n - claim.claimed_params) / claim.claimed_params
        verdict = HOLDS if abs(rel) <= tol else NOT_REPRODUCED
        note = f"GGUF tensors count {n / 1e9:.2f}B ({100 * rel:+.1f}%; names round within {100 * tol:g}%)"
        out[r.quant] = Comparison(claim, verdict, note, quant=r.quant, measured=n / 1e9,
                                  delta=(n - claim.claimed_params) / 1e9, run_ids=(r.rec.run_id,))
    return [out[q] for q in sorted(out)]


def compare_claim(claim: Claim, runs: list[Run]) -> list[Comparison]:
    """Rows for one claim: one per quant of the claimed model that has a run of the claim's task."""
    rows = _compare_claim(claim, runs)
    if claim.mapping_ours:  # the source names no benchmark: say so on every row, whatever the verdict
        for row in rows:
            row.note = "; ".join(x for x in (row.note, "benchmark chosen by us, not by the source") if x)
    return rows


def _compare_claim(claim: Claim, runs: list[Run]) -> list[Comparison]:
    if claim.kind == "params":
        return _compare_params(claim, runs)
    quants = sorted({r.quant for r in runs if r.model == claim.model and r.task == claim.task})
    if not quants:
        return [Comparison(claim, NOT_COMPARABLE, "no measurement")]
    rows = []
    for q in quants:
        run = best_run(runs, claim.model, claim.task, q)
        diff = setting_mismatch(claim, run)
        if diff:
            rows.append(Comparison(claim, NOT_COMPARABLE, "setting differs: " + "; ".join(diff), quant=q,
                                   run_ids=(run.rec.run_id,)))
            continue
        other = (claim.relation or {}).get("other_model")
        if other:
            run_b = best_run(runs, other, claim.task)
            if run_b is None:
                rows.append(Comparison(claim, NOT_COMPARABLE, f"no measurement of {other}", quant=q))
                continue
            diff_b = setting_mismatch(claim, run_b)
            if diff_b:
                rows.append(Comparison(claim, NOT_COMPARABLE, f"{other}: setting differs: " + "; ".join(diff_b), quant=q))
                continue
            rows.append(_compare_models(claim, run, run_b))
        else:
            rows.append(_compare_measured(claim, run))
    return rows


def compare_all(runs: list[Run], claims: list[Claim] | None = None, model: str | None = None) -> list[Comparison]:
    """Every claim (or those of one model) against the runs, in catalogue order."""
    claims = load_claims() if claims is None else claims
    return [row for c in claims if model is None or c.model == model for row in compare_claim(c, runs)]
