"""The parent's handle on one engine process (harness/backends/llamacpp/worker.py): started as a fresh
interpreter with a pipe each way, its stderr passed on (the tail kept, to quote when it dies), its end read
as a person reads it. harness/backends/llamacpp/engine_proc.py runs one or more of them."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

TAIL_LINES = 3  # lines of the engine's stderr quoted when it dies


def death_cause(returncode: int | None) -> str:
    """An exit status as a person reads it: "signal 9 (SIGKILL)", "exit code 1"."""
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        try:
            return f"signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class EngineChild:
    """One engine process: its pipes, its last reported counters, the tail of what it wrote to stderr."""

    def __init__(self, index: int, verbose: bool):
        p_in, c_out = os.pipe()  # child -> parent
        c_in, p_out = os.pipe()  # parent -> child
        cmd = [
            sys.executable,
            "-m",
            "harness.backends.llamacpp.worker",
            str(c_in),
            str(c_out),
            str(os.getpid()),
        ]
        self.proc = subprocess.Popen(
            cmd,
            pass_fds=(c_in, c_out),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(c_in)
        os.close(c_out)
        self.index = index
        self.recv_conn = Connection(p_in, writable=False)
        self.send_conn = Connection(p_out, readable=False)
        self.stats: dict = {}
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.busy = False
        self._reader = threading.Thread(target=self._read_stderr, args=(verbose,), daemon=True)
        self._reader.start()

    def _read_stderr(self, verbose: bool) -> None:
        """Keep the last lines llama.cpp wrote (quoted if the process dies) and pass them on to our stderr,
        as when the engine ran in this process (its errors always show; the rest with --verbose)."""
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self.tail.append(line)
            try:
                os.write(2, raw)
            except OSError:
                pass

    def died(self) -> str:
        """The process's end, after its pipe closed: "signal 9 (SIGKILL)"..."""
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(timeout=2)
        return death_cause(rc)

    def stop(self) -> None:
        """Ask it to close (idle) or kill it (busy); never raises."""
        try:
            if not self.busy and self.proc.poll() is None:
                self.send_conn.send(("close",))
                self.proc.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for c in (self.recv_conn, self.send_conn):
            c.close()
        if self.proc.stdout:
            self.proc.stdout.close()
