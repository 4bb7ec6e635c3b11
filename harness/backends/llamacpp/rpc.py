"""llama.cpp RPC: ``rpc-server`` workers on other machines hold part of a model's layers.

The harness process stays the llama.cpp client (same engine, batching and records); ggml's RPC backend
ships tensors and graphs to the workers. Needs a llama-cpp-python built with ``-DGGML_RPC=on``
(``make setup-rpc``). Workers must speak the client's RPC protocol version, so the simplest worker
is this same install: ``harness rpc-worker --host 0.0.0.0 --port 50052`` (ggml's own RPC server,
started through the library's ``ggml_backend_rpc_start_server``).

The RPC device API is reached through ggml's C functions with ctypes; llama-cpp-python binds llama.h
only. Security: an RPC worker executes whatever graph a client sends; expose it on trusted networks only.
"""

from __future__ import annotations

import ctypes
import re
import socket
import subprocess
import sys
import threading

from harness.backends.llamacpp.devices import CPU_DEVICE, ggml_lib
from harness.errors import HarnessError

_registered: dict[str, list[dict]] = {}  # endpoint -> its devices: ggml keeps them for the process' life
_in_child = False  # set in the handshake probe's child process


def rpc_supported() -> bool:
    """Whether this llama-cpp-python build has ggml's RPC backend."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_rpc())


def require_rpc() -> None:
    if not rpc_supported():
        raise HarnessError(
            "this llama-cpp-python build has no RPC backend (it was compiled without -DGGML_RPC=on)",
            "rebuild it with `make setup-rpc` (~10 min on 2 cores); see the README, 'Bigger than one machine'.",
        )


def parse_endpoints(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``host:port,host:port`` -> endpoints, checked for form (a typo fails here, not in C)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", item)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise HarnessError(
                f"RPC worker {item!r} is not host:port",
                "write workers as --rpc 10.0.0.2:50052,10.0.0.3:50052.",
            )
        out.append(item)
    if not out:  # `--rpc ','` or `--rpc ''`: asked for workers and named none; running locally would hide it
        raise HarnessError(
            f"--rpc {spec!r} names no worker" if isinstance(spec, str) else "--rpc names no worker",
            "write workers as --rpc 10.0.0.2:50052,10.0.0.3:50052, or leave --rpc out to run here.",
        )
    return tuple(out)


def _reachable(endpoint: str, timeout: float = 5.0) -> None:
    host, port = endpoint.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise HarnessError(
            f"RPC worker {endpoint} is not reachable ({exc.strerror or exc})",
            f"start it on that machine: `harness rpc-worker --host 0.0.0.0 --port {port}`, and check the firewall.",
        ) from exc


def add_workers(endpoints: tuple[str, ...]) -> list[dict]:
    """Register RPC workers with ggml (llama.cpp then places layers on them); return their devices and memory."""
    require_rpc()
    import llama_cpp

    llama_cpp.llama_backend_init()
    lib = ggml_lib()
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    add = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(
        lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server")
    )
    out: list[dict] = []
    for ep in endpoints:
        if ep not in _registered:
            _reachable(ep)
            if not _in_child:
                _handshake_in_child(ep)
            wreg = add(ep.encode())
            if not wreg:
                raise HarnessError(
                    f"RPC worker {ep} accepted the connection but not the RPC handshake "
                    "(a different ggml RPC protocol version, or not an RPC worker)",
                    "run the worker from the same llama.cpp version as the client: `harness rpc-worker` from this install.",
                )
            lib.ggml_backend_register(wreg)
            devs = []
            for i in range(lib.ggml_backend_reg_dev_count(wreg)):
                dev = lib.ggml_backend_reg_dev_get(wreg, i)
                free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
                lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
                devs.append(
                    {
                        "endpoint": ep,
                        "device": lib.ggml_backend_dev_name(dev).decode(),
                        "free_bytes": free.value,
                        "total_bytes": total.value,
                    }
                )
            _registered[ep] = devs
        out += _registered[ep]
    return out


def _handshake_in_child(endpoint: str) -> None:
    """Try the RPC handshake in a child process first: ggml aborts the whole process (no error code) when a
    worker speaks another protocol version, and that must be a message, not a crash of the run."""
    code = f"import harness.backends.llamacpp.rpc as r; r._in_child = True; r.add_workers(({endpoint!r},))"
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(
            f"RPC worker {endpoint} did not complete the handshake in 120 s",
            "check that the port belongs to a `harness rpc-worker` / llama.cpp rpc-server.",
        ) from exc
    if res.returncode != 0:
        said = [ln for ln in res.stderr.splitlines() if "RPC" in ln or "rpc" in ln]
        raise HarnessError(
            f"RPC worker {endpoint} failed the handshake: {(said[0] if said else res.stderr.strip()[-300:])}",
            "run the worker from the same llama.cpp version as this client (RPC protocol "
            "versions must match): `harness rpc-worker` from this same install.",
        )


def serve_worker(host: str, port: int, threads: int, cache_dir: str | None = None) -> None:
    """Run ggml's RPC server on this machine's CPU until interrupted (blocks)."""
    require_rpc()
    import llama_cpp

    llama_cpp.llama_backend_init()
    lib = ggml_lib()
    cpu = lib.ggml_backend_dev_by_type(CPU_DEVICE)
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    start = ctypes.CFUNCTYPE(
        None,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    )(lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_start_server"))
    devices = (ctypes.c_void_p * 1)(cpu)
    endpoint = f"{host}:{port}".encode()
    cache = cache_dir.encode() if cache_dir else None
    # The C server loop never returns to Python; run it in a daemon thread so Ctrl-C/SIGTERM still end it.
    t = threading.Thread(target=start, args=(endpoint, cache, threads, 1, devices), daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.5)
    raise HarnessError(
        f"the RPC worker on {host}:{port} stopped", "is the port already in use? pick another --port."
    )
