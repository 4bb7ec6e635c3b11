"""A loaded model's vocabulary through llama.cpp: text to token ids and back, and its special tokens.

The one tokenizer of a run: the engine plans, decodes and detokenizes with it (in the engine process when
there is one: harness/backends/llamacpp/engine_proc.py asks it there).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence


class Tokenizer:
    """The vocabulary of one loaded llama_model (``lc``: the ``llama_cpp`` module)."""

    def __init__(self, lc, model):
        self.lc = lc
        self.vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self.bos_id = lc.llama_vocab_bos(self.vocab)
        self.eos_id = lc.llama_vocab_eos(self.vocab)
        self.eot_id = lc.llama_vocab_eot(self.vocab)
        self._piece_cache: dict[int, bytes] = {}

    def tokenize(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Tokenize; BOS is added when the model wants one and the text does not already start with it."""
        data = text.encode("utf-8")
        if add_bos is None:
            bos_text = self.token_text(self.bos_id) if self.bos_id >= 0 else ""
            add_bos = self.add_bos and not (bos_text and text.startswith(bos_text))
        n_max = len(data) + 8
        buf = (self.lc.llama_token * n_max)()
        # BOS is prepended here, not by llama.cpp's add_special, so the rule above is the only rule.
        n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, parse_special)
        if n < 0:
            n_max = -n
            buf = (self.lc.llama_token * n_max)()
            n = self.lc.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, parse_special)
        return ([self.bos_id] if add_bos and self.bos_id >= 0 else []) + list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """A token's bytes (``special``: special tokens as their text, else as nothing); cached."""
        key = token if not special else -1 - token
        got = self._piece_cache.get(key)
        if got is None:
            buf = ctypes.create_string_buffer(64)
            n = self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            got = buf.raw[:n]
            self._piece_cache[key] = got
        return got

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of generated tokens (special tokens such as end-of-turn render as nothing)."""
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        """A token's text, special tokens included (``<|eot_id|>``)."""
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (end of text, end of turn...)."""
        return bool(self.lc.llama_vocab_is_eog(self.vocab, token))

    def eog_ids(self) -> list[int]:
        """Every end-of-generation token of the vocabulary."""
        return [i for i in range(self.n_vocab) if self.is_eog(i)]
