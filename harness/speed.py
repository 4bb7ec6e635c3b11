"""Speed probe (like llama.cpp's llama-bench): prompt rate, single and batched decode rate of a loaded model.

Every run record carries a probe taken on the same machine and model just before the run, and the
run's *floor*: its own prompt tokens at the prompt rate plus its generated tokens at the batched
decode rate. Wall time over floor says how close the run came to what the hardware allows.
"""

from __future__ import annotations

import time

from harness.engine import EngineStats, LlamaEngine


def probe(engine: LlamaEngine, prompt_tokens: int = 512, decode_steps: int = 16, repeats: int = 1) -> dict:
    """Best-of-``repeats`` rates in tokens/s; the engine's own token counters are left untouched."""
    lc = engine.lc
    saved = engine.stats
    engine.stats = EngineStats()
    n_par = engine.settings.n_parallel
    n_batch = engine.settings.n_batch
    # A fixed, ordinary token sequence (the text of a counting rhyme), so every probe decodes the same ids.
    base = engine.tokenize("one two three four five six seven eight nine ten " * 8, add_bos=False)
    toks = (base * (prompt_tokens // max(len(base), 1) + 1))[:prompt_tokens]
    engine._ensure_ctx(prompt_tokens + n_par * (decode_steps + 1) + n_batch, n_par + 1)
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
    finally:
        lc.llama_memory_clear(engine._mem, True)
        engine.stats = saved
    return {"prompt_tokens_per_s": round(best["prompt"], 1), "decode_1_tokens_per_s": round(best["decode_1"], 1),
            "decode_batched_tokens_per_s": round(best[f"decode_{n_par}"], 1), "batched_sequences": n_par,
            "prompt_len": prompt_tokens, "decode_steps": decode_steps}


def floor_seconds(speed: dict, prompt_tokens: int, generated_tokens: int) -> float:
    """The least time the run's own token counts need at the probed rates."""
    return prompt_tokens / speed["prompt_tokens_per_s"] + generated_tokens / speed["decode_batched_tokens_per_s"]
