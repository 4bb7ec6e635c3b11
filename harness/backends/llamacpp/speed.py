"""Speed probe (like llama.cpp's llama-bench): prompt rate, single and batched decode rate of a loaded model.

Every run record carries a probe taken on the same machine and model just before the run, and the
run's *floor*: its own prompt tokens at the prompt rate plus its generated tokens at the batched
decode rate. Wall time over floor says how close the run came to what the hardware allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.backends.llamacpp.engine import LlamaEngine

if TYPE_CHECKING:
    from harness.backends.llamacpp.engine_proc import EngineProcess


def probe(
    engine: LlamaEngine | EngineProcess,
    prompt_tokens: int = 512,
    decode_steps: int = 16,
    repeats: int = 1,
    deep: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """The engine's speed probe (:meth:`LlamaEngine.speed_probe`): prompt, single and batched decode rates in
    tokens/s, best of ``repeats``; ``deep`` adds the batched decode at that context depth; ``clock`` times it."""
    return engine.speed_probe(prompt_tokens, decode_steps, repeats, deep, clock=clock)


def floor_seconds(
    speed: dict,
    prompt_tokens: int,
    generated_tokens: int,
    mean_depth: float | None = None,
    streams: bool = False,
) -> float:
    """The least time the run's own token counts need at the probed rates.

    With ``mean_depth`` (the mean position of the run's generated tokens) and a probe taken at two
    depths, a generated token costs the batched decode time per token interpolated linearly in depth
    (attention is linear in the cells it reads); otherwise the decode rate at the probe's prompt length.
    ``streams``: the batched decode rates measured with one KV stream per sequence (the probe's ``streams``),
    the layout generation runs in; the plain floor is the shared-prefix layout, which reads the prompt once.
    """
    rate, deep_rate = (
        ("decode_streams_tokens_per_s", "decode_streams_deep_tokens_per_s")
        if streams
        else ("decode_batched_tokens_per_s", "decode_batched_deep_tokens_per_s")
    )
    per_token = 1 / speed[rate]
    if mean_depth is not None and speed.get(deep_rate):
        d0, d1 = speed["prompt_len"], speed["deep_len"]
        t0, t1 = per_token, 1 / speed[deep_rate]
        per_token = max(t0 + (t1 - t0) * (mean_depth - d0) / (d1 - d0), min(t0, t1))
    return prompt_tokens / speed["prompt_tokens_per_s"] + generated_tokens * per_token
