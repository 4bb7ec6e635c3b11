"""What an OpenAI-compatible server answers, checked where it enters: a completion, or a prompt's own tokens and
log-probs (``echo``). A malformed answer is one message naming the field (and, for a scored request, its data
row), never a crash or a score read from a wrong value. The calls themselves: harness.backends.server.client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass
class Completion:
    """One greedy completion: its text, the token counts the server reports, why it stopped."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


def completion_of(data: dict, endpoint: str) -> Completion:
    """The completion in a ``/completions`` answer, its fields checked."""
    choice = _first_choice(data, endpoint)
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise MalformedAnswer(endpoint, "`usage` is not an object")
    text = choice.get("text") or ""
    if not isinstance(text, str):
        raise MalformedAnswer(endpoint, "`text` is not a string")
    finish = choice.get("finish_reason")
    return Completion(
        text,
        _int_field(usage, "prompt_tokens", endpoint),
        _int_field(usage, "completion_tokens", endpoint),
        finish if isinstance(finish, str) else None,
    )


def prompt_logprobs_of(
    data: dict, endpoint: str, prompt: str, request: str | None
) -> tuple[list[str], list[object], list[int], list[dict | None]]:
    """Tokens, log-probs, character offsets and top-1 alternatives of ``prompt`` in an ``echo`` answer.

    :class:`NoPromptLogprobs` when the answer does not echo the prompt with its log-probs; with ``request``
    (the request being scored), :class:`BadLogprobs` naming that request and the field instead."""
    lp = _first_choice(data, endpoint).get("logprobs") or {}
    if not isinstance(lp, dict):
        if request:
            raise BadLogprobs(endpoint, request, "logprobs", "is not an object")
        raise NoPromptLogprobs(endpoint)
    toks, vals, offs = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
    top = lp.get("top_logprobs") or [None] * len(toks or [])
    # An echoing server returns the legacy format with the prompt's tokens first (offset 0); llama-server
    # answers in its own format for the generated token only.
    problem = _legacy_problem(toks, vals, offs, top)
    if problem is None and (offs[0] != 0 or sum(o < len(prompt) for o in offs) < 2):
        problem = ("logprobs.text_offset", "does not cover the prompt (no echo)")
    if problem:
        if request:
            raise BadLogprobs(endpoint, request, *problem)
        raise NoPromptLogprobs(endpoint)
    return list(toks), list(vals), list(offs), list(top)


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
        raise HarnessError(
            f"{endpoint}/completions answered without a completion",
            "check the server's log; it may have run out of context or memory.",
        )
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise MalformedAnswer(endpoint, "`choices` is not a list of objects")
    return choices[0]


class MalformedAnswer(HarnessError):
    """The server answered 200 with JSON that is not an OpenAI completion."""

    def __init__(self, endpoint: str, what: str):
        super().__init__(
            f"{endpoint}/completions answered with a malformed completion: {what}",
            "check that --base-url points at an OpenAI-compatible /v1/completions API.",
        )


def _int_field(obj: dict, key: str, endpoint: str) -> int:
    v = obj.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise MalformedAnswer(endpoint, f"`usage.{key}` is {v!r}, not a token count")
    return int(v)


def text_field(v: object) -> str | None:
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
    if not all(
        t is None
        or (
            isinstance(t, dict)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in t.values())
        )
        for t in top
    ):
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
