"""Issue #26 item 8: figures that know their conditions. Every record keeps the process's CPU seconds and the
1-minute load average at the task's start and end; an in-process record's ``efficiency.contended`` says
when the CPU time fell well short of wall time x threads (other work shared the cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_bench_e2e import run_cli

from harness.run.runner import CONTENDED_CPU_SHARE, contended


def test_contended_is_cpu_time_well_short_of_wall_time_x_threads():
    assert CONTENDED_CPU_SHARE == 0.5
    assert contended(cpu_seconds=3.0, wall_seconds=4.0, threads=2) is True  # 3 of 8 possible
    assert contended(cpu_seconds=7.5, wall_seconds=4.0, threads=2) is False
    assert contended(cpu_seconds=0.0, wall_seconds=0.0, threads=2) is False  # no time passed
    assert contended(cpu_seconds=0.1, wall_seconds=4.0, threads=None) is False  # unknown: not claimed


def _records(results):
    return [
        json.loads(p.read_text())
        for p in sorted((results / "runs").glob("*.json"))
        if not p.name.endswith(".lm_eval.json")
    ]


def test_a_server_record_keeps_cpu_seconds_and_load_averages(tmp_path, mirror, smollm2_path):
    """Through the real entry point and the stub server: the record says what the machine was doing."""
    from openai_stub import StubServer

    from harness.backends.llamacpp.vocab import LocalVocab

    stub = StubServer()
    stub.count_tokens = LocalVocab(smollm2_path).count  # SmolLM2 prompts start with BOS: checked on the first
    try:
        res = run_cli(
            "bench",
            "--backend",
            "server",
            "--base-url",
            stub.url,
            "-t",
            "gsm8k",
            "--limit",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        )
    finally:
        stub.close()
    assert res.returncode == 0, res.stderr[-2000:]
    (rec,) = _records(tmp_path)
    t = rec["timing"]
    assert isinstance(t["cpu_seconds"], float) and 0 <= t["cpu_seconds"]
    assert isinstance(t["load_avg_start"], float) and isinstance(t["load_avg_end"], float)
    assert rec["efficiency"] is None  # the server's CPU is not this process's: no contention claimed


@pytest.mark.slow
def test_a_run_sharing_its_cores_is_marked_contended(tmp_path, mirror):
    """A real in-process run with busy processes on every core: `efficiency.contended` is true, and the
    record's CPU seconds are well short of wall time x threads (before: nothing in the record said so)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        res = run_cli(
            "bench",
            "--tasks",
            "mmlu_loglik",
            "--limit",
            "1",
            "--threads",
            str(os.cpu_count() or 1),
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        )
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert res.returncode == 0, res.stderr[-2000:]
    (rec,) = _records(tmp_path)
    t, eff = rec["timing"], rec["efficiency"]
    assert eff["contended"] is True, (t, eff)
    assert t["cpu_seconds"] < CONTENDED_CPU_SHARE * t["wall_seconds"] * rec["backend"]["threads"]
    assert t["load_avg_end"] >= 1.0
