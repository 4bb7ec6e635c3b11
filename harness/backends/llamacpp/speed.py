"""Speed probe (like llama.cpp's llama-bench): prompt rate, single and batched decode rate of a loaded model.

Every run record carries a probe taken on the same machine and model just before the run, and the
run's *floor*: its own prompt tokens at the prompt rate plus its generated tokens at the batched
decode rate. Wall time over floor says how close the run came to what the hardware allows.
"""

from __future__ import annotations

import time

from harness.backends.llamacpp.engine import EngineStats, LlamaEngine


def probe(engine: LlamaEngine, prompt_tokens: int = 512, decode_steps: int = 16, repeats: int = 1,
          deep: int | None = None) -> dict:
    """Best-of-``repeats`` rates in tokens/s; the engine's own token counters are left untouched.

    ``deep``: also time the batched decode at that context depth (like llama-bench's ``-d``), so a
    floor can be taken at the depth a run really decodes at (:func:`floor_seconds`).
    """
    lc = engine.lc
    saved = engine.stats
    engine.stats = EngineStats()
    n_par = engine.settings.n_parallel
    n_batch = engine.settings.n_batch
    # A fixed, ordinary token sequence (the text of a counting rhyme), so every probe decodes the same ids.
    base = engine.tokenize("one two three four five six seven eight nine ten " * 8, add_bos=False)
    toks = (base * (prompt_tokens // max(len(base), 1) + 1))[:prompt_tokens]
    depth = max(prompt_tokens, deep or 0)
    engine._ensure_ctx(depth + n_par * (decode_steps + 1) + n_batch, n_par + 1)
    best = {"prompt": 0.0, "decode_1": 0.0, f"decode_{n_par}": 0.0}
    try:
        for _ in range(repeats):
            lc.llama_memory_clear(engine._mem, True)
            t0 = time.perf_counter()
            engine._prefill(toks, seq=0)
            best["prompt"] = max(best["prompt"], prompt_tokens / (time.perf_counter() - t0))
            # Single sequence: one token per decode call.
            lc.llama_memory_seq_cp(engine._mem, 0, 1, 0, prompt_tokens)
            t0 = time.perf_counter()
            for i in range(decode_steps):
                engine._decode([(toks[i], prompt_tokens + i, 1, True)])
            best["decode_1"] = max(best["decode_1"], decode_steps / (time.perf_counter() - t0))
            lc.llama_memory_seq_rm(engine._mem, 1, -1, -1)
            # n_parallel sequences branched from the prompt, one token each per decode call.
            for s in range(1, n_par + 1):
                lc.llama_memory_seq_cp(engine._mem, 0, s, 0, prompt_tokens)
            t0 = time.perf_counter()
            for i in range(decode_steps):
                engine._decode([(toks[i], prompt_tokens + i, s, True) for s in range(1, n_par + 1)])
            best[f"decode_{n_par}"] = max(best[f"decode_{n_par}"], n_par * decode_steps / (time.perf_counter() - t0))
        if deep:  # once: the prompt grows to ``deep`` tokens, then the same batched decode
            lc.llama_memory_clear(engine._mem, True)
            long = (base * (deep // max(len(base), 1) + 1))[:deep]
            engine._prefill(long, seq=0)
            for s in range(1, n_par + 1):
                lc.llama_memory_seq_cp(engine._mem, 0, s, 0, deep)
            t0 = time.perf_counter()
            for i in range(decode_steps):
                engine._decode([(long[i], deep + i, s, True) for s in range(1, n_par + 1)])
            best["deep"] = n_par * decode_steps / (time.perf_counter() - t0)
    finally:
        lc.llama_memory_clear(engine._mem, True)
        engine.stats = saved
    out = {"prompt_tokens_per_s": round(best["prompt"], 1), "decode_1_tokens_per_s": round(best["decode_1"], 1),
           "decode_batched_tokens_per_s": round(best[f"decode_{n_par}"], 1), "batched_sequences": n_par,
           "prompt_len": prompt_tokens, "decode_steps": decode_steps}
    if deep:
        out.update(decode_batched_deep_tokens_per_s=round(best["deep"], 1), deep_len=deep)
    return out


def floor_seconds(speed: dict, prompt_tokens: int, generated_tokens: int, mean_depth: float | None = None) -> float:
    """The least time the run's own token counts need at the probed rates.

    With ``mean_depth`` (the mean position of the run's generated tokens) and a probe taken at two
    depths, a generated token costs the batched decode time per token interpolated linearly in depth
    (attention is linear in the cells it reads); otherwise the decode rate at the probe's prompt length.
    """
    per_token = 1 / speed["decode_batched_tokens_per_s"]
    if mean_depth is not None and speed.get("decode_batched_deep_tokens_per_s"):
        d0, d1 = speed["prompt_len"], speed["deep_len"]
        t0, t1 = per_token, 1 / speed["decode_batched_deep_tokens_per_s"]
        per_token = max(t0 + (t1 - t0) * (mean_depth - d0) / (d1 - d0), min(t0, t1))
    return prompt_tokens / speed["prompt_tokens_per_s"] + generated_tokens * per_token
