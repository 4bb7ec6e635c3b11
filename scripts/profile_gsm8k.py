"""Where GSM8K generation time goes (#18 item 3): every llama_decode of a GSM8K run on our engine, classified.

    .venv/bin/python scripts/profile_gsm8k.py [--model smollm2|1b|...] [--gsm8k 16] [--gen-tokens 256]

Runs route ``ours`` of scripts/bench_backends.py (same subset, prompts, settings) after the speed probe, with
``LlamaContext.decode`` (the engine's context) timed call by call. A call is a *prefix* (shared few-shot prefix, no logits), a *suffix*
(one new slot's question, decoded alone; the slot's first token comes from it) or a *step* (one token for each
live slot). Prints, per kind: calls, tokens per call, seconds in llama_decode and what the floor gives those
tokens; Python time between decode calls; steps by how many slots they fed (idle slots); and the slots that
sat waiting during suffix decodes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> int:
    import bench_backends as bb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--quant", default="Q4_0")
    ap.add_argument("--gsm8k", type=int, default=16)
    ap.add_argument("--gen-tokens", type=int)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument(
        "--data-dir", default=os.environ.get("HARNESS_DATA_DIR") or str(ROOT.parent / "shared/data/hub")
    )
    a = ap.parse_args()
    a.gen_tokens = a.gen_tokens or bb.SUBSETS.get(a.model.lower(), bb.SUBSETS["smollm2"])[3]
    a.mmlu_subjects, a.mmlu_per_subject = 1, 1
    model, label = bb._resolve_model(a)
    import lm_eval

    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.lm_model import LlamaBenchLM
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.backends.llamacpp.speed import floor_seconds
    from harness.models.locate import local_model_path
    from harness.tasks.settings import task_manager

    entry, plans = bb._plans(model, Path(a.data_dir), a)
    plan = plans["gsm8k"]
    engine = LlamaEngine(
        str(local_model_path(entry)), EngineSettings(threads=bb.THREADS, n_parallel=a.parallel)
    )
    speed = engine.speed_probe(deep=1024, streams=True)
    calls: list[tuple[float, float, int, int, int]] = []  # start, seconds, tokens, sequences, logit rows
    real = engine.context.decode

    def timed(entries):
        t0 = time.perf_counter()
        out = real(entries)
        calls.append(
            (
                t0,
                time.perf_counter() - t0,
                len(entries),
                len({e[2] for e in entries}),
                sum(1 for e in entries if e[3]),
            )
        )
        return out

    engine.context.decode = timed  # the context's prefill and the schedulers call it
    lm = LlamaBenchLM(engine=engine, max_gen_toks=a.gen_tokens)
    t0 = time.perf_counter()
    lm_eval.simple_evaluate(
        model=lm,
        tasks=plan.configs,
        samples=plan.samples,
        log_samples=True,
        bootstrap_iters=0,
        task_manager=task_manager(),
        verbosity="ERROR",
    )
    wall = time.perf_counter() - t0
    st = engine.stats
    first, last = calls[0][0], calls[-1][0] + calls[-1][1]
    kinds: dict[str, list] = defaultdict(list)
    widths: Counter = Counter()
    width_time: dict[int, float] = defaultdict(float)
    waiting = 0.0
    for i, (_, sec, n, nseq, nout) in enumerate(calls):
        kind = "prefix" if nout == 0 else "step" if n == nseq == nout else "suffix"
        kinds[kind].append((sec, n))
        if kind == "step":
            widths[n] += 1
            width_time[n] += sec
        elif kind == "suffix":  # slots already generating wait for it: the next step's width, less this slot
            nxt = next((c for c in calls[i + 1 :] if c[2] == c[3] == c[4]), None)
            if nxt and nxt[2] > 1:
                waiting += sec * (nxt[2] - 1)
    in_decode = sum(c[1] for c in calls)
    depth = st.gen_depth_sum / st.gen_decodes if st.gen_decodes else None
    floor = floor_seconds(speed, st.prompt_tokens, st.generated_tokens, depth)
    floor_s = floor_seconds(speed, st.prompt_tokens, st.generated_tokens, depth, streams=True)
    print(
        f"model: {label}; GSM8K {plan.n_samples} questions, cap {a.gen_tokens} tokens, {a.parallel} slots, "
        f"{bb.THREADS} threads; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print(
        f"probe: prompt {speed['prompt_tokens_per_s']} tok/s; batched decode {speed['decode_batched_tokens_per_s']}"
        f" tok/s at {speed['prompt_len']}, {speed['decode_batched_deep_tokens_per_s']} at {speed['deep_len']}; "
        f"1 sequence {speed['decode_1_tokens_per_s']} tok/s; batched in KV streams (generation's layout) "
        f"{speed['decode_streams_tokens_per_s']} tok/s at {speed['prompt_len']}, "
        f"{speed['decode_streams_deep_tokens_per_s']} at {speed['deep_len']}"
    )
    print(
        f"wall {wall:.1f} s = {wall / floor:.2f}x the depth-aware floor {floor:.1f} s ({st.prompt_tokens} prompt + "
        f"{st.generated_tokens} generated tokens, mean generation depth {depth:.0f}); "
        f"{wall / floor_s:.2f}x the floor in KV streams {floor_s:.1f} s"
    )
    print(
        f"  lm-eval before the first decode {first - t0:.1f} s, after the last {t0 + wall - last:.1f} s; "
        f"llama_decode {in_decode:.1f} s; Python between decodes {last - first - in_decode:.1f} s "
        f"({1000 * (last - first - in_decode) / max(len(calls), 1):.2f} ms per call)"
    )
    per_gen = 1 / speed["decode_batched_tokens_per_s"]
    if depth and speed.get("decode_batched_deep_tokens_per_s"):
        per_gen = floor_seconds(speed, 0, 1, depth)
    per_gen_s = floor_seconds(speed, 0, 1, depth, streams=True) if depth else per_gen
    for kind in ("prefix", "suffix", "step"):
        rows = kinds.get(kind, [])
        sec, toks = sum(r[0] for r in rows), sum(r[1] for r in rows)
        fl = toks / speed["prompt_tokens_per_s"] if kind != "step" else toks * per_gen
        extra = (
            f"; in KV streams {toks * per_gen_s:6.1f} s ({sec / (toks * per_gen_s) if toks else 0:.2f}x)"
            if kind == "step"
            else ""
        )
        print(
            f"  {kind:6}: {len(rows):5} calls, {toks:6} tokens ({toks / max(len(rows), 1):6.1f} per call), "
            f"{sec:7.1f} s in llama_decode; floor for those tokens {fl:6.1f} s ({sec / fl if fl else 0:.2f}x){extra}"
        )
    print(
        "  steps by live slots: "
        + ", ".join(
            f"{w}: {widths[w]} ({1000 * width_time[w] / widths[w]:.0f} ms each)" for w in sorted(widths)
        )
    )
    print(f"  slot-seconds spent waiting while another slot's suffix decoded: {waiting:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
