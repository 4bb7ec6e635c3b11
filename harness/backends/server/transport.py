"""HTTP to an OpenAI-compatible server: the ``--base-url`` taken apart, one connection pool per worker thread,
and each call retried on transient faults.

Transient faults (connection refused or reset, timeouts, 5xx, 429) are retried with exponential
backoff for up to ``retry_seconds``; then the run stops with a message, and the journal keeps every
finished request, so rerunning the same command resumes once the server is back. What the answers mean is
harness.backends.server.client (the API calls) and harness.backends.server.replies (their checks).
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import requests

from harness.errors import HarnessError
from harness.redact import redact_text, redact_url

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerUnavailable(HarnessError):
    """The server stayed unreachable (or kept failing) for the whole retry window."""


def public_url(url: str) -> str:
    """The endpoint as it may be written into a record or printed: no credentials, query or fragment."""
    return redact_url(url, mark=False).rstrip("/")


def split_base_url(base_url: str) -> tuple[str, dict[str, str], tuple[str, str] | None]:
    """``--base-url`` as (plain URL, query parameters, basic-auth pair).

    A query string (``?api-version=…&token=…``) is sent with every request as parameters rather than
    glued in front of ``/completions``; ``user:password@`` becomes HTTP basic auth. Neither is ever
    recorded or printed (only :func:`public_url` is).
    """
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise HarnessError(
            f"--base-url {redact_url(base_url)!r} is not a valid URL ({exc})",
            "give the server's address, e.g. http://127.0.0.1:8080/v1.",
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HarnessError(
            f"--base-url {redact_url(base_url)!r} is not an http(s) URL",
            "give the server's address, e.g. http://127.0.0.1:8080/v1.",
        )
    auth = (
        (unquote(parts.username or ""), unquote(parts.password or ""))
        if parts.username or parts.password
        else None
    )
    netloc = parts.netloc.rsplit("@", 1)[-1]
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")), params, auth


def _api_root(url: str) -> tuple[str, str]:
    """(server root, OpenAI API root): ``http://h:8080`` and ``http://h:8080/v1`` from either form."""
    url = url.rstrip("/")
    url = url.removesuffix("/chat/completions").removesuffix("/completions")
    if url.endswith("/v1"):
        return url[:-3], url
    return url, url + "/v1"


class Transport:
    """Calls to one server with retries; thread-safe (each thread keeps its own ``requests.Session``).

    ``root`` and ``api`` are the server's root and its OpenAI API root (``http://h:8080``,
    ``http://h:8080/v1``); ``endpoint`` is the API root as it may be recorded (no credentials); ``retries``
    counts the transient faults met (recorded)."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, retry_seconds: float):
        url, self.params, auth = split_base_url(base_url)
        self.api_key = api_key
        # user:password in the URL is HTTP basic auth, which would replace the bearer key: the key wins.
        self.auth = None if api_key else auth
        self.root, self.api = _api_root(url)
        self.endpoint = public_url(self.api)
        self.timeout = timeout  # seconds for one attempt (--request-timeout)
        self.retry_seconds = retry_seconds  # how long transient faults are retried (--retry-for)
        self.retries = 0
        self._lock = threading.Lock()  # `retries` is counted from the worker threads
        self._local = threading.local()  # one requests.Session per worker thread (see session)

    def __repr__(self) -> str:  # never the key or the raw URL
        return f"Transport({self.endpoint!r})"

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def session(self) -> requests.Session:
        """This worker thread's own connection pool (#27): ``requests.request`` opened a new connection,
        and a new TCP handshake, for every request; a ``Session`` is not documented as thread-safe, so
        each thread of the request pool keeps one (https://github.com/psf/requests/issues/2766)."""
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def request(self, method: str, url: str, json: dict | None = None, optional: bool = False) -> dict | None:
        """One call with retries on transient faults. ``optional``: 404/405 (endpoint absent) give None.

        Transient: no connection, a reset, no answer in time, an answer cut off mid-body (a truncated
        ``Content-Length`` body or chunked stream: the server or a proxy dropped the connection), and the
        statuses in ``_TRANSIENT_STATUS``. A ``Retry-After`` the server sends with 429/503 is honoured
        (RFC 9110 §10.2.3): the next attempt waits at least that long, and when that is past the retry
        window the run stops at once, saying so.

        Bounds: one attempt waits at most ``timeout`` seconds (--request-timeout); once an attempt has
        failed, retries go on for at most ``retry_seconds`` more (--retry-for), each attempt's wait cut
        to what is left of that window, so a server that accepts connections and never answers stops
        the run after about ``timeout + retry_seconds`` seconds. The final message states the real
        times: how long was spent in all, and how long the last attempt waited.
        """
        started = time.monotonic()
        deadline: float | None = None
        delay, last, attempts = 0.5, "", 0
        read_timeout = self.timeout
        while True:
            attempts += 1
            asked_wait = 0.0  # the server's Retry-After, seconds
            t_attempt = time.monotonic()
            try:
                r = self.session().request(
                    method,
                    url,
                    json=json,
                    params=self.params or None,
                    auth=self.auth,
                    headers=self._headers(),
                    timeout=(min(10.0, read_timeout), read_timeout),
                )
            except requests.exceptions.Timeout:
                last = f"no answer within {time.monotonic() - t_attempt:.0f} s"
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ) as exc:
                # urllib3 raises ProtocolError(IncompleteRead) for a body shorter than its Content-Length and
                # for a chunked stream that ends without its last chunk; requests wraps both like this.
                last = f"the answer was cut off mid-body ({_reason(exc)}): the connection dropped"
            except requests.exceptions.ConnectionError as exc:
                last = f"connection failed ({_reason(exc)})"
            except requests.exceptions.RequestException as exc:  # invalid URL parts, too many redirects...
                raise HarnessError(
                    f"request to {public_url(url)} failed: {type(exc).__name__}", "check --base-url."
                ) from None
            else:
                if r.status_code < 400:
                    try:
                        data = r.json()
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        raise HarnessError(
                            f"{public_url(url)} answered with something that is not a JSON object",
                            "check that --base-url points at an OpenAI-compatible API.",
                        ) from None
                    return data
                if optional and r.status_code in (404, 405):
                    return None
                if r.status_code in (401, 403):
                    raise HarnessError(
                        f"{public_url(url)} refused the request ({r.status_code}: {_detail(r)})",
                        "pass the server's key through --api-key-env NAME (the variable holding it).",
                    )
                if r.status_code not in _TRANSIENT_STATUS:
                    raise HarnessError(
                        f"{public_url(url)} rejected the request ({r.status_code}: {_detail(r)})",
                        "check --base-url and that the server serves /v1/completions for this model.",
                    )
                last = f"HTTP {r.status_code} ({_detail(r)})"
                asked_wait = retry_after_seconds(r.headers.get("Retry-After"))
                if asked_wait:
                    last += f", Retry-After {asked_wait:.0f} s"
            self._count_retry()
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.retry_seconds
            wait_s = max(delay, asked_wait)
            if now + wait_s >= deadline:
                beyond = (
                    f"; the server asked to wait {asked_wait:.0f} s, past the retry window"
                    if asked_wait and now + delay < deadline
                    else ""
                )
                raise ServerUnavailable(
                    f"the server at {self.endpoint} kept failing for {now - started:.0f} s over {attempts} "
                    f"attempt(s): last, {last}{beyond} (retries go on for --retry-for {self.retry_seconds:.0f} s "
                    f"after the first fault; one attempt waits at most --request-timeout {self.timeout:.0f} s)",
                    "finished requests are kept; start (or fix) the server and rerun the same command to resume.",
                )
            time.sleep(wait_s)
            delay = min(delay * 2, 15.0)
            read_timeout = max(1.0, min(self.timeout, deadline - time.monotonic()))


def _detail(r: requests.Response) -> str:
    try:
        body = r.json()
        err = body.get("error") if isinstance(body, dict) else body
        msg = err.get("message") if isinstance(err, dict) else err
    except ValueError:
        msg = r.text
    return redact_text(str(msg or r.reason or "").strip())[:200]  # masked whole, then cut: no half secret


def retry_after_seconds(value: str | None) -> float:
    """A ``Retry-After`` header as seconds from now (RFC 9110 §10.2.3: delay-seconds or an HTTP date);
    0 when absent or unreadable. Capped at a day: a larger figure is a server fault, not a plan."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(min(int(value[:7]), 86400))
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    if when is None or when.tzinfo is None:
        return 0.0
    from datetime import UTC, datetime

    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), 86400.0))


def _reason(exc: Exception) -> str:
    text = str(exc)
    for key in (
        "Connection refused",
        "Connection reset",
        "Name or service not known",
        "Remote end closed",
        "IncompleteRead",
        "InvalidChunkLength",
        "Response ended prematurely",
    ):
        if key in text:
            return key.lower()
    return type(exc).__name__
