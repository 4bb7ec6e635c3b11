"""What a run of a given size can decide: expected 95% half-widths and the questions needed to decide a claim.

A claim is decided when the measured 95% interval cannot cover both the claimed figure and a shortfall of
the claim's reproduction margin (plus the quant's allowance): see ``harness/analysis/compare.py``. If the
true score equals the claim, the interval's lower end lies below ``claim - (margin + allowance)`` with a
probability that depends only on its half-width; the run decides with probability ``power`` when

    half-width <= (margin + allowance) * z_{0.975} / (z_{0.975} + z_{power})

(Miller, "Adding Error Bars to Evals", arXiv:2411.00640, §5: n = (z_{1-a/2} + z_{power})^2 p(1-p) / m^2,
written here for the interval the harness reports). The half-width of a planned run is computed by the
same estimator the comparison uses (:func:`harness.analysis.estimate.estimate`), on the subset the harness
would draw (:mod:`harness.tasks.subsets`), so the plan and the verdict can never disagree about it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from harness.analysis.estimate import Z95, Stratum, estimate
from harness.tasks.subsets import pick_stratified


def needed_half_width(margin_pts: float, allowance_pts: float, power: float) -> float:
    """Largest 95% half-width (points) at which a run decides with probability ``power`` if the true score
    is the claimed one (it is below margin + allowance, the verdict's resolution condition, too)."""
    return (margin_pts + allowance_pts) * Z95 / (Z95 + NormalDist().inv_cdf(power))


def allocation(sizes: dict[str, int], limit: int | None) -> dict[str, int]:
    """Questions per stratum for ``limit`` questions: the harness's own stratified draw (seed 0; the seed
    only moves which strata get the remainder, not how many questions each gets beyond one)."""
    if len(sizes) == 1:
        ((name, size),) = sizes.items()
        return {name: size if limit is None else min(limit, size)}
    return {s: len(ids) for s, ids in pick_stratified(sizes, limit, 0).items()}


def interval(p: float, sizes: dict[str, int], limit: int | None, average: str) -> tuple[float, float]:
    """The 95% interval (points) a run of ``limit`` questions (None: all) would report when every stratum
    scores ``p`` (a fraction), by the comparison's own estimator on the harness's own draw."""
    alloc = allocation(sizes, limit)
    strata = [Stratum(s, p * n, n, sizes[s]) for s, n in alloc.items() if n]
    est = estimate(strata, average)
    return 100 * est.lo, 100 * est.hi


def half_width(p: float, sizes: dict[str, int], limit: int | None, average: str) -> float:
    """Expected 95% half-width (points) of the full-test estimate from ``limit`` questions (None: all)."""
    lo, hi = interval(p, sizes, limit, average)
    return (hi - lo) / 2


def smallest_deciding(
    p: float, sizes: dict[str, int], average: str, decides: Callable[[float, float], bool]
) -> int | None:
    """The smallest subset whose interval at score ``p`` satisfies ``decides(lo, hi)`` (points), or None
    when not even the full test does. Intervals narrow as the subset grows, so a bisection finds it;
    ``tests/test_verdicts.py`` checks it against a scan."""
    n_total = sum(sizes.values())
    if not decides(*interval(p, sizes, None, average)):
        return None
    lo, hi = 1, n_total  # invariant: hi decides
    while lo < hi:
        mid = (lo + hi) // 2
        if decides(*interval(p, sizes, mid, average)):
            hi = mid
        else:
            lo = mid + 1
    return hi


@dataclass(frozen=True)
class Decision:
    """What a run of ``n`` questions can decide about one claim at score ``p``."""

    half_width: float  # expected 95% half-width at the planned size (points)
    needed: float  # the half-width that decides with the stated power (points)
    n: int  # questions planned
    n_total: int  # questions in the full test split
    decide_n: int | None  # smallest number of questions that decides; None: not even the full test

    @property
    def decides(self) -> bool:
        return self.half_width <= self.needed

    def text(self) -> str:
        """'±4.1 at 100 (decides at ±2.8 from 250)' / '... not decidable on this benchmark (full test ±3.1)'."""
        head = f"±{self.half_width:.1f} at {self.n}"
        if self.decides:
            return f"{head}: decides (needs ±{self.needed:.1f})"
        if self.decide_n is None:
            return f"{head}: not decidable on this benchmark (needs ±{self.needed:.1f})"
        return f"{head}: decides from {self.decide_n} questions (needs ±{self.needed:.1f})"


def decision(p: float, sizes: dict[str, int], limit: int | None, average: str, needed: float) -> Decision:
    """Before a run: the expected half-width at ``limit`` questions and the smallest subset whose
    half-width reaches ``needed`` (:func:`needed_half_width`)."""
    n_total = sum(sizes.values())
    n = n_total if limit is None else min(limit, n_total)
    hw = half_width(p, sizes, limit, average)
    decide_n = smallest_deciding(p, sizes, average, lambda lo, hi: (hi - lo) / 2 <= needed)
    return Decision(hw, needed, n, n_total, decide_n)


def scaled_decide_n(n: int, measured_half_width: float, needed: float, n_total: int) -> int | None:
    """Questions that would decide, scaled from a measured half-width (half-widths shrink as 1/sqrt(n)):
    for measurements whose design the planner cannot redraw (paired differences). None: beyond the full test."""
    if measured_half_width <= needed:
        return n
    want = math.ceil(n * (measured_half_width / needed) ** 2)
    return want if want <= n_total else None
