"""Redaction: the one place that decides what of a URL or a command line may be written or printed.

Two layers, one filter (:func:`redact_text`, :func:`redact_value`):

1. **By value.** At start-up (``harness.cli.main``) :func:`collect_secrets` gathers every secret the run
   knows: the user and the password of any URL on the command line, its query values, the value of the
   variable ``--api-key-env`` names (sent as an ``Authorization`` header), ``HF_TOKEN`` / the Hub token
   file (huggingface-hub's own ``get_token``). Each is masked wherever it appears, also in the forms it
   takes on the way out: percent-encoded (a URL), HTML-escaped (``report.html``; both ``html.escape``'s
   ``&#x27;`` and Jinja's ``&#39;`` spellings), JSON-escaped, CSV-quoted and Markdown-escaped.
2. **By shape.** URLs lose their user info, query and fragment; secret-looking options (``--api-key X``)
   lose their value: this covers a record written by an older version or another process, whose values
   this process cannot know.

Every sink applies the filter: the console (``cli.main`` wraps stdout and stderr; ``console.log`` is
written through the same wrapper), files (``harness.atomic``: records, journals, published files, the
lm-eval results file), the error report and exception messages. Values shorter than
:data:`MIN_SECRET` characters are not masked by value (masking "ab" everywhere would garble every
output); the shape layer still applies to them.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shlex
import threading
from collections.abc import Iterable, Sequence
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET = 4  # shorter values are not masked by value (see the module docstring)
_SECRETS: set[str] = set()  # every form of every secret value this process knows
_PATTERN: list[re.Pattern | None] = [None]  # one alternation of them, longest first (rebuilt on change)
_LOCK = threading.Lock()
# Options whose value is a secret wherever they appear (`--api-key X` or `--api-key=X`). The harness itself
# takes keys only through --api-key-env NAME (a variable's name, not a secret), but a record may be
# written by a wrapper script or an older version, and publishing must never copy such a value.
_SECRET_OPTION = re.compile(
    r"^--?[A-Za-z0-9_-]*(key|token|secret|password|passwd|auth|credential)[A-Za-z0-9_-]*$", re.IGNORECASE
)
_NOT_SECRET = {"--api-key-env"}
# A URL anywhere in a string (an argument such as --base-url=URL, or a message).
# The scheme is bounded (RFC 3986 schemes are short): an unbounded one made a 10 MB argument quadratic.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'\"<>]+")


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
    """``text`` with every known secret value masked, then every URL in it redacted (messages, free-form
    fields, published text)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), _mask_values(text))


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
    if len(command) > _SHLEX_MAX:  # shlex builds tokens a character at a time: quadratic on a 10 MB command
        return _redact_options_text(command)
    try:
        return shlex.join(redact_argv(shlex.split(command)))
    except (
        ValueError
    ):  # unbalanced quotes: redact what looks like a URL, mask the rest of the options' values
        return _redact_options_text(command)


_SHLEX_MAX = 100_000
_OPTION_VALUE = re.compile(
    r"(?<![\w-])(--?[A-Za-z0-9_-]{0,64}(?:key|token|secret|password|passwd|auth|credential)"
    r"[A-Za-z0-9_-]{0,64})(=|\s+)(\S+)",
    re.IGNORECASE,
)


def _redact_options_text(command: str) -> str:
    """A command line that cannot be split as a shell would (unbalanced quotes, or too long): URLs redacted and
    the value after a secret-looking option masked, by pattern, in linear time."""

    def mask(m: re.Match) -> str:
        return m.group(0) if m.group(1).lower() in _NOT_SECRET else f"{m.group(1)}{m.group(2)}{MASK}"

    return _OPTION_VALUE.sub(mask, redact_text(command))


# ------------------------------------------------------------------------------------ by value


def _forms(value: str) -> set[str]:
    """``value`` and the spellings it takes in what the harness writes: percent-encoded (URLs; both
    ``quote`` variants and ``+`` for spaces), HTML-escaped (``html.escape``: ``&#x27;``; Jinja/markupsafe:
    ``&#39;`` and ``&#34;``), JSON string content (ASCII-escaped or not), CSV (``"`` doubled) and Markdown
    tables (``|`` escaped)."""
    pct = quote(value, safe="")
    forms = {
        value,
        pct,
        quote(value),
        quote_plus(value),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), pct),
    }
    escaped = html.escape(value, quote=True)
    forms |= {
        escaped,
        escaped.replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        html.escape(value, quote=False),
    }
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms |= {value.replace('"', '""'), value.replace("|", "\\|")}
    return {f for f in forms if len(f) >= MIN_SECRET}


def add_secret(value: str | None) -> None:
    """Mask ``value`` (and its encoded forms) in everything this process writes or prints from now on."""
    if not value or len(value) < MIN_SECRET:
        return
    with _LOCK:
        new = _forms(value) - _SECRETS
        if new:
            _SECRETS.update(new)
            ordered = sorted(_SECRETS, key=len, reverse=True)  # a longer form first: no half-masked leftovers
            _PATTERN[0] = re.compile("|".join(re.escape(f) for f in ordered))


def clear_secrets() -> None:
    """Forget every registered value (tests; a library caller starting another run)."""
    with _LOCK:
        _SECRETS.clear()
        _PATTERN[0] = None


def add_url_secrets(url: str) -> None:
    """The user, the password and every query value of ``url``, as typed and percent-decoded."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        parts, user, password = None, None, None
    if parts is None:  # unparsable: at least the part between :// and @
        m = re.match(r"[^:]*://([^/?#]*)@", url)
        user, password = (m.group(1).partition(":")[::2]) if m else (None, None)
    for v in (user, password):
        if v:
            add_secret(v)
            add_secret(unquote(v))
    query = parts.query if parts is not None else url.partition("?")[2]
    fragment = parts.fragment if parts is not None else ""
    for q in (query, fragment):
        for _, v in parse_qsl(q, keep_blank_values=False):
            add_secret(v)
        for piece in re.split(r"[&;]", q):
            raw = piece.partition("=")[2]
            if raw:
                add_secret(raw)
                add_secret(unquote(raw))


def collect_secrets(argv: Sequence[str], environ: dict[str, str] | None = None) -> None:
    """Register every secret the run knows at start-up (see the module docstring): URLs on the command
    line, values of secret-looking options, the variable ``--api-key-env`` names, and the Hub token."""
    env = os.environ if environ is None else environ
    args = [str(a) for a in argv]
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        nxt = args[i + 1] if i + 1 < len(args) else None
        if name == "--api-key-env":
            var = value if eq else nxt
            if var:
                add_secret(env.get(var))
        elif name.startswith("-") and _SECRET_OPTION.match(name) and name not in _NOT_SECRET:
            add_secret(value if eq else nxt)
        for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://\S+", arg):
            add_url_secrets(m.group(0))
    add_secret(env.get("HF_TOKEN"))
    try:  # huggingface-hub's own rules (HF_TOKEN, HF_TOKEN_PATH, the token file under HF_HOME)
        from huggingface_hub import get_token

        add_secret(get_token())
    except Exception:  # noqa: BLE001 - an unreadable token file is the Hub client's problem, not ours
        pass


def _mask_values(text: str) -> str:
    pattern = _PATTERN[0]
    return pattern.sub(MASK, text) if pattern is not None else text


def redact_value(obj: Any) -> Any:
    """A JSON-like value with every secret value masked in its strings (keys included); the shape layer is
    not applied (records keep their URLs' hosts and paths as the code put them)."""
    if _PATTERN[0] is None:
        return obj
    if isinstance(obj, str):
        return _mask_values(obj)
    if isinstance(obj, dict):
        return {redact_value(k): redact_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_value(v) for v in obj]
    return obj


def redact_known(text: str) -> str:
    """``text`` with every registered secret value masked (the by-value layer alone: files whose
    URLs the code already redacted by shape)."""
    return _mask_values(text)


class RedactingStream(io.TextIOBase):
    """A text stream that masks secrets (both layers) in everything written through it: stdout, stderr and
    ``console.log`` are wrapped in it, so click's messages, warnings and every ``print`` are filtered.

    Click accepts it as a text stream (it has ``encoding`` and ``errors`` and refuses bytes), so click does
    not reach past it to the binary buffer."""

    def __init__(self, inner: TextIO, lenient: bool = False):
        self.inner = inner
        self.lenient = lenient  # a log file: a write the disk refuses is dropped, not raised into the caller

    def write(self, s: str) -> int:  # type: ignore[override]
        if not isinstance(s, str):
            raise TypeError("a text stream")
        try:
            self.inner.write(redact_text(s))
        except OSError:
            if not self.lenient:
                raise
        return len(s)

    def flush(self) -> None:
        try:
            self.inner.flush()
        except OSError:
            if not self.lenient:
                raise

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.inner, "errors", None)

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self.inner.closed


def wrap_streams(names: Iterable[str] = ("stdout", "stderr")) -> None:
    """Route ``sys.stdout`` / ``sys.stderr`` through :class:`RedactingStream` (once)."""
    import sys

    for name in names:
        cur = getattr(sys, name)
        if cur is not None and not isinstance(cur, RedactingStream):
            setattr(sys, name, RedactingStream(cur))
