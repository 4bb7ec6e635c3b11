"""Verdict strength (issue #25): a verdict decides only when its interval rules out a shortfall of the margin.

Hand-made records for every branch, at the boundaries; a property that widening an interval never makes an
undecided verdict decisive; the power maths against a direct computation.
"""

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from records import make_record, write_record

from harness.analysis import power
from harness.analysis.claims import Claim, load_claims, margin
from harness.analysis.compare import (
    DECISIVE,
    EXCEEDED,
    HOLDS,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    WITHIN_QUANT,
    compare_claim,
    deciding_half_width,
    judge,
)
from harness.analysis.estimate import Z95, Stratum, estimate
from harness.records.runs import load_runs

GSM8K = {"shots": 8, "cot": True, "chat": True, "metric": "em_maj1@1", "average": "micro"}


def claim(claimed, ci=None, model="llama3.1-8b-instruct"):
    return Claim(id="c", model=model, task="gsm8k", setting=GSM8K, kind="value", claimed=claimed, relation=None,
                 source="test", article=None, summary="", confirmed=True, claimed_ci95=ci)


def gsm8k_runs(tmp_path, right: int, n: int, quant="Q4_K_M"):
    write_record(tmp_path, make_record("llama3.1-8b-instruct", "gsm8k",
                                       {"gsm8k_cot_llama": [True] * right + [False] * (n - right)},
                                       sizes={"gsm8k_cot_llama": 1319}, quant=quant))
    return load_runs(tmp_path).runs


points = st.floats(min_value=0, max_value=100, allow_nan=False)


@given(target=points, lo=points, hi=points, wider_lo=st.floats(0, 30), wider_hi=st.floats(0, 30),
       m=st.floats(0.1, 5), a=st.floats(0, 5), strict=st.booleans(), value=st.booleans())
def test_widening_never_turns_inconclusive_into_a_decision(target, lo, hi, wider_lo, wider_hi, m, a, strict, value):
    lo, hi = min(lo, hi), max(lo, hi)
    before, _ = judge(target, lo, hi, m, a, strict=strict, can_exceed=value)
    after, _ = judge(target, lo - wider_lo, hi + wider_hi, m, a, strict=strict, can_exceed=value)
    if before == INCONCLUSIVE:
        assert after == INCONCLUSIVE
    if after in (HOLDS, WITHIN_QUANT):  # a decisive holds at the wider interval holds at the narrower one
        assert before in (HOLDS, WITHIN_QUANT, EXCEEDED)


@given(measured=points, target=points, m=st.floats(0.1, 5), a=st.floats(0, 5), value=st.booleans())
def test_an_interval_narrower_than_the_deciding_half_width_decides(measured, target, m, a, value):
    need = deciding_half_width(measured, target, m, a, can_exceed=value)
    assert need > 0
    h = need * 0.999
    verdict, _ = judge(target, measured - h, measured + h, m, a, can_exceed=value)
    assert verdict in DECISIVE


def test_each_branch_through_records_at_its_boundary(tmp_path):
    runs = gsm8k_runs(tmp_path, 1187, 1319)  # 90.0%, full test: [88.3, 91.5]
    (c,) = compare_claim(claim(90.0), runs)
    lo, hi = c.lo, c.hi
    floor_claim = lo + c.margin + c.allowance  # the largest claim whose shortfall the interval rules out
    (at,) = compare_claim(claim(floor_claim - 1e-9), runs)
    (past,) = compare_claim(claim(floor_claim + 0.01), runs)
    assert at.verdict == HOLDS and at.decisive and "decisive" in at.strength()
    assert past.verdict == INCONCLUSIVE and not past.decisive
    assert past.decidable is False or past.decide_n > 1319  # 1319 questions did not decide: no smaller run would
    (nr,) = compare_claim(claim(hi + c.allowance + 0.01), runs)
    assert nr.verdict == NOT_REPRODUCED and nr.decisive
    (ex,) = compare_claim(claim(lo - 0.01), runs)
    assert ex.verdict == EXCEEDED


def test_inconclusive_says_how_many_questions_would_decide(tmp_path):
    runs = gsm8k_runs(tmp_path, 80, 100)  # 80/100: about ±8
    (c,) = compare_claim(claim(84.5), runs)  # Llama 3.1 8B Instruct's card figure
    assert c.verdict == INCONCLUSIVE
    assert c.decidable and c.decide_n > 100
    assert f"{c.decide_n} questions would decide" in c.strength()
    # The direct computation: the smallest subset whose interval at 80% clears 84.5 - 2 - 0.5 from above or
    # falls short of 84.5 - 0.5 from below, by the estimator the comparison uses, scanned one size at a time.
    direct = next(n for n in range(1, 1320)
                  if judge(84.5, *power.interval(0.8, {"gsm8k": 1319}, n, "micro"), 2.0, 0.5)[0] != INCONCLUSIVE)
    assert c.decide_n == direct


def test_not_decidable_even_on_the_full_test(tmp_path):
    runs = gsm8k_runs(tmp_path, 660, 1319)  # 50% on the full test: ±2.7 points
    (c,) = compare_claim(claim(50.8), runs)  # a claim 0.8 above: both ways need a narrower interval
    assert c.verdict == INCONCLUSIVE and c.decidable is False and c.decide_n is None
    assert "not decidable on this benchmark" in c.strength()


def test_the_margin_is_the_claims_own_interval_where_it_prints_one(tmp_path):
    assert margin(claim(57.2, ci=2.7)).points == 2.7 and "claimed_ci95" in margin(claim(57.2, ci=2.7)).source
    m = margin(claim(57.2))
    assert m.points == 2.0 and "judgement" in m.source
    runs = gsm8k_runs(tmp_path, 1187, 1319)
    (tight,) = compare_claim(claim(91.2), runs)
    (loose,) = compare_claim(claim(91.2, ci=3.0), runs)
    assert tight.verdict == INCONCLUSIVE and loose.verdict == HOLDS  # the source's ± 3 accepts the shortfall


def test_every_catalogue_value_claim_gets_a_margin_with_a_reason():
    for c in load_claims():
        if c.kind != "params":
            m = margin(c)
            assert m.points > 0 and m.source


def test_planned_half_width_is_the_comparisons_interval():
    # GSM8K, 100 questions at 84.5%: the Wilson interval the comparison would report.
    hw = power.half_width(0.845, {"gsm8k": 1319}, 100, "micro")
    est = estimate([Stratum("gsm8k", 84.5, 100, 1319)], "micro")
    assert math.isclose(hw, 100 * (est.hi - est.lo) / 2)
    assert 6.5 < hw < 7.5  # the "about ±7"


def test_decision_size_is_the_smallest_that_decides():
    needed = power.needed_half_width(2.0, 0.5, 0.8)
    assert math.isclose(needed, 2.5 * Z95 / (Z95 + 0.8416212335729143))
    sizes = {"gsm8k": 1319}
    d = power.decision(0.9, sizes, 100, "micro", power.needed_half_width(2.7, 0.0, 0.8))
    scan = next(n for n in range(1, 1320)
                if power.half_width(0.9, sizes, n, "micro") <= power.needed_half_width(2.7, 0.0, 0.8))
    assert d.decide_n == scan and not d.decides
    full = power.decision(0.845, sizes, 100, "micro", needed)
    assert full.decide_n is None and "not decidable" in full.text()


def test_stratified_decision_matches_a_scan():
    sizes = {f"s{i}": 100 + 37 * i for i in range(8)}
    needed = 5.0
    d = power.decision(0.6, sizes, 40, "macro", needed)
    scan = next(n for n in range(1, sum(sizes.values()) + 1)
                if power.half_width(0.6, sizes, n, "macro") <= needed)
    assert d.decide_n == scan


def test_a_wider_interval_keeps_the_old_reading(tmp_path):
    """The rule and the interval stay in the comparison, so "the claim lies inside" is still readable."""
    runs = gsm8k_runs(tmp_path, 50, 100)
    (c,) = compare_claim(replace(claim(52.0)), runs)
    assert c.verdict == INCONCLUSIVE and c.lo <= 52.0 <= c.hi and "covers 52.0" in c.rule
