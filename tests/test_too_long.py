"""Issue #26 item 4: an over-long question is named by its data row (not its place in the subset), and
`--skip-bad-rows` covers it: left out, recorded in task.skipped_rows, the rest of the task runs. Real SmolLM2,
a real mirror whose sampled MMLU row is made longer than the model's 8,192-token context (log-likelihood:
the question left over is scored in seconds)."""

from __future__ import annotations

import json

import pytest
from test_bench_e2e import run_cli
from test_data_pins import edited_mirror

from harness.models.catalogue import resolve
from harness.tasks.settings import plan_task


@pytest.mark.slow
def test_an_over_long_question_is_named_by_its_row_and_skipped_with_the_flag(tmp_path, mirror):
    plan = plan_task(
        "mmlu_loglik", resolve("smollm2-135m"), limit=2, data_dir=mirror
    )  # what `--limit 2` draws
    (kept, kept_ids), (task, (long_row,)) = sorted(plan.samples.items())
    subject = task.removeprefix("mmlu_")

    def lengthen(data):
        data[long_row]["question"] = "Tom has apples. " * 3000 + data[long_row]["question"]
        return data

    data = edited_mirror(tmp_path, mirror, f"cais/mmlu/{subject}/test-00000-of-00001.parquet", lengthen)
    args = (
        "bench",
        "-t",
        "mmlu_loglik",
        "--limit",
        "2",
        "--threads",
        "2",
        "--allow-modified-data",
        "--data-dir",
        str(data),
    )
    res = run_cli(*args, "--results-dir", str(tmp_path / "a"))
    assert res.returncode == 2, res.stderr[-2000:]
    # lm-eval's doc_id is 0 here (the first of the subject's subset): the message names the data row
    assert f"the question for {task} data row {long_row}: its prompt and answer needs" in res.stderr, (
        res.stderr
    )
    assert "--skip-bad-rows" in res.stderr and "Traceback" not in res.stderr

    res = run_cli(*args, "--skip-bad-rows", "--results-dir", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "left out 1 question(s) too long" in res.stderr
    (path,) = [p for p in (tmp_path / "b" / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
    rec = json.loads(path.read_text())
    assert rec["task"]["n"] == 1 and rec["task"]["sample_ids"] == {kept: kept_ids}
    (skipped,) = rec["task"]["skipped_rows"]
    assert (skipped["task"], skipped["row"], skipped["field"]) == (task, long_row, "question")
