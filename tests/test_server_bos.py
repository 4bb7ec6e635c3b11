"""Issue #26 item 7 (a, b): one BOS per prompt through any server. A server of unknown kind is checked on its
first prompt (its usage.prompt_tokens against the local GGUF's count) before any result counts; llama-cpp-python's
own server (`python -m llama_cpp.server`) is a known kind whose /extras/tokenize says whether it adds BOS.

SmolLM2's template starts every prompt with <|im_start|>, its BOS token (a GGUF that does not add BOS itself):
stripping it where no server adds one would lose a token, keeping it where one does would double it."""

from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance
from openai_stub import StubServer

from harness.backends.llamacpp.vocab import LocalVocab
from harness.backends.server.client import ServerClient
from harness.backends.server.lm_model import ServerLM
from harness.errors import HarnessError

PROMPT = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"


def _gen(n: int = 2) -> list[Instance]:
    return [
        Instance(
            "generate_until",
            {},
            (PROMPT + f"Question {i}", {"until": ["STOP"], "max_gen_toks": 8}),
            i,
            metadata=("gsm8k_cot_llama", i, 1),
        )
        for i in range(n)
    ]


@pytest.fixture
def stub():
    s = StubServer()
    yield s
    s.close()


def test_a_server_that_does_not_add_bos_keeps_the_templates(stub, smollm2_path):
    stub.count_tokens = LocalVocab(smollm2_path).count
    lm = ServerLM(ServerClient(stub.url), local_gguf=smollm2_path, concurrency=1)
    assert lm.info.kind == "vllm" and lm._bos == "<|im_start|>"  # the stub has no /tokenize: unknown
    lm.generate_until(_gen())
    assert lm.strip_bos is False and lm.bos_check == f"usage.prompt_tokens against {smollm2_path.name}"
    assert all(p.startswith("<|im_start|>") for p in stub.prompts)


def test_a_server_that_adds_bos_gets_prompts_without_the_templates(stub, smollm2_path, capsys):
    """Before: the template's BOS was kept and the server added another (two BOS, silently)."""
    stub.count_tokens, stub.adds_bos = LocalVocab(smollm2_path).count, True
    lm = ServerLM(ServerClient(stub.url), local_gguf=smollm2_path, concurrency=1)
    reqs = _gen()
    lm.generate_until(reqs)
    assert lm.strip_bos is True
    probe, checked, *answered = stub.prompts
    assert probe == reqs[0].args[0] and checked == reqs[0].args[0].removeprefix("<|im_start|>")
    assert len(answered) == 2 and not any(p.startswith("<|im_start|>") for p in answered)
    assert "adds BOS itself" in capsys.readouterr().err


def test_counts_that_do_not_match_the_local_gguf_are_refused(stub, smollm2_path):
    # the stub's default counts words, not SmolLM2 tokens
    lm = ServerLM(ServerClient(stub.url), local_gguf=smollm2_path, concurrency=1)
    with pytest.raises(HarnessError, match="so whether it adds a second BOS cannot be told"):
        lm.generate_until(_gen())
    assert len(stub.prompts) == 1  # only the probe: no result was kept


def test_without_a_local_gguf_an_unknown_server_is_refused(stub):
    lm = ServerLM(ServerClient(stub.url), concurrency=1)
    lm._template, lm._bos, lm._bos_pending = "{{ messages }}", "<|im_start|>", True  # as read from a GGUF
    with pytest.raises(HarnessError, match="does not say whether it adds BOS itself"):
        lm.generate_until(_gen())
    assert stub.prompts == []


@pytest.mark.slow
def test_llama_cpp_python_server_is_a_known_kind_with_one_bos(smollm2_path):
    """The real `python -m llama_cpp.server` (the [server] extra of the pinned llama-cpp-python) on SmolLM2."""
    from backend_procs import llama_cpp_server

    vocab = LocalVocab(smollm2_path)
    with llama_cpp_server(smollm2_path) as url:
        client = ServerClient(url)
        lm = ServerLM(client, local_gguf=smollm2_path, concurrency=1)
        assert lm.info.kind == "llama-cpp-python" and lm.info.model_file == smollm2_path.name
        assert lm.strip_bos is False and lm.bos_check == "llama-cpp-python tokenizer endpoint"
        out = client.complete(lm._wire(PROMPT), 1, [])
    assert out.prompt_tokens == vocab.count(PROMPT)  # one BOS: the template's
