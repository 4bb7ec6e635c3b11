"""One llama.cpp context of a loaded model, the only place the engine decodes: create it at a planned size,
decode a batch of (token, position, sequence, wants logits) entries, prefill a prefix, branch, drop and
clear sequences. It counts decode calls, decode time and prefilled tokens into the engine's stats.

Knows nothing about requests or their order (harness/backends/llamacpp/loglik.py and generation.py plan those).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.backends.llamacpp.log_hook import check_kv_allocation, forget_kv_report, take_interrupt
from harness.backends.llamacpp.settings import EngineSettings, EngineStats
from harness.backends.llamacpp.sizing import round_ctx
from harness.errors import HarnessError

Entry = tuple[int, int, int, bool]  # (token, position, sequence id, whether its logits are read)


class LlamaContext:
    """A loaded model's one context (recreated when a larger one is needed) and its decode batch.

    ``lc`` is the ``llama_cpp`` module, ``model`` the loaded llama_model. After :meth:`ensure`: ``ctx`` (the
    llama_context), ``mem`` (its memory), ``size`` (cells in all), ``n_seq`` (sequences), ``unified`` (one KV
    stream for all sequences, or one each) and ``kv_allocated`` (what llama.cpp reported allocating).
    """

    def __init__(
        self,
        lc,
        model,
        settings: EngineSettings,
        threads: int,
        stats: EngineStats,
        *,
        n_vocab: int,
        n_ctx_train: int,
        model_path: str,
    ):
        self.lc = lc
        self.model = model
        self.settings = settings
        self.threads = threads
        self.stats = stats
        self.n_vocab = n_vocab
        self.n_ctx_train = n_ctx_train
        self.model_path = model_path
        self.ctx = None
        self.mem = None
        self.batch = None
        self.size = 0
        self.n_seq = 0
        self.unified = True
        self.kv_allocated: dict | None = None  # the last context's KV cells, as llama.cpp reported them
        # Wall clock (time.time()) of the first llama_decode of evaluation work, outside the speed probe:
        # ``LlamaEngine.setup_seconds`` measures the start-up a user waits for (imports, model load, task
        # building, tokenizing, the probe) from it. LlamaBenchLM resets it per task.
        self.first_decode_unix: float | None = None
        self.probing = False  # the speed probe is decoding: not evaluation work

    def ensure(self, n_needed: int, n_seq: int, unified: bool = True) -> None:
        """(Re)create the context when it is smaller than needed; sizes are rounded so runs repeat.

        ``unified=False`` gives every sequence its own KV stream of ``n_needed`` cells (total n_ctx is
        n_seq times that): a sequence's cells then sit where a one-sequence run puts them.
        """
        lc = self.lc
        n_ctx = round_ctx(n_needed) * (1 if unified else n_seq)
        if self.ctx is not None and self.size == n_ctx and self.n_seq == n_seq and self.unified == unified:
            lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
            return
        self.close()
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = self.settings.n_batch
        cparams.n_ubatch = self.settings.n_batch
        cparams.n_seq_max = n_seq
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.kv_unified = unified
        cparams.flash_attn_type = (
            lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if self.settings.flash_attn
            else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        forget_kv_report()
        ctx = lc.llama_init_from_model(self.model, cparams)
        if not ctx:
            raise HarnessError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {Path(self.model_path).name}",
                "free memory, lower --parallel, or use a smaller quant.",
            )
        self.kv_allocated = check_kv_allocation(lc, ctx, n_ctx)
        self.ctx, self.size, self.n_seq, self.unified = ctx, n_ctx, n_seq, unified
        self.mem = lc.llama_get_memory(ctx)
        self.batch = lc.llama_batch_init(self.settings.n_batch, 0, 1)
        self.stats.n_ctx = max(self.stats.n_ctx, n_ctx)

    def close(self) -> None:
        """Free the context and its batch (the model stays loaded)."""
        if self.batch is not None:
            self.lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            self.lc.llama_free(self.ctx)
            self.ctx = None

    def decode(self, entries: list[Entry]) -> np.ndarray:
        """Decode (token, pos, seq, want_logits) entries as one batch; return the requested logit rows."""
        b = self.batch
        for i, (tok, pos, seq, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want
        b.n_tokens = len(entries)
        if self.first_decode_unix is None and not self.probing:
            self.first_decode_unix = time.time()
        t0 = time.perf_counter()
        rc = self.lc.llama_decode(self.ctx, b)
        self.stats.decode_seconds += time.perf_counter() - t0
        if take_interrupt():  # Ctrl-C/SIGTERM that landed inside the log callback (log_hook.py)
            raise KeyboardInterrupt
        self.stats.decode_calls += 1
        if rc != 0:
            raise HarnessError(
                f"llama_decode failed (code {rc}) with {len(entries)} tokens in a {self.size}-token context",
                "the KV cache is full: lower --parallel or report this as a bug with the run record.",
            )
        n_out = sum(1 for e in entries if e[3])
        if not n_out:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = self.lc.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab)).copy()

    def prefill(self, tokens: Sequence[int], seq: int, start: int = 0) -> None:
        """Decode a shared prefix into one sequence without asking for logits."""
        n = self.settings.n_batch
        for off in range(start, len(tokens), n):
            chunk = tokens[off : off + n]
            self.decode([(t, off + j, seq, False) for j, t in enumerate(chunk)])
            self.stats.prompt_tokens += len(chunk)

    def branch(self, seq: int, plen: int) -> None:
        """Sequence ``seq`` starts from the prefix in sequence 0 (its first ``plen`` cells): the cells are
        tagged, not copied, in one unified cache; with a stream per sequence sequence 0's whole stream (the
        prefix only) is copied."""
        self.copy(0, seq, *((0, plen) if self.unified else (-1, -1)))

    def copy(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """llama.cpp's ``llama_memory_seq_cp``: positions [p0, p1) of sequence ``src`` into ``dst`` (-1: all)."""
        self.lc.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def drop(self, seq: int) -> None:
        """Remove every cell of sequence ``seq``."""
        self.lc.llama_memory_seq_rm(self.mem, seq, -1, -1)

    def clear(self) -> None:
        """Empty the KV cache (every sequence)."""
        self.lc.llama_memory_clear(self.mem, True)

    def check_fits(self, longest: int, what: str) -> None:
        """Refuse a ``what`` of ``longest`` tokens beyond the context the model was trained for."""
        if longest > self.n_ctx_train:
            raise HarnessError(
                f"a {what} needs {longest} tokens but {Path(self.model_path).name} was trained "
                f"for a context of {self.n_ctx_train}",
                "use fewer few-shot examples (num_fewshot in tasks/tasks.yaml) or a model with a longer context.",
            )
