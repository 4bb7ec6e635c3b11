"""A GGUF's tokenizer alone (no weights): token counts of text, for checks that need no model loaded.

The server route uses it to see whether a server of unknown kind adds BOS itself (harness/backends/server/
lm_model.py): the server's ``usage.prompt_tokens`` for a prompt against this count of the same text.
llama.cpp's own vocabulary-only load (``vocab_only``: the header and tokenizer tables, milliseconds), so the
count is the one the in-process engine would see.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError


class LocalVocab:
    """The tokenizer of one local GGUF file."""

    def __init__(self, path: Path):
        import llama_cpp

        self.path = Path(path)
        try:
            self._llama = llama_cpp.Llama(model_path=str(self.path), vocab_only=True, verbose=False)
        except (ValueError, OSError) as exc:
            raise HarnessError(
                f"cannot read the tokenizer of {self.path.name}: {exc}",
                "check that it is a complete GGUF file (download it again).",
            ) from exc

    def count(self, text: str) -> int:
        """Tokens of ``text`` as written: special-token text (a template's BOS) parsed, no BOS added."""
        return len(self._llama.tokenize(text.encode(), add_bos=False, special=True))
