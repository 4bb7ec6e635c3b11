"""The OpenAI-compatible ``/v1/completions`` API as the harness uses it (llama.cpp's llama-server, vLLM, ...).

What the harness needs from such a server, and nothing more: greedy completions with stop strings,
prompt log-probabilities where the server returns them (``echo`` + ``logprobs``: vLLM does,
llama-server ignores ``echo``), and what the server says about itself for the run record.
The HTTP (connection pools, retries) is harness.backends.server.transport; the checks of each answer are
harness.backends.server.replies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from harness.backends.server.replies import (
    Completion,
    NoPromptLogprobs,
    completion_of,
    prompt_logprobs_of,
    text_field,
)
from harness.backends.server.transport import Transport
from harness.errors import HarnessError


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
class ServerClient:
    """Completions against one server; thread-safe (its transport keeps one ``requests.Session`` per thread)."""

    base_url: str
    api_key: str | None = None
    model: str | None = None  # the served model id; asked from /v1/models when not given
    timeout: float = 600.0  # seconds for one request (a 256-token answer of a 405B model can take minutes)
    retry_seconds: float = 120.0  # how long transient faults are retried before the run stops
    _logprobs: bool | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.http = Transport(self.base_url, self.api_key, self.timeout, self.retry_seconds)
        self.root, self.api, self.endpoint = self.http.root, self.http.api, self.http.endpoint

    def __repr__(self) -> str:  # the dataclass repr would show the key and the raw URL
        return f"ServerClient({self.endpoint!r}, model={self.model!r})"

    @property
    def retries(self) -> int:
        """Transient faults met so far (recorded)."""
        return self.http.retries

    # ------------------------------------------------------------------ what the server is
    def info(self) -> ServerInfo:
        """Model id, kind, version and model file, from /v1/models and the servers' own endpoints."""
        models = self.http.request("GET", f"{self.api}/models") or {}
        listed = models.get("data") if isinstance(models.get("data"), list) else []
        listed = [m for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]
        ids = [m["id"] for m in listed]
        if self.model is None:
            if not ids:
                raise HarnessError(
                    f"{self.endpoint}/models lists no model",
                    "pass --server-model with the served model's id.",
                )
            self.model = ids[0]
        elif ids and self.model not in ids:
            raise HarnessError(
                f"the server at {self.endpoint} does not serve {self.model!r}",
                f"it serves: {', '.join(ids)}; pass one of them as --server-model.",
            )
        info = ServerInfo(endpoint=self.endpoint, kind="openai-compatible", model_id=self.model)
        props = self.http.request("GET", f"{self.root}/props", optional=True)
        if props and "default_generation_settings" in props:  # llama.cpp's llama-server
            info.kind = "llama-server"
            info.version = text_field(props.get("build_info"))
            info.model_file = os.path.basename(text_field(props.get("model_path")) or "") or None
            info.chat_template = text_field(props.get("chat_template"))
            info.bos_token = text_field(props.get("bos_token"))
            info.eos_token = text_field(props.get("eos_token"))
            slots = props.get("total_slots")
            info.slots = slots if isinstance(slots, int) and not isinstance(slots, bool) else None
            return info
        version = self.http.request("GET", f"{self.root}/version", optional=True)
        if version and "version" in version:  # vLLM
            info.kind = "vllm"
            info.version = str(version["version"])[:100]
        elif self._extras_tokenize("a") is not None:  # llama-cpp-python's server (python -m llama_cpp.server)
            info.kind = "llama-cpp-python"
            if self.model.endswith(".gguf"):  # it serves the model under its path unless given an alias
                info.model_file = os.path.basename(self.model)
        for m in listed:
            root = text_field(m.get("root"))
            if m["id"] == self.model and root and root != self.model:
                info.model_file = root
        return info

    def _extras_tokenize(self, text: str) -> list | None:
        """llama-cpp-python's ``POST /extras/tokenize`` (the tokens its completions see: ``Llama.tokenize``
        with ``special=True`` and the model's own BOS rule); None where the server has no such endpoint."""
        try:
            got = self.http.request(
                "POST",
                f"{self.root}/extras/tokenize",
                json={"input": text, "model": self.model},
                optional=True,
            )
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
            with_, without = (
                {"model": self.model, "prompt": "a", "add_special_tokens": flag} for flag in (True, False)
            )
        else:
            return None
        try:
            got = self.http.request("POST", f"{self.root}/tokenize", json=with_, optional=True)
            plain = self.http.request("POST", f"{self.root}/tokenize", json=without, optional=True)
        except HarnessError:  # a /tokenize of another shape: leave the prompt as it is
            return None
        if not got or not plain or "tokens" not in got or "tokens" not in plain:
            return None
        return len(got["tokens"]) > len(plain["tokens"])

    # ------------------------------------------------------------------ completions
    def complete(self, prompt: str, max_tokens: int, stop: list[str]) -> Completion:
        """Greedy completion of a text prompt (temperature 0), cut at the first stop string."""
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "n": 1,
            "seed": 0,
        }
        if stop:
            body["stop"] = list(stop)
        return completion_of(self.http.request("POST", f"{self.api}/completions", json=body), self.endpoint)

    def prompt_logprobs(
        self, prompt: str, request: str | None = None
    ) -> tuple[list[str], list[object], list[int], list[dict | None]]:
        """Tokens, log-probs, character offsets and top-1 alternatives of the prompt itself (``echo``).

        Raises when the server does not echo the prompt with its log-probs (llama-server ignores ``echo``):
        scoring it anyway would put every answer at chance. ``request`` names the request being scored
        (task and data row): a malformed answer to it is then one message naming that request and the
        field. The log-prob values are returned as the server sent them; ``replies.logprob_problem`` judges
        the ones a caller scores (the first token of a prompt has none, legitimately).
        """
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
        }
        data = self.http.request("POST", f"{self.api}/completions", json=body)
        return prompt_logprobs_of(data, self.endpoint, prompt, request)

    def supports_prompt_logprobs(self) -> bool:
        """Probe (once per client): does ``echo`` return the prompt's own tokens with log-probs?"""
        if self._logprobs is None:
            try:
                toks, _, offs, _ = self.prompt_logprobs("The capital of France is Paris")
                self._logprobs = len(toks) >= 3 and max(offs) >= len("The capital of France is")
            except NoPromptLogprobs:
                self._logprobs = False
        return self._logprobs
