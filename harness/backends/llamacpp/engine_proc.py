"""The parent's side of the engine process (issue #28): :class:`EngineProcess`, with the interface the bench
uses of :class:`~harness.backends.llamacpp.engine.LlamaEngine`, running it in one or more child processes
(harness/backends/llamacpp/worker.py).

Why: llama.cpp then shares no address space with torch, pyarrow, lm-eval and the journal. A CUDA build no
longer meets torch's or pyarrow's copies of shared libraries (the load-time crashes the README's old
``LD_PRELOAD`` worked around), and a C-level fault (a CUDA abort, a segfault, the OOM killer) costs a restart
instead of the run: the parent prints one line, starts a new engine and goes on with the unfinished requests
only (the finished ones are journaled as they arrive). A death while loading is a load failure, not retried.

``engines`` > 1: that many processes, each with its own copy of the model (one per GPU, ``device`` i; on a CPU
sharing the cores, the threads split between them), the requests split by harness/backends/llamacpp/assign.py
so each result equals one engine's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from multiprocessing.connection import wait
from pathlib import Path

from harness.backends.llamacpp import assign
from harness.backends.llamacpp.engine_child import EngineChild
from harness.backends.llamacpp.settings import EngineSettings, EngineStats
from harness.errors import HarnessError

MAX_RESTARTS = 3  # engine deaths in a row, with no request finished in between, before a run stops


class EngineProcess:
    """LlamaEngine's interface (what harness/backends/llamacpp/lm_model.py, backend.py and the speed probe use),
    served by engine processes. ``notify`` prints a restart line (the bench's console)."""

    def __init__(
        self,
        model_path: str | Path,
        settings: EngineSettings | None = None,
        verbose: bool = False,
        engines: int = 1,
        max_restarts: int = MAX_RESTARTS,
        notify: Callable[[str], None] | None = None,
    ):
        self.settings = settings or EngineSettings()
        self.model_path = str(model_path)
        self.stats = EngineStats()
        self.verbose = verbose
        self.n_engines = max(1, int(engines))
        self.max_restarts = max(1, int(max_restarts))
        self.notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
        self.restarts: list[dict] = []  # the record's resume.engine_restarts causes
        self.first_decode_unix: float | None = None
        self.trace = None  # the in-process engine's diagnostics; not carried across the pipe
        self._dead_stats: dict = {}
        self._peak_kb = [0.0] * self.n_engines  # each engine's peak resident memory (across its restarts)
        self._cache: dict = {}
        total = self.settings.threads or os.cpu_count() or 1
        # On a CPU the engines share the cores; on GPUs engine i gets GPU i (llama.cpp's main_gpu).
        self._engine_settings = replace(self.settings, threads=max(1, total // self.n_engines))
        self._workers: list[EngineChild | None] = [None] * self.n_engines
        try:
            for k in range(self.n_engines):  # all load at once
                self._workers[k] = self._spawn(k)
            facts = [self._ready(k) for k in range(self.n_engines)]
        except BaseException:
            self.close()
            raise
        f = facts[0]
        self.pids = [x["pid"] for x in facts]
        self.n_vocab, self.n_ctx_train, self.n_params = f["n_vocab"], f["n_ctx_train"], f["n_params"]
        self.add_bos, self.bos_id, self.eos_id, self.eot_id = (
            f["add_bos"],
            f["bos_id"],
            f["eos_id"],
            f["eot_id"],
        )
        self._eog = frozenset(f["eog_ids"])
        self.threads = sum(x["threads"] for x in facts)
        self.gpu_offload, self.layers_offloaded = f["gpu_offload"], f["layers_offloaded"]
        self.gpus, self.rpc_devices, self._system_info = f["gpus"], f["rpc_devices"], f["system_info"]

    # ------------------------------------------------------------------ processes
    def _spawn(self, k: int) -> EngineChild:
        w = EngineChild(k, self.verbose)
        device = k if self.n_engines > 1 else None
        w.send_conn.send(("load", self.model_path, self._engine_settings, self.verbose, device))
        return w

    def _ready(self, k: int) -> dict:
        """Wait for engine ``k``'s model load: its facts, or a load failure (an error, or a death) raised."""
        w = self._workers[k]
        try:
            msg = w.recv_conn.recv()
        except (EOFError, OSError):
            cause = w.died()
            tail = " | ".join(w.tail)
            raise HarnessError(
                f"the engine process died while loading {Path(self.model_path).name} ({cause})"
                + (f": {tail}" if tail else ""),
                "a load failure is not retried: check that the file is a complete GGUF (re-download it) and "
                "that this machine has the memory for it (harness plan MODEL).",
            ) from None
        if msg[0] == "ready":
            return msg[1]
        self._raise(msg)

    @staticmethod
    def _raise(msg: tuple) -> None:
        if msg[1] == "harness":
            raise HarnessError(msg[2], msg[3])
        raise RuntimeError(f"engine process: {msg[2]}\n{msg[3]}")

    def _restart(self, k: int, done: int, deaths: int) -> None:
        """Engine ``k`` died: one line, then a new engine, or a stop after ``max_restarts`` deaths in a row."""
        w = self._workers[k]
        cause = w.died()
        tail = " | ".join(w.tail)
        self._dead_stats = self._sum([self._dead_stats, w.stats])
        w.stop()
        self._workers[k] = None
        what = "the engine process" + (f" {k + 1} of {self.n_engines}" if self.n_engines > 1 else "")
        self.restarts.append(
            {"engine": k, "cause": cause, "stderr_tail": list(w.tail), "requests_kept": done}
        )
        line = (
            f"{what} (pid {w.proc.pid}) died: {cause}"
            + (f"; its last output: {tail}" if tail else "")
            + f"; {done} finished request(s) kept"
        )
        if deaths >= self.max_restarts:
            self.notify(line)
            raise HarnessError(
                f"{what} died {deaths} times in a row without finishing a request (last: {cause}); "
                f"{done} finished request(s) are kept in the journal",
                "rerun the same command to resume; if it dies again, see the lines above (--verbose shows all of "
                "llama.cpp's output) and lower --parallel or use a smaller quant if memory ran out.",
            )
        self.notify(line + "; starting a new one")
        self._workers[k] = self._spawn(k)
        self._ready(k)

    def close(self) -> None:
        for k, w in enumerate(self._workers):
            if w is not None:
                w.stop()
                self._workers[k] = None

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ counters
    @staticmethod
    def _sum(parts: list[dict]) -> dict:
        out: dict = {}
        for p in parts:
            for key, v in p.items():
                out[key] = max(out.get(key, 0), v) if key == "n_ctx" else out.get(key, 0) + v
        return out

    def _update_stats(self) -> None:
        total = self._sum([self._dead_stats] + [w.stats for w in self._workers if w is not None])
        for f in fields(EngineStats):
            if f.name in total:
                setattr(self.stats, f.name, total[f.name])

    def _take(self, w: EngineChild, stats: dict, first: float | None) -> None:
        kb = stats.pop("peak_rss_kb", 0)
        self._peak_kb[w.index] = max(self._peak_kb[w.index], kb / (1024 if sys.platform == "darwin" else 1))
        w.stats = stats
        self._update_stats()
        if self.first_decode_unix is None and first is not None:
            self.first_decode_unix = first

    # ------------------------------------------------------------------ calls answered by engine 0
    def _call(self, name: str, *args):
        return self._call_kw(name, args, {})

    def _call_kw(self, name: str, args: tuple, kwargs: dict):
        deaths = 0
        while True:
            w = self._workers[0]
            try:
                w.send_conn.send(("call", name, args, kwargs))
                msg = w.recv_conn.recv()
            except (EOFError, OSError):
                deaths += 1
                self._restart(0, 0, deaths)
                continue
            if msg[0] == "ok":
                return msg[1]
            self._raise(msg)

    def tokenize(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Tokenized by the engine process (the one tokenizer: planning and decoding never disagree)."""
        return self._call("tokenize", text, add_bos, parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._call("detokenize", list(tokens))

    def token_text(self, token: int) -> str:
        key = ("text", token)
        if key not in self._cache:
            self._cache[key] = self._call("token_text", token)
        return self._cache[key]

    def meta(self, key: str) -> str | None:
        if ("meta", key) not in self._cache:
            self._cache[("meta", key)] = self._call("meta", key)
        return self._cache[("meta", key)]

    def is_eog(self, token: int) -> bool:
        return token in self._eog

    def eog_ids(self) -> list[int]:
        return sorted(self._eog)

    def system_info(self) -> str:
        return self._system_info

    def speed_probe(self, *args, **kwargs) -> dict:
        """The speed probe, taken by engine 0 (with more engines, one engine's share of the cores)."""
        return self._call_kw("speed_probe", args, kwargs)

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system, every thread) of the live engine processes, for the record's
        ``timing.cpu_seconds`` (an engine that died took its count with it: the run is then marked by its
        ``resume.engine_restarts`` anyway)."""
        import psutil

        total = 0.0
        for w in self._workers:
            if w is not None and w.proc.poll() is None:
                try:
                    t = psutil.Process(w.proc.pid).cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
        return total

    def peak_rss_mb(self) -> float:
        """The engine processes' peak resident memory, MiB, added up (each engine's largest, as last reported)."""
        return round(sum(self._peak_kb) / 1024, 1)

    def worker_modules(self) -> list[str]:
        """The modules engine 0's process has imported (the import-isolation check: no torch, pyarrow, lm-eval)."""
        return self._call("loaded_modules")

    def setup_seconds(self) -> float | None:
        """As LlamaEngine.setup_seconds: this (the parent) process's start to the task's first decode."""
        if self.first_decode_unix is None:
            return None
        import psutil

        return max(0.0, self.first_decode_unix - psutil.Process().create_time())

    # ------------------------------------------------------------------ requests
    def loglikelihood(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, tuple[float, bool]], None] | None = None,
    ) -> list:
        """LlamaEngine.loglikelihood, in the engine processes (their results journaled as they arrive)."""
        if not requests:
            return []
        shares = None
        if self.n_engines > 1:
            shares = assign.spread(
                assign.loglikelihood_units(requests, self.settings.min_shared_prefix), self.n_engines
            )
        return self._run(("ll", list(requests)), len(requests), skip, shares, progress, on_result)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        until: Sequence[Sequence[str]],
        max_new_tokens: Sequence[int],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, str], None] | None = None,
    ) -> list:
        """LlamaEngine.generate, in the engine processes (each finished request journaled as it arrives)."""
        if not prompts:
            return []
        shares = None
        if self.n_engines > 1:
            shares = assign.spread(
                assign.generation_units_of(
                    prompts, max_new_tokens, self.settings.min_shared_prefix, self.settings.gen_unit
                ),
                self.n_engines,
            )
        args = ("gen", [list(p) for p in prompts], [list(u) for u in until], list(max_new_tokens))
        return self._run(args, len(prompts), skip, shares, progress, on_result)

    def _run(self, args: tuple, n: int, skip, shares: list[set[int]] | None, progress, on_result) -> list:
        """Send a call to every engine with work in it, journal results as they come, restart the dead."""
        out: list = [None] * n
        done = set(skip)
        everything = frozenset(range(n))
        if skip and progress:
            progress(len(skip))

        def skip_of(k: int) -> set[int]:
            return done | (everything - shares[k]) if shares else set(done)

        deaths = [0] * self.n_engines
        live: dict = {}
        try:
            for k in range(self.n_engines):
                if len(skip_of(k)) < n:
                    self._send(k, args, skip_of(k))
                    live[self._workers[k].recv_conn] = k
            while live:
                for conn in wait(list(live)):
                    k = live[conn]
                    w = self._workers[k]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        del live[conn]
                        deaths[k] += 1
                        self._restart(k, len(done), deaths[k])
                        if len(skip_of(k)) < n:
                            self._send(k, args, skip_of(k))
                            live[self._workers[k].recv_conn] = k
                        continue
                    if msg[0] == "res":
                        deaths[k] = 0
                        for i, result in msg[1]:
                            out[i] = result
                            done.add(i)
                            if on_result:
                                on_result(i, result)
                        self._take(w, msg[2], msg[3])
                        if progress:
                            progress(len(msg[1]))
                    elif msg[0] == "done":
                        w.busy = False
                        self._take(w, msg[1], msg[2])
                        del live[conn]
                    else:
                        w.busy = False
                        self._raise(msg)
        except BaseException:
            # Ctrl-C, an error in one engine, a stop after repeated deaths: the others stop too (their finished
            # requests are journaled; the rerun resumes).
            self.close()
            raise
        for i in skip:
            out[i] = None  # the caller's journaled result stands
        return out

    def _send(self, k: int, args: tuple, skip: set[int]) -> None:
        w = self._workers[k]
        w.busy = True
        try:
            w.send_conn.send((*args, frozenset(skip)))
        except OSError:
            pass  # it died: its pipe's end is read as a death in _run
