"""Where the Hugging Face Hub is, where its cache is, whether it may be asked, and whether it can be reached:
the last decided in about a second, before huggingface-hub's retries.

Locations and switches are huggingface-hub's own (``huggingface_hub.constants``), never re-derived here, so
the harness looks where huggingface-hub writes (``HF_HUB_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``, ``~``).

Without a network (and no data mirror) huggingface-hub retries each request five times with back-off: 28 s
and ten lines of "Retrying in 8s" before the harness could say anything. Here one TCP connection to the
endpoint (``HF_ENDPOINT``, as huggingface-hub reads it) answers the question first; ``HF_HUB_OFFLINE`` is
huggingface-hub's own offline switch (https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables).
A proxy in the environment is trusted rather than probed (a direct connection may be blocked where the
proxy is not).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

PROBE_SECONDS = 3.0


def endpoint() -> str:
    """The Hub's URL as huggingface-hub uses it (``HF_ENDPOINT``, default https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def cache_dir() -> Path:
    """The folder huggingface-hub downloads into (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
    ``$XDG_CACHE_HOME``/huggingface/hub, else ~/.cache/huggingface/hub), as it resolved it when imported."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def home() -> Path:
    """huggingface-hub's own folder (``HF_HOME``, else ``$XDG_CACHE_HOME``/huggingface, else
    ~/.cache/huggingface), as it resolved it when imported."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


def offline() -> bool:
    """huggingface-hub's offline mode (``HF_HUB_OFFLINE``, or the older ``TRANSFORMERS_OFFLINE``): only its
    cache is used. huggingface-hub reads the variable once, when imported; it is read again here, with
    huggingface-hub's own rule (``constants.ENV_VARS_TRUE_VALUES``), so that setting it later in the process
    (a test's monkeypatch) counts too."""
    from huggingface_hub import constants

    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or raw.upper() in constants.ENV_VARS_TRUE_VALUES


@functools.lru_cache(maxsize=4)
def _probe(host: str, port: int, timeout: float) -> str | None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    return None


def unreachable(timeout: float = PROBE_SECONDS) -> str | None:
    """Why the Hub cannot be reached (e.g. "connection refused"), or None when it can (or a proxy decides)."""
    if any(
        os.environ.get(v)
        for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    ):
        return None
    url = urlsplit(endpoint())
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return f"HF_ENDPOINT {endpoint()!r} has no valid port"
    if not url.hostname:
        return f"HF_ENDPOINT {endpoint()!r} names no host"
    return _probe(url.hostname, port, timeout)


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """huggingface-hub's retry notices ("Retrying in 8s [Retry 4/5]") left out while the block runs: the
    harness says what failed, once."""
    log = logging.getLogger("huggingface_hub")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
