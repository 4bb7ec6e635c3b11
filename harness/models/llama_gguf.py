"""The header of a llama-architecture GGUF, for the files the harness writes itself: the Llama-3-shaped
benchmark models (harness/models/shaped.py) and the plan's probe slices (harness/models/probe_slice.py). One
writer for both, so their model keys come out in the same order and cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gguf


@dataclass(frozen=True)
class LlamaHeader:
    """The model keys of a ``llama`` GGUF (``llama.*`` and the name), in the order they are written."""

    name: str
    n_layer: int
    ctx_train: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    rope_dim: int
    rope_base: float
    rms_eps: float
    n_vocab: int
    file_type: int | None = None  # general.file_type, written after the name when given
    head_dim: int | None = None  # llama.attention.key_length and value_length, written when given


def llama_writer(path: Path, h: LlamaHeader) -> gguf.GGUFWriter:
    """A ``GGUFWriter`` for ``path`` with ``h`` added; the caller adds the vocabulary and the tensors."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(h.name)
    if h.file_type is not None:
        w.add_file_type(h.file_type)
    w.add_block_count(h.n_layer)
    w.add_context_length(h.ctx_train)
    w.add_embedding_length(h.n_embd)
    w.add_feed_forward_length(h.n_ff)
    w.add_head_count(h.n_head)
    w.add_head_count_kv(h.n_head_kv)
    if h.head_dim is not None:
        w.add_key_length(h.head_dim)
        w.add_value_length(h.head_dim)
    w.add_rope_dimension_count(h.rope_dim)
    w.add_rope_freq_base(h.rope_base)
    w.add_layer_norm_rms_eps(h.rms_eps)
    w.add_vocab_size(h.n_vocab)
    return w
