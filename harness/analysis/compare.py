"""Put each claim beside the measurement with the matching setting and give a verdict as strong as its evidence.

A verdict compares the measured 95% interval [lo, hi] with the claimed figure C, the claim's reproduction
margin M (``tasks/verdict_margins.yaml``: the source's own printed 95% half-width where it has one) and
the allowance A of the quant that was run (``tasks/quant_allowance.yaml``, sourced: claims are made on
full-precision weights). For a relation, C is the threshold the relation sets (a reference figure minus
the relation's own margin, or 0 for a paired difference between two models).

- exceeded: the whole interval lies above the claimed value (value claims);
- not reproduced: the interval falls short of C - A (the claim is contradicted even with the allowance);
- holds: the interval reaches C, its lower end lies at or above C - M - A (it rules out a shortfall larger
  than the margin plus allowance) and its half-width is at most M + A (its resolution is fine enough to
  have told the difference);
- holds within quantization allowance: as "holds", but the interval reaches only C - A;
- inconclusive: the interval covers both C (or C - A) and a shortfall larger than M + A, or is wider
  than that: too few questions to tell. The comparison says how many would decide (``harness/analysis/power.py``), or that even the
  full test set cannot ("not decidable on this benchmark");
- not comparable: no measurement, a setting that differs (shots, CoT, chat, metric), a reference figure
  that no source gives, or data that are not the data the claims were made on.

Before margins (until the harness's 0.1 line of November 2026), "holds" meant only "the claim lies inside
the interval": that reading stays available, since every comparison keeps its interval, margin, allowance
and the rule that decided it (``Comparison.rule``, the ``rule`` column of ``results/claims.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.analysis import power
from harness.analysis.claims import (
    Claim,
    allowance,
    load_claims,
    margin,
    params_tolerance,
    reference_mismatch,
)
from harness.analysis.estimate import Stratum, estimate, paired_difference
from harness.analysis.ladder import measured_loss
from harness.records.runs import Run, best_run
from harness.tasks.settings import task_spec

HOLDS = "holds"
WITHIN_QUANT = "holds within quantization allowance"
INCONCLUSIVE = "inconclusive"
NOT_REPRODUCED = "not reproduced"
EXCEEDED = "exceeded"
NOT_COMPARABLE = "not comparable"
# Decisive verdicts: the measurement could tell the claim from a shortfall of the margin.
DECISIVE = (HOLDS, WITHIN_QUANT, NOT_REPRODUCED, EXCEEDED)


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
    margin: float | None = None  # reproduction margin (points)
    margin_source: str = ""
    rule: str = ""  # the comparison that decided the verdict, with its numbers
    decide_n: int | None = None  # questions that would decide an inconclusive verdict (None: see `decidable`)
    decidable: bool | None = None  # False: not even the full test set decides at this margin

    @property
    def half_width(self) -> float | None:
        """Half the 95% interval's width (points)."""
        return None if self.lo is None else (self.hi - self.lo) / 2

    @property
    def decisive(self) -> bool:
        """Whether the measurement could tell the claim from a shortfall of its margin."""
        return self.verdict in DECISIVE

    def strength(self) -> str:
        """The verdict's evidence in words: 'decisive (±1.3, margin 2)' or 'undecided (...; N would decide)'."""
        if self.verdict == NOT_COMPARABLE:
            return "-"
        if self.claim.kind == "params":
            return "decisive (exact count)"
        if self.half_width is None or self.margin is None:
            return "-"
        hw = f"±{self.half_width:.1f}, margin {self.margin:g}"
        if self.allowance:
            hw += f" + allowance {self.allowance:g}"
        if self.decisive:
            return f"decisive ({hw})"
        if self.decidable is False:
            return f"not decidable on this benchmark ({hw})"
        return f"undecided ({hw}; {self.decide_n} questions would decide)"


def judge(
    target: float,
    lo: float,
    hi: float,
    margin_pts: float,
    allowance_pts: float,
    *,
    strict: bool = False,
    can_exceed: bool = True,
) -> tuple[str, str]:
    """Verdict and the rule that decided it, for a measured 95% interval [lo, hi] against a claimed value
    or relation threshold ``target`` (points). ``strict``: the claim is "> target"; ``can_exceed``: a value
    claim, where an interval wholly above the claim is "exceeded" (a relation is then simply "holds").

    "holds" is decisive only when the interval rules out a shortfall larger than margin + allowance AND
    its half-width is no larger than that: a measurement whose resolution is coarser than the margin
    cannot tell the difference, even where a shortfall is impossible (a claim of 1.4% cannot be missed by
    6 points, yet 3 questions measure it as [0, 56])."""
    floor = target - margin_pts - allowance_pts
    tolerance = margin_pts + allowance_pts
    half = (hi - lo) / 2
    if can_exceed and lo > target:
        return EXCEEDED, f"lo {lo:.1f} > claimed {target:.1f}"
    reaches = hi > target if strict else hi >= target
    reaches_allowed = allowance_pts > 0 and hi + allowance_pts >= target
    if not (reaches or reaches_allowed):
        return NOT_REPRODUCED, f"hi {hi:.1f} + allowance {allowance_pts:g} < {target:.1f}"
    if lo >= floor and half <= tolerance:
        verdict = HOLDS if reaches else WITHIN_QUANT
        return verdict, (
            f"lo {lo:.1f} >= {target:.1f} - margin {margin_pts:g} - allowance {allowance_pts:g} "
            f"= {floor:.1f}, half-width {half:.1f} <= {tolerance:g}"
        )
    if lo >= floor:
        return INCONCLUSIVE, (
            f"half-width {half:.1f} > margin {margin_pts:g} + allowance {allowance_pts:g}: "
            f"[{lo:.1f}, {hi:.1f}] is coarser than the difference it would have to tell"
        )
    return INCONCLUSIVE, (
        f"[{lo:.1f}, {hi:.1f}] covers {target:.1f} and a shortfall below {floor:.1f} "
        f"(margin {margin_pts:g} + allowance {allowance_pts:g})"
    )


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
        out.append(
            f"chat template {'used' if s['chat'] else 'not used'} in the claim, {'used' if t.chat else 'not'} here"
        )
    if s.get("metric") not in (spec.get("claim_metrics") or {}):
        out.append(f"metric {s.get('metric')!r} is not what this task measures")
    if s.get("average") not in ("micro", "macro"):
        out.append("averaging not stated by the source")
    if (
        t.data_modified
    ):  # --allow-modified-data / --skip-bad-rows (harness/tasks/data.py): not the claim's data
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
    base = dict(
        claim=claim,
        quant=run.quant,
        measured=m,
        lo=lo,
        hi=hi,
        n=est.n,
        n_total=est.n_total,
        allowance=allow.points,
        allowance_source=allow.source,
        run_ids=(run.rec.run_id,),
    )
    notes = [_subset_note(est.n, est.n_total)]
    if allow.rule == "none":
        notes.append(f"no quantization allowance known for {run.quant} on {claim.task}")
    if not claim.confirmed:
        notes.append("claim unconfirmed")
    marg = margin(claim)
    base.update(margin=marg.points, margin_source=marg.source)
    if claim.kind == "value":
        verdict, rule = judge(claim.claimed, lo, hi, marg.points, allow.points)
        return _with_power(
            Comparison(verdict=verdict, delta=m - claim.claimed, note="; ".join(notes), rule=rule, **base),
            est.value,
            run,
            key,
            claim,
        )
    rel = claim.relation
    ref = rel["reference"]
    if ref.get("value") is None:
        return Comparison(verdict=NOT_COMPARABLE, note=f"no source gives {ref.get('name')}'s figure", **base)
    ref_diff = reference_mismatch(claim)
    if ref_diff:  # e.g. a 5-shot MMLU figure against a 0-shot CoT claim: never compared
        return Comparison(
            verdict=NOT_COMPARABLE,
            note="reference figure from another setting: " + "; ".join(ref_diff),
            **base,
        )
    threshold = ref["value"] - float(rel.get("margin") or 0)
    verdict, rule = judge(
        threshold, lo, hi, marg.points, allow.points, strict=rel["op"] == ">", can_exceed=False
    )
    return _with_power(
        Comparison(verdict=verdict, delta=m - ref["value"], note="; ".join(notes), rule=rule, **base),
        est.value,
        run,
        key,
        claim,
    )


def deciding_half_width(
    measured: float, target: float, margin_pts: float, allowance_pts: float, can_exceed: bool = True
) -> float:
    """The half-width (points) at which a symmetric interval centred on ``measured`` would decide (see
    :func:`judge`): clear of ``target - margin - allowance`` and no wider than margin + allowance (holds),
    wholly short of ``target - allowance`` (not reproduced), or (value claims) wholly above the target
    (exceeded). Always positive: the ways cover every measured value."""
    floor = target - margin_pts - allowance_pts
    holds = min(measured - floor, margin_pts + allowance_pts)
    ways = [holds, target - allowance_pts - measured] + ([measured - target] if can_exceed else [])
    return max(ways)


def _with_power(c: Comparison, p: float, run: Run, key: str, claim: Claim) -> Comparison:
    """For an inconclusive verdict: how many questions would decide if the score stayed where it was
    measured (the harness's own stratified draw, the same estimator and the same rule), or that not even the
    full test would."""
    if c.verdict != INCONCLUSIVE:
        return c
    if claim.kind == "value":
        target, strict = claim.claimed, False
    else:
        rel = claim.relation
        target, strict = rel["reference"]["value"] - float(rel.get("margin") or 0), rel["op"] == ">"
    sizes = {s.name: s.size for s in _strata(run, key)}

    def decides(lo: float, hi: float) -> bool:
        return (
            judge(
                target, lo, hi, c.margin, c.allowance or 0.0, strict=strict, can_exceed=claim.kind == "value"
            )[0]
            != INCONCLUSIVE
        )

    c.decide_n = power.smallest_deciding(p, sizes, claim.setting["average"], decides)
    c.decidable = c.decide_n is not None
    return c


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
    rel_margin = float(rel.get("margin") or 0)
    marg = margin(claim)
    lo, hi = 100 * d.lo, 100 * d.hi
    # Both models are quantized here, so no allowance: the claim compares the two as they were run.
    verdict, rule = judge(-rel_margin, lo, hi, marg.points, 0.0, strict=rel["op"] == ">", can_exceed=False)
    note = (
        f"paired on {d.n} shared questions ({d.a_only} won by {run_a.model} only, {d.b_only} by "
        f"{run_b.model} only); {run_b.model} at {run_b.quant}"
    )
    n_total = run_a.rec.task.n_total
    c = Comparison(
        claim,
        verdict,
        note,
        quant=run_a.quant,
        measured=100 * d.value,
        lo=lo,
        hi=hi,
        n=d.n,
        n_total=n_total,
        delta=100 * d.value,
        run_ids=(run_a.rec.run_id, run_b.rec.run_id),
        margin=marg.points,
        margin_source=marg.source,
        rule=rule,
    )
    if verdict == INCONCLUSIVE:
        needed = deciding_half_width(100 * d.value, -rel_margin, marg.points, 0.0, can_exceed=False)
        c.decide_n = power.scaled_decide_n(d.n, (hi - lo) / 2, needed, n_total)
        c.decidable = c.decide_n is not None
    return c


def _compare_params(claim: Claim, runs: list[Run]) -> list[Comparison]:
    mine = [r for r in runs if r.model == claim.model and r.rec.model.n_params]
    if not mine:
        return [
            Comparison(claim, NOT_COMPARABLE, "no run of this model (parameter count comes from its GGUF)")
        ]
    tol = params_tolerance()
    out = {}
    for r in mine:
        n = float(r.rec.model.n_params)
        rel = (n - claim.claimed_params) / claim.claimed_params
        verdict = HOLDS if abs(rel) <= tol else NOT_REPRODUCED
        note = f"GGUF tensors count {n / 1e9:.2f}B ({100 * rel:+.1f}%; names round within {100 * tol:g}%)"
        out[r.quant] = Comparison(
            claim,
            verdict,
            note,
            quant=r.quant,
            measured=n / 1e9,
            delta=(n - claim.claimed_params) / 1e9,
            run_ids=(r.rec.run_id,),
            rule=f"|{100 * rel:+.1f}%| {'<=' if verdict == HOLDS else '>'} {100 * tol:g}%",
        )
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
            rows.append(
                Comparison(
                    claim,
                    NOT_COMPARABLE,
                    "setting differs: " + "; ".join(diff),
                    quant=q,
                    run_ids=(run.rec.run_id,),
                )
            )
            continue
        other = (claim.relation or {}).get("other_model")
        if other:
            run_b = best_run(runs, other, claim.task)
            if run_b is None:
                rows.append(Comparison(claim, NOT_COMPARABLE, f"no measurement of {other}", quant=q))
                continue
            diff_b = setting_mismatch(claim, run_b)
            if diff_b:
                rows.append(
                    Comparison(
                        claim, NOT_COMPARABLE, f"{other}: setting differs: " + "; ".join(diff_b), quant=q
                    )
                )
                continue
            rows.append(_compare_models(claim, run, run_b))
        else:
            row = _compare_measured(claim, run)
            loss = measured_loss(runs, claim.model, claim.task, q)
            if (
                loss is not None and row.verdict != NOT_COMPARABLE
            ):  # the evidence beside the sourced allowance
                row.note = "; ".join(
                    x for x in (row.note, f"{loss.text()} (allowance {row.allowance:g})") if x
                )
            rows.append(row)
    return rows


def compare_all(
    runs: list[Run], claims: list[Claim] | None = None, model: str | None = None
) -> list[Comparison]:
    """Every claim (or those of one model) against the runs, in catalogue order."""
    claims = load_claims() if claims is None else claims
    return [row for c in claims if model is None or c.model == model for row in compare_claim(c, runs)]
