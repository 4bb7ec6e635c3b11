"""Redaction: the one place that decides what of a URL or a command line may be written or printed.

Everything the harness records (a run record's ``command``, a server endpoint), prints (messages,
warnings) or publishes (``results/README.md``, ``report.html``, CSV) passes through here, so a URL
password, a token in a query string or an ``--api-key``-like value never leaves the process.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Options whose value is a secret wherever they appear (`--api-key X` or `--api-key=X`). The harness itself
# takes keys only through --api-key-env NAME (a variable's name, not a secret), but a record may be
# written by a wrapper script or an older version, and publishing must never copy such a value.
_SECRET_OPTION = re.compile(r"^--?[A-Za-z0-9_-]*(key|token|secret|password|passwd|auth|credential)[A-Za-z0-9_-]*$",
                            re.IGNORECASE)
_NOT_SECRET = {"--api-key-env"}
# A URL anywhere in a string (an argument such as --base-url=URL, or a message).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str, mark: bool = True) -> str:
    """``url`` without user:password, query string or fragment (they may carry credentials). ``mark``: put
    ``***`` where something was removed (for a command line: the reader sees that there was one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparsable port or bracket: keep only the scheme
        return url.split("://", 1)[0] + "://" + MASK if "://" in url else MASK
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    if (parts.username or parts.password) and mark:
        netloc = f"{MASK}@{netloc}"
    query = MASK if parts.query and mark else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (for messages and free-form fields)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line safe to record: secret-looking option values masked, URLs redacted."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, value = arg.partition("=")
        if name.startswith("-") and _SECRET_OPTION.match(name) and name not in _NOT_SECRET:
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return out


def redact_command(command: str | None) -> str | None:
    """A recorded command line (one string) as it may be published: secrets redacted even in a record written
    by an older version or by hand."""
    if command is None:
        return None
    try:
        return shlex.join(redact_argv(shlex.split(command)))
    except ValueError:  # unbalanced quotes: redact what looks like a URL, mask the rest of the options' values
        return redact_text(command)
