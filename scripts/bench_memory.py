"""Peak memory of a log-likelihood bench, phase by phase, without the hours of decoding (#18 item 4).

    HARNESS_DATA_DIR=... .venv/bin/python scripts/bench_memory.py [--full | --limit N] [--task mmlu_loglik]
                                                                    [--decode]

Runs ``harness bench`` in this process (the installed entry point's ``main``, SmolLM2 by default) with the engine's
decode calls replaced by constant logits (``--decode``: real decoding), so everything a run holds is built and
kept as in a real run (lm-eval's instances and logged samples, the tokenized requests, the engine's branch plan,
the journal, the summary and the record) while the 2 h of a full MMLU run's ``llama_decode`` are skipped. The
speed probe is skipped too (a fixed stand-in rate; the record's floor is meaningless). Prints RSS and the peak so
far at each phase: what lm-eval holds, what the harness adds, and what writing the record adds.

The record goes to a temporary results folder, never to ``results/``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import numpy as np
import psutil

PROC = psutil.Process()
T0 = PROC.create_time()
MARKS: list[tuple[str, float, float, float]] = []


def mark(what: str) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    MARKS.append((what, time.time() - T0, PROC.memory_info().rss / 2**20, peak))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="mmlu_loglik")
    ap.add_argument("--limit", type=int, default=114)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--decode", action="store_true", help="decode for real (default: constant logits)")
    args = ap.parse_args()
    mark("interpreter, psutil")
    import harness.cli as cli
    from harness.backends.llamacpp import context as ctx_mod
    from harness.backends.llamacpp import engine as eng
    from harness.run import runner

    mark("harness imported")
    real = {n: getattr(eng.LlamaEngine, n) for n in ("loglikelihood", "generate", "__init__")}
    real_eval, real_run_task = runner.evaluate, runner.run_task

    def init(self, *a, **kw):
        real["__init__"](self, *a, **kw)
        mark("model loaded")

    def probe(self, *a, **kw) -> dict:
        return {
            "prompt_tokens_per_s": 250.0,
            "decode_1_tokens_per_s": 60.0,
            "decode_batched_tokens_per_s": 150.0,
            "batched_sequences": self.settings.n_parallel,
            "prompt_len": 512,
            "decode_steps": 16,
        }

    def decode(self, entries):
        n_out = sum(1 for e in entries if e[3])
        self.stats.decode_calls += 1
        if self.first_decode_unix is None:
            self.first_decode_unix = time.time()
            mark("first evaluation decode")
        out = np.zeros((n_out, self.n_vocab), dtype=np.float32)
        out[:, 0] = 1.0  # token 0 is the greedy one everywhere: every answer scores the same
        return out

    def loglikelihood(self, requests, *a, **kw):
        mark(f"engine.loglikelihood: {len(requests)} tokenized requests handed over")
        out = real["loglikelihood"](self, requests, *a, **kw)
        mark("engine.loglikelihood returned")
        return out

    def evaluate(*a, **kw):
        out = real_eval(*a, **kw)
        mark("lm-eval simple_evaluate returned (samples logged)")
        return out

    def run_task(*a, **kw):
        out = real_run_task(*a, **kw)
        mark("record written")
        return out

    eng.LlamaEngine.__init__ = init
    eng.LlamaEngine.speed_probe = probe
    eng.LlamaEngine.loglikelihood = loglikelihood
    if not args.decode:
        ctx_mod.LlamaContext.decode = decode  # the engine's one decode path
    runner.evaluate = evaluate
    runner.run_task = run_task
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        argv = ["bench", "-m", args.model, "-t", args.task, "--threads", "2", "--results-dir", tmp]
        argv += ["--full"] if args.full else ["--limit", str(args.limit)]
        sys.argv = ["harness", *argv]
        try:
            cli.main()  # the installed entry point's main: a bad argument is one message and exit 2
        except SystemExit as exc:
            if exc.code:
                return int(exc.code) if isinstance(exc.code, int) else 2
    mark("end")
    what = "full" if args.full else f"limit {args.limit}"
    print(
        f"\n{args.model} {args.task} {what}; decoding {'real' if args.decode else 'replaced by constant logits'}"
    )
    print(f"{'s':>7} {'RSS MB':>7} {'peak MB':>8}  phase")
    for what, t, rss, peak in MARKS:
        print(f"{t:7.1f} {rss:7.0f} {peak:8.0f}  {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
