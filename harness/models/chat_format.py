"""Chat prompts from a GGUF's own template: rendering, the fixed date, end of turn, and base/instruct evidence.

Light on purpose (jinja2 and the standard library only): the catalogue uses it to tell base from instruct
without importing lm-eval or llama.cpp.

Rendering follows transformers' ``apply_chat_template`` (sandboxed Jinja, ``trim_blocks``/``lstrip_blocks``,
``raise_exception``; https://github.com/huggingface/transformers/blob/main/src/transformers/utils/chat_template_utils.py),
with two deliberate differences, both recorded in every run record:

* The date is fixed. Meta's Llama 3.1 template writes ``Today Date: 26 Jul 2024`` unless ``date_string`` is
  given; the 3.2 template calls ``strftime_now`` when it exists (transformers defines it: today's date), and
  so do some uploads of 3.3 (llama.cpp's copy of the 3.3 template is the 3.1 one). The harness passes ``date_string`` = :data:`DATE_STRING` and a ``strftime_now`` frozen at
  :data:`CHAT_DATE`, so a rerun on another day renders the same prompt, token for token.
* A variable the template prints but the harness does not provide is an error, not an empty string:
  a template needing something else (a system prompt variable, a tool list) must not silently render a
  different prompt than its authors meant.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from functools import lru_cache
from pathlib import Path

from harness.errors import HarnessError
from harness.models.gguf_header import HeaderError, read_file_header, read_header

# The Llama 3.1 template's own default date (its release day); the 3.2 template falls back to it too when no
# clock is given (https://huggingface.co/meta-llama/Llama-3.2-3B-Instruct/blob/main/tokenizer_config.json).
CHAT_DATE = date(2024, 7, 26)
DATE_STRING = "26 Jul 2024"  # CHAT_DATE as the Llama 3.x templates write it ("%d %b %Y")
PROVIDED = (
    "messages",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
    "date_string",
    "strftime_now",
    "raise_exception",
)

# A probe conversation: what follows the assistant's words is the template's end-of-turn marker.
_PROBE_REPLY = "Probe reply 7."
_PROBE = [
    {"role": "user", "content": "Probe question?"},
    {"role": "assistant", "content": _PROBE_REPLY},
    {"role": "user", "content": "Next?"},
]


def render_chat(
    template: str,
    messages: list[dict],
    add_generation_prompt: bool,
    bos: str,
    eos: str,
    model: str = "the model",
) -> str:
    """Render a chat template the way transformers does, with the fixed date (module docstring).

    With ``add_generation_prompt=False`` the last (assistant) message is continued, like transformers'
    ``continue_final_message`` (used by lm-eval for ``gen_prefix`` such as "The best answer is").
    A template that fails (``raise_exception``, a syntax error, a variable the harness does not provide)
    is one :class:`HarnessError` naming ``model`` and the template's problem; there is no fallback template.
    """
    from jinja2.exceptions import TemplateError

    try:
        text = _compiled(template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
            date_string=DATE_STRING,
            strftime_now=_strftime_frozen,
        )
    except TemplateError as exc:
        raise template_error(model, exc) from exc
    if not add_generation_prompt:
        final = messages[-1]["content"].strip()
        cut = text.rfind(final)
        if not final or cut < 0:
            raise HarnessError(
                f"the chat template of {model} does not reproduce the final assistant message verbatim, so the "
                "answer prefix cannot be continued",
                "run a task without gen_prefix, or fix the template.",
            )
        text = text[: cut + len(final)]
    return text


def template_error(model: str, exc: Exception) -> HarnessError:
    """The one message for a chat template that cannot render: which model, what the template said."""
    return HarnessError(
        f"the chat template of {model} failed: {type(exc).__name__}: {exc}",
        "the GGUF's tokenizer.chat_template is broken or needs a variable the harness does not provide "
        f"(it provides {', '.join(PROVIDED)}); fix the template in the GGUF, or run a base-format task "
        "(--kind base).",
    )


def _strftime_frozen(fmt: str) -> str:
    """transformers' ``strftime_now`` with the clock stopped at :data:`CHAT_DATE`."""
    return CHAT_DATE.strftime(fmt)


@lru_cache(maxsize=8)
def _compiled(template: str):
    """The chat template compiled once per run, not once per prompt (thousands of prompts per task)."""
    from jinja2 import Undefined
    from jinja2.exceptions import TemplateError, UndefinedError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class PrintStrictUndefined(Undefined):
        """Undefined that may be tested (``is defined``, ``if x``) but not printed: no silent empty text."""

        __slots__ = ()

        def __str__(self) -> str:
            raise UndefinedError(f"{self._undefined_name!r} is undefined (the template prints it)")

    def raise_exception(msg):
        raise TemplateError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=PrintStrictUndefined)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template)
    except TemplateError as exc:
        raise template_error("the model", exc) from exc


def turn_end_text(template: str, bos: str, eos: str, model: str = "the model") -> str:
    """The text the template writes right after an assistant message (its end-of-turn marker and beyond)."""
    text = render_chat(template, _PROBE, True, bos, eos, model)
    at = text.find(_PROBE_REPLY)
    if at < 0:
        raise HarnessError(
            f"the chat template of {model} does not write the assistant's message verbatim",
            "fix the template in the GGUF, or run a base-format task (--kind base).",
        )
    return text[at + len(_PROBE_REPLY) :]


def marker_of(text: str) -> str:
    """The leading special marker of ``text`` (``<|eot_id|>``, ``<|im_end|>``, ``</s>``), else its first word."""
    m = re.match(r"\s*(<[^<>\s]{1,40}>|\S+)", text)
    return m.group(1) if m else text[:16]


# ---------------------------------------------------------------------------------------------- GGUF header
_WANT = {
    "tokenizer.chat_template",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "general.architecture",
}


def gguf_tokenizer_facts(path: Path) -> dict:
    """The tokenizer metadata of a GGUF (template, BOS/EOS/EOT ids, token texts and types), read fast:
    only the header's key/values, decoding just the keys asked for (harness/models/gguf_header.py)."""
    try:
        return read_file_header(path, _WANT).values
    except HeaderError as exc:
        raise HarnessError(
            f"cannot read the tokenizer metadata of {Path(path).name}: "
            f"{exc.message.removeprefix(Path(path).name + ': ')}",
            "check that it is a complete GGUF file (download it again).",
        ) from exc


def remote_tokenizer_facts(fetch, name: str) -> dict:
    """:func:`gguf_tokenizer_facts` of a file not downloaded yet, through ``fetch(start, end)`` range reads
    of its first bytes (1 MiB, growing only for a larger header): no weights are fetched."""
    try:
        return read_header(fetch, _WANT).values
    except HeaderError as exc:
        raise HarnessError(
            f"cannot read the tokenizer metadata of {name}: {exc.message}",
            "the file on the Hub is not a complete GGUF file; pass --kind base|instruct "
            "to run it anyway, or pick another file.",
        ) from exc


# ---------------------------------------------------------------------------------------------- kind evidence
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp's llama_token_type values for special tokens

# Token texts llama.cpp ends generation at whatever the GGUF declares (its end-of-generation set): the list in
# llama_vocab::impl::load, src/llama-vocab.cpp of the llama.cpp that llama-cpp-python 0.3.36 vendors ("maintain
# a list of tokens that cause end-of-generation ... determined based on the token text"). A template that ends
# a turn with one of these stops where it should in llama.cpp even when the GGUF's eos is another token: early
# Llama 3 Instruct conversions declare eos <|end_of_text|> and end turns with <|eot_id|>.
LLAMA_CPP_EOG_TEXTS = frozenset(
    {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<|return|>",
        "<|call|>",
        "<|flush|>",
        "<|calls|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "[EOS]",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<eos>",
        "<turn|>",
        "<|tool_response>",
        "<\uff5cend\u2581of\u2581sentence\uff5c>",
        "[e~[",
    }
)


def template_sha256(template: str | None) -> str | None:
    """The chat template's hash as records give it (16 hex digits of sha256), of the template with trailing
    whitespace removed: llama-server's /props returns the template right-stripped, so hashing the text as
    each route reads it gave the same GGUF two hashes (issue #26). None without a template."""
    if not template:
        return None
    return hashlib.sha256(template.rstrip().encode()).hexdigest()[:16]


def kind_from_gguf(path: Path) -> tuple[str, str]:
    """Base or instruct from a GGUF's own metadata, with the evidence in words.

    Instruct: the GGUF has a chat template, and the token that template writes after an assistant message
    is the model's declared end-of-sequence (or end-of-turn) token, or one llama.cpp ends generation at
    whatever is declared (:data:`LLAMA_CPP_EOG_TEXTS`; the evidence then carries a note): it was set up to
    answer in turns and stop. Base: no template. A template whose end of turn is none of these is conflicting
    evidence: a :class:`HarnessError` asking for ``--kind``, never a guess of base.
    A template that cannot render, or whose end-of-turn marker is not a special token of the vocabulary at all,
    is a :class:`HarnessError`: the file is inconsistent, and no kind is read from it.
    """
    return kind_from_facts(gguf_tokenizer_facts(path), Path(path).name)


def kind_from_facts(facts: dict, name: str) -> tuple[str, str]:
    """:func:`kind_from_gguf` on tokenizer facts already read (from a file, or from the Hub's first bytes)."""
    template = facts.get("tokenizer.chat_template")
    if not template:
        return "base", "GGUF: no chat template (tokenizer.chat_template absent)"
    tokens = facts.get("tokenizer.ggml.tokens") or []
    types = facts.get("tokenizer.ggml.token_type") or []

    def text(key: str) -> str:
        i = facts.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

    bos, eos = text("tokenizer.ggml.bos_token_id"), text("tokenizer.ggml.eos_token_id")
    after = turn_end_text(template, bos, eos, name)
    special = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (_CONTROL, _USER_DEFINED)}
    stripped = after.lstrip()
    hit = max((t for t in special if t and stripped.startswith(t)), key=len, default=None)
    if hit is None:  # the template does not belong to this vocabulary: no kind can be read from it
        what = (
            f"ends an assistant turn with {marker_of(after)!r}, which is not a special token of its vocabulary "
            "(template and vocabulary do not match)"
            if stripped
            else "writes nothing after an assistant message (no end-of-turn token)"
        )
        raise HarnessError(
            f"the chat template of {name} {what}",
            "fix the GGUF's tokenizer.chat_template, or pass --kind base to run it without the template.",
        )
    declared = {
        facts.get("tokenizer.ggml.eos_token_id"): "end-of-sequence",
        facts.get("tokenizer.ggml.eot_token_id"): "end-of-turn",
    }
    role = declared.get(special[hit])
    if role:
        return "instruct", (
            f"GGUF: chat template present; it ends a turn with {hit} (id {special[hit]}), the "
            f"model's {role} token"
        )
    if hit in LLAMA_CPP_EOG_TEXTS:
        return "instruct", (
            f"GGUF: chat template present; it ends a turn with {hit} (id {special[hit]}), which "
            f"llama.cpp ends generation at, though the declared end of sequence is {eos or 'none'} "
            "(note: an early Llama 3 Instruct conversion looks like this; --kind base overrides)"
        )
    # A template says "chat model", its end of turn says nothing llama.cpp would stop at: the evidence conflicts,
    # and deciding either way could score the model in the wrong format (issue #26).
    raise HarnessError(
        f"cannot tell whether {name} is a base or an instruct model: it has a chat template, but the template "
        f"ends a turn with {hit}, which is neither its end-of-sequence token ({eos or 'none'}) nor a token "
        "llama.cpp ends generation at",
        "pass --kind instruct (the chat template) or --kind base (plain few-shot).",
    )
