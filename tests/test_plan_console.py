"""The console of a small real bench (installed `harness` entry point, SmolLM2): the plan line first, one
progress bar per task while it runs (questions/s, tokens/s, ETA), lm-eval's own bars and notices kept out
of the terminal (in the log), and at the end the score table, the judged claims, one line naming the records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(sys.executable).parent / "harness"
BAR = re.compile(r"^(?P<desc>[^|\r\n]*?):?\s+\d+%\|")


@pytest.mark.slow
def test_small_bench_has_one_bar_per_task(tmp_path, mirror):
    tasks = ["mmlu_cloze", "mmlu_loglik"]
    out = subprocess.run(
        [
            str(HARNESS),
            "bench",
            "--tasks",
            ",".join(tasks),
            "--limit",
            "2",
            "--threads",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    err_lines = [ln.strip() for ln in re.split(r"[\r\n]+", out.stderr) if ln.strip()]
    bars = {m.group("desc").strip() for ln in err_lines if (m := BAR.match(ln))}
    assert bars == set(tasks), f"progress bars: {bars}\n{out.stderr[-3000:]}"
    finished = [ln for ln in err_lines if BAR.match(ln) and "100%" in ln]
    assert all(re.search(r"q/s|s/q", ln) and "tok/s" in ln for ln in finished), finished
    assert err_lines[0].startswith("plan: smollm2-135m Q4_1 mmlu_cloze[2]+mmlu_loglik[2]: ~"), err_lines[0]
    for noise in ("Tokenizing inputs", "[transformers]", "Building contexts", "WARNING"):
        assert noise not in out.stderr, noise
    log = (tmp_path / ".journal" / "console.log").read_text()
    assert "%|" in log  # lm-eval's own bars went to the log, not lost
    # The end: score table, then the judged claims, then one line with the records.
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert lines[0].startswith("| model ")
    judged = next(i for i, ln in enumerate(lines) if ln.startswith("judged claims about smollm2-135m"))
    assert lines[judged + 1].startswith("| verdict ")
    assert lines[-1].startswith("records: ") and lines[-1].count(str(tmp_path / "runs")) == 2
    assert sum(ln.startswith("record") for ln in lines) == 1
