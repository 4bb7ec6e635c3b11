"""The two 'bigger than one machine' routes end to end on 127.0.0.1, against the in-process backend:
a real llama.cpp llama-server (OpenAI-compatible) and llama.cpp RPC workers."""

from __future__ import annotations

import json

import pytest
from backend_procs import llama_server, rpc_workers
from test_bench_e2e import run_cli

from harness.backends.llamacpp.rpc import rpc_supported

N = 6  # GSM8K questions: 8-shot CoT chat prompts, up to 1024 new tokens each


def record(results_dir):
    (path,) = [p for p in (results_dir / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
    return json.loads(path.read_text())


def answers(rec) -> dict:
    return {s["doc_id"]: s["extracted"] for s in rec["samples"]}


@pytest.fixture(scope="module")
def inprocess_one_at_a_time(tmp_path_factory, mirror):
    """The reference: in-process, one generation slot (each request decoded alone after the shared prefix)."""
    out = tmp_path_factory.mktemp("inprocess")
    res = run_cli(
        "bench",
        "-t",
        "gsm8k",
        "--limit",
        str(N),
        "--threads",
        "2",
        "--parallel",
        "1",
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(out),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return record(out)


@pytest.mark.slow
def test_gsm8k_through_llama_server_matches_inprocess(
    tmp_path, mirror, smollm2_path, inprocess_one_at_a_time, llama_server_bin
):
    with llama_server(llama_server_bin, smollm2_path, slots=1) as url:
        res = run_cli(
            "bench",
            "--backend",
            "server",
            "--base-url",
            url,
            "--concurrency",
            "1",
            "-t",
            "gsm8k",
            "--limit",
            str(N),
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        )
    assert res.returncode == 0, res.stderr[-2000:]
    rec = record(tmp_path)
    server = rec["backend"]["server"]
    assert (
        server["kind"] == "llama-server" and server["version"] and server["model_file"] == smollm2_path.name
    )
    assert rec["backend"]["chat_template_source"] == "server" and rec["model"]["sha256"] is None
    assert rec["timing"]["generated_tokens"] > 0 and rec["backend"]["requests"] == N
    ref = inprocess_one_at_a_time
    assert rec["task"]["config_hash"] == ref["task"]["config_hash"]  # the same prompts and questions
    assert answers(rec) == answers(ref)


@pytest.mark.slow
def test_loglikelihood_task_is_refused_by_llama_server(tmp_path, mirror, smollm2_path, llama_server_bin):
    with llama_server(llama_server_bin, smollm2_path, slots=1) as url:
        res = run_cli(
            "bench",
            "--base-url",
            url,
            "-t",
            "mmlu_loglik",
            "--limit",
            "3",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        )
    assert res.returncode == 2
    assert "does not return prompt log-probabilities" in res.stderr and "Traceback" not in res.stderr
    assert not list((tmp_path / "runs").glob("*.json"))


@pytest.mark.slow
@pytest.mark.skipif(
    not rpc_supported(),
    reason="llama-cpp-python was built without RPC: `make setup-rpc` builds "
    "it with -DGGML_RPC=on (see README, 'Bigger than one machine')",
)
def test_gsm8k_through_two_rpc_workers_matches_inprocess(tmp_path, mirror, inprocess_one_at_a_time):
    with rpc_workers(2) as endpoints:
        res = run_cli(
            "bench",
            "--rpc",
            endpoints,
            "-t",
            "gsm8k",
            "--limit",
            str(N),
            "--threads",
            "2",
            "--parallel",
            "1",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        )
    assert res.returncode == 0, res.stderr[-2000:]
    rec = record(tmp_path)
    workers = rec["backend"]["rpc_workers"]
    assert [w["endpoint"] for w in workers] == endpoints.split(",") and all(
        w["free_bytes"] > 0 for w in workers
    )
    assert rec["backend"]["gpu_offload"] is True
    assert answers(rec) == answers(inprocess_one_at_a_time)


@pytest.mark.slow
def test_rpc_worker_that_is_not_there_is_a_message(tmp_path, mirror):
    from backend_procs import free_port

    res = run_cli(
        "bench",
        "--rpc",
        f"127.0.0.1:{free_port()}",
        "-t",
        "gsm8k",
        "--limit",
        "2",
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(tmp_path),
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert ("not reachable" in res.stderr) if rpc_supported() else ("make setup-rpc" in res.stderr)
