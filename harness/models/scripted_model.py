"""Scripted Llama 3 GGUFs: the real Llama 3 tokenizer and chat template, weights whose greedy output is known.

Why: every end-to-end score of the harness came from SmolLM2 (49k vocabulary, ChatML, no BOS). Llama 3 differs
exactly where evaluations go wrong without an error: a 128,256-token BPE vocabulary, ``add_bos_token`` together
with a template that itself writes ``<|begin_of_text|>`` (double BOS), header tokens, an end of turn
(``<|eot_id|>``, 128009) that is not the base vocabulary's end of sequence (128001), and a date in the system
header. A scripted model runs that path through the real llama.cpp with answers known in advance.

Construction (architecture ``llama``, one block, ``n_embd`` = 32, F32 norms, F16 matrices):

* Attention (q, k, v, output) and feed-forward (gate, up, down) weights are all zero, so each block adds
  nothing to the residual stream: the final hidden state at any position is the embedding of the token at
  that position, whatever came before it.
* Token embeddings are one-hot over *states*: every token of :data:`SCRIPT` (``"The"`` ``" final"``
  ``" answer"`` ``" is"`` ``" "`` ``<N>`` ``"."``) and the MMLU ``":"`` has its own dimension; every other
  token of the vocabulary shares dimension 0. After the final RMS norm (weight 1) a one-hot row becomes
  ``sqrt(n_embd)`` in its dimension.
* Output rows: ``output[next, state] = MARGIN / sqrt(n_embd)``, all else 0. So the logit of the scripted next
  token is ``MARGIN`` (20) and every other logit is 0: greedy decoding follows the script, and log-likelihoods
  are known in closed form (``MARGIN - log(e^MARGIN + n_vocab - 1)`` for the scripted token).

The script (instruct): any token outside the script (a chat prompt ends with the ``"\\n\\n"`` after
``<|start_header_id|>assistant<|end_header_id|>``) -> ``"The"`` -> ``" final"`` -> ``" answer"`` -> ``" is"``
-> ``" "`` -> ``<N>`` -> ``"."`` -> ``<|eot_id|>``. Every GSM8K chat response is therefore exactly
``"The final answer is <N>."`` (Meta's format) and generation ends after 8 tokens (the end token is not part of
the text). Base: ``" The"`` ``" answer"`` ``" is"`` ``" "`` ``<N>`` ``"."`` ``<|end_of_text|>`` (Wei et al.'s
"The answer is N." after ``"A:"``). Optionally ``":"`` (the last token of MMLU's ``"Answer:"``) ->
``" <letter>"``: the log-likelihood MMLU path then picks that letter for every question.

Vocabulary and templates are llama.cpp's own test files (``models/ggml-vocab-llama-bpe.gguf``, Meta's
templates under ``models/templates/``; https://github.com/ggml-org/llama.cpp/tree/master/models), read
from the llama-cpp-python sdist at test time, never committed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

MARGIN = 20.0  # logit of the scripted next token; all other logits are 0
N_EMBD = 32
N_FF = 32
N_HEAD, N_HEAD_KV = 4, 1  # grouped-query attention like Llama 3 (head_dim 8); all zero anyway
# Then the answer, ".", the end token. Instruct: Meta's GSM8K chat format ("The final answer is N", lm-eval
# gsm8k_cot_llama); base: Wei et al.'s plain format after "A:" ("The answer is N.", lm-eval gsm8k_cot).
SCRIPT = ("The", " final", " answer", " is", " ")
BASE_SCRIPT = (" The", " answer", " is", " ")
MMLU_TRIGGER = ":"  # last token of MMLU's "...Answer:"
BOS, EOT, EOS_BASE = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
# Meta's vocabulary metadata the scripted files copy from the vocab GGUF (the rest is written here).
_VOCAB_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
)


@dataclass(frozen=True)
class Scripted:
    """What a scripted model will do, in tokens and text (for the tests that check it)."""

    path: Path
    kind: str  # base | instruct
    answer: str  # <N>
    letter: str | None  # MMLU letter of the log-likelihood path (None: no ":" rule)
    script_ids: tuple[int, ...]  # generated tokens, end token included
    end_id: int
    bos_id: int
    template: str | None

    @property
    def response(self) -> str:
        """The text of every generation (the end token renders as nothing)."""
        return "".join(SCRIPT if self.kind == "instruct" else BASE_SCRIPT) + self.answer + "."


@dataclass
class Vocab:
    """The Llama 3 tokenizer fields of a vocab-only GGUF, read once and reused for every scripted file."""

    fields: dict  # key -> (value, gguf value type, sub type)
    tokens: list[str]

    def id(self, text: str) -> int:
        """Token id of a token text; GPT-2 byte-level vocab spells a space "Ġ" and a newline "Ċ"."""
        key = text.replace(" ", "\u0120").replace("\n", "\u010a")
        try:
            return self._index[key]
        except KeyError:
            raise HarnessError(
                f"the vocabulary has no single token {text!r}", "use another scripted answer."
            ) from None

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tokens)}


def read_vocab(vocab_gguf: Path) -> Vocab:
    """Read llama.cpp's ``ggml-vocab-llama-bpe.gguf`` (tokenizer only, no weights) with the gguf package."""
    from gguf import GGUFReader

    reader = GGUFReader(str(vocab_gguf))
    fields = {}
    for key in _VOCAB_KEYS:
        fld = reader.fields.get(key)
        if fld is None:
            raise HarnessError(
                f"{Path(vocab_gguf).name} has no {key}", "use llama.cpp's ggml-vocab-llama-bpe.gguf."
            )
        fields[key] = (fld.contents(), fld.types[0], fld.types[1] if len(fld.types) > 1 else None)
    if fields["tokenizer.ggml.pre"][0] != "llama-bpe" or len(fields["tokenizer.ggml.tokens"][0]) != 128256:
        raise HarnessError(
            f"{Path(vocab_gguf).name} is not the Llama 3 vocabulary (pre-tokenizer llama-bpe, "
            "128,256 tokens)",
            "use llama.cpp's models/ggml-vocab-llama-bpe.gguf.",
        )
    return Vocab(fields, list(fields["tokenizer.ggml.tokens"][0]))


def build_scripted_model(
    vocab: Vocab,
    out: Path,
    template: str | None,
    answer: str = "18",
    letter: str | None = "B",
    name: str = "scripted-llama3",
    drop_tokens: tuple[str, ...] = (),
    end: str | None = None,
) -> Scripted:
    """Write a scripted Llama 3 GGUF (module docstring): instruct when ``template`` is given, else base.

    Instruct: ``eos`` = ``<|eot_id|>``, ``add_bos_token`` = true, ``tokenizer.chat_template`` = ``template``.
    Base: ``eos`` = ``<|end_of_text|>``, ``add_bos_token`` = true, no template (Meta's base Llama 3 setup).
    ``letter`` None: no ``":"`` rule (a base GSM8K prompt ends with ``"A:"``, which must start the script).
    ``drop_tokens`` renames those vocabulary entries (a broken-vocabulary fixture: e.g. no ``<|eot_id|>``).
    ``end`` overrides the end token (and EOS): e.g. a template over a base vocabulary ending with <|end_of_text|>.
    """
    import gguf

    instruct = template is not None
    states = [vocab.id(t) for t in (*(SCRIPT if instruct else BASE_SCRIPT), answer, ".")]
    end_id = vocab.id(end or (EOT if instruct else EOS_BASE))
    colon = vocab.id(MMLU_TRIGGER)
    if len(set(states)) != len(states) or colon in states:
        raise HarnessError(f"the scripted answer {answer!r} repeats a script token", "pick another number.")
    n_vocab = len(vocab.tokens)
    emb = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    emb[:, 0] = 1.0  # state 0: every token outside the script
    nxt = [*states, end_id]  # state 0 -> "The"; script[k] -> script[k + 1]; "." -> end
    rows = [(0, nxt[0])]
    for k, tok in enumerate(states):
        emb[tok] = 0.0
        emb[tok, k + 1] = 1.0
        rows.append((k + 1, nxt[k + 1]))
    if letter is not None:
        trig = len(states) + 1
        emb[colon] = 0.0
        emb[colon, trig] = 1.0
        rows.append((trig, vocab.id(" " + letter)))
    w_out = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    for state, target in rows:
        w_out[target, state] = MARGIN / math.sqrt(N_EMBD)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_block_count(1)
    w.add_context_length(8192)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    for key, (value, vtype, sub) in vocab.fields.items():
        if key == "tokenizer.ggml.tokens" and drop_tokens:
            value = [f"<|dropped_{i}|>" if t in drop_tokens else t for i, t in enumerate(value)]
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.add_bos_token_id(vocab.id(BOS))
    w.add_eos_token_id(end_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if instruct:
        w.add_chat_template(template)
    hd = N_EMBD // N_HEAD
    f16 = np.float16
    w.add_tensor("token_embd.weight", emb.astype(f16))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", w_out.astype(f16))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((N_HEAD * hd, N_EMBD), dtype=f16))
    w.add_tensor("blk.0.attn_k.weight", np.zeros((N_HEAD_KV * hd, N_EMBD), dtype=f16))
    w.add_tensor("blk.0.attn_v.weight", np.zeros((N_HEAD_KV * hd, N_EMBD), dtype=f16))
    w.add_tensor("blk.0.attn_output.weight", np.zeros((N_EMBD, N_HEAD * hd), dtype=f16))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", np.zeros((N_FF, N_EMBD), dtype=f16))
    w.add_tensor("blk.0.ffn_up.weight", np.zeros((N_FF, N_EMBD), dtype=f16))
    w.add_tensor("blk.0.ffn_down.weight", np.zeros((N_EMBD, N_FF), dtype=f16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)  # no half-written model under the final name
    return Scripted(
        out, "instruct" if instruct else "base", answer, letter, tuple(nxt), end_id, vocab.id(BOS), template
    )
