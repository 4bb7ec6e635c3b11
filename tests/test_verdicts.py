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
    return Claim(
        id="c",
        model=model,
        task="gsm8k",
        setting=GSM8K,
        kind="value",
        claimed=claimed,
        relation=None,
        source="test",
        article=None,
        summary="",
        confirmed=True,
        claimed_ci95=ci,
    )


def gsm8k_runs(tmp_path, right: int, n: int, quant="Q4_K_M"):
    write_record(
        tmp_path,
        make_record(
            "llama3.1-8b-instruct",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * right + [False] * (n - right)},
            sizes={"gsm8k_cot_llama": 1319},
            quant=quant,
        ),
    )
    return load_runs(tmp_path).runs


points = st.floats(min_value=0, max_value=100, allow_nan=False)


@given(
    target=points,
    lo=points,
    hi=points,
    wider_lo=st.floats(0, 30),
    wider_hi=st.floats(0, 30),
    m=st.floats(0.1, 5),
    a=st.floats(0, 5),
    strict=st.booleans(),
    value=st.booleans(),
)
def test_widening_never_turns_inconclusive_into_a_decision(
    target, lo, hi, wider_lo, wider_hi, m, a, strict, value
):
    lo, hi = min(lo, hi), max(lo, hi)
    before, _ = judge(target, lo, hi, m, a, strict=strict, can_exceed=value)
    after, _ = judge(target, lo - wider_lo, hi + wider_hi, m, a, strict=strict, can_exceed=value)
    if before == INCONCLUSIVE:
        assert after == INCONCLUSIVE
    if after in (HOLDS, WITHIN_QUANT):  # a decision at the wider interval is a decision at the narrower one
        assert before in DECISIVE


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
    assert (
        past.decidable is False or past.decide_n > 1319
    )  # 1319 questions did not decide: no smaller run would
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
    direct = next(
        n
        for n in range(1, 1320)
        if judge(84.5, *power.interval(0.8, {"gsm8k": 1319}, n, "micro"), 2.0, 0.5)[0] != INCONCLUSIVE
    )
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
    scan = next(
        n
        for n in range(1, 1320)
        if power.half_width(0.9, sizes, n, "micro") <= power.needed_half_width(2.7, 0.0, 0.8)
    )
    assert d.decide_n == scan and not d.decides
    full = power.decision(0.845, sizes, 100, "micro", needed)
    assert full.decide_n is None and "not decidable" in full.text()


def test_stratified_decision_matches_a_scan():
    sizes = {f"s{i}": 100 + 37 * i for i in range(8)}
    needed = 5.0
    d = power.decision(0.6, sizes, 40, "macro", needed)
    scan = next(
        n for n in range(1, sum(sizes.values()) + 1) if power.half_width(0.6, sizes, n, "macro") <= needed
    )
    assert d.decide_n == scan


def test_a_wider_interval_keeps_the_old_reading(tmp_path):
    """The rule and the interval stay in the comparison, so "the claim lies inside" is still readable."""
    runs = gsm8k_runs(tmp_path, 50, 100)
    (c,) = compare_claim(replace(claim(52.0)), runs)
    assert c.verdict == INCONCLUSIVE and c.lo <= 52.0 <= c.hi and "covers 52.0" in c.rule


def _wilson_half(p, n):
    """Closed-form Wilson half-width in points, written out independently of the harness."""
    return 100 * Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n)) / (1 + Z95 * Z95 / n)


def test_every_catalogue_claim_has_a_planned_half_width_and_a_minimal_decide_size():
    """For every claim of every catalogue model on its default subsets: the expected half-width (a Wilson
    interval written out here for single-split tasks), and a decide-size that decides while one question
    fewer does not (or none: not even the full test)."""
    from harness.analysis import decide as dec
    from harness.models.catalogue import load_catalogue, resolve

    seen = 0
    for entry in (resolve(name) for name in load_catalogue()["models"]):
        tasks = sorted({c.task for c in load_claims() if c.model == entry.name and c.task})
        if not tasks:
            continue
        for d in dec.for_entry(entry, tasks, dec.planned_limits(entry, tasks, None, False)):
            if d.decision is None:
                continue
            seen += 1
            target = (
                d.claim.claimed
                if d.claim.kind == "value"
                else d.claim.relation["reference"]["value"] - float(d.claim.relation.get("margin") or 0)
            ) / 100
            sizes = dec.split_sizes(d.claim.task, entry.kind)
            if len(sizes) == 1:
                assert math.isclose(d.decision.half_width, _wilson_half(target, d.decision.n), rel_tol=1e-9)
            n = d.decision.decide_n
            avg = d.claim.setting["average"]
            if n is None:
                assert power.half_width(target, sizes, None, avg) > d.decision.needed
            else:
                assert power.half_width(target, sizes, n, avg) <= d.decision.needed
                assert n == 1 or power.half_width(target, sizes, n - 1, avg) > d.decision.needed
    assert seen >= 40


def test_plan_and_bench_say_what_a_run_can_decide(tmp_path):
    """Through the installed entry point: the plan's per-claim lines, --decide's sizes, and the bench's note."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    harness = Path(sys.executable).parent / "harness"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HARNESS_MEMORY_AVAILABLE": "24GiB",
        "HARNESS_GPU_FREE": "none",
        "HARNESS_DISK_FREE": "500GiB",
    }
    out = subprocess.run(
        [str(harness), "plan", "llama3.1-8b-instruct", "--rates", "reference"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "llama3.1-8b-instruct.gsm8k.card (84.5, margin 2): ±7.1 at 100: not decidable on this benchmark"
        in out.stdout
    )
    assert "llama3.1-8b-instruct.mmlu.card (69.4, margin 2): ±3.8 at 570: decides from" in out.stdout
    dec = subprocess.run(
        [
            str(harness),
            "plan",
            "smollm2-135m",
            "-t",
            "gsm8k_5shot,mmlu_cloze",
            "--rates",
            "reference",
            "--decide",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert dec.returncode == 0, dec.stderr
    assert "--decide: gsm8k_5shot 59, mmlu_cloze 1847" in dec.stdout
    bad = subprocess.run(
        [str(harness), "bench", "--decide", "--limit", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert (
        bad.returncode == 2
        and "--decide sizes each task itself" in bad.stderr
        and "Traceback" not in bad.stderr
    )


def test_a_measured_quant_loss_is_cited_beside_the_allowance(tmp_path):
    """Two quants of one model on the same questions: the lower quant's verdict note cites the loss the
    ladder measured (issue #25 item 3), beside the sourced allowance."""
    answers_f16 = [True] * 1187 + [False] * 132
    answers_q4 = [True] * 1150 + [False] * 169
    for quant, answers in (("F16", answers_f16), ("Q4_K_M", answers_q4)):
        write_record(
            tmp_path,
            make_record(
                "llama3.1-8b-instruct",
                "gsm8k",
                {"gsm8k_cot_llama": answers},
                sizes={"gsm8k_cot_llama": 1319},
                quant=quant,
                sha256=f"{quant.lower():0<64}"[:64],
            ),
        )
    runs = load_runs(tmp_path).runs
    rows = {r.quant: r for r in compare_claim(claim(88.0), runs)}
    assert (
        "measured loss vs F16: +2.8 points" in rows["Q4_K_M"].note
        and "(allowance 0.5)" in rows["Q4_K_M"].note
    )
    assert "measured loss" not in rows["F16"].note
