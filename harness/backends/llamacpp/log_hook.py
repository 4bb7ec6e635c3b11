"""The hook on llama.cpp's log: its chatter silenced unless --verbose (its errors always shown), its report of
each new context's KV cache kept and checked against the cells planned, and a Ctrl-C that lands inside the
callback kept for after the C call."""

from __future__ import annotations

import ctypes
import os
import re
import sys

from harness.errors import HarnessError

_LOG_INFO, _LOG_ERROR, _LOG_CONT = 2, 4, 5  # enum ggml_log_level (ggml.h)
# llama.cpp's report of a new context's KV cache (src/llama-kv-cache.cpp, llama_kv_cache's constructor):
# "llama_kv_cache: size =  405.00 MiB (  2048 cells,  30 layers,  9/9 seqs), K (f16): ..." where the cells
# are per stream and "9/9" is n_seq_max/n_stream. The last one seen, for the check after each context.
_KV_LINE = re.compile(
    rb"llama_kv_cache: size = *([0-9.]+) MiB \( *(\d+) cells, *(\d+) layers, *(\d+)/(\d+) seqs\)"
)
_kv_report: list[dict | None] = [None]
_interrupted = [False]  # set by the unraisable hook when Ctrl-C hit inside the log callback
_callback: list = [None]  # the installed ctypes callback: it must outlive the C side's use of it


def install_log_filter(verbose: bool) -> None:
    """Silence llama.cpp's stderr chatter unless --verbose; its errors always get through.

    A CUDA error (out of memory, illegal access) is logged at ERROR level just before ggml aborts the
    process: swallowing it would leave the user a bare backtrace with no cause.
    """
    import llama_cpp

    last = [_LOG_INFO]

    @llama_cpp.llama_log_callback
    def _cb(level, text, user_data):
        level = last[0] if level == _LOG_CONT else level  # CONT continues the previous message
        last[0] = level
        if b"llama_kv_cache: size" in text:
            _kv_report[0] = parse_kv_line(text)
        if verbose or level == _LOG_ERROR:
            os.write(2, text)

    _callback[0] = _cb  # keep a reference: ctypes callbacks must outlive the C side
    llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
    # A KeyboardInterrupt raised while Python runs this callback is "ignored" by ctypes (reported to
    # sys.unraisablehook, not raised): keep it and raise it after the C call, or Ctrl-C would be lost.
    if not getattr(sys.unraisablehook, "_harness", False):
        prev = sys.unraisablehook

        def hook(u):
            if isinstance(u.exc_value, KeyboardInterrupt):
                _interrupted[0] = True
            else:
                prev(u)

        hook._harness = True
        sys.unraisablehook = hook


def take_interrupt() -> bool:
    """Whether a Ctrl-C/SIGTERM landed inside the log callback since the last call (then cleared): the
    caller raises KeyboardInterrupt after its C call."""
    if _interrupted[0]:
        _interrupted[0] = False
        return True
    return False


def forget_kv_report() -> None:
    """Clear the last KV cache report, before a new context is created (its own report comes next)."""
    _kv_report[0] = None


def parse_kv_line(text: bytes) -> dict | None:
    """llama.cpp's KV cache log line as MiB, cells per stream, layers, n_seq_max and streams (None: another line)."""
    m = _KV_LINE.search(text)
    if not m:
        return None
    mib, cells, layers, seqs, streams = m.groups()
    return {
        "mib": mib.decode(),
        "cells_per_stream": int(cells),
        "layers": int(layers),
        "n_seq_max": int(seqs),
        "streams": int(streams),
    }


def check_kv_allocation(lc, ctx, planned: int) -> dict:
    """What llama.cpp allocated for a new context, checked against the cells planned (the figure the memory
    preflight judged, harness/backends/llamacpp/sizing.py): ``cells`` (llama_n_ctx) and llama.cpp's own KV
    report (its log line: cells per stream, streams, MiB). A difference means the preflight misjudged the
    memory: an error, never a silent larger cache."""
    cells = lc.llama_n_ctx(ctx)
    report = _kv_report[0]
    reported = report["cells_per_stream"] * report["streams"] if report else cells
    if cells != planned or reported != planned:
        lc.llama_free(ctx)
        raise HarnessError(
            f"llama.cpp allocated {max(cells, reported)} KV cells where {planned} were planned and checked for memory",
            "report this: the preflight's context sizing (harness/backends/llamacpp/sizing.py round_ctx) no longer "
            "matches this llama.cpp build.",
        )
    return {"cells": cells, "report": report}
