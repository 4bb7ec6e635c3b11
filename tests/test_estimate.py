"""The interval maths every record and verdict uses (harness/analysis/estimate.py), against closed forms."""

import math

import pytest

from harness.analysis.estimate import (
    Stratum,
    combined_stderr,
    macro_stderr,
    mean_stderr,
    wald_interval,
    wilson_interval,
)


@pytest.mark.parametrize(
    "p,n,lo,hi",
    [
        # Reference values from the closed-form Wilson score interval (z = 1.96).
        (0.5, 100, 0.4038, 0.5962),
        (0.0, 10, 0.0, 0.2775),
        (0.9, 50, 0.7864, 0.9565),
    ],
)
def test_wilson_interval_matches_formula(p, n, lo, hi):
    got = wilson_interval(p, n)
    assert math.isclose(got[0], lo, abs_tol=5e-4) and math.isclose(got[1], hi, abs_tol=5e-4)


def test_wilson_interval_of_nothing_is_everything():
    assert wilson_interval(0.5, 0) == (0.0, 1.0)


def test_mean_stderr_is_the_sample_standard_error():
    assert mean_stderr([1.0]) is None and mean_stderr([]) is None  # undefined: recorded as null
    # values 0, 1, 1, 0: mean 0.5, sample variance 1/3, standard error sqrt(1/3 / 4)
    assert math.isclose(mean_stderr([0.0, 1.0, 1.0, 0.0]), math.sqrt(1 / 12))


def test_wald_interval_is_clipped_to_zero_and_one():
    assert wald_interval(0.5, 0.1) == (0.5 - 1.96 * 0.1, 0.5 + 1.96 * 0.1)
    assert wald_interval(0.02, 0.1) == (0.0, 0.02 + 1.96 * 0.1)
    assert wald_interval(0.98, 0.1) == (0.98 - 1.96 * 0.1, 1.0)


def test_macro_standard_errors_combine_independent_means():
    assert math.isclose(combined_stderr([0.3, 0.4]), 0.5 / 2)
    strata = [Stratum("a", 1, 2, 2), Stratum("b", 3, 4, 4)]
    # add-one prior per stratum: (k+1)/(n+2) -> 1/2 and 2/3
    want = math.sqrt(0.5 * 0.5 / 2 + (2 / 3) * (1 / 3) / 4) / 2
    assert math.isclose(macro_stderr(strata), want)
