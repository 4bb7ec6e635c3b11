"""HTTP client for an OpenAI-compatible ``/v1/completions`` server (llama.cpp's llama-server, vLLM, ...).

What the harness needs from such a server, and nothing more: greedy completions with stop strings,
prompt log-probabilities where the server returns them (``echo`` + ``logprobs``: vLLM does,
llama-server ignores ``echo``), and what the server says about itself for the run record.

Transient faults (connection refused or reset, timeouts, 5xx, 429) are retried with exponential
backoff for up to ``retry_seconds``; then the run stops with a message, and the journal keeps every
finished request, so rerunning the same command resumes once the server is back.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import requests

from harness.errors import HarnessError

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerUnavailable(HarnessError):
    """The server stayed unreachable (or kept failing) for the whole retry window."""


def public_url(url: str) -> str:
    """The endpoint as it may be written into a record: no user:password, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _api_root(base_url: str) -> tuple[str, str]:
    """(server root, OpenAI API root): ``http://h:8080`` and ``http://h:8080/v1`` from either form."""
    if not base_url.startswith(("http://", "https://")):
        raise HarnessError(f"--base-url {base_url!r} is not an http(s) URL",
                           "give the server's address, e.g. http://127.0.0.1:8080/v1.")
    url = base_url.rstrip("/")
    url = url.removesuffix("/chat/completions").removesuffix("/completions")
    if url.endswith("/v1"):
        return url[:-3], url
    return url, url + "/v1"


@dataclass
class ServerInfo:
    """What the server says about itself (recorded; nothing secret)."""

    endpoint: str
    kind: str  # "llama-server", "vllm" or "openai-compatible"
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
    """Completions against one server; thread-safe (one ``requests`` session per thread is not needed)."""

    base_url: str
    api_key: str | None = None
    model: str | None = None  # the served model id; asked from /v1/models when not given
    timeout: float = 600.0  # seconds for one request (a 256-token answer of a 405B model can take minutes)
    retry_seconds: float = 120.0  # how long transient faults are retried before the run stops
    retries: int = field(default=0, init=False)  # transient faults met (recorded)
    _logprobs: bool | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        url = self.base_url
        parts = urlsplit(url)
        if self.api_key and (parts.username or parts.password):
            # user:password in the URL is HTTP basic auth, which would replace the bearer key: the key wins.
            url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
        self.root, self.api = _api_root(url)
        self.endpoint = public_url(self.api)

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def request(self, method: str, url: str, json: dict | None = None, optional: bool = False) -> dict | None:
        """One call with retries on transient faults. ``optional``: 404/405 (endpoint absent) give None."""
        deadline = time.monotonic() + self.retry_seconds
        delay, last = 0.5, ""
        while True:
            try:
                r = requests.request(method, url, json=json, headers=self._headers(), timeout=(10, self.timeout))
            except requests.exceptions.Timeout:
                last = f"no answer within {self.timeout:.0f} s"
            except requests.exceptions.ConnectionError as exc:
                last = f"connection failed ({_reason(exc)})"
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise HarnessError(f"{public_url(url)} answered with something that is not JSON",
                                           "check that --base-url points at an OpenAI-compatible API.") from None
                if optional and r.status_code in (404, 405):
                    return None
                if r.status_code in (401, 403):
                    raise HarnessError(f"{public_url(url)} refused the request ({r.status_code}: {_detail(r)})",
                                       "pass the server's key through --api-key-env NAME (the variable holding it).")
                if r.status_code not in _TRANSIENT_STATUS:
                    raise HarnessError(f"{public_url(url)} rejected the request ({r.status_code}: {_detail(r)})",
                                       "check --base-url and that the server serves /v1/completions for this model.")
                last = f"HTTP {r.status_code} ({_detail(r)})"
            self.retries += 1
            if time.monotonic() + delay > deadline:
                raise ServerUnavailable(
                    f"the server at {self.endpoint} failed for {self.retry_seconds:.0f} s: {last}",
                    "finished requests are kept; start (or fix) the server and rerun the same command to resume.",
                )
            time.sleep(delay)
            delay = min(delay * 2, 15.0)

    # ------------------------------------------------------------------ what the server is
    def info(self) -> ServerInfo:
        """Model id, kind, version and model file, from /v1/models and the servers' own endpoints."""
        models = self.request("GET", f"{self.api}/models") or {}
        ids = [m.get("id") for m in models.get("data", []) if m.get("id")]
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
            info.version = props.get("build_info")
            info.model_file = os.path.basename(props.get("model_path") or "") or None
            info.chat_template = props.get("chat_template") or None
            info.bos_token = props.get("bos_token") or None
            info.eos_token = props.get("eos_token") or None
            info.slots = props.get("total_slots")
            return info
        version = self.request("GET", f"{self.root}/version", optional=True)
        if version and "version" in version:  # vLLM
            info.kind = "vllm"
            info.version = str(version["version"])
        for m in models.get("data", []):
            if m.get("id") == self.model and m.get("root") and m.get("root") != self.model:
                info.model_file = m["root"]
        return info

    def adds_bos(self, kind: str) -> bool | None:
        """Whether the server puts BOS before a text prompt itself (its /tokenize); None: unknown."""
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
        return Completion(choice.get("text") or "", int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0), choice.get("finish_reason"))

    def prompt_logprobs(self, prompt: str) -> tuple[list[str], list[float | None], list[int], list[dict | None]]:
        """Tokens, log-probs, character offsets and top-1 alternatives of the prompt itself (``echo``).

        Raises when the server does not echo the prompt with its log-probs (llama-server ignores ``echo``):
        scoring it anyway would put every answer at chance.
        """
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": 1}
        data = self.request("POST", f"{self.api}/completions", json=body)
        lp = _first_choice(data, self.endpoint).get("logprobs") or {}
        toks, vals, offs = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
        # An echoing server returns the legacy format with the prompt's tokens first (offset 0); llama-server
        # answers in its own format for the generated token only.
        if not toks or vals is None or not offs or offs[0] != 0 or sum(o < len(prompt) for o in offs) < 2:
            raise NoPromptLogprobs(self.endpoint)
        return list(toks), list(vals), list(offs), list(lp.get("top_logprobs") or [None] * len(toks))

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
    choices = (data or {}).get("choices") or []
    if not choices:
        raise HarnessError(f"{endpoint}/completions answered without a completion",
                           "check the server's log; it may have run out of context or memory.")
    return choices[0]


def _detail(r: requests.Response) -> str:
    try:
        err = r.json().get("error")
        msg = err.get("message") if isinstance(err, dict) else err
    except ValueError:
        msg = r.text
    return str(msg or r.reason or "").strip()[:200]


def _reason(exc: Exception) -> str:
    text = str(exc)
    for key in ("Connection refused", "Connection reset", "Name or service not known", "Remote end closed"):
        if key in text:
            return key.lower()
    return type(exc).__name__
