"""The quant ladder: what a quant costs, measured on the same questions as a higher-precision quant of the model.

Two quants of one model answered the same questions in the same setting (``harness.records.identity`` with
the weights left out: same task configuration, data and sample ids, same engine settings and device class).
The highest-precision quant (the largest file) is the reference; each other quant is put beside it:

- the paired score difference with its 95% interval (``harness.analysis.estimate.paired_difference``) over
  the shared questions, each question weighted the same;
- the questions only the reference got right and only the quant got right, with the exact two-sided
  McNemar p (the binomial test on the discordant questions, as ``harness.analysis.regress`` does it);
- log-likelihood tasks: the KL divergence KL(reference || quant) of the answer-choice distributions,
  softmax of each choice's summed log-prob as the record keeps it (``response``: one ``[log-prob,
  is-greedy]`` pair per choice, written by ``harness.run.runner.summarise``), its mean and 99th percentile
  over the shared questions (the "KL divergence" statistic of llama.cpp's perplexity tool, over choices
  instead of the vocabulary since the records keep only the choices);
- generation tasks: the share of byte-identical responses and, where two responses differ, the median
  character at which they first diverge (the records keep text, not tokens).

Statistics: Miller, "Adding Error Bars to Evals" (arXiv 2411.00640), section on paired differences;
McNemar (1947) for the exact discordant-pair test.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.analysis.estimate import PairedDiff, paired_difference
from harness.analysis.regress import mcnemar_one_sided
from harness.records import identity
from harness.records.runs import Run
from harness.records.schema import Sample


@dataclass(frozen=True)
class Rung:
    """One quant beside the reference quant of its ladder, on the questions both answered (points: 0-100)."""

    quant: str
    sha256: str
    run_id: str
    n: int  # questions both runs answered
    score: float  # this quant's plain mean on the shared questions
    diff: PairedDiff  # this quant minus the reference (a loss is negative), fractions
    ref_only: int  # questions only the reference got right
    this_only: int  # questions only this quant got right
    mcnemar_p: float  # exact two-sided
    kl_mean: float | None = None  # log-likelihood tasks
    kl_p99: float | None = None
    identical: float | None = None  # generation tasks: share of identical responses
    median_divergence: float | None = None  # generation tasks: median first differing character


@dataclass(frozen=True)
class Ladder:
    """The quants of one model on one task and setting, the reference (highest precision) first."""

    model: str
    task: str
    reference: str  # quant
    reference_sha256: str
    reference_score: float  # points, on all its questions
    loglik: bool
    rungs: tuple[Rung, ...]


def model_key(run: Run) -> str:
    """Which model a run is of, whatever its quant: the catalogue name; for a user's own GGUF or a Hub file
    (named by its file) the name with the quant's tag taken out ("smollm2-135m-Q8_0" -> "smollm2-135m")."""
    m = run.rec.model
    if m.family not in ("local", "hub") or not m.quant:
        return m.name
    return re.sub(rf"[-_.]?{re.escape(m.quant)}(?=$|[-_.])", "", m.name, flags=re.IGNORECASE) or m.name


def setting_key(run: Run) -> str:
    """The measurement identity (harness.records.identity) without the weights: same task, data, sample ids,
    settings and device class."""
    ident = identity.of_record(run.rec)
    return identity.key(dict(ident, weights=None))


def mcnemar_two_sided(b: int, c: int) -> float:
    """Exact two-sided McNemar p for b and c discordant questions: twice the smaller binomial tail, at most 1."""
    return min(1.0, 2 * mcnemar_one_sided(max(b, c), min(b, c)))


def choice_logprobs(sample: Sample) -> list[float] | None:
    """The per-choice log-probs of a log-likelihood sample (None when its response is not that shape)."""
    r = sample.response
    if not isinstance(r, list) or not r:
        return None
    out = []
    for pair in r:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], (int, float))
            and not isinstance(pair[0], bool)
        ):
            return None
        out.append(float(pair[0]))
    return out


def kl_divergence(ref: list[float], other: list[float]) -> float:
    """KL(P || Q) in nats between the softmax distributions of two lists of choice log-probs."""

    def log_softmax(x: list[float]) -> list[float]:
        top = max(x)
        lse = top + math.log(sum(math.exp(v - top) for v in x))
        return [v - lse for v in x]

    lp, lq = log_softmax(ref), log_softmax(other)
    return max(0.0, sum(math.exp(a) * (a - b) for a, b in zip(lp, lq)))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def first_divergence(a: str, b: str) -> int:
    """Index of the first character at which two different strings differ (the shorter one's length when
    one is a prefix of the other)."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _median(values: list[float]) -> float:
    return percentile(values, 50)


def _score(run: Run) -> float:
    return 100 * sum(s.correct for s in run.rec.samples) / max(1, len(run.rec.samples))


def rung(ref: Run, other: Run) -> Rung | None:
    """``other`` beside the reference run on their shared questions (None when they share none)."""
    a = {(s.task, s.doc_id): s for s in ref.rec.samples}
    b = {(s.task, s.doc_id): s for s in other.rec.samples}
    shared = sorted(set(a) & set(b))
    if not shared:
        return None
    # Every shared question weighs the same: the ladder is about these questions. Reweighting a stratified
    # subset to the full test (as the headline score does) gave MMLU subsets of one question per subject a
    # ±45-point interval on 20 questions (the variance's add-half smoothing, per one-question stratum).
    pairs = {"shared": [(b[k].correct, a[k].correct) for k in shared]}
    diff = paired_difference(pairs, {}, "micro")
    this_only, ref_only = diff.a_only, diff.b_only
    kls, same, where = [], 0, []
    loglik = all(choice_logprobs(a[k]) is not None for k in shared)
    for k in shared:
        if loglik:
            pa, pb = choice_logprobs(a[k]), choice_logprobs(b[k])
            if pb is not None and len(pa) == len(pb):
                kls.append(kl_divergence(pa, pb))
        else:
            ra, rb = str(a[k].response), str(b[k].response)
            if ra == rb:
                same += 1
            else:
                where.append(first_divergence(ra, rb))
    return Rung(
        quant=other.quant,
        sha256=other.rec.model.sha256 or "",
        run_id=other.rec.run_id,
        n=len(shared),
        score=100 * sum(b[k].correct for k in shared) / len(shared),
        diff=diff,
        ref_only=ref_only,
        this_only=this_only,
        mcnemar_p=mcnemar_two_sided(ref_only, this_only),
        kl_mean=sum(kls) / len(kls) if loglik and kls else None,
        kl_p99=percentile(kls, 99) if loglik and kls else None,
        identical=None if loglik else same / len(shared),
        median_divergence=None if loglik or not where else _median([float(w) for w in where]),
    )


# llama.cpp's quant types from most to fewest bits per weight (the published plots order quants the same way).
QUANT_ORDER = [
    "F32",
    "BF16",
    "F16",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "IQ4_XS",
    "Q4_1",
    "Q4_0",
    "Q3_K_L",
    "Q3_K_M",
    "IQ3_M",
    "Q3_K_S",
    "IQ3_XXS",
    "Q2_K",
    "IQ2_M",
]


def _precision(run: Run) -> tuple:
    """Higher first: the larger file holds more bits per weight of the same model; where a size is not
    recorded, the quant type's place in :data:`QUANT_ORDER` decides."""
    rank = {q: i for i, q in enumerate(QUANT_ORDER)}
    return (run.rec.model.size_bytes or 0, -rank.get(run.quant.upper(), len(rank)), run.quant)


def ladders(runs: list[Run], model: str | None = None) -> list[Ladder]:
    """Every ladder the runs allow: per (model, task, setting), two or more different weights that share
    questions (``model``: only that model's)."""
    groups: dict[tuple[str, str, str], dict[str, Run]] = {}
    for r in runs:
        if r.rec.model.sha256 is None:  # a server run names no bytes: its quant cannot be placed on a ladder
            continue
        key = (model_key(r), r.task, setting_key(r))
        if model is not None and key[0] != model:
            continue
        best = groups.setdefault(key, {})
        old = best.get(r.rec.model.sha256)
        if old is None or (r.n, r.sort_key()) > (old.n, old.sort_key()):
            best[r.rec.model.sha256] = r
    out = []
    for (name, task, _), by_sha in sorted(groups.items()):
        if len(by_sha) < 2:
            continue
        ordered = sorted(by_sha.values(), key=_precision, reverse=True)
        ref = ordered[0]
        rungs = tuple(x for x in (rung(ref, o) for o in ordered[1:]) if x is not None)
        if not rungs:
            continue
        loglik = all(x.kl_mean is not None for x in rungs)
        out.append(Ladder(name, task, ref.quant, ref.rec.model.sha256 or "", _score(ref), loglik, rungs))
    return out


@dataclass(frozen=True)
class MeasuredLoss:
    """What a quant lost against the model's highest-precision quant on one task: points (a loss is
    positive), with the 95% interval of the paired difference, on ``n`` shared questions."""

    quant: str
    reference: str
    points: float
    lo: float
    hi: float
    n: int

    def text(self) -> str:
        """One phrase for a verdict note."""
        return (
            f"measured loss vs {self.reference}: {self.points:+.1f} points "
            f"[{self.lo:+.1f}, {self.hi:+.1f}] on {self.n} shared questions"
        )


def measured_loss(runs: list[Run], model: str, task: str, quant: str) -> MeasuredLoss | None:
    """The measured loss of ``quant`` for (model, task), from the ladder with the most shared questions;
    None when no ladder places that quant below a higher-precision one."""
    best = None
    for lad in ladders(runs, model):
        if lad.task != task:
            continue
        for g in lad.rungs:
            if g.quant == quant and (best is None or g.n > best[1].n):
                best = (lad, g)
    if best is None:
        return None
    lad, g = best
    d = g.diff
    return MeasuredLoss(quant, lad.reference, -100 * d.value, -100 * d.hi, -100 * d.lo, g.n)


LADDER_COLUMNS = (
    "model",
    "task",
    "quant",
    "n",
    "score",
    "Δ vs ref",
    "95% CI",
    "ref only",
    "quant only",
    "McNemar p",
    "KL mean",
    "KL p99",
    "identical",
    "median divergence",
)


def ladder_rows(lads: list[Ladder]) -> list[dict]:
    """Table rows (strings), the reference first in each ladder, for ``harness compare`` and the report."""
    rows = []
    for lad in lads:
        rows.append(
            {
                "model": lad.model,
                "task": lad.task,
                "quant": f"{lad.reference} (ref)",
                "n": str(max(g.n for g in lad.rungs)),
                "score": f"{lad.reference_score:.1f}",
                **{c: "-" for c in LADDER_COLUMNS[5:]},
            }
        )
        for g in lad.rungs:
            d = g.diff
            rows.append(
                {
                    "model": lad.model,
                    "task": lad.task,
                    "quant": g.quant,
                    "n": str(g.n),
                    "score": f"{g.score:.1f}",
                    "Δ vs ref": f"{100 * d.value:+.1f}",
                    "95% CI": f"[{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]",
                    "ref only": str(g.ref_only),
                    "quant only": str(g.this_only),
                    "McNemar p": f"{g.mcnemar_p:.3g}",
                    "KL mean": "-" if g.kl_mean is None else f"{g.kl_mean:.4f}",
                    "KL p99": "-" if g.kl_p99 is None else f"{g.kl_p99:.4f}",
                    "identical": "-" if g.identical is None else f"{100 * g.identical:.0f}%",
                    "median divergence": "-"
                    if g.median_divergence is None
                    else f"char {g.median_divergence:.0f}",
                }
            )
    return rows
