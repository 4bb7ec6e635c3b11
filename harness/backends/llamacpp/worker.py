"""The engine process's own side (issue #28): one :class:`LlamaEngine` in a fresh interpreter, fed over a pipe.

Started by harness/backends/llamacpp/engine_proc.py as ``python -m harness.backends.llamacpp.worker IN OUT PPID``:
a new interpreter (what multiprocessing's ``spawn`` gives, without its re-import of the parent's ``__main__``,
which would bring ``harness.cli`` or pytest along), never a ``fork`` of a parent holding torch, pyarrow and
lm-eval. It imports llama_cpp (and what llama_cpp itself imports), numpy and the engine's own modules only;
tests/test_engine_process.py asserts its ``sys.modules``. A C-level fault here (a CUDA abort, a segfault, the
OOM killer) ends this process only; the parent keeps the journal and starts another.

Protocol (pickled tuples over :class:`multiprocessing.connection.Connection`, parent -> child):
``("load", path, settings, verbose, device)`` first (answered ``("ready", facts)`` or ``("error", ...)``);
then ``("ll", requests, skip)`` / ``("gen", prompts, until, budgets, skip)``, answered by ``("res", [(i,
result), ...], stats, first_decode_unix)`` after each scored item or finished generation (so the parent
journals each request as it finishes) and one ``("done", stats, first_decode_unix)``; ``("call", name,
args)`` for tokenizer facts, answered ``("ok", value)``; ``("close",)``. Tokenization happens only here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection

# Fault injection for tests (tests/test_engine_process.py): "load" aborts the engine process before it loads
# the model, as a file that crashes llama.cpp's loader would; "request" aborts it on every batch of requests.
FAULT_ENV = "HARNESS_ENGINE_FAULT"
# The calls the parent may make besides requests (the engine's tokenizer and probe; nothing else).
CALLS = ("tokenize", "detokenize", "token_text", "meta", "speed_probe")


def loaded_modules() -> list[str]:
    """Every module this process has imported (the import-isolation check)."""
    return sorted(sys.modules)


def _die_with_parent(ppid: int) -> None:
    """End this process when the parent ends, even by SIGKILL: Linux's PR_SET_PDEATHSIG, and a watchdog
    thread for other systems (a bench killed from outside must not leave an engine computing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (linux/prctl.h)
        except (OSError, AttributeError):
            pass
    if os.getppid() != ppid:  # the parent died before the line above ran
        os._exit(1)

    def watch() -> None:
        import time

        while os.getppid() == ppid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def facts(engine) -> dict:
    """What the parent's proxy answers without asking again: vocabulary and model facts, placement."""
    return {
        "pid": os.getpid(),
        "n_vocab": engine.n_vocab,
        "n_ctx_train": engine.n_ctx_train,
        "n_params": engine.n_params,
        "add_bos": engine.add_bos,
        "bos_id": engine.bos_id,
        "eos_id": engine.eos_id,
        "eot_id": engine.eot_id,
        "eog_ids": engine.eog_ids(),
        "threads": engine.threads,
        "gpu_offload": engine.gpu_offload,
        "gpus": engine.gpus,
        "layers_offloaded": engine.layers_offloaded,
        "rpc_devices": engine.rpc_devices,
        "system_info": engine.system_info(),
    }


def _stats(engine) -> dict:
    """The engine's counters, and this process's peak resident memory (KiB on Linux: ``ru_maxrss``)."""
    import resource

    return engine.stats.as_record() | {"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def serve(conn_in: Connection, conn_out: Connection) -> int:
    """Load the model the first message names, then answer requests until ``close`` or the pipe ends."""
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.errors import HarnessError

    def send_error(exc: BaseException) -> None:
        if isinstance(exc, HarnessError):
            conn_out.send(("error", "harness", exc.message, exc.hint))
        else:
            conn_out.send(("error", "bug", f"{type(exc).__name__}: {exc}", traceback.format_exc()))

    _, path, settings, verbose, device = conn_in.recv()
    if os.environ.get(FAULT_ENV) == "load":
        os.abort()
    try:
        engine = LlamaEngine(path, settings, verbose=verbose, device=device)
    except Exception as exc:
        send_error(exc)
        return 0
    conn_out.send(("ready", facts(engine)))
    while True:
        try:
            msg = conn_in.recv()
        except EOFError:
            return 0
        kind = msg[0]
        if kind == "close":
            engine.close()
            return 0
        try:
            if kind == "call":
                _, name, args, kwargs = msg
                if name == "loaded_modules":
                    conn_out.send(("ok", loaded_modules()))
                    continue
                if name not in CALLS:
                    raise ValueError(f"unknown engine call {name}")
                conn_out.send(("ok", getattr(engine, name)(*args, **kwargs)))
                continue
            buffer: list = []

            def on_result(i: int, result, buffer=buffer) -> None:
                buffer.append((i, result))

            def progress(_n: int, buffer=buffer) -> None:  # after each scored item / finished request
                if buffer:
                    conn_out.send(("res", list(buffer), _stats(engine), engine.first_decode_unix))
                    buffer.clear()

            engine.first_decode_unix = None
            if os.environ.get(FAULT_ENV) == "request":
                os.abort()
            if kind == "ll":
                _, requests, skip = msg
                engine.loglikelihood(requests, progress=progress, skip=skip, on_result=on_result)
            elif kind == "gen":
                _, prompts, until, budgets, skip = msg
                engine.generate(prompts, until, budgets, progress=progress, skip=skip, on_result=on_result)
            else:
                raise ValueError(f"unknown engine message {kind}")
            progress(0)
            conn_out.send(("done", _stats(engine), engine.first_decode_unix))
        except Exception as exc:
            send_error(exc)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fd_in, fd_out, ppid = (int(a) for a in argv[:3])
    _die_with_parent(ppid)
    # Ctrl-C reaches the whole process group: the parent decides (it stops this process and says how to resume).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return serve(Connection(fd_in, writable=False), Connection(fd_out, readable=False))


if __name__ == "__main__":
    sys.exit(main())
