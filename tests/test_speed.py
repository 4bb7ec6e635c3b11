"""The speed probe and the floor a run's efficiency is measured against."""

import pytest

from harness.backends.llamacpp.speed import floor_seconds

SPEED = {
    "prompt_tokens_per_s": 250.0,
    "decode_batched_tokens_per_s": 200.0,
    "prompt_len": 512,
    "decode_batched_deep_tokens_per_s": 100.0,
    "deep_len": 1536,
}


def test_flat_floor_is_prompt_tokens_at_prompt_rate_plus_generated_at_batched_rate():
    assert floor_seconds(SPEED, 1000, 400) == pytest.approx(1000 / 250 + 400 / 200)
    flat = {k: v for k, v in SPEED.items() if "deep" not in k}
    assert floor_seconds(flat, 1000, 400, mean_depth=1536) == pytest.approx(6.0)  # no deep probe: flat


def test_floor_at_depth_interpolates_the_per_token_decode_time_linearly():
    # Halfway between 512 (5 ms/token) and 1536 (10 ms/token): 7.5 ms/token.
    assert floor_seconds(SPEED, 0, 400, mean_depth=1024) == pytest.approx(400 * 0.0075)
    assert floor_seconds(SPEED, 0, 400, mean_depth=1536) == pytest.approx(400 / 100)
    assert floor_seconds(SPEED, 0, 400, mean_depth=2048) == pytest.approx(400 * 0.0125)  # extrapolated
    assert floor_seconds(SPEED, 0, 400, mean_depth=0) == pytest.approx(
        400 / 200
    )  # never below the faster rate


@pytest.mark.slow
def test_probe_times_decode_at_two_depths_and_leaves_the_run_counters_alone(engine):
    from harness.backends.llamacpp.speed import probe

    engine.stats.prompt_tokens = before = 123
    sp = probe(engine, prompt_tokens=128, decode_steps=4, deep=640)
    assert engine.stats.prompt_tokens == before
    assert sp["deep_len"] == 640 and sp["prompt_len"] == 128
    assert (
        min(
            sp["prompt_tokens_per_s"],
            sp["decode_batched_tokens_per_s"],
            sp["decode_batched_deep_tokens_per_s"],
        )
        > 0
    )
    engine.stats.prompt_tokens = 0


@pytest.mark.slow
def test_setup_seconds_ends_at_the_first_evaluation_decode_not_the_probe(engine):
    import time

    import psutil

    from harness.backends.llamacpp.lm_model import LlamaBenchLM

    lm = LlamaBenchLM(engine=engine)  # a new task: its start-up ends at its own first decode
    assert engine.setup_seconds() is None
    engine.speed_probe(prompt_tokens=32, decode_steps=2)
    assert engine.setup_seconds() is None  # the probe is start-up, not evaluation
    before = time.time()
    lm.engine.loglikelihood([(engine.tokenize("The sky is"), engine.tokenize(" blue", add_bos=False))])
    setup = engine.setup_seconds()
    started = psutil.Process().create_time()
    assert setup is not None and before - started - 0.05 <= setup <= time.time() - started + 0.05
