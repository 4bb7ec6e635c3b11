"""End to end: `harness bench` on SmolLM2 through the real llama.cpp, and its bad-input messages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(sys.executable).parent / "harness"  # the installed entry point, as a user runs it


def run_cli(*args, env_extra=None, cwd=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [str(HARNESS), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900
    )


@pytest.mark.slow
def test_bench_writes_complete_records(tmp_path, mirror):
    res = run_cli(
        "bench",
        "--tasks",
        "gsm8k,mmlu_loglik",
        "--limit",
        "3",
        "--threads",
        "2",
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(tmp_path),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| smollm2-135m | Q4_1" in res.stdout and "strict-match" in res.stdout
    records = sorted(p for p in (tmp_path / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json"))
    assert len(records) == 2
    for p in records:
        rec = json.loads(p.read_text())
        assert rec["schema_version"] == 2 and rec["status"] == "complete"
        assert len(rec["model"]["sha256"]) == 64 and rec["model"]["architecture"] == "llama"
        assert rec["packages"]["llama-cpp-python"] and rec["hardware"]["cores"]
        assert rec["backend"]["settings"]["scheme"]
        ids = rec["task"]["sample_ids"]
        assert sum(len(v) for v in ids.values()) == 3 == rec["task"]["n"] == len(rec["samples"])
        for s in rec["samples"]:
            assert {"doc_id", "prompt_sha256", "response", "extracted", "target", "correct"} <= set(s)
            assert s["prompt_sha256"] != "e3b0c44298fc1c14"  # the hash of an empty prompt
        head = next(iter(rec["metrics"].values()))
        assert head["ci95"][0] <= head["value"] <= head["ci95"][1]
        assert (p.parent / rec["lm_eval_results_file"]).is_file()
    gsm = json.loads(records[0].read_text())
    assert gsm["task"]["name"] == "gsm8k" and gsm["task"]["chat"] is True  # instruct model: chat turns
    assert gsm["timing"]["generated_tokens"] > 0
    # Start-up: process start to each task's first decode (model load and the probe included; the second task
    # starts after the first one's whole run).
    mmlu = json.loads(records[1].read_text())
    assert (
        gsm["timing"]["model_load_seconds"] < gsm["timing"]["setup_seconds"] < mmlu["timing"]["setup_seconds"]
    )
    assert mmlu["timing"]["setup_seconds"] > gsm["timing"]["setup_seconds"] + gsm["timing"]["decode_seconds"]
    # Peak memory of the command so far: one process, so it only grows from the first task to the second.
    assert 50 < gsm["timing"]["peak_rss_mb"] <= mmlu["timing"]["peak_rss_mb"] < 4096


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tasks", "nope"], "unknown task(s) nope"),
        (["--model", "llama3.1-8b-instrct"], "did you mean"),
        (["--model", "../../etc/passwd"], "a path to a .gguf file"),
        (["--limit", "0"], "Invalid value for '--limit': 0 is not in the range 1<=x<=10000000"),
    ],
)
def test_bad_input_is_one_clear_message(args, message, mirror, tmp_path):
    res = run_cli("bench", *args, "--data-dir", str(mirror), "--results-dir", str(tmp_path))
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


def test_missing_data_dir(tmp_path):
    res = run_cli(
        "bench", "--tasks", "gsm8k", "--data-dir", str(tmp_path / "none"), "--results-dir", str(tmp_path)
    )
    assert res.returncode == 2 and "is missing" in res.stderr and "Traceback" not in res.stderr


def test_malformed_data_file(tmp_path):
    import pandas as pd

    d = tmp_path / "openai" / "gsm8k" / "main"
    d.mkdir(parents=True)
    pd.DataFrame({"question": ["q"]}).to_parquet(d / "test-00000-of-00001.parquet")
    res = run_cli("bench", "--tasks", "gsm8k", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path))
    assert res.returncode == 2 and "lacks column(s) answer" in res.stderr


def test_corrupt_gguf_is_refused(tmp_path, mirror):
    bad = tmp_path / "broken-Q4_K_M.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    res = run_cli(
        "bench",
        "--model",
        str(bad),
        "--tasks",
        "gsm8k",
        "--limit",
        "1",
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(tmp_path),
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "GGUF" in res.stderr
    assert not list((tmp_path / "runs").glob("*.json")) if (tmp_path / "runs").exists() else True
