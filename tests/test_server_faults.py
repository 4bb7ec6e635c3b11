"""The server backend against a stub OpenAI server on 127.0.0.1: faults, resume, echo log-probs, refusal."""

from __future__ import annotations

import json

import pytest
from backend_procs import free_port
from lm_eval.api.instance import Instance
from openai_stub import StubServer, answer, word_tokens

from harness.backends.llamacpp.vocab import LocalVocab
from harness.backends.server.client import ServerClient
from harness.backends.server.lm_model import ServerLM
from harness.backends.server.replies import NoPromptLogprobs
from harness.backends.server.transport import ServerUnavailable, public_url
from harness.records.journal import Journal


def gen_requests(n: int) -> list[Instance]:
    return [
        Instance(
            "generate_until",
            {},
            (f"Question {i}: what is word{i}", {"until": ["STOP"], "max_gen_toks": 8}),
            i,
        )
        for i in range(n)
    ]


def expected(req: Instance) -> str:
    return answer(req.args[0]).split("STOP")[0]


@pytest.fixture
def stub():
    s = StubServer()
    yield s
    s.close()


def test_public_url_drops_secrets():
    assert public_url("https://user:pw@h.example:8443/v1/?api_key=x#f") == "https://h.example:8443/v1"


def test_generation_is_cut_at_until_and_in_order(stub):
    lm = ServerLM(ServerClient(stub.url), concurrency=3)
    reqs = gen_requests(7)
    assert lm.generate_until(reqs) == [expected(r) for r in reqs]
    assert lm.info.kind == "vllm" and lm.info.model_id == "stub-model"
    assert lm.stats.requests == 7 and lm.stats.generated_tokens == 21


def test_transient_5xx_and_timeouts_are_retried(stub):
    stub.fail_next = [503, 502, 500]
    stub.stall_next, stub.stall_seconds = 1, 1.5
    client = ServerClient(stub.url, timeout=0.5, retry_seconds=30)
    lm = ServerLM(client, concurrency=1)
    reqs = gen_requests(3)
    assert lm.generate_until(reqs) == [expected(r) for r in reqs]
    assert client.retries == 4 and lm.stats.retries == 4


def test_connection_refused_is_a_message_not_a_traceback():
    client = ServerClient(f"http://127.0.0.1:{free_port()}/v1", retry_seconds=1)
    with pytest.raises(ServerUnavailable) as err:
        client.info()
    assert "connection refused" in str(err.value) and "rerun the same command" in err.value.hint


def test_client_errors_are_not_retried(stub):
    stub.fail_next = [400]
    client = ServerClient(stub.url, model="stub-model", retry_seconds=30)
    with pytest.raises(Exception, match="rejected the request \\(400"):
        client.complete("hi", 4, [])
    assert client.retries == 0


def test_server_dying_mid_run_resumes_without_loss(stub, tmp_path):
    """The server dies after 5 answers: the run stops with a message, the journal keeps all 5, and the
    rerun sends only the 7 missing prompts; the results equal an uninterrupted run's."""
    reqs = gen_requests(12)
    stub.dead_after = 5
    j = Journal(tmp_path / "j.jsonl", {"t": 1})
    lm = ServerLM(ServerClient(stub.url, retry_seconds=1), concurrency=2, journal=j)
    with pytest.raises(ServerUnavailable):
        lm.generate_until(reqs)
    j.close()
    assert len(stub.prompts) == 5
    j = Journal(tmp_path / "j.jsonl", {"t": 1})
    assert len(j) == 5
    stub.dead_after, before = None, list(stub.prompts)
    lm = ServerLM(ServerClient(stub.url), concurrency=2, journal=j)
    out = lm.generate_until(reqs)
    j.close()
    assert out == [expected(r) for r in reqs]
    resent = stub.prompts[len(before) :]
    assert len(resent) == 7 and not set(resent) & set(before)


def test_loglikelihood_from_echoed_prompt_logprobs():
    stub = StubServer(echo_logprobs=True)
    try:
        lm = ServerLM(ServerClient(stub.url))
        reqs = [
            Instance("loglikelihood", {}, ("The answer is", " alpha beta"), 0),
            Instance("loglikelihood", {}, ("Pick one:", " A"), 1),
        ]
        got = lm.loglikelihood(reqs)
    finally:
        stub.close()
    for (ctx, cont), (ll, greedy) in zip((r.args for r in reqs), got):
        want = sum(-len(t.strip()) / 10 for t, o in word_tokens(ctx + cont) if o >= len(ctx))
        assert ll == pytest.approx(want) and greedy is True


def test_loglikelihood_refused_when_server_ignores_echo(stub):
    lm = ServerLM(ServerClient(stub.url))
    with pytest.raises(NoPromptLogprobs, match="does not return prompt log-probabilities"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("The answer is", " A"), 0)])
    assert all("The answer is A" != p for p in stub.prompts[1:])  # only the probe was sent


def test_cli_run_through_a_keyed_server_never_records_the_key(stub, tmp_path, mirror, smollm2_path):
    """End to end through `harness bench --backend server` (chat template from the local GGUF, since the
    server reports none): a missing key is a message; with it the run completes and the key is nowhere."""
    from test_bench_e2e import run_cli

    stub.api_key = "sk-test-secret-123"
    stub.count_tokens = LocalVocab(smollm2_path).count  # true counts: the first prompt's BOS check passes
    args = (
        "bench",
        "--backend",
        "server",
        "--base-url",
        stub.url.replace("http://", "http://user:pw@"),
        "--api-key-env",
        "STUB_KEY",
        "-t",
        "gsm8k",
        "--limit",
        "3",
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(tmp_path),
    )
    res = run_cli(*args, env_extra={"STUB_KEY": "wrong"})
    assert res.returncode == 2 and "refused the request (401" in res.stderr and "--api-key-env" in res.stderr
    res = run_cli(*args, env_extra={"STUB_KEY": stub.api_key})
    assert res.returncode == 0, res.stderr[-2000:]
    texts = [p.read_text() for p in tmp_path.rglob("*") if p.is_file()] + [res.stdout, res.stderr]
    assert not any(stub.api_key in t or "user:pw" in t for t in texts)
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*[0-9]Z.json")]
    assert rec["backend"]["server"]["endpoint"] == stub.url and rec["backend"]["server"]["kind"] == "vllm"
    assert rec["backend"]["chat_template_source"].startswith("local GGUF")
    # 3 questions and the first prompt once more: the BOS check of a server that does not say (ServerLM._settle_bos)
    assert len(stub.prompts) == 4 and all(p.startswith("<|im_start|>system") for p in stub.prompts)
    assert rec["backend"]["strip_bos"] is False and rec["backend"]["bos_check"].startswith(
        "usage.prompt_tokens"
    )
