"""The batched engine against a direct llama-cpp-python evaluation of the same prompts (real SmolLM2)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

FEWSHOT = "The following are multiple choice questions (with answers) about astronomy.\n\n" + "".join(
    f"Question {i}: which planet is number {i} from the Sun?\nA. Mercury\nB. Venus\nC. Earth\nD. Mars\nAnswer: {'ABCD'[i % 4]}\n\n"
    for i in range(1, 6)
)
QUESTIONS = ["What is the closest star to Earth?", "Which planet has rings?", "What is a light year?"]


SCRIPTS = str(Path(__file__).resolve().parent.parent / "scripts")


def _direct_logprobs(path, tokens):
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    from minimal_backend import high_level_llama  # the reference backend's loader (its CPU buffer choice)

    llm = high_level_llama(path, n_ctx=2048, logits_all=True, verbose=False, n_threads=2)
    llm.eval(tokens)
    scores = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    lse = np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1)) + scores.max(1)
    return scores, lse


def _requests(engine, questions):
    reqs = []
    for q in questions:
        ctx = engine.tokenize(FEWSHOT + q + "\nA. x\nB. y\nC. z\nD. w\nAnswer:")
        for c in (" A", " B", " C", " D", " Proxima Centauri"):  # single- and multi-token continuations
            reqs.append((ctx, engine.tokenize(c, add_bos=False)))
    return reqs


def _direct(path, reqs):
    out = []
    for ctx, cont in reqs:
        scores, lse = _direct_logprobs(path, ctx + cont)
        lp = sum(scores[len(ctx) - 1 + j, t] - lse[len(ctx) - 1 + j] for j, t in enumerate(cont))
        out.append((lp, all(scores[len(ctx) - 1 + j].argmax() == t for j, t in enumerate(cont))))
    return out


def test_loglikelihood_equals_direct_evaluation(engine, smollm2_path):
    """One question (one branch per batch): the same numbers as a plain llama-cpp-python evaluation."""
    reqs = _requests(engine, QUESTIONS[:1])
    for (lp, greedy), (want, want_greedy) in zip(engine.loglikelihood(reqs), _direct(smollm2_path, reqs)):
        assert lp == pytest.approx(want, abs=1e-3)
        assert greedy == want_greedy


def test_loglikelihood_with_shared_prefix_equals_direct(engine, smollm2_path):
    """Several questions branch from one shared few-shot prefix (decoded once): still exact."""
    reqs = _requests(engine, QUESTIONS)
    ours = engine.loglikelihood(reqs)
    assert engine.loglikelihood(reqs) == ours  # a rerun is bit-identical
    for (lp, greedy), (want, want_greedy) in zip(ours, _direct(smollm2_path, reqs)):
        assert lp == pytest.approx(want, abs=1e-3)
        assert greedy == want_greedy


def test_generation_is_deterministic_and_matches_one_at_a_time(engine):
    prompts = [engine.tokenize(FEWSHOT + q + "\nAnswer briefly:") for q in QUESTIONS]
    until = [["\n\n"]] * len(prompts)
    batched = engine.generate(prompts, until, [24] * len(prompts))
    assert batched == engine.generate(prompts, until, [24] * len(prompts))  # a rerun is bit-identical
    single = [engine.generate([p], [["\n\n"]], [24])[0] for p in prompts]
    # Scheme v4: each slot's prompt suffix is decoded alone and every generation step gives each KV
    # stream one token, so every kernel sees what it sees in a one-request-at-a-time run.
    assert batched == single
    assert all("\n\n" not in t for t in batched)


def test_stop_strings_cut_like_lm_eval(engine):
    prompt = engine.tokenize("Count: 1, 2, 3, 4, 5,")
    (full,) = engine.generate([prompt], [[]], [12])
    (cut,) = engine.generate([prompt], [[","]], [12])
    assert "," not in cut and full.startswith(cut)


def test_prompt_longer_than_the_context_is_a_clear_error(engine):
    from harness.errors import HarnessError

    too_long = [engine.bos_id] + [330] * (engine.n_ctx_train + 10)
    with pytest.raises(HarnessError) as err:
        engine.generate([too_long], [[]], [16])
    assert f"context of {engine.n_ctx_train}" in err.value.format_message()
    with pytest.raises(HarnessError):
        engine.loglikelihood([(too_long, [330])])


def test_llama_cpp_errors_reach_stderr_without_verbose(tmp_path):
    """The log filter drops llama.cpp's chatter but not its errors (a CUDA error is logged just before ggml
    aborts; without it the user sees a bare backtrace)."""
    import subprocess
    import sys

    bad = tmp_path / "missing.gguf"
    code = (
        "from harness.backends.llamacpp.engine import LlamaEngine\n"
        "from harness.errors import HarnessError\n"
        f"try:\n    LlamaEngine({str(bad)!r})\nexcept HarnessError as e:\n    print('refused:', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused: llama.cpp could not load" in res.stdout
    assert str(bad) in res.stderr and "failed to open" in res.stderr  # llama.cpp's own reason, at ERROR level
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and all("fail" in ln or "error" in ln for ln in lines), lines  # INFO chatter stays quiet
