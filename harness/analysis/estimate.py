"""Every 95% interval the harness computes: a run's scores as recorded (Wilson for proportions, Wald for other
means) and the estimates of a full-test score compared against published figures.

A claim is made on the full test set with one averaging rule (micro over questions, or macro over MMLU
subjects). A run may cover a seeded, stratified subset, so its plain mean is not the right estimate:
a stratified subset is reweighted to the full test (weights N_s/N, Cochran, *Sampling Techniques*,
ch. 5) and the interval uses the design's variance through Kish's effective sample size, which widens it
when the subset's strata are unequally weighted. Paired differences (two models on the same
questions) use the paired-proportion variance (Agresti, *Categorical Data Analysis*, 10.1.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion p measured on n samples (n may be an effective size)."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if p <= 0 else max(0.0, centre - half)  # exact ends: no 1e-17 rounding past the estimate
    hi = 1.0 if p >= 1 else min(1.0, centre + half)
    return (lo, hi)


def mean_stderr(vals: list[float]) -> float | None:
    """Standard error of the mean of ``vals``; None (JSON null) when undefined: fewer than two values."""
    n = len(vals)
    if n < 2:
        return None
    m = sum(vals) / n
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1) / n)


def combined_stderr(ses: list[float]) -> float:
    """Standard error of the unweighted mean of independent means whose standard errors are ``ses``."""
    return math.sqrt(sum(s * s for s in ses)) / len(ses)


def wald_interval(value: float, se: float) -> tuple[float, float]:
    """``value`` +/- 1.96 standard errors, clipped to [0, 1]: the recorded interval of a mean that is not a
    proportion (a macro average of non-binary metrics)."""
    return (max(0.0, value - 1.96 * se), min(1.0, value + 1.96 * se))


@dataclass(frozen=True)
class Stratum:
    """One subtask of a run: successes k out of n measured, N questions in its full test split."""

    name: str
    k: float
    n: int
    size: int


@dataclass(frozen=True)
class Estimate:
    """A score estimate in [0, 1] with its 95% interval and how it was obtained."""

    value: float
    lo: float
    hi: float
    n: int
    n_total: int
    method: str

    @property
    def subset(self) -> bool:
        return self.n < self.n_total


def _shrunk_var(k: float, n: int) -> float:
    """Per-stratum Bernoulli variance of the mean, with an add-one prior so 0/n and n/n strata still count."""
    p = (k + 1) / (n + 2)
    return p * (1 - p) / n


def macro_var(s: Stratum) -> float:
    """Variance of one stratum's mean (as used for macro averages)."""
    return _shrunk_var(s.k, s.n)


def macro_stderr(strata: list[Stratum]) -> float:
    """Standard error of the unweighted mean of the strata's means (each with :func:`macro_var`)."""
    return math.sqrt(sum(macro_var(s) for s in strata)) / len(strata)


def estimate(strata: list[Stratum], average: str) -> Estimate:
    """Estimate the full-test score (``micro`` or ``macro``) from per-stratum results, with a 95% interval.

    One stratum, or every stratum run in full: the plain mean with a Wilson interval. A stratified
    subset: the weighted mean with a Wilson interval at Kish's effective sample size.
    """
    strata = [s for s in strata if s.n > 0]
    if not strata:
        raise ValueError("no measured samples")
    n = sum(s.n for s in strata)
    n_total = sum(s.size for s in strata)
    if average == "macro":
        weights = [1 / len(strata)] * len(strata)
    elif average == "micro":
        weights = [s.size / n_total for s in strata]
    else:
        raise ValueError(f"unknown average {average!r}")
    value = sum(w * s.k / s.n for w, s in zip(weights, strata))
    proportional = all(abs(w - s.n / n) < 1e-9 for w, s in zip(weights, strata))
    if proportional:
        # Self-weighting design (one task, a full run micro-averaged, or a proportional subset).
        lo, hi = wilson_interval(value, n)
        return Estimate(value, lo, hi, n, n_total, "wilson")
    var = sum(w * w * _shrunk_var(s.k, s.n) for w, s in zip(weights, strata))
    p_var = max(value, 1e-9) * max(1 - value, 1e-9)
    n_eff = max(1.0, min(float(n), p_var / var)) if var > 0 else float(n)
    lo, hi = wilson_interval(value, n_eff)
    return Estimate(value, lo, hi, n, n_total, f"stratified-{average}, wilson at n_eff={n_eff:.0f}")


@dataclass(frozen=True)
class PairedDiff:
    """Difference A - B of two models' scores on the same questions, with a 95% interval."""

    value: float
    lo: float
    hi: float
    n: int
    a_only: int  # questions A got right and B wrong
    b_only: int


def paired_difference(
    pairs: dict[str, list[tuple[bool, bool]]], sizes: dict[str, int], average: str
) -> PairedDiff:
    """Score difference of A and B on shared questions, per stratum (name -> [(a_correct, b_correct)]).

    Within a stratum of n shared questions with b = A-only and c = B-only wins, d = (b - c)/n and
    Var(d) = (b + c - (b - c)^2 / n) / n^2 (Agresti 10.1.1). Strata combine with micro (N_s/N) or
    macro (1/k) weights; the interval is Wald, d +/- 1.96 * sqrt(sum w^2 Var).
    """
    strata = {s: v for s, v in pairs.items() if v}
    if not strata:
        raise ValueError("no shared samples")
    total = sum(sizes.get(s, len(v)) for s, v in strata.items())
    d, var, a_only, b_only = 0.0, 0.0, 0, 0
    for s, v in strata.items():
        n = len(v)
        b = sum(1 for a, c in v if a and not c)
        c = sum(1 for a, c2 in v if c2 and not a)
        a_only, b_only = a_only + b, b_only + c
        w = 1 / len(strata) if average == "macro" else sizes.get(s, n) / total
        d += w * (b - c) / n
        # Add-half smoothing keeps the variance positive when the two models never disagree.
        var += w * w * max((b + c) - (b - c) ** 2 / n, 0.5) / (n * n)
    half = Z95 * math.sqrt(var)
    n_all = sum(len(v) for v in strata.values())
    return PairedDiff(d, max(-1.0, d - half), min(1.0, d + half), n_all, a_only, b_only)
