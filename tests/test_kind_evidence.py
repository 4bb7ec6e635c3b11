"""Issue #26 item 7 (c, d): base or instruct from a GGUF's tokenizer facts when the template's end of turn is not
the declared end of sequence, and one chat-template hash on every route. No llama.cpp needed: the facts are
what harness.models.chat_format reads from a GGUF header."""

from __future__ import annotations

import hashlib

import pytest

from harness.errors import HarnessError
from harness.models.chat_format import LLAMA_CPP_EOG_TEXTS, kind_from_facts, template_sha256

TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|reserved_special_token_5|>", "hello"]
TYPES = [3, 3, 3, 3, 1]


def llama3_facts(end_of_turn: str, eos: str = "<|end_of_text|>") -> dict:
    template = (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}" + end_of_turn + "{% endfor %}"
    )
    return {
        "tokenizer.chat_template": template,
        "tokenizer.ggml.tokens": TOKENS,
        "tokenizer.ggml.token_type": TYPES,
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": TOKENS.index(eos),
    }


def test_an_end_of_turn_llama_cpp_stops_at_is_instruct_with_a_note():
    kind, evidence = kind_from_facts(llama3_facts("<|eot_id|>"), "early-llama3-instruct.gguf")
    assert kind == "instruct" and "llama.cpp ends generation at" in evidence and "note:" in evidence


def test_the_declared_eos_ending_turns_is_instruct_as_before():
    kind, evidence = kind_from_facts(llama3_facts("<|eot_id|>", eos="<|eot_id|>"), "m.gguf")
    assert kind == "instruct" and evidence.endswith("the model's end-of-sequence token")


def test_conflicting_evidence_asks_for_kind_instead_of_deciding_base():
    with pytest.raises(HarnessError) as err:
        kind_from_facts(llama3_facts("<|reserved_special_token_5|>"), "odd.gguf")
    assert "cannot tell whether odd.gguf is a base or an instruct model" in err.value.message
    assert "--kind instruct" in err.value.hint and "--kind base" in err.value.hint


def test_no_template_is_base():
    facts = llama3_facts("<|eot_id|>")
    del facts["tokenizer.chat_template"]
    assert kind_from_facts(facts, "base.gguf")[0] == "base"


def test_the_eog_list_holds_the_turn_ends_of_the_families_in_the_catalogue():
    assert {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>"} <= LLAMA_CPP_EOG_TEXTS


def test_one_template_hash_whatever_the_route_did_to_trailing_whitespace():
    """llama-server's /props returns the template right-stripped; the GGUF holds it with its final newline."""
    in_gguf = "{% for m in messages %}{{ m['content'] }}<|eot_id|>{% endfor %}\n"
    from_server = in_gguf.rstrip()
    assert template_sha256(in_gguf) == template_sha256(from_server)
    assert (
        hashlib.sha256(in_gguf.encode()).hexdigest()[:16]
        != hashlib.sha256(from_server.encode()).hexdigest()[:16]
    )
    assert (
        template_sha256("plain") == hashlib.sha256(b"plain").hexdigest()[:16]
    )  # unchanged without trailing space
    assert template_sha256(None) is None
