"""Start real llama.cpp servers for tests on 127.0.0.1: llama-server (built from the llama.cpp sources of the
pinned llama-cpp-python sdist, scripts/build_llama_server.sh) and `harness rpc-worker` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ROOT = Path(__file__).resolve().parent.parent


def build_llama_server() -> Path:
    """llama-server from the same llama.cpp commit as the engine, compiled for this CPU and cached in
    ~/.cache/llama-bench-harness/llama-server/ (scripts/build_llama_server.sh: 43 minutes on 2 cores shared with other jobs the first time, then
    immediate). Never a prebuilt binary: one compiled for another CPU dies with SIGILL (issue #29). Progress
    goes to this process's stderr; a failed build raises with the script's message."""
    res = subprocess.run(
        [str(ROOT / "scripts" / "build_llama_server.sh")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"building llama-server failed (exit {res.returncode}); see the message above")
    return ROOT / lines[-1]


@contextmanager
def llama_server(binary: Path, model: Path, slots: int = 1, threads: int = 2):
    """The llama-server ``binary`` (the ``llama_server_bin`` fixture) on a free loopback port; yields its /v1 URL."""
    port = free_port()
    env = dict(
        os.environ, LD_LIBRARY_PATH=str(binary.parent)
    )  # its own ggml/llama libraries, built beside it
    proc = subprocess.Popen(
        [
            str(binary),
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-np",
            str(slots),
            "-t",
            str(threads),
            "-c",
            str(4096 * slots),
            "-fa",
            "off",
            # as the in-process engine: no repacked / AMX weight buffers (EngineSettings.cpu_repack)
            "--no-repack",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {proc.stderr.read().decode()[-1000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("llama-server did not become healthy in 120 s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(30)


# llama-cpp-python's own server, with llama.cpp's CPU "extra" buffers off as in the in-process engine and the
# llama-server above (EngineSettings.cpu_repack): its server has no flag for them, and on an AMX CPU llama.cpp
# 0.3.36 crashes in them (a general protection fault in libggml-cpu on the first decode, seen here).
_LLAMA_CPP_SERVER = """
import runpy, sys
import llama_cpp.llama_cpp as lc
_default = lc.llama_model_default_params
def _params():
    p = _default()
    p.use_extra_bufts = False
    return p
lc.llama_model_default_params = _params
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


@contextmanager
def llama_cpp_server(model: Path, threads: int = 2):
    """``python -m llama_cpp.server`` (llama-cpp-python's [server] extra) on a free loopback port; yields its /v1 URL."""
    import tempfile

    port = free_port()
    log = tempfile.TemporaryFile()  # uvicorn logs every request: a pipe nobody reads would fill and block it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LLAMA_CPP_SERVER,
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            str(threads),
            "--n_ctx",
            "4096",
            "--verbose",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {log.read().decode()[-1000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("llama_cpp.server did not answer in 120 s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@contextmanager
def rpc_workers(n: int, threads: int = 1):
    """n `harness rpc-worker` processes on free loopback ports; yields "host:port,..."."""
    ports = [free_port() for _ in range(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "rpc-worker", "--port", str(p), "--threads", str(threads)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        for p in ports:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"rpc-worker on port {p} did not start") from None
                    time.sleep(0.3)
        yield ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
