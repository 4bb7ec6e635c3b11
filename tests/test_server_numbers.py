"""Issue #26 items 2 and 4 on the server route, against the stub OpenAI server on 127.0.0.1: log-probs checked
where they enter, and faults named for what they are (an answer cut off mid-body, Retry-After, real times)."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lm_eval.api.instance import Instance
from openai_stub import StubServer, word_tokens

from harness.backends.base import request_name
from harness.backends.server.client import ServerClient
from harness.backends.server.lm_model import ServerLM
from harness.backends.server.transport import ServerUnavailable, retry_after_seconds
from harness.errors import HarnessError

CONTEXT, CONT = "The answer is", " alpha beta gamma"


@pytest.fixture(scope="module")
def echo_stub():
    s = StubServer(echo_logprobs=True)
    yield s
    s.close()


def _ll_request(doc_id: int = 7) -> Instance:
    return Instance("loglikelihood", {}, (CONTEXT, CONT), 0, metadata=("mmlu_anatomy", doc_id, 1))


# A log-prob as a server might send it: a good one (finite, <= 0), or one that must never become a score.
good_logprob = st.floats(max_value=0.0, allow_nan=False, allow_infinity=False)
bad_logprob = st.one_of(
    st.none(),
    st.just(math.nan),
    st.sampled_from([math.inf, -math.inf]),
    st.floats(min_value=1e-9, allow_nan=False, allow_infinity=False),  # positive: not a log-probability
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
# How the scored tokens' `token_logprobs` are mangled: values replaced, entries dropped, the field removed.
mangle = st.one_of(
    st.tuples(st.just("values"), st.lists(st.one_of(good_logprob, bad_logprob), min_size=3, max_size=3)),
    st.tuples(st.just("short"), st.integers(1, 3)),
    st.tuples(st.just("absent"), st.none()),
    st.tuples(st.just("null"), st.none()),
)


def _scorable(vals: list) -> bool:
    """Finite numbers <= 0 whose sum is finite too (-6e307 three times overflows: Hypothesis found it)."""
    ok = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v <= 0 for v in vals
    )
    return ok and math.isfinite(sum(vals))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=mangle)
def test_a_bad_logprob_is_never_scored(echo_stub, how):
    """null, NaN, +-inf, positive, non-numbers, missing entries or no field at all in the scored tokens'
    `token_logprobs`: one message naming the request (task, data row) and the field, never a score. Good
    values are scored exactly. (Before: `float(vals[k] or 0.0)` read null as 0.0, every choice tied.)"""
    kind, arg = how
    n_ctx = len(word_tokens(CONTEXT))  # the continuation's 3 tokens follow the context's

    def rewrite(lp: dict) -> dict:
        vals = list(lp["token_logprobs"])
        if kind == "values":
            vals[n_ctx : n_ctx + 3] = arg
            lp["token_logprobs"] = vals
        elif kind == "short":
            lp["token_logprobs"] = vals[:-arg]
        elif kind == "absent":
            del lp["token_logprobs"]
        else:
            lp["token_logprobs"] = None
        return lp

    client = ServerClient(echo_stub.url)
    assert client.supports_prompt_logprobs()  # the probe is answered unmangled
    lm = ServerLM(client, client.info(), concurrency=1).attach(samples={"mmlu_anatomy": [3, 50, 803]})
    echo_stub.mangle_logprobs = rewrite
    try:
        try:
            got = lm.loglikelihood([_ll_request(doc_id=2)])
        except HarnessError as exc:
            msg = exc.format_message()
            assert "mmlu_anatomy data row 803" in msg and "token_logprobs" in msg, msg
            assert kind != "values" or not _scorable(arg)
            return
    finally:
        echo_stub.mangle_logprobs = None
    assert kind == "values" and _scorable(arg)  # anything else must have been refused
    ((ll, _greedy),) = got
    assert ll == pytest.approx(sum(arg)) and math.isfinite(ll)


def test_request_names_its_data_row_not_its_place_in_the_subset():
    """lm-eval's doc_id is the place in the `samples` subset; messages name the data row it stands for."""
    req = Instance("generate_until", {}, ("q", {}), 0, metadata=("gsm8k_cot_llama", 1, 1))
    assert (
        request_name(req, "question", {"gsm8k_cot_llama": [803, 12]})
        == "the question for gsm8k_cot_llama data row 803"
    )
    assert request_name(req, "question", None) == "the question for gsm8k_cot_llama data row 1"  # full split


@pytest.mark.parametrize("cut", ["length", "chunked"])
def test_an_answer_cut_off_mid_body_is_retried(cut):
    """A connection that drops mid-answer is a transient fault: retried, and the run goes on."""
    stub = StubServer()
    try:
        stub.cut_next = [cut]
        client = ServerClient(stub.url, model="stub-model", retry_seconds=30)
        out = client.complete("one two three", 8, [])
        assert out.text.startswith(" eerht") and client.retries == 1
        stub.cut_next = [cut] * 100  # and when it keeps happening, the message says what happened
        client = ServerClient(stub.url, model="stub-model", retry_seconds=1)
        with pytest.raises(ServerUnavailable) as err:
            client.complete("one two three", 8, [])
        assert "the answer was cut off mid-body" in err.value.message
    finally:
        stub.close()


def test_retry_after_is_honoured_and_a_wait_past_the_window_stops_at_once():
    stub = StubServer()
    try:
        stub.fail_next, stub.retry_after = [503], "2"
        client = ServerClient(stub.url, model="stub-model", retry_seconds=30)
        t0 = time.monotonic()
        client.complete("one two", 4, [])
        assert time.monotonic() - t0 >= 2.0  # not the 0.5 s of the first backoff step
        stub.fail_next, stub.retry_after = [429], "3600"
        client = ServerClient(stub.url, model="stub-model", retry_seconds=5)
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable) as err:
            client.complete("one two", 4, [])
        assert time.monotonic() - t0 < 3
        assert "asked to wait 3600 s, past the retry window" in err.value.message
    finally:
        stub.close()
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert retry_after_seconds("soon") == 0.0 and retry_after_seconds("120") == 120.0


def test_hang_message_states_the_real_times():
    """A server that never answers: the message gives the time really spent, not the last attempt's cut wait."""
    stub = StubServer()
    stub.stall_next, stub.stall_seconds = 100, 30.0
    try:
        client = ServerClient(stub.url, model="stub-model", timeout=2.0, retry_seconds=2.5)
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable) as err:
            client.complete("hello", 4, [])
        spent = time.monotonic() - t0
    finally:
        stub.close()
    msg = err.value.message
    assert f"kept failing for {spent:.0f} s" in msg or f"kept failing for {spent - 1:.0f} s" in msg, (
        spent,
        msg,
    )
    assert "--retry-for 2 s" in msg or "--retry-for 3 s" in msg


def test_one_connection_per_worker_thread():
    """#27: requests reuse their thread's connection (before: a new TCP connection for every request)."""
    stub = StubServer()
    try:
        client = ServerClient(stub.url, model="stub-model")
        for i in range(6):
            client.complete(f"q {i}", 4, [])
        assert len(stub.connections) == 1, stub.connections
    finally:
        stub.close()


def test_each_worker_thread_keeps_its_own_connection():
    """#27: 4 threads x 5 requests open exactly 4 TCP connections (a new connection per request: 20)."""
    import threading

    stub = StubServer()
    try:
        client = ServerClient(stub.url, model="stub-model")
        start = threading.Barrier(4)

        def work(t: int) -> None:
            start.wait()  # all four threads at once: none can reuse another's idle connection
            for i in range(5):
                client.complete(f"q {t} {i}", 4, [])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(stub.prompts) == 20 and len(stub.connections) == 4, stub.connections
    finally:
        stub.close()
