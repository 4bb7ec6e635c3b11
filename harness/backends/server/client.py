"""HTTP client for an OpenAI-compatible ``/v1/completions`` server (llama.cpp's llama-server, vLLM, ...).

What the harness needs from such a server, and nothing more: greedy completions with stop strings,
prompt log-probabilities where the server returns them (``echo`` + ``logprobs``: vLLM does,
llama-server ignores ``echo``), and what the server says about itself for the run record.

Transient faults (connection refused or reset, timeouts, 5xx, 429) are retried with exponential
backoff for up to ``retry_seconds``; then the run stops with a message, and the journal keeps every
finished request, so rerunning the same command resumes once the server is back.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
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
        raise HarnessError(f"--base-url {redact_url(base_url)!r} is not a valid URL ({exc})",
                           "give the server's address, e.g. http://127.0.0.1:8080/v1.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HarnessError(f"--base-url {redact_url(base_url)!r} is not an http(s) URL",
                           "give the server's address, e.g. http://127.0.0.1:8080/v1.")
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username or parts.password else None
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


@dataclass
class ServerInfo:
    """What the server says about itself (recorded; nothing secret)."""

    endpoint: str
    kind: str  # "llama-server", "vllm", "llama-cpp-python" or "openai-compatible"
    model_id: str
    version: str | None = None
    model_file: str | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    slots: int | None = None

    def as_record(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("chat_template",)}
        return out


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


@dataclass
class ServerClient:
    """Completions against one server; thread-safe (each thread keeps its own ``requests.Session``)."""

    base_url: str
    api_key: str | None = None
    model: str | None = None  # the served model id; asked from /v1/models when not given
    timeout: float = 600.0  # seconds for one request (a 256-token answer of a 405B model can take minutes)
    retry_seconds: float = 120.0  # how long transient faults are retried before the run stops
    retries: int = field(default=0, init=False)  # transient faults met (recorded)
    _logprobs: bool | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        url, self._params, auth = split_base_url(self.base_url)
        # user:password in the URL is HTTP basic auth, which would replace the bearer key: the key wins.
        self._auth = None if self.api_key else auth
        self.root, self.api = _api_root(url)
        self.endpoint = public_url(self.api)
        self._lock = threading.Lock()  # `retries` is counted from the worker threads
        self._local = threading.local()  # one requests.Session per worker thread (see _session)

    def __repr__(self) -> str:  # the dataclass repr would show the key and the raw URL
        return f"ServerClient({self.endpoint!r}, model={self.model!r})"

    def _count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _session(self) -> requests.Session:
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
                r = self._session().request(method, url, json=json, params=self._params or None, auth=self._auth,
                                            headers=self._headers(), timeout=(min(10.0, read_timeout), read_timeout))
            except requests.exceptions.Timeout:
                last = f"no answer within {time.monotonic() - t_attempt:.0f} s"
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                # urllib3 raises ProtocolError(IncompleteRead) for a body shorter than its Content-Length and
                # for a chunked stream that ends without its last chunk; requests wraps both like this.
                last = f"the answer was cut off mid-body ({_reason(exc)}): the connection dropped"
            except requests.exceptions.ConnectionError as exc:
                last = f"connection failed ({_reason(exc)})"
            except requests.exceptions.RequestException as exc:  # invalid URL parts, too many redirects...
                raise HarnessError(f"request to {public_url(url)} failed: {type(exc).__name__}",
                                   "check --base-url.") from None
            else:
                if r.status_code < 400:
                    try:
                        data = r.json()
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        raise HarnessError(f"{public_url(url)} answered with something that is not a JSON object",
                                           "check that --base-url points at an OpenAI-compatible API.") from None
                    return data
                if optional and r.status_code in (404, 405):
                    return None
                if r.status_code in (401, 403):
                    raise HarnessError(f"{public_url(url)} refused the request ({r.status_code}: {_detail(r)})",
                                       "pass the server's key through --api-key-env NAME (the variable holding it).")
                if r.status_code not in _TRANSIENT_STATUS:
                    raise HarnessError(f"{public_url(url)} rejected the request ({r.status_code}: {_detail(r)})",
                                       "check --base-url and that the server serves /v1/completions for this model.")
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
                beyond = (f"; the server asked to wait {asked_wait:.0f} s, past the retry window"
                          if asked_wait and now + delay < deadline else "")
                raise ServerUnavailable(
                    f"the server at {self.endpoint} kept failing for {now - started:.0f} s over {attempts} "
                    f"attempt(s): last, {last}{beyond} (retries go on for --retry-for {self.retry_seconds:.0f} s "
                    f"after the first fault; one attempt waits at most --request-timeout {self.timeout:.0f} s)",
                    "finished requests are kept; start (or fix) the server and rerun the same command to resume.",
                )
            time.sleep(wait_s)
            delay = min(delay * 2, 15.0)
            read_timeout = max(1.0, min(self.timeout, deadline - time.monotonic()))

    # ------------------------------------------------------------------ what the server is
    def info(self) -> ServerInfo:
        """Model id, kind, version and model file, from /v1/models and the servers' own endpoints."""
        models = self.request("GET", f"{self.api}/models") or {}
        listed = models.get("data") if isinstance(models.get("data"), list) else []
        listed = [m for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]
        ids = [m["id"] for m in listed]
        if self.model is None:
            if not ids:
                raise HarnessError(f"{self.endpoint}/models lists no model", "pass --server-model with the served model's id.")
            self.model = ids[0]
        elif ids and self.model not in ids:
            raise HarnessError(f"the server at {self.endpoint} does not serve {self.model!r}",
                               f"it serves: {', '.join(ids)}; pass one of them as --server-model.")
        info = ServerInfo(endpoint=self.endpoint, kind="openai-compatible", model_id=self.model)
        props = self.request("GET", f"{self.root}/props", optional=True)
        if props and "default_generation_settings" in props:  # llama.cpp's llama-server
            info.kind = "llama-server"
            info.version = _text(props.get("build_info"))
            info.model_file = os.path.basename(_text(props.get("model_path")) or "") or None
            info.chat_template = _text(props.get("chat_template"))
            info.bos_token = _text(props.get("bos_token"))
            info.eos_token = _text(props.get("eos_token"))
            slots = props.get("total_slots")
            info.slots = slots if isinstance(slots, int) and not isinstance(slots, bool) else None
            return info
        version = self.request("GET", f"{self.root}/version", optional=True)
        if version and "version" in version:  # vLLM
            info.kind = "vllm"
            info.version = str(version["version"])[:100]
        elif self._extras_tokenize("a") is not None:  # llama-cpp-python's server (python -m llama_cpp.server)
            info.kind = "llama-cpp-python"
            if self.model.endswith(".gguf"):  # it serves the model under its path unless given an alias
                info.model_file = os.path.basename(self.model)
        for m in listed:
            root = _text(m.get("root"))
            if m["id"] == self.model and root and root != self.model:
                info.model_file = root
        return info

    def _extras_tokenize(self, text: str) -> list | None:
        """llama-cpp-python's ``POST /extras/tokenize`` (the tokens its completions see: ``Llama.tokenize``
        with ``special=True`` and the model's own BOS rule); None where the server has no such endpoint."""
        try:
            got = self.request("POST", f"{self.root}/extras/tokenize", json={"input": text, "model": self.model},
                               optional=True)
        except HarnessError:  # another server's answer to an unknown path (400, 422...): not this kind
            return None
        tokens = got.get("tokens") if isinstance(got, dict) else None
        return tokens if isinstance(tokens, list) else None

    def adds_bos(self, kind: str, bos_text: str = "") -> bool | None:
        """Whether the server puts BOS before a text prompt itself (its /tokenize); None: unknown.

        llama-cpp-python's /extras/tokenize has no switch for special tokens, so it is asked to tokenize the
        BOS text itself followed by "a": ``[BOS, BOS, a]`` means it adds one (the double BOS of issue #26),
        ``[BOS, a]`` that it does not."""
        if kind == "llama-cpp-python":
            tokens = self._extras_tokenize(bos_text + "a") if bos_text else None
            return None if not tokens else len(tokens) >= 2 and tokens[0] == tokens[1]
        if kind == "llama-server":
            with_, without = ({"content": "a", "add_special": flag} for flag in (True, False))
        elif kind == "vllm":
            with_, without = ({"model": self.model, "prompt": "a", "add_special_tokens": flag} for flag in (True, False))
        else:
            return None
        try:
            got = self.request("POST", f"{self.root}/tokenize", json=with_, optional=True)
            plain = self.request("POST", f"{self.root}/tokenize", json=without, optional=True)
        except HarnessError:  # a /tokenize of another shape: leave the prompt as it is
            return None
        if not got or not plain or "tokens" not in got or "tokens" not in plain:
            return None
        return len(got["tokens"]) > len(plain["tokens"])

    # ------------------------------------------------------------------ completions
    def complete(self, prompt: str, max_tokens: int, stop: list[str]) -> Completion:
        """Greedy completion of a text prompt (temperature 0), cut at the first stop string."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0,
                "n": 1, "seed": 0}
        if stop:
            body["stop"] = list(stop)
        data = self.request("POST", f"{self.api}/completions", json=body)
        choice = _first_choice(data, self.endpoint)
        usage = data.get("usage") or {}
        if not isinstance(usage, dict):
            raise MalformedAnswer(self.endpoint, "`usage` is not an object")
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise MalformedAnswer(self.endpoint, "`text` is not a string")
        finish = choice.get("finish_reason")
        return Completion(text, _int_field(usage, "prompt_tokens", self.endpoint),
                          _int_field(usage, "completion_tokens", self.endpoint),
                          finish if isinstance(finish, str) else None)

    def prompt_logprobs(self, prompt: str, request: str | None = None
                        ) -> tuple[list[str], list[object], list[int], list[dict | None]]:
        """Tokens, log-probs, character offsets and top-1 alternatives of the prompt itself (``echo``).

        Raises when the server does not echo the prompt with its log-probs (llama-server ignores ``echo``):
        scoring it anyway would put every answer at chance. ``request`` names the request being scored
        (task and data row): a malformed answer to it is then one message naming that request and the
        field. The log-prob values are returned as the server sent them; :func:`logprob_problem` judges
        the ones a caller scores (the first token of a prompt has none, legitimately).
        """
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": 1}
        data = self.request("POST", f"{self.api}/completions", json=body)
        lp = _first_choice(data, self.endpoint).get("logprobs") or {}
        if not isinstance(lp, dict):
            if request:
                raise BadLogprobs(self.endpoint, request, "logprobs", "is not an object")
            raise NoPromptLogprobs(self.endpoint)
        toks, vals, offs = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
        top = lp.get("top_logprobs") or [None] * len(toks or [])
        # An echoing server returns the legacy format with the prompt's tokens first (offset 0); llama-server
        # answers in its own format for the generated token only.
        problem = _legacy_problem(toks, vals, offs, top)
        if problem is None and (offs[0] != 0 or sum(o < len(prompt) for o in offs) < 2):
            problem = ("logprobs.text_offset", "does not cover the prompt (no echo)")
        if problem:
            if request:
                raise BadLogprobs(self.endpoint, request, *problem)
            raise NoPromptLogprobs(self.endpoint)
        return list(toks), list(vals), list(offs), list(top)

    def supports_prompt_logprobs(self) -> bool:
        """Probe (once per client): does ``echo`` return the prompt's own tokens with log-probs?"""
        if self._logprobs is None:
            try:
                toks, _, offs, _ = self.prompt_logprobs("The capital of France is Paris")
                self._logprobs = len(toks) >= 3 and max(offs) >= len("The capital of France is")
            except NoPromptLogprobs:
                self._logprobs = False
        return self._logprobs


class NoPromptLogprobs(HarnessError):
    """The server cannot score a prompt: log-likelihood tasks must not run through it."""

    def __init__(self, endpoint: str):
        super().__init__(
            f"the server at {endpoint} does not return prompt log-probabilities (`echo` with `logprobs`; "
            "llama.cpp's llama-server ignores `echo`), so log-likelihood tasks cannot be scored through it",
            "run log-likelihood tasks (mmlu_loglik, mmlu_cloze, base-model mmlu) in-process or through vLLM; "
            "the generative tasks (gsm8k, instruct mmlu, mmlu_cot) run through any server.",
        )


def _first_choice(data: dict, endpoint: str) -> dict:
    """The first completion of an answer, checked for shape (a malformed answer is a message, not a crash)."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        raise HarnessError(f"{endpoint}/completions answered without a completion",
                           "check the server's log; it may have run out of context or memory.")
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise MalformedAnswer(endpoint, "`choices` is not a list of objects")
    return choices[0]


class MalformedAnswer(HarnessError):
    """The server answered 200 with JSON that is not an OpenAI completion."""

    def __init__(self, endpoint: str, what: str):
        super().__init__(f"{endpoint}/completions answered with a malformed completion: {what}",
                         "check that --base-url points at an OpenAI-compatible /v1/completions API.")


def _int_field(obj: dict, key: str, endpoint: str) -> int:
    v = obj.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise MalformedAnswer(endpoint, f"`usage.{key}` is {v!r}, not a token count")
    return int(v)


def _text(v: object) -> str | None:
    """A server-reported string field, or None when absent or of another type."""
    return v if isinstance(v, str) and v else None


def _legacy_problem(toks: object, vals: object, offs: object, top: object) -> tuple[str, str] | None:
    """Which field of an ``echo`` answer breaks the legacy completions shape (equal-length lists of token
    strings, log-probs, integer character offsets, and top alternatives: object or null), and how; None
    when it has that shape. The log-prob *values* are judged by :func:`logprob_problem` where scored."""
    fields = {"tokens": toks, "token_logprobs": vals, "text_offset": offs, "top_logprobs": top}
    for name, v in fields.items():
        if not isinstance(v, list):
            return f"logprobs.{name}", "is missing" if v is None else "is not a list"
    n = len(toks)
    if n == 0:
        return "logprobs.tokens", "is empty"
    for name, v in fields.items():
        if len(v) != n:
            return f"logprobs.{name}", f"has {len(v)} entries for {n} tokens (not one per token)"
    if not all(isinstance(t, str) for t in toks):
        return "logprobs.tokens", "holds something other than token strings"
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in offs):
        return "logprobs.text_offset", "holds something other than integer offsets"
    if not all(t is None or (isinstance(t, dict) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                         for x in t.values())) for t in top):
        return "logprobs.top_logprobs", "holds something other than token -> log-prob objects"
    return None


def logprob_problem(v: object) -> str | None:
    """Why one token's log-prob cannot be scored, or None when it can: a log-probability is a finite
    number <= 0. Anything else (null, NaN, an infinity, a positive number, a string) must stop the
    request, never be read as 0.0: a null read as 0.0 made every choice of a question tie (25%)."""
    if v is None:
        return "is null"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"is {_show(v)}, not a number"
    if not math.isfinite(v):
        return f"is {v!r}, not a finite number"
    if v > 0:
        return f"is {v!r}, above 0 (a log-probability is at most 0)"
    return None


class BadLogprobs(HarnessError):
    """A log-likelihood answer that cannot be scored: named by its request (task, data row) and field."""

    def __init__(self, endpoint: str, request: str, field_name: str, problem: str):
        super().__init__(
            f"{endpoint}/completions answered {request} with unusable log-probs: `{field_name}` {problem}",
            "nothing of this request was scored; check the server (its version, its model), then rerun the "
            "same command to resume.",
        )


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


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
    for key in ("Connection refused", "Connection reset", "Name or service not known", "Remote end closed",
                "IncompleteRead", "InvalidChunkLength", "Response ended prematurely"):
        if key in text:
            return key.lower()
    return type(exc).__name__
