"""`harness regress` on hand-made records: pass, fail, not comparable, missing; and the McNemar tail."""

import math
import subprocess
import sys

from records import make_record, write_record

from harness.analysis.regress import (
    MISSING,
    NOT_COMPARABLE,
    OK,
    REGRESSED,
    failed,
    mcnemar_one_sided,
    regress,
)
from harness.atomic import write_json


def test_mcnemar_tail_matches_binomial():
    assert mcnemar_one_sided(0, 0) == 1.0
    assert math.isclose(mcnemar_one_sided(5, 0), 1 / 32)
    assert math.isclose(mcnemar_one_sided(4, 1), 6 / 32)  # P(X >= 4), X ~ Bin(5, 1/2)
    assert math.isclose(mcnemar_one_sided(10, 10), sum(math.comb(20, k) for k in range(10, 21)) / 2**20)


def _setup(tmp_path, base_correct, new_correct, **new_kw):
    base = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": base_correct}, quant="Q4_1")
    write_json(tmp_path / "baselines" / "b.json", base)
    if new_correct is not None:
        write_record(
            tmp_path / "new",
            make_record(
                "smollm2-135m",
                "gsm8k",
                {"gsm8k_cot_llama": new_correct},
                quant="Q4_1",
                created="2026-11-23T00:00:00+00:00",
                **new_kw,
            ),
        )
    (tmp_path / "new").mkdir(exist_ok=True)
    return regress(tmp_path / "baselines", tmp_path / "new")


def test_identical_and_noisy_runs_pass(tmp_path):
    (c,) = _setup(tmp_path / "same", [True] * 30 + [False] * 70, [True] * 30 + [False] * 70)
    assert c.status == OK and c.worse == c.better == 0 and not failed([c])
    # Two questions flipped each way: noise.
    new = [False, False, True, True] + [True] * 28 + [False] * 68
    (c,) = _setup(tmp_path / "noise", [True, True, False, False] + [True] * 28 + [False] * 68, new)
    assert c.status == OK and (c.worse, c.better) == (2, 2)


def test_significant_drop_fails_and_max_drop_tolerates(tmp_path):
    base = [True] * 40 + [False] * 60
    new = [False] * 12 + [True] * 28 + [False] * 60  # 12 lost, none gained
    (c,) = _setup(tmp_path / "a", base, new)
    assert c.status == REGRESSED and c.worse == 12 and c.p_value < 0.001 and failed([c])
    checks = regress(tmp_path / "a" / "baselines", tmp_path / "a" / "new", max_drop=15.0)
    assert checks[0].status == OK


def test_changed_setting_is_not_comparable_and_missing_run_fails(tmp_path):
    (c,) = _setup(tmp_path / "cfg", [True] * 10, [False] * 10, config_hash="changed")
    assert c.status == NOT_COMPARABLE and "config" in c.note
    assert not failed([c]) and failed([c], strict=True)
    (c,) = _setup(tmp_path / "none", [True] * 10, None)
    assert c.status == MISSING and failed([c])


def test_cli_exit_codes(tmp_path):
    _setup(tmp_path, [True] * 40 + [False] * 60, [False] * 40 + [False] * 60)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "regress",
            "--baselines",
            str(tmp_path / "baselines"),
            "--results-dir",
            str(tmp_path / "new"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "REGRESSED" in res.stdout and "FAILED" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "regress", "--baselines", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "make baseline" in res.stderr and "Traceback" not in res.stderr
