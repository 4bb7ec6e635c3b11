"""The engine's speed probe: this machine's prompt and decode rates on the loaded model, like llama.cpp's
llama-bench, measured on the engine's own context (the run's floor, harness/backends/llamacpp/speed.py
``floor_seconds``, is taken at these rates)."""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.backends.llamacpp.context import LlamaContext
from harness.backends.llamacpp.settings import EngineStats


def speed_probe(
    context: LlamaContext,
    tokenize: Callable[..., list[int]],
    prompt_tokens: int = 512,
    decode_steps: int = 16,
    repeats: int = 1,
    deep: int | None = None,
    streams: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """This machine's rates on this model, like llama.cpp's llama-bench: prompt tokens/s (one
    ``prompt_tokens`` prefill), decode tokens/s of one sequence and of ``n_parallel`` sequences (one token
    each per call, branched from the prompt), best of ``repeats``. ``deep``: the batched decode again at
    that context depth (llama-bench's ``-d``; the prompt is extended to it), for floors taken at the depth
    a run decodes at (harness/backends/llamacpp/speed.py ``floor_seconds``). ``streams`` (with ``deep``): the
    batched decode again at both depths with every sequence in its own KV stream holding its own copy of the
    prompt, the layout generation runs in (``gen_streams``, which keeps batched output equal to one-at-a-time):
    each sequence's attention reads its own cells, where the shared-prefix decode above reads the prompt's once.
    Token counters and the first-decode mark are left as they were; the KV cache is cleared afterwards.
    ``clock``: what times it (the plan's calibration passes the process's CPU time). ``tokenize``: the
    engine's (text, add_bos=...) -> ids.
    """
    ctx = context
    saved = ctx.stats
    ctx.stats = EngineStats()
    ctx.probing = True
    n_par = ctx.settings.n_parallel
    # A fixed, ordinary token sequence (the text of a counting rhyme), so every probe decodes the same ids.
    base = tokenize("one two three four five six seven eight nine ten " * 8, add_bos=False)
    depth = max(prompt_tokens, deep or 0)
    toks = (base * (depth // max(len(base), 1) + 1))[:depth]
    ctx.ensure(depth + n_par * (decode_steps + 1) + ctx.settings.n_batch, n_par + 1)
    best = {"prompt": 0.0, "decode_1": 0.0, "decode_n": 0.0}
    stream_rates: dict[int, float] = {}

    def batched(at: int) -> float:
        for s in range(1, n_par + 1):
            # Separate streams (the layout generation runs in): sequence 0's whole stream is copied.
            ctx.branch(s, at)
        t0 = clock()
        for i in range(decode_steps):
            ctx.decode([(toks[i], at + i, s, True) for s in range(1, n_par + 1)])
        rate = n_par * decode_steps / (clock() - t0)
        for s in range(1, n_par + 1):
            ctx.drop(s)
        return rate

    try:
        for _ in range(repeats):
            ctx.clear()
            t0 = clock()
            ctx.prefill(toks[:prompt_tokens], seq=0)
            best["prompt"] = max(best["prompt"], prompt_tokens / (clock() - t0))
            ctx.copy(0, 1, 0, prompt_tokens)  # one sequence: one token per call
            t0 = clock()
            for i in range(decode_steps):
                ctx.decode([(toks[i], prompt_tokens + i, 1, True)])
            best["decode_1"] = max(best["decode_1"], decode_steps / (clock() - t0))
            ctx.drop(1)
            best["decode_n"] = max(best["decode_n"], batched(prompt_tokens))
        deep_rate = None
        if (
            deep and deep > prompt_tokens
        ):  # once: the prompt grows to ``deep`` tokens, the same batched decode
            ctx.prefill(toks, seq=0, start=prompt_tokens)
            deep_rate = batched(deep)
        if streams and deep and deep > prompt_tokens:
            # Generation's layout: one KV stream per sequence, the prompt's stream copied whole into each.
            ctx.ensure(deep + decode_steps + 1, n_par + 1, unified=False)
            for at in (prompt_tokens, deep):
                ctx.prefill(toks[:at], seq=0, start=0 if at == prompt_tokens else prompt_tokens)
                stream_rates[at] = batched(at)
    finally:
        ctx.clear()
        ctx.stats = saved
        ctx.probing = False
    out = {
        "prompt_tokens_per_s": round(best["prompt"], 1),
        "decode_1_tokens_per_s": round(best["decode_1"], 1),
        "decode_batched_tokens_per_s": round(best["decode_n"], 1),
        "batched_sequences": n_par,
        "prompt_len": prompt_tokens,
        "decode_steps": decode_steps,
    }
    if deep_rate is not None:
        out.update(decode_batched_deep_tokens_per_s=round(deep_rate, 1), deep_len=deep)
    if stream_rates:
        out.update(
            decode_streams_tokens_per_s=round(stream_rates[prompt_tokens], 1),
            decode_streams_deep_tokens_per_s=round(stream_rates[deep], 1),
        )
    return out
