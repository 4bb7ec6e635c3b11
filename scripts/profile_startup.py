"""Where a bench's start-up goes (#18 item 6): the CLI command under cProfile, stopped at its first evaluation decode.

    .venv/bin/python scripts/profile_startup.py [-- harness bench arguments]
    (default: bench -t mmlu_loglik --limit 57 --threads 2 --results-dir <temp>)

Runs ``harness`` in this process (the installed entry point's ``main``) with ``LlamaContext.decode`` wrapped:
the first decode outside the speed probe stops the run. Prints the seconds from process start to that decode
(what ``timing.setup_seconds`` records), the phases in order, and the top functions by cumulative time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
import time

import psutil

T_START = psutil.Process().create_time()
MARKS: list[tuple[str, float]] = []


class FirstDecode(Exception):
    pass


def mark(what: str) -> None:
    MARKS.append((what, time.time() - T_START))


def main() -> int:
    args = sys.argv[1:] or ["bench", "-t", "mmlu_loglik", "--limit", "57", "--threads", "2"]
    if args and args[0] == "--":
        args = args[1:]
    if "--results-dir" not in args:
        args += ["--results-dir", tempfile.mkdtemp(prefix="profile-startup-")]
    prof = cProfile.Profile()
    prof.enable()
    mark("profiler on (interpreter start, psutil)")
    import click

    import harness.cli as cli

    mark("harness.cli imported")
    from harness.backends.llamacpp import engine as eng

    mark("engine module imported (numpy)")
    from harness.backends.llamacpp.context import LlamaContext

    real_decode, real_init, real_probe = (
        LlamaContext.decode,
        eng.LlamaEngine.__init__,
        eng.LlamaEngine.speed_probe,
    )

    def init(self, *a, **kw):
        mark("model load starts (llama_cpp import, weights)")
        real_init(self, *a, **kw)
        mark("model loaded")

    def probe(self, *a, **kw):
        mark("speed probe starts")
        out = real_probe(self, *a, **kw)
        mark("speed probe done")
        return out

    def decode(self, entries):
        if not self.probing:
            mark("first evaluation decode")
            raise FirstDecode
        return real_decode(self, entries)

    eng.LlamaEngine.__init__, eng.LlamaEngine.speed_probe, LlamaContext.decode = init, probe, decode
    from lm_eval.tasks import TaskManager

    from harness.backends.llamacpp.lm_model import LlamaBenchLM

    def wrap(cls, name: str, before: str, after: str | None = None) -> None:
        real = getattr(cls, name)

        def wrapped(*a, **kw):
            mark(before)
            out = real(*a, **kw)
            if after:
                mark(after)
            return out

        setattr(cls, name, wrapped)

    wrap(TaskManager, "load", "lm-eval task building starts", "lm-eval tasks built")
    wrap(LlamaBenchLM, "loglikelihood", "lm-eval requests built; tokenizing starts")
    wrap(LlamaBenchLM, "generate_until", "lm-eval requests built; tokenizing starts")
    wrap(eng.LlamaEngine, "loglikelihood", "tokenized; engine plans the batches")
    wrap(eng.LlamaEngine, "generate", "tokenized; engine plans the batches")
    try:
        cli.cli.main(args=args, standalone_mode=False)
    except FirstDecode:
        pass
    except click.exceptions.ClickException as exc:
        exc.show()
        return 2
    prof.disable()
    print(f"harness {' '.join(args)}")
    print(f"setup: {MARKS[-1][1]:.1f} s from process start to the first evaluation decode")
    prev = 0.0
    for what, at in MARKS:
        print(f"  {at:7.1f} s  (+{at - prev:5.1f})  {what}")
        prev = at
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
