"""What a bench prints while it runs: one progress bar per task (questions/s, tokens/s, ETA), and nothing else
unless ``--verbose`` (the summary at its end: harness/publish/bench_summary.py).

While a task is evaluated, everything else written to stderr (lm-eval's per-subject context-building bars,
its warnings, Python warnings, other libraries' notices) goes to a log file beside the journals instead of
the terminal: the file descriptor is redirected, so output from C code is caught too. The task bars write to
the terminal itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from harness.redact import RedactingStream, redact_text

_STATE: dict = {"verbose": False, "log": None, "stream": None, "terminal_fd": None}


def keep_terminal() -> None:
    """Keep a duplicate of the process's own fd 2 (the real terminal), for :func:`last_word`: while a task
    runs, fd 2 points at ``console.log``, and when that file's disk is full a message written there is lost."""
    if _STATE["terminal_fd"] is None:
        try:
            _STATE["terminal_fd"] = os.dup(2)
        except OSError:  # no fd 2 at all: nothing to keep
            pass


def _same_file(fd_a: int, fd_b: int) -> bool:
    try:
        a, b = os.fstat(fd_a), os.fstat(fd_b)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def last_word(text: str) -> None:
    """Print the command's final message where the user sees it: stderr, unless stderr no longer is the
    terminal the process started with or writing to it fails (a full disk under ``console.log``); then the
    kept duplicate of the original fd 2. Never raises."""
    kept = _STATE["terminal_fd"]
    if kept is None or _same_file(2, kept):
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            return
        except (OSError, ValueError):  # ValueError: stderr closed
            pass
    if kept is not None:
        try:
            os.write(kept, (redact_text(text) + "\n").encode(errors="replace"))
        except OSError:
            pass


def configure(verbose: bool, log_path: Path | None = None) -> None:
    """``--verbose`` shows everything; otherwise other output during a task goes to ``log_path``
    (default: discarded)."""
    _STATE.update(verbose=verbose, log=log_path)


def stream():
    """Where the task bars write: the terminal's stderr, also while stderr is redirected."""
    return _STATE["stream"] or sys.stderr


def above_bars(line: str) -> None:
    """Print ``line`` on the terminal above the task's progress bar (an engine restart: the llama.cpp
    backend's ``notify``), also while stderr is redirected."""
    tqdm.write(line, file=stream())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Send stderr (Python's and the C-level file descriptor 2) to the log while the block runs."""
    if _STATE["verbose"] or _STATE["stream"] is not None:
        yield
        return
    log_path = _STATE["log"]
    try:
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path or os.devnull, "a", buffering=1)  # noqa: SIM115 - closed below
    except OSError:
        yield  # cannot open a log: stay noisy rather than fail the run
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    terminal = RedactingStream(os.fdopen(os.dup(saved_fd), "w", buffering=1))
    saved_stderr = sys.stderr
    os.dup2(log.fileno(), 2)
    # console.log is filtered like the terminal (harness.redact), and best-effort: a library's notice that a
    # full disk refuses is dropped rather than raised into the library (the journal names the full disk).
    sys.stderr = RedactingStream(log, lenient=True)
    _STATE["stream"] = terminal
    try:
        yield
    finally:
        # Each step on its own: a full disk under the log must not keep fd 2 pointing at it (the final
        # message would be lost with it), nor replace the error that ended the task.
        for step in (sys.stderr.flush, lambda: os.dup2(saved_fd, 2), lambda: os.close(saved_fd)):
            with contextlib.suppress(OSError, ValueError):
                step()
        sys.stderr = saved_stderr
        _STATE["stream"] = None
        for f in (terminal, log):
            with contextlib.suppress(OSError, ValueError):
                f.close()


def task_progress(task: str, questions: int, stats) -> Callable[[str, int], Callable[[int], None]]:
    """The ``progress`` factory the backends call per request phase (``what``, requests): one bar for the
    task, in questions (a log-likelihood question is several requests: one per choice), with the tokens per
    second the engine decodes (``stats``: prompt_tokens, generated_tokens) and tqdm's rate and ETA."""
    state: dict = {}

    def make(what: str, total: int) -> Callable[[int], None]:
        if "bar" not in state:
            state["bar"] = tqdm(
                total=questions,
                desc=task,
                unit="q",
                file=stream(),
                dynamic_ncols=True,
                mininterval=0.5,
                disable=False,
                leave=True,
            )
            state["t0"] = time.perf_counter()
            state["tok0"] = stats.prompt_tokens + stats.generated_tokens
        bar = state["bar"]
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            at = min(questions, round(done[0] * questions / max(total, 1)))
            dt = time.perf_counter() - state["t0"]
            toks = stats.prompt_tokens + stats.generated_tokens - state["tok0"]
            if dt > 0:
                bar.set_postfix_str(f"{toks / dt:.0f} tok/s", refresh=False)
            if at > bar.n:
                bar.update(at - bar.n)
            if done[0] >= total:
                bar.close()

        return advance

    return make
