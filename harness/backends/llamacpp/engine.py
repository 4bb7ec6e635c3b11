"""In-process llama.cpp engine on the low-level ``llama_cpp`` API: batched log-likelihoods and generation.

Why not the high-level ``Llama`` class: it runs one sequence and its log-prob path needs
``logits_all`` (n_ctx x n_vocab floats). Here one context holds several sequences in a unified
KV cache (``kv_unified``): a shared few-shot prefix is decoded once into sequence 0, every question
branches from it with ``llama_memory_seq_cp`` (cells are tagged, not copied) and several branches
share one decode batch. Only the logit rows that are scored are requested. Generation slots get a KV
stream each instead (the prefix stream is copied into them), see ``gen_streams``.

Determinism: llama.cpp's logits depend slightly on batch composition, so the batching scheme is
fixed (items sorted by tokens, greedy packing up to ``n_batch`` tokens, fixed slot order) and
recorded with the attention setting (settings.py ``SCHEME``). The same requests give bit-identical results.

:class:`LlamaEngine` is the facade the harness uses; each job has its own module, as karpathy/nanochat's
engine keeps ``KVCache``, ``RowState`` and ``Engine`` apart:

- settings.py: the recorded settings, counters and scheme name;
- tokenizer.py: the vocabulary (text <-> ids, special tokens);
- context.py: the llama.cpp context (decode, prefill, branch, drop), sized by sizing.py;
- prefix_plan.py: the pure prefix plan (branches, shared-prefix groups, generation order and units);
- loglik.py: log-likelihood scheduling (packs, scores); generation.py: generation slots (``SlotState``);
- speed_probe.py: the speed probe; log_hook.py: the hook on llama.cpp's log.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.backends.llamacpp.context import LlamaContext
from harness.backends.llamacpp.generation import Generator, Trace
from harness.backends.llamacpp.log_hook import install_log_filter
from harness.backends.llamacpp.loglik import LoglikScheduler, Result
from harness.backends.llamacpp.settings import EngineSettings, EngineStats
from harness.backends.llamacpp.speed_probe import speed_probe
from harness.backends.llamacpp.tokenizer import Tokenizer
from harness.errors import HarnessError


class LlamaEngine:
    """One llama.cpp model and context, evaluated in fixed, batched, prefix-sharing passes.

    Composed of a :class:`Tokenizer`, a :class:`LlamaContext` (``context``), a :class:`LoglikScheduler`
    (``loglik``) and a :class:`Generator` (``generation``); ``context_class`` and ``loglik_class`` let a
    subclass change one part (scripts/packing_exactness.py lays packed branches out otherwise).
    """

    context_class: type[LlamaContext] = LlamaContext
    loglik_class: type[LoglikScheduler] = LoglikScheduler

    def __init__(
        self,
        model_path: str | Path,
        settings: EngineSettings | None = None,
        verbose: bool = False,
        device: int | None = None,
    ):
        """``device``: the one GPU this engine's layers go to (``--engines N`` on N GPUs: engine i on GPU i,
        llama.cpp's ``split_mode`` none with ``main_gpu``); None: llama.cpp spreads them over every GPU."""
        import llama_cpp as lc  # heavy: imported only when a model is really loaded

        self.lc = lc
        self.settings = settings or EngineSettings()
        self.model_path = str(model_path)
        install_log_filter(verbose)
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        from harness.backends.llamacpp.devices import local_gpus
        from harness.backends.llamacpp.rpc import add_workers

        # Registered RPC workers are offload devices like GPUs: llama.cpp spreads the offloaded layers over
        # them in proportion to their free memory.
        self.rpc_devices = add_workers(self.settings.rpc_servers) if self.settings.rpc_servers else []
        self.gpus = local_gpus()
        can_offload = bool(self.rpc_devices or self.gpus)
        gpu_layers = self.settings.gpu_layers
        if gpu_layers < 0:
            gpu_layers = 10_000 if can_offload else 0
        mparams.n_gpu_layers = gpu_layers
        # No CPU "extra" buffer types (weight repacking, and AMX on Sapphire Rapids and newer): llama.cpp
        # 0.3.36's AMX mul_mat segfaults on this engine's multi-sequence batches (seen on an AMX CPU:
        # ggml_backend_amx_mul_mat in the first prompt decode), and a repacked layout would make the
        # kernels, hence the logits, depend on which CPU features the machine has. Recorded as a setting.
        mparams.use_extra_bufts = self.settings.cpu_repack
        self.gpu_offload = bool(gpu_layers) and can_offload
        if device is not None and self.gpu_offload and not self.rpc_devices:
            mparams.split_mode = lc.LLAMA_SPLIT_MODE_NONE  # the whole model on main_gpu (llama.h)
            mparams.main_gpu = device
        model = lc.llama_model_load_from_file(self.model_path.encode(), mparams)
        if not model:
            raise HarnessError(
                f"llama.cpp could not load {self.model_path}",
                "check that it is a complete GGUF file of a supported architecture (re-download it).",
            )
        self.model = model
        # Layers really placed on GPUs/workers (the request, -1 or N, capped at the model's layer count).
        self.layers_offloaded = min(gpu_layers, lc.llama_model_n_layer(model)) if self.gpu_offload else 0
        self.tokenizer = Tokenizer(lc, model)
        tok = self.tokenizer
        self.n_vocab = tok.n_vocab
        self.bos_id, self.eos_id, self.eot_id = tok.bos_id, tok.eos_id, tok.eot_id
        self.n_ctx_train = lc.llama_model_n_ctx_train(model)
        self.n_params = lc.llama_model_n_params(model)
        self.threads = self.settings.threads or os.cpu_count() or 1
        self.context = self.context_class(
            lc,
            model,
            self.settings,
            self.threads,
            EngineStats(),
            n_vocab=self.n_vocab,
            n_ctx_train=self.n_ctx_train,
            model_path=self.model_path,
        )
        self.loglik = self.loglik_class(self.context)
        self.generation = Generator(self.context, tok)

    # ------------------------------------------------------------------ state kept by the parts
    @property
    def add_bos(self) -> bool:
        """Whether tokenizing adds BOS (the GGUF's ``tokenizer.ggml.add_bos_token``): the tokenizer's own flag,
        one copy, so that setting it here changes what :meth:`tokenize` does."""
        return self.tokenizer.add_bos

    @add_bos.setter
    def add_bos(self, value: bool) -> None:
        self.tokenizer.add_bos = bool(value)

    @property
    def stats(self) -> EngineStats:
        """Token counts and decode time of the work done so far (the context counts them)."""
        return self.context.stats

    @property
    def kv_allocated(self) -> dict | None:
        """The last context's KV cells, as llama.cpp reported them."""
        return self.context.kv_allocated

    @property
    def first_decode_unix(self) -> float | None:
        """Wall clock of the first decode of evaluation work (not the probe's); None before any. LlamaBenchLM
        resets it per task (``setup_seconds`` measures from it)."""
        return self.context.first_decode_unix

    @first_decode_unix.setter
    def first_decode_unix(self, value: float | None) -> None:
        self.context.first_decode_unix = value

    @property
    def trace(self) -> Trace | None:
        """Diagnostics (scripts/bench_backends.py): when set to a dict, generation records per prompt the greedy
        tokens and their logit margins over the runner-up."""
        return self.generation.trace

    @trace.setter
    def trace(self, value: Trace | None) -> None:
        self.generation.trace = value

    # ------------------------------------------------------------------ model facts
    def meta(self, key: str) -> str | None:
        """A GGUF metadata string (e.g. ``tokenizer.chat_template``), or None."""
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self.lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def system_info(self) -> str:
        """llama.cpp's build and CPU feature line (``llama_print_system_info``), for the record."""
        try:
            return self.lc.llama_print_system_info().decode().strip()
        except Exception:
            return ""

    # ------------------------------------------------------------------ text <-> tokens (tokenizer.py)
    def eog_ids(self) -> list[int]:
        """Every end-of-generation token of the vocabulary."""
        return self.tokenizer.eog_ids()

    def token_text(self, token: int) -> str:
        """A token's text, special tokens included."""
        return self.tokenizer.token_text(token)

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation."""
        return self.tokenizer.is_eog(token)

    def tokenize(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Tokenize; BOS is added when the model wants one and the text does not already start with it."""
        return self.tokenizer.tokenize(text, add_bos, parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of generated tokens (special tokens such as end-of-turn render as nothing)."""
        return self.tokenizer.detokenize(tokens)

    # ------------------------------------------------------------------ lifetime
    def close_context(self) -> None:
        """Free the context (the model stays loaded)."""
        self.context.close()

    def close(self) -> None:
        """Free the context and the model."""
        if getattr(self, "context", None) is not None:
            self.close_context()
        if getattr(self, "model", None):
            self.lc.llama_model_free(self.model)
            self.model = None

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ start-up and speed
    def setup_seconds(self) -> float | None:
        """Seconds from this process's start (the OS's record of it) to the first llama_decode of evaluation
        work (:attr:`first_decode_unix`); None before any. Covers what no decode figure shows: interpreter and
        imports, model load, task building, tokenizing, the speed probe."""
        if self.first_decode_unix is None:
            return None
        import psutil

        return max(0.0, self.first_decode_unix - psutil.Process().create_time())

    def speed_probe(
        self,
        prompt_tokens: int = 512,
        decode_steps: int = 16,
        repeats: int = 1,
        deep: int | None = None,
        streams: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> dict:
        """This machine's prompt and decode rates on this model (harness/backends/llamacpp/speed_probe.py)."""
        return speed_probe(
            self.context, self.tokenize, prompt_tokens, decode_steps, repeats, deep, streams, clock
        )

    # ------------------------------------------------------------------ requests
    def loglikelihood(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, Result], None] | None = None,
    ) -> list[Result | None]:
        """Sum of log-probs of each continuation given its context, and whether it is the greedy one.

        Requests sharing a context share one branch; when all their continuations are single tokens
        (MMLU's " A".." D") the whole group costs one logit row. Multi-token continuations are scored
        exactly, token by token, from one branch each. Requests in ``skip`` (already journaled) are not
        computed (their slot in the result is None); the prefix plan is still made from *all* requests,
        so a resumed run decodes exactly the prefixes an uninterrupted one does. ``on_result`` sees each
        request as soon as it is scored.
        """
        return self.loglik.run(requests, progress, skip, on_result)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        until: Sequence[Sequence[str]],
        max_new_tokens: Sequence[int],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, str], None] | None = None,
    ) -> list[str | None]:
        """Greedy continuations, cut at the first stop string (as lm-eval's ``until``) or end of turn.

        Continuous batching: ``n_parallel`` slots branch from the shared prefix, each step decodes the
        pending prompt tokens and the last generated token of every live slot in one batch, and a
        finished slot takes the next request at once. Requests in ``skip`` are not run (None in the
        result); the prefix plan still comes from all requests. ``on_result`` sees each finished one.
        """
        return self.generation.run(prompts, until, max_new_tokens, progress, skip, on_result)
