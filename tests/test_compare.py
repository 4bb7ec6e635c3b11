"""Verdicts, intervals and relation claims on hand-made run records (no model needed)."""

import math

import pytest
from records import make_record, write_record

from harness.analysis.claims import Claim, allowance
from harness.analysis.compare import (
    EXCEEDED,
    HOLDS,
    INCONCLUSIVE,
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    WITHIN_QUANT,
    compare_claim,
    judge,
)
from harness.analysis.estimate import Stratum, estimate, paired_difference
from harness.records.runs import load_runs

Z = 1.959963984540054
GSM8K = {"shots": 8, "cot": True, "chat": True, "metric": "em_maj1@1", "average": "micro"}
MMLU_MACRO = {"shots": 5, "cot": False, "chat": True, "metric": "macro_avg/acc", "average": "macro"}


def wilson(p, n):
    """Closed-form Wilson score interval, written out independently of the harness."""
    c = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    h = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return c - h, c + h


def claim(
    cid="c",
    model="llama3.1-8b-instruct",
    task="gsm8k",
    setting=GSM8K,
    kind="value",
    claimed=None,
    relation=None,
    claimed_params=None,
):
    return Claim(
        id=cid,
        model=model,
        task=task,
        setting=setting,
        kind=kind,
        claimed=claimed,
        relation=relation,
        source="test",
        article=None,
        summary="",
        confirmed=True,
        claimed_params=claimed_params,
    )


def runs_of(tmp_path, *recs):
    for r in recs:
        write_record(tmp_path, r)
    return load_runs(tmp_path).runs


@pytest.mark.parametrize(
    "claimed,lo,hi,margin,allow,expected",
    [
        (50, 49, 51, 2, 0, HOLDS),  # narrow interval around the claim: decides
        (50, 48, 51, 2, 0, HOLDS),  # lower end exactly at claim - margin: still rules out a larger shortfall
        (50, 47.9, 51, 2, 0, INCONCLUSIVE),  # just wider: covers the claim and a 2.1-point shortfall
        (50, 48, 52, 2, 0, HOLDS),  # half-width exactly the margin
        (50, 49, 53.1, 2, 0, INCONCLUSIVE),  # half-width 2.05: coarser than the margin
        (
            1.4,
            0.0,
            56.1,
            2,
            4,
            INCONCLUSIVE,
        ),  # 3 questions: no shortfall of 6 is possible, but ±28 tells nothing
        (1.4, 0.2, 5.4, 2, 4, HOLDS),  # 100 questions: ±2.6 against a tolerance of 6
        (50, 40, 60, 2, 0, INCONCLUSIVE),  # the old "holds": the claim lies inside a ±10 interval
        (60, 40, 60, 2, 0, INCONCLUSIVE),  # on the edge: inside, but undecided
        (51, 49, 50.5, 2, 1.5, WITHIN_QUANT),  # short of the claim, within the allowance, and narrow
        (51, 45, 50.5, 2, 1.5, INCONCLUSIVE),
        (52.1, 48, 50.5, 2, 1.5, NOT_REPRODUCED),
        (51, 49, 50.9, 2, 0, NOT_REPRODUCED),
        (39.9, 40, 60, 2, 5, EXCEEDED),
    ],
)
def test_judge_value(claimed, lo, hi, margin, allow, expected):
    verdict, rule = judge(claimed, lo, hi, margin, allow)
    assert verdict == expected and rule


def test_judge_relation_strict_and_allowance():
    assert judge(96.1, 95.5, 96.2, 2, 0, can_exceed=False)[0] == HOLDS
    assert judge(96.1, 95.5, 96.1, 2, 0, strict=True, can_exceed=False)[0] == NOT_REPRODUCED
    assert judge(96.1, 95.5, 96.1, 2, 0, can_exceed=False)[0] == HOLDS
    assert judge(96.1, 95.0, 95.5, 2, 1.0, can_exceed=False)[0] == WITHIN_QUANT
    assert judge(96.1, 93.0, 94.0, 2, 1.0, can_exceed=False)[0] == NOT_REPRODUCED
    assert judge(96.1, 97.0, 99.0, 2, 0, can_exceed=False)[0] == HOLDS  # a relation is never "exceeded"


def test_single_task_estimate_is_the_wilson_interval():
    est = estimate([Stratum("gsm8k", 50, 100, 1319)], "micro")
    lo, hi = wilson(0.5, 100)
    assert est.value == 0.5 and math.isclose(est.lo, lo) and math.isclose(est.hi, hi)
    assert est.subset and est.n_total == 1319


def test_stratified_subset_is_reweighted_and_widened():
    # 10 questions from each of two subjects, one 9x the size of the other in the full test.
    strata = [Stratum("big", 5, 10, 900), Stratum("small", 10, 10, 100)]
    est = estimate(strata, "micro")
    assert math.isclose(est.value, 0.9 * 0.5 + 0.1 * 1.0)  # weights N_s/N, not the subset's 50/50
    # Kish effective n from the stratified variance (add-one shrunk per-stratum p), then Wilson.
    var = 0.81 * (6 / 12) * (6 / 12) / 10 + 0.01 * (11 / 12) * (1 / 12) / 10
    n_eff = 0.55 * 0.45 / var
    lo, hi = wilson(0.55, n_eff)
    assert math.isclose(est.lo, lo) and math.isclose(est.hi, hi)
    naive = wilson(0.55, 20)
    assert est.hi - est.lo > naive[1] - naive[0]  # a subset that under-samples the big subject is wider


def test_macro_average_weights_subjects_equally():
    est = estimate([Stratum("a", 1, 10, 10), Stratum("b", 9, 10, 1000)], "macro")
    assert math.isclose(est.value, 0.5)
    assert est.n == 20 and est.n_total == 1010
    assert est.subset is True  # 20 of 1010 questions
    full = estimate([Stratum("a", 1, 10, 10), Stratum("b", 9, 10, 10)], "macro")
    assert math.isclose(full.value, 0.5) and full.n == full.n_total == 20
    assert full.subset is False  # every question of both subjects


def test_paired_difference_matches_formula():
    # 100 shared questions: A-only right 20, B-only right 5, both 50, neither 25.
    pairs = [(True, False)] * 20 + [(False, True)] * 5 + [(True, True)] * 50 + [(False, False)] * 25
    d = paired_difference({"gsm8k": pairs}, {"gsm8k": 1319}, "micro")
    assert math.isclose(d.value, 0.15)
    se = math.sqrt(20 + 5 - 15**2 / 100) / 100
    assert math.isclose(d.lo, 0.15 - Z * se) and math.isclose(d.hi, 0.15 + Z * se)
    assert (d.a_only, d.b_only, d.n) == (20, 5, 100)


def test_every_verdict_reached_through_records(tmp_path):
    # The full test (1319 questions) at 90%: a 95% half-width of about 1.6 points, under the 2-point margin.
    runs = runs_of(
        tmp_path,
        make_record(
            "llama3.1-8b-instruct",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * 1187 + [False] * 132},
            sizes={"gsm8k_cot_llama": 1319},
        ),
    )
    p = 1187 / 1319
    lo, hi = (100 * x for x in wilson(p, 1319))
    allow = allowance("Q4_K_M", 8.03e9, "gsm8k").points
    assert allow > 0
    cases = {
        HOLDS: 100 * p + 0.5,
        NOT_REPRODUCED: hi + allow + 1,
        EXCEEDED: lo - 1,
        INCONCLUSIVE: lo + 2 + allow + 0.1,
    }
    for expected, value in cases.items():
        (row,) = compare_claim(claim(claimed=value), runs)
        assert row.verdict == expected, (expected, value, row)
        assert row.n == 1319 and row.n_total == 1319 and "full test" in row.note
        assert math.isclose(row.delta, 100 * p - value) and row.margin == 2 and row.rule
    # Q3_K_M's allowance (4.5 points on an 8B model) lets an interval short of the claim still decide.
    q3 = runs_of(
        tmp_path / "q3",
        make_record(
            "llama3.1-8b-instruct",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * 1187 + [False] * 132},
            sizes={"gsm8k_cot_llama": 1319},
            quant="Q3_K_M",
        ),
    )
    (row,) = compare_claim(claim(claimed=hi + 1.0), q3)
    assert row.verdict == WITHIN_QUANT and row.allowance == 4.5
    runs = runs_of(
        tmp_path / "small",
        make_record(
            "llama3.1-8b-instruct",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * 50 + [False] * 50},
            sizes={"gsm8k_cot_llama": 1319},
        ),
    )
    (row,) = compare_claim(claim(claimed=52.0), runs)  # "holds" before margins: 52 lies in [40.4, 59.6]
    assert row.verdict == INCONCLUSIVE and row.n == 100 and "subset 100/1319" in row.note
    (row,) = compare_claim(claim(model="llama3.1-70b-instruct", claimed=95.1), runs)
    assert row.verdict == NOT_COMPARABLE and row.note == "no measurement"
    (row,) = compare_claim(claim(claimed=50, setting=dict(GSM8K, shots=5)), runs)
    assert row.verdict == NOT_COMPARABLE and "5-shot claimed, 8-shot run" in row.note


def test_one_row_per_quant_and_duplicates_not_counted(tmp_path):
    rec = make_record("llama3.1-8b-instruct", "gsm8k", {"gsm8k_cot_llama": [True] * 8 + [False] * 2})
    dup = dict(rec, created="2026-11-23T10:00:00+00:00", run_id="other")  # same measurement, other machine
    q8 = make_record("llama3.1-8b-instruct", "gsm8k", {"gsm8k_cot_llama": [True] * 9 + [False]}, quant="Q8_0")
    for r in (rec, dup, q8):
        write_record(tmp_path, r)
    loaded = load_runs(tmp_path)
    runs, dupes = loaded.runs, loaded.duplicates
    assert dupes == 1 and len(runs) == 2
    rows = compare_claim(claim(claimed=80.0), runs)
    assert [r.quant for r in rows] == ["Q4_K_M", "Q8_0"]


def test_relation_to_reference_and_unknown_reference(tmp_path):
    runs = runs_of(
        tmp_path,
        make_record(
            "llama3.1-405b-instruct",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * 97 + [False] * 3},
            n_params=405.8e9,
        ),
    )
    beat = claim(
        model="llama3.1-405b-instruct",
        kind="relation",
        relation={"op": ">", "reference": {"name": "GPT-4o", "value": 96.1}},
    )
    (row,) = compare_claim(beat, runs)
    assert row.verdict == INCONCLUSIVE and math.isclose(row.delta, 97 - 96.1)  # 100 questions: ±3.8
    unknown = claim(
        model="llama3.1-405b-instruct",
        kind="relation",
        relation={"op": ">", "reference": {"name": "Nova Pro", "value": None}},
    )
    (row,) = compare_claim(unknown, runs)
    assert row.verdict == NOT_COMPARABLE and "Nova Pro" in row.note


def test_relation_between_models_is_paired_on_shared_samples(tmp_path):
    subjects = {"mmlu_llama_anatomy": 135, "mmlu_llama_virology": 166}
    a = {s: [True] * 8 + [False] * 2 for s in subjects}
    b_good = {s: [True] * 9 + [False] for s in subjects}
    b_far = {s: [True] * 10 for s in subjects}
    rel = {"op": ">=", "other_model": "llama3.1-405b-instruct", "margin": 1.0}
    c = claim(model="llama3.3-70b-instruct", task="mmlu", setting=MMLU_MACRO, kind="relation", relation=rel)
    for b, expected in ((b_good, INCONCLUSIVE), (b_far, NOT_REPRODUCED)):
        runs = runs_of(
            tmp_path / expected.replace(" ", "_"),
            make_record("llama3.3-70b-instruct", "mmlu", a, sizes=subjects, n_params=70.6e9),
            make_record("llama3.1-405b-instruct", "mmlu", b, sizes=subjects, n_params=405.8e9),
        )
        (row,) = compare_claim(c, runs)
        assert row.verdict == expected and row.n == 20 and "paired on 20" in row.note
    # A clearly worse on many shared questions: the paired interval stays below -margin.
    a_bad = {s: [True] * 20 + [False] * 80 for s in subjects}
    b_all = {s: [True] * 100 for s in subjects}
    runs = runs_of(
        tmp_path / "bad",
        make_record("llama3.3-70b-instruct", "mmlu", a_bad, sizes=subjects),
        make_record("llama3.1-405b-instruct", "mmlu", b_all, sizes=subjects),
    )
    (row,) = compare_claim(c, runs)
    assert row.verdict == NOT_REPRODUCED and math.isclose(row.measured, -80.0)
    # No shared questions (different subsets): not comparable rather than an unpaired guess.
    runs = runs_of(
        tmp_path / "disjoint",
        make_record("llama3.3-70b-instruct", "mmlu", a, sizes=subjects),
        make_record(
            "llama3.1-405b-instruct",
            "mmlu",
            b_good,
            sizes=subjects,
            doc_ids={s: list(range(50, 60)) for s in subjects},
        ),
    )
    (row,) = compare_claim(c, runs)
    assert row.verdict == NOT_COMPARABLE and "share no scored questions" in row.note


def test_params_claim_from_gguf_count(tmp_path):
    runs = runs_of(
        tmp_path,
        make_record(
            "llama3-8b", "mmlu", {"mmlu_anatomy": [True, False]}, kind="base", chat=False, n_params=8.03e9
        ),
    )
    ok = claim(model="llama3-8b", task=None, setting=None, kind="params", claimed_params=8e9)
    (row,) = compare_claim(ok, runs)
    assert row.verdict == HOLDS and "8.03B" in row.note
    (row,) = compare_claim(
        claim(model="llama3-8b", task=None, setting=None, kind="params", claimed_params=7e9), runs
    )
    assert row.verdict == NOT_REPRODUCED


def test_allowance_is_data_with_a_source():
    a = allowance("Q4_K_M", 70e9, "mmlu")
    assert a.points > 0 and "8B" in a.source
    small = allowance("Q4_K_M", 1.2e9, "mmlu")
    assert small.points == 2 * a.points and "judgement" in small.source
    assert allowance("F16", 8e9, "gsm8k").points == 0
    assert allowance("Q9_Z", 8e9, "gsm8k").points == 0


def test_reference_figure_from_another_setting_is_never_compared(tmp_path):
    runs = runs_of(
        tmp_path,
        make_record(
            "llama3.1-405b-instruct",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * 97 + [False] * 3},
            n_params=405.8e9,
        ),
    )
    same = {"name": "GPT-4o", "value": 96.1, "setting": {"shots": 8, "cot": True}}
    (row,) = compare_claim(
        claim(model="llama3.1-405b-instruct", kind="relation", relation={"op": ">", "reference": same}), runs
    )
    assert row.verdict == INCONCLUSIVE
    # 97% would clear 90 easily: only the setting guard keeps an 11-shot figure out of an 8-shot CoT claim.
    other = {"name": "Gemini Ultra", "value": 90.0, "setting": {"shots": 11, "cot": True}}
    (row,) = compare_claim(
        claim(model="llama3.1-405b-instruct", kind="relation", relation={"op": ">", "reference": other}), runs
    )
    assert row.verdict == NOT_COMPARABLE and row.delta is None
    assert "another setting" in row.note and "shots 11 for Gemini Ultra, 8 in the claim" in row.note
    no_cot = {"name": "X", "value": 90.0, "setting": {"shots": 8, "cot": False}}
    (row,) = compare_claim(
        claim(model="llama3.1-405b-instruct", kind="relation", relation={"op": ">", "reference": no_cot}),
        runs,
    )
    assert row.verdict == NOT_COMPARABLE and "cot False for X" in row.note


def test_benchmark_mapping_of_ours_is_said_on_every_row_and_in_the_source(tmp_path):
    from dataclasses import replace

    from harness.publish.report import claim_rows

    runs = runs_of(
        tmp_path, make_record("llama3.1-8b-instruct", "gsm8k", {"gsm8k_cot_llama": [True] * 5 + [False] * 5})
    )
    ours = replace(
        claim(claimed=50.0),
        source="Article 000",
        mapping={"by": "ours", "reason": "the article names no benchmark"},
    )
    (row,) = compare_claim(ours, runs)
    assert row.verdict == INCONCLUSIVE and row.note.endswith("benchmark chosen by us, not by the source")
    (none,) = compare_claim(replace(ours, model="llama3.1-70b-instruct"), runs)
    assert none.note == "no measurement; benchmark chosen by us, not by the source"
    (table_row,) = claim_rows([row])
    assert (
        table_row["source"]
        == "Article 000 [benchmark chosen by us, not by the source: the article names no benchmark]"
    )
    assert table_row["source (short)"] == "Article 000 [benchmark chosen by us]"
    (plain,) = claim_rows(compare_claim(claim(claimed=50.0), runs))
    assert "chosen by us" not in plain["source"] + plain["note"]
