"""Issue #26 item 4: an over-long question is named by its data row (not its place in the subset), and
`--skip-bad-rows` covers it: left out, recorded in task.skipped_rows, the rest of the task runs. Real SmolLM2,
a real mirror whose sampled GSM8K row is made longer than the model's 8,192-token context."""

from __future__ import annotations

import json

import pytest
from test_bench_e2e import run_cli
from test_data_pins import GSM8K_TEST, edited_mirror

from harness.tasks.subsets import pick


@pytest.mark.slow
def test_an_over_long_question_is_named_by_its_row_and_skipped_with_the_flag(tmp_path, mirror):
    rows = pick(1319, 2, 0, salt="gsm8k_cot_llama")  # the subset `--limit 2` draws (seed 0)
    long_row = rows[-1]

    def lengthen(data):
        data[long_row]["question"] = "Tom has apples. " * 3000 + data[long_row]["question"]
        return data

    data = edited_mirror(tmp_path, mirror, GSM8K_TEST, lengthen)
    args = ("bench", "-t", "gsm8k", "--limit", "2", "--threads", "2", "--allow-modified-data",
            "--data-dir", str(data))
    res = run_cli(*args, "--results-dir", str(tmp_path / "a"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"the question for gsm8k_cot_llama data row {long_row}: its prompt plus its generation budget" in res.stderr
    assert "--skip-bad-rows" in res.stderr and "Traceback" not in res.stderr

    res = run_cli(*args, "--skip-bad-rows", "--results-dir", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "left out 1 question(s) too long" in res.stderr
    (path,) = [p for p in (tmp_path / "b" / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
    rec = json.loads(path.read_text())
    assert rec["task"]["n"] == 1 and rec["task"]["sample_ids"] == {"gsm8k_cot_llama": rows[:1]}
    (skipped,) = rec["task"]["skipped_rows"]
    assert (skipped["task"], skipped["row"], skipped["field"]) == ("gsm8k_cot_llama", long_row, "question")
