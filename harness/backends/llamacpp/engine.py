"""In-process llama.cpp engine on the low-level ``llama_cpp`` API: batched log-likelihoods and generation.

Why not the high-level ``Llama`` class: it runs one sequence and its log-prob path needs
``logits_all`` (n_ctx x n_vocab floats). Here one context holds several sequences in a unified
KV cache (``kv_unified``): a shared few-shot prefix is decoded once into sequence 0, every question
branches from it with ``llama_memory_seq_cp`` (cells are tagged, not copied) and several branches
share one decode batch. Only the logit rows that are scored are requested. Generation slots get a KV
stream each instead (the prefix stream is copied into them), see ``gen_streams``.

Determinism: llama.cpp's logits depend slightly on batch composition, so the batching scheme is
fixed (items sorted by tokens, greedy packing up to ``n_batch`` tokens, fixed slot order) and
recorded with the attention setting (`scheme` below). The same requests give bit-identical results.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

# Bumped whenever the batching scheme changes: results are only bit-comparable within one scheme.
# v2: generation runs in fixed units of ``gen_unit`` requests (continuous batching inside a unit), so the
# batches a request meets do not depend on which requests an interrupted run had already finished.
# v3: generation slots in separate KV streams (``gen_streams``): on GSM8K 30 (SmolLM2, 8 slots) 24 of 30
# outputs identical to one-request-at-a-time generation, against 9 of 30 in one unified cache.
# v4: a slot's prompt suffix is decoded in its own decode calls, never batched with other slots' tokens.
SCHEME = "prefix-branch-v4"


@dataclass(frozen=True)
class EngineSettings:
    """Backend settings that can change scores; all of them go into the run record."""

    threads: int = 0  # 0: all cores
    gpu_layers: int = -1  # -1: all layers when the build has a GPU backend, else 0
    n_batch: int = 512  # tokens per decode call (also the micro-batch: one ubatch per decode)
    n_parallel: int = 8  # generation slots decoded together
    # Log-likelihood branches per decode call. 1: each question's suffix is its own decode after the
    # shared prefix, which reproduces a plain one-sequence evaluation exactly. >1: one KV stream per
    # branch, bit-identical to 1 (tests/test_packing_exact.py) but no faster on CPU. In one unified cache
    # packed branches' log-probs moved by up to ~0.7: a branch's cells sat at other cell indices than in a
    # one-branch run, and llama.cpp's non-flash CPU attention sums over cells in 16-lane SIMD groups by
    # cell index (scripts/packing_exactness.py has the proof and the llama.cpp lines).
    max_branches: int = 1
    flash_attn: bool = False  # off: llama.cpp's CPU default (auto) makes log-probs depend on batch mates
    min_shared_prefix: int = 32  # tokens two prompts must share before they share a KV prefix
    # Generation requests are scheduled in fixed units of this many (continuous batching inside each):
    # llama.cpp's logits depend on the batch a token is decoded in, so a resumed run replays whole
    # units to meet exactly the batches of an uninterrupted one.
    gen_unit: int = 64
    # Generation slots in separate KV streams (kv_unified off): in one unified cache a slot's cells
    # interleave with its batch mates', which changes float summation order and so, at near-ties, greedy
    # tokens; in its own stream a slot computes what a one-request-at-a-time run computes.
    gen_streams: bool = True
    seed: int = 0  # greedy decoding uses no randomness; recorded for completeness
    # llama.cpp RPC workers (host:port) holding offloaded layers (harness/backends/llamacpp/rpc.py); empty: this machine only.
    rpc_servers: tuple[str, ...] = ()
    # llama.cpp's CPU weight repacking / AMX buffers (model param use_extra_bufts); off: see LlamaEngine.
    cpu_repack: bool = False

    def as_record(self) -> dict:
        return asdict(self) | {"scheme": SCHEME}


@dataclass
class EngineStats:
    """Token counts and decode time, for the run record and the efficiency figure."""

    prompt_tokens: int = 0  # tokens decoded as prompt (shared prefixes count once)
    generated_tokens: int = 0
    decode_calls: int = 0
    decode_seconds: float = 0.0
    n_ctx: int = 0
    replayed_requests: int = 0  # finished requests re-run to rebuild an interrupted unit's batches
    # Generated tokens decoded and the sum of their positions: decode cost grows with context depth
    # (attention reads every cached cell), so the floor is taken at this run's mean depth.
    gen_decodes: int = 0
    gen_depth_sum: int = 0

    def as_record(self) -> dict:
        return asdict(self)


@dataclass
class _Item:
    """One branch to decode: its tokens, how many trailing positions need logits, who consumes them."""

    tokens: np.ndarray  # int32 token ids (token_array); branches of one context share the array
    n_out: int
    consumers: list[tuple[int, list[int]]] = field(default_factory=list)  # (request index, continuation)


def round_ctx(n_needed: int) -> int:
    """A context's size in cells as the engine creates it (``LlamaEngine._ensure_ctx``): a multiple of 1024, at
    least 1024. One definition: the preflight (harness/run/preflight.py) sizes exactly what the engine allocates.
    Here, not in the preflight, so the engine process imports no more than the engine (issue #28)."""
    return max(1024, -(-n_needed // 1024) * 1024)


def common_prefix_len(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the common prefix of two token sequences (lists or int32 arrays), at most ``limit``."""
    n = min(len(a), len(b), limit)
    if n <= 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


def token_array(tokens: Sequence[int]) -> np.ndarray:
    """Token ids as one compact int32 array (the same object when it already is one).

    A full MMLU run holds 14,042 contexts of ~600 tokens: as Python lists of ints that is ~36 bytes a token
    (a pointer and an int object), as int32 4 bytes. The requests of one question share its array.
    """
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.int32:
        return tokens
    return np.asarray(tokens, dtype=np.int32)


def order_key(tokens: np.ndarray) -> bytes:
    """Sort key ordering token arrays as lists of ints order (lexicographic, a prefix first): big-endian
    unsigned 4-byte ids compare bytewise as the ids compare numerically."""
    return tokens.astype(">u4").tobytes()


def cluster_by_prefix(seqs: list[list[int]], min_shared: int, reserve: list[int]) -> list[tuple[int, list[int]]]:
    """Group sequences (already sorted) into runs sharing a long prefix; return (prefix length, members).

    ``reserve[i]`` tokens at the end of sequence i stay out of the shared prefix (their logits are read).
    A run is cut where the shared prefix would shrink to less than half: chat prompts of different MMLU
    subjects share a ~40-token system prompt, but each subject's own few-shot prefix is ~1000 tokens,
    and merging them would decode every subject's prefix once per question.
    """
    n = len(seqs)
    if not n:
        return []
    caps = [len(s) - r for s, r in zip(seqs, reserve)]
    adj = [common_prefix_len(seqs[i], seqs[i + 1], min(caps[i], caps[i + 1])) for i in range(n - 1)]
    clusters: list[tuple[int, list[int]]] = []
    members, cur = [0], None
    for i, shared in enumerate(adj):
        if cur is None:  # a run of one: pair it only if its neighbour does not pair much better onward
            nxt = adj[i + 1] if i + 1 < len(adj) else 0
            join = shared >= min_shared and 2 * shared >= nxt
        else:
            join = shared >= min_shared and 2 * shared >= cur
        if join:
            members.append(i + 1)
            cur = shared if cur is None else min(cur, shared)
        else:
            clusters.append((cur or 0, members))
            members, cur = [i + 1], None
    clusters.append((cur or 0, members))
    return clusters


def loglikelihood_items(requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[_Item]:
    """The branches log-likelihood ``requests`` are scored from, in decode order (pure: no llama.cpp).

    Requests sharing a context share one branch when their continuation is one token; a multi-token
    continuation gets a branch of its own (context + all but its last token). Sorted as lists of ints sort.
    The engine and the engine-process assignment (harness/backends/llamacpp/assign.py) both plan from this.
    """
    # Contexts are held once each, as int32 arrays (token_array): a full MMLU run hands over 56,168 requests
    # whose 14,042 contexts average ~600 tokens; as lists and tuples of ints they took ~500 MB more.
    by_ctx: dict[bytes, tuple[np.ndarray, list[int]]] = {}
    for i, (ctx, cont) in enumerate(requests):
        if len(ctx) == 0 or len(cont) == 0:
            raise HarnessError("a log-likelihood request has an empty context or continuation", "fix the task.")
        arr = token_array(ctx)
        by_ctx.setdefault(arr.tobytes(), (arr, []))[1].append(i)
    items: list[_Item] = []
    for arr, idxs in by_ctx.values():
        single = [i for i in idxs if len(requests[i][1]) == 1]
        if single:
            items.append(_Item(arr, 1, [(i, [int(t) for t in requests[i][1]]) for i in single]))
        for i in idxs:
            cont = [int(t) for t in requests[i][1]]
            if len(cont) > 1:
                items.append(_Item(np.concatenate([arr, token_array(cont[:-1])]), len(cont), [(i, cont)]))
    del by_ctx
    items.sort(key=lambda it: (order_key(it.tokens), it.n_out))  # the order lists of ints sort in
    return items


def loglikelihood_clusters(items: list[_Item], min_shared: int) -> list[tuple[int, list[int]]]:
    """The shared-prefix groups of :func:`loglikelihood_items` (prefix length, item indices)."""
    return cluster_by_prefix([it.tokens for it in items], min_shared, [it.n_out for it in items])


def generation_plan(prompts: Sequence[Sequence[int]], min_shared: int):
    """Generation's fixed order: (request index per sorted position, sorted prompts, shared-prefix groups of
    sorted positions). Pure; the engine and the engine-process assignment plan from it."""
    order = sorted(range(len(prompts)), key=lambda i: (list(prompts[i]), i))
    seqs = [list(prompts[i]) for i in order]
    return order, seqs, cluster_by_prefix(seqs, min_shared, [1] * len(seqs))


def generation_units(queue: list, unit: int) -> list[list]:
    """A prefix group's requests in fixed scheduling units of ``unit`` (``EngineSettings.gen_unit``): the batches
    a request meets depend only on its unit's members."""
    return [queue[i : i + unit] for i in range(0, len(queue), unit)]


_LOG_INFO, _LOG_ERROR, _LOG_CONT = 2, 4, 5  # enum ggml_log_level (ggml.h)
# llama.cpp's report of a new context's KV cache (src/llama-kv-cache.cpp, llama_kv_cache's constructor):
# "llama_kv_cache: size =  405.00 MiB (  2048 cells,  30 layers,  9/9 seqs), K (f16): ..." where the cells
# are per stream and "9/9" is n_seq_max/n_stream. The last one seen, for the check after each context.
_KV_LINE = re.compile(rb"llama_kv_cache: size = *([0-9.]+) MiB \( *(\d+) cells, *(\d+) layers, *(\d+)/(\d+) seqs\)")
_kv_report: list[dict | None] = [None]


class LlamaEngine:
    """One llama.cpp model and context, evaluated in fixed, batched, prefix-sharing passes."""

    _interrupted = False  # set by the unraisable hook when Ctrl-C hit inside the log callback

    def __init__(self, model_path: str | Path, settings: EngineSettings | None = None, verbose: bool = False,
                 device: int | None = None):
        """``device``: the one GPU this engine's layers go to (``--engines N`` on N GPUs: engine i on GPU i,
        llama.cpp's ``split_mode`` none with ``main_gpu``); None: llama.cpp spreads them over every GPU."""
        import llama_cpp as lc  # heavy: imported only when a model is really loaded

        self.lc = lc
        self.settings = settings or EngineSettings()
        self.stats = EngineStats()
        self.model_path = str(model_path)
        self._install_log_filter(verbose)
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
        self.vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lc.llama_model_n_ctx_train(model)
        self.n_params = lc.llama_model_n_params(model)
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self.bos_id = lc.llama_vocab_bos(self.vocab)
        self.eos_id = lc.llama_vocab_eos(self.vocab)
        self.eot_id = lc.llama_vocab_eot(self.vocab)
        self.threads = self.settings.threads or os.cpu_count() or 1
        self._ctx = None
        self._ctx_size = 0
        self.kv_allocated: dict | None = None  # the last context's KV cells, as llama.cpp reported them
        self._batch = None
        self._piece_cache: dict[int, bytes] = {}
        # Wall clock (time.time()) of the first llama_decode of evaluation work, outside the speed probe:
        # ``setup_seconds`` measures the start-up a user waits for (imports, model load, task building,
        # tokenizing, the probe) from it. LlamaBenchLM resets it per task.
        self.first_decode_unix: float | None = None
        self._probing = False
        # Diagnostics (scripts/bench_backends.py): when a dict, generation records per prompt the greedy
        # tokens and their logit margins over the runner-up.
        self.trace: dict[tuple[int, ...], list[tuple[int, float]]] | None = None

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

    def eog_ids(self) -> list[int]:
        """Every end-of-generation token of the vocabulary."""
        return [i for i in range(self.n_vocab) if self.is_eog(i)]

    def token_text(self, token: int) -> str:
        return self._piece(token, special=True).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self.lc.llama_vocab_is_eog(self.vocab, token))

    # ------------------------------------------------------------------ text <-> tokens
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

    def _piece(self, token: int, special: bool = False) -> bytes:
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
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ context and batches
    def _ensure_ctx(self, n_needed: int, n_seq: int, unified: bool = True) -> None:
        """(Re)create the context when it is smaller than needed; sizes are rounded so runs repeat.

        ``unified=False`` gives every sequence its own KV stream of ``n_needed`` cells (total n_ctx is
        n_seq times that): a sequence's cells then sit where a one-sequence run puts them.
        """
        lc = self.lc
        n_ctx = round_ctx(n_needed) * (1 if unified else n_seq)
        if (self._ctx is not None and self._ctx_size == n_ctx and self._n_seq == n_seq
                and self._unified == unified):
            lc.llama_memory_clear(lc.llama_get_memory(self._ctx), True)
            return
        self.close_context()
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = self.settings.n_batch
        cparams.n_ubatch = self.settings.n_batch
        cparams.n_seq_max = n_seq
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.kv_unified = unified
        cparams.flash_attn_type = (
            lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.settings.flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        _kv_report[0] = None
        ctx = lc.llama_init_from_model(self.model, cparams)
        if not ctx:
            raise HarnessError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {Path(self.model_path).name}",
                "free memory, lower --parallel, or use a smaller quant.",
            )
        self.kv_allocated = check_kv_allocation(lc, ctx, n_ctx)
        self._ctx, self._ctx_size, self._n_seq, self._unified = ctx, n_ctx, n_seq, unified
        self._mem = lc.llama_get_memory(ctx)
        self._batch = lc.llama_batch_init(self.settings.n_batch, 0, 1)
        self.stats.n_ctx = max(self.stats.n_ctx, n_ctx)

    def close_context(self) -> None:
        if self._batch is not None:
            self.lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self.lc.llama_free(self._ctx)
            self._ctx = None

    def close(self) -> None:
        self.close_context()
        if getattr(self, "model", None):
            self.lc.llama_model_free(self.model)
            self.model = None

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """Decode (token, pos, seq, want_logits) entries as one batch; return the requested logit rows."""
        b = self._batch
        for i, (tok, pos, seq, want) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = want
        b.n_tokens = len(entries)
        if self.first_decode_unix is None and not self._probing:
            self.first_decode_unix = time.time()
        t0 = time.perf_counter()
        rc = self.lc.llama_decode(self._ctx, b)
        self.stats.decode_seconds += time.perf_counter() - t0
        if LlamaEngine._interrupted:  # Ctrl-C/SIGTERM that landed inside the log callback (see there)
            LlamaEngine._interrupted = False
            raise KeyboardInterrupt
        self.stats.decode_calls += 1
        if rc != 0:
            raise HarnessError(
                f"llama_decode failed (code {rc}) with {len(entries)} tokens in a {self._ctx_size}-token context",
                "the KV cache is full: lower --parallel or report this as a bug with the run record.",
            )
        n_out = sum(1 for e in entries if e[3])
        if not n_out:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = self.lc.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab)).copy()

    def _prefill(self, tokens: Sequence[int], seq: int, start: int = 0) -> None:
        """Decode a shared prefix into one sequence without asking for logits."""
        n = self.settings.n_batch
        for off in range(start, len(tokens), n):
            chunk = tokens[off : off + n]
            self._decode([(t, off + j, seq, False) for j, t in enumerate(chunk)])
            self.stats.prompt_tokens += len(chunk)

    def _check_fits(self, longest: int, what: str) -> None:
        if longest > self.n_ctx_train:
            raise HarnessError(
                f"a {what} needs {longest} tokens but {Path(self.model_path).name} was trained "
                f"for a context of {self.n_ctx_train}",
                "use fewer few-shot examples (num_fewshot in tasks/tasks.yaml) or a model with a longer context.",
            )

    # ------------------------------------------------------------------ start-up and speed
    def setup_seconds(self) -> float | None:
        """Seconds from this process's start (the OS's record of it) to the first llama_decode of evaluation
        work (:attr:`first_decode_unix`); None before any. Covers what no decode figure shows: interpreter and
        imports, model load, task building, tokenizing, the speed probe."""
        if self.first_decode_unix is None:
            return None
        import psutil

        return max(0.0, self.first_decode_unix - psutil.Process().create_time())

    def speed_probe(self, prompt_tokens: int = 512, decode_steps: int = 16, repeats: int = 1,
                    deep: int | None = None, streams: bool = False, clock: Callable[[], float] = time.perf_counter) -> dict:
        """This machine's rates on this model, like llama.cpp's llama-bench: prompt tokens/s (one
        ``prompt_tokens`` prefill), decode tokens/s of one sequence and of ``n_parallel`` sequences (one token
        each per call, branched from the prompt), best of ``repeats``. ``deep``: the batched decode again at
        that context depth (llama-bench's ``-d``; the prompt is extended to it), for floors taken at the depth
        a run decodes at (harness/speed.py ``floor_seconds``). ``streams`` (with ``deep``): the batched decode
        again at both depths with every sequence in its own KV stream holding its own copy of the prompt, the
        layout generation runs in (``gen_streams``, which keeps batched output equal to one-at-a-time): each
        sequence's attention reads its own cells, where the shared-prefix decode above reads the prompt's once.
        Token counters and the first-decode mark are left as they were; the KV cache is cleared afterwards.
        ``clock``: what times it (the plan's calibration passes the process's CPU time).
        """
        lc = self.lc
        saved = self.stats
        self.stats = EngineStats()
        self._probing = True
        n_par = self.settings.n_parallel
        # A fixed, ordinary token sequence (the text of a counting rhyme), so every probe decodes the same ids.
        base = self.tokenize("one two three four five six seven eight nine ten " * 8, add_bos=False)
        depth = max(prompt_tokens, deep or 0)
        toks = (base * (depth // max(len(base), 1) + 1))[:depth]
        self._ensure_ctx(depth + n_par * (decode_steps + 1) + self.settings.n_batch, n_par + 1)
        mem = self._mem
        best = {"prompt": 0.0, "decode_1": 0.0, "decode_n": 0.0}
        stream_rates: dict[int, float] = {}

        def batched(at: int) -> float:
            for s in range(1, n_par + 1):
                # Separate streams (the layout generation runs in): sequence 0's whole stream is copied.
                lc.llama_memory_seq_cp(mem, 0, s, *((0, at) if self._unified else (-1, -1)))
            t0 = clock()
            for i in range(decode_steps):
                self._decode([(toks[i], at + i, s, True) for s in range(1, n_par + 1)])
            rate = n_par * decode_steps / (clock() - t0)
            for s in range(1, n_par + 1):
                lc.llama_memory_seq_rm(mem, s, -1, -1)
            return rate

        try:
            for _ in range(repeats):
                lc.llama_memory_clear(mem, True)
                t0 = clock()
                self._prefill(toks[:prompt_tokens], seq=0)
                best["prompt"] = max(best["prompt"], prompt_tokens / (clock() - t0))
                lc.llama_memory_seq_cp(mem, 0, 1, 0, prompt_tokens)  # one sequence: one token per call
                t0 = clock()
                for i in range(decode_steps):
                    self._decode([(toks[i], prompt_tokens + i, 1, True)])
                best["decode_1"] = max(best["decode_1"], decode_steps / (clock() - t0))
                lc.llama_memory_seq_rm(mem, 1, -1, -1)
                best["decode_n"] = max(best["decode_n"], batched(prompt_tokens))
            deep_rate = None
            if deep and deep > prompt_tokens:  # once: the prompt grows to ``deep`` tokens, the same batched decode
                self._prefill(toks, seq=0, start=prompt_tokens)
                deep_rate = batched(deep)
            if streams and deep and deep > prompt_tokens:
                # Generation's layout: one KV stream per sequence, the prompt's stream copied whole into each.
                self._ensure_ctx(deep + decode_steps + 1, n_par + 1, unified=False)
                mem = self._mem
                for at in (prompt_tokens, deep):
                    self._prefill(toks[:at], seq=0, start=0 if at == prompt_tokens else prompt_tokens)
                    stream_rates[at] = batched(at)
        finally:
            lc.llama_memory_clear(mem, True)
            self.stats = saved
            self._probing = False
        out = {"prompt_tokens_per_s": round(best["prompt"], 1), "decode_1_tokens_per_s": round(best["decode_1"], 1),
               "decode_batched_tokens_per_s": round(best["decode_n"], 1), "batched_sequences": n_par,
               "prompt_len": prompt_tokens, "decode_steps": decode_steps}
        if deep_rate is not None:
            out.update(decode_batched_deep_tokens_per_s=round(deep_rate, 1), deep_len=deep)
        if stream_rates:
            out.update(decode_streams_tokens_per_s=round(stream_rates[prompt_tokens], 1),
                       decode_streams_deep_tokens_per_s=round(stream_rates[deep], 1))
        return out

    # ------------------------------------------------------------------ log-likelihood
    def loglikelihood(
        self,
        requests: Sequence[tuple[Sequence[int], Sequence[int]]],
        progress: Callable[[int], None] | None = None,
        skip: frozenset[int] | set[int] = frozenset(),
        on_result: Callable[[int, tuple[float, bool]], None] | None = None,
    ) -> list[tuple[float, bool] | None]:
        """Sum of log-probs of each continuation given its context, and whether it is the greedy one.

        Requests sharing a context share one branch; when all their continuations are single tokens
        (MMLU's " A".." D") the whole group costs one logit row. Multi-token continuations are scored
        exactly, token by token, from one branch each. Requests in ``skip`` (already journaled) are not
        computed (their slot in the result is None); the prefix plan is still made from *all* requests,
        so a resumed run decodes exactly the prefixes an uninterrupted one does. ``on_result`` sees each
        request as soon as it is scored.
        """
        if not requests:
            return []
        items = loglikelihood_items(requests)
        longest = max(len(it.tokens) for it in items)
        self._check_fits(longest, "log-likelihood request")
        # Several branches per batch get a KV stream each (in one unified cache their log-probs shifted).
        self._ensure_ctx(longest + self.settings.n_batch, self.settings.max_branches + 1,
                         unified=self.settings.max_branches == 1)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        clusters = loglikelihood_clusters(items, self.settings.min_shared_prefix)
        if skip and progress:
            progress(len(skip))
        for plen, members in clusters:
            members = [m for m in members if any(req not in skip for req, _ in items[m].consumers)]
            if not members:
                continue
            lc = self.lc
            lc.llama_memory_clear(self._mem, True)
            if plen:
                self._prefill(items[members[0]].tokens[:plen].tolist(), seq=0)
            pack: list[_Item] = []
            used = 0
            for m in members:
                it = items[m]
                it.consumers = [(req, cont) for req, cont in it.consumers if req not in skip]
                size = len(it.tokens) - plen
                if pack and (used + size > self.settings.n_batch or len(pack) >= self.settings.max_branches):
                    self._score_pack(pack, plen, results, progress, on_result)
                    pack, used = [], 0
                pack.append(it)
                used += size
            if pack:
                self._score_pack(pack, plen, results, progress, on_result)
        return results

    def _score_pack(self, pack: list[_Item], plen: int, results: list, progress, on_result=None) -> None:
        lc = self.lc
        entries: list[tuple[int, int, int, bool]] = []
        for k, it in enumerate(pack):
            seq = k + 1
            if plen:
                lc.llama_memory_seq_cp(self._mem, 0, seq, *((0, plen) if self._unified else (-1, -1)))
            toks = it.tokens.tolist()
            n = len(toks)
            for p in range(plen, n):
                entries.append((toks[p], p, seq, p >= n - it.n_out))
        rows: list[np.ndarray] = []
        n_batch = self.settings.n_batch
        # A branch longer than n_batch is decoded in consecutive chunks of the same sequence.
        for off in range(0, len(entries), n_batch):
            rows.append(self._decode(entries[off : off + n_batch]))
        self.stats.prompt_tokens += len(entries)
        self._deliver(pack, np.concatenate(rows) if len(rows) > 1 else rows[0], results, progress, on_result)
        for k in range(len(pack)):
            lc.llama_memory_seq_rm(self._mem, k + 1, -1, -1)

    def _deliver(self, pack: list[_Item], logits: np.ndarray, results: list, progress, on_result=None) -> None:
        """A decoded pack's logit rows (each item's last ``n_out`` positions, in pack order) as each consumer's
        (log-prob of its continuation, whether it is the greedy one)."""
        lse = _logsumexp(logits)
        greedy = logits.argmax(axis=1)
        r = 0
        for it in pack:
            for req, cont in it.consumers:
                # The rows of this item are its last n_out positions; a continuation of length L
                # is scored on the last L rows of its own item (L == n_out, or 1 for shared groups).
                base = r + it.n_out - len(cont)
                lp = sum(float(logits[base + j, t] - lse[base + j]) for j, t in enumerate(cont))
                ok = all(int(greedy[base + j]) == t for j, t in enumerate(cont))
                results[req] = (lp, ok)
                if on_result:
                    on_result(req, results[req])
            r += it.n_out
            if progress:
                progress(len(it.consumers))

    # ------------------------------------------------------------------ generation
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
        if not prompts:
            return []
        order, seqs, clusters = generation_plan(prompts, self.settings.min_shared_prefix)
        longest = max(len(s) + max_new_tokens[i] for s, i in zip(seqs, order))
        self._check_fits(longest, "prompt plus its generation budget")
        n_par = self.settings.n_parallel
        need = max(
            plen + n_par * max(len(seqs[m]) - plen + max_new_tokens[order[m]] for m in members)
            for plen, members in clusters
        )
        if self.settings.gen_streams:
            per_seq = max(plen + max(len(seqs[m]) - plen + max_new_tokens[order[m]] for m in members)
                          for plen, members in clusters)
            self._ensure_ctx(per_seq + 1, n_par + 1, unified=False)
        else:
            self._ensure_ctx(need + self.settings.n_batch, n_par + 1)
        out: list[str | None] = [None] * len(prompts)
        if skip and progress:
            progress(len(skip))
        unit = max(1, self.settings.gen_unit)
        for plen, members in clusters:
            queue = [(order[m], seqs[m]) for m in members]
            units = generation_units(queue, unit)
            # A unit with any unfinished request runs whole (finished ones replayed, their journaled
            # result kept), so every request meets the same batch mates as in an uninterrupted run.
            units = [u for u in units if any(req not in skip for req, _ in u)]
            if not units:
                continue
            self.lc.llama_memory_clear(self._mem, True)
            if plen:
                self._prefill(seqs[members[0]][:plen], seq=0)
            for u in units:
                self.stats.replayed_requests += sum(1 for req, _ in u if req in skip)
                self._run_slots(u, plen, until, max_new_tokens, out, progress, on_result, skip)
        for req in skip:
            out[req] = None  # the caller's journaled result stands
        return out

    def _run_slots(self, queue, plen, until, max_new_tokens, out, progress, on_result=None, skip=frozenset()) -> None:
        lc = self.lc
        n_batch = self.settings.n_batch
        slots: list[dict | None] = [None] * self.settings.n_parallel
        q = 0
        while True:
            for s in range(len(slots)):
                if slots[s] is None and q < len(queue):
                    req, toks = queue[q]
                    q += 1
                    if plen:
                        # Separate streams: the whole stream of sequence 0 (the prefix only) is copied.
                        p0, p1 = (-1, -1) if not self._unified else (0, plen)
                        lc.llama_memory_seq_cp(self._mem, 0, s + 1, p0, p1)
                    slots[s] = {"req": req, "pending": toks[plen:], "pos": plen, "gen": [], "text": b""}
                    if self.trace is not None:
                        self.trace[tuple(toks)] = slots[s]["trace"] = []
            live = [s for s in range(len(slots)) if slots[s] is not None]
            if not live:
                return
            entries: list[tuple[int, int, int, bool]] = []
            readers: list[int] = []
            pending = [s for s in live if slots[s]["pending"]]
            if pending:
                # A new slot's prompt suffix is decoded alone, in n_batch chunks from the prefix on, as in a
                # one-request-at-a-time run: llama.cpp's CPU matmuls take another kernel for a 1-token slice
                # than for a longer one (llamafile sgemm is for n >= 2 only), so a suffix split over micro-
                # batches mixed with other slots' tokens got slightly different hidden states (scheme v4).
                s = pending[0]
                st = slots[s]
                take = st["pending"][:n_batch]
                st["pending"] = st["pending"][len(take) :]
                last = not st["pending"]
                for j, t in enumerate(take):
                    entries.append((t, st["pos"] + j, s + 1, last and j == len(take) - 1))
                st["pos"] += len(take)
                self.stats.prompt_tokens += len(take)
                if last:
                    readers.append(s)
            else:
                for s in live[:n_batch]:  # every live slot's last token: one token per KV stream
                    st = slots[s]
                    entries.append((st["gen"][-1], st["pos"], s + 1, True))
                    self.stats.gen_decodes += 1
                    self.stats.gen_depth_sum += st["pos"]
                    st["pos"] += 1
                    readers.append(s)
            logits = self._decode(entries)
            nxt = logits.argmax(axis=1) if len(readers) else []
            if self.trace is not None and len(readers):
                top2 = np.sort(np.partition(logits, -2, axis=1)[:, -2:], axis=1)
            for r, s in enumerate(readers):
                st = slots[s]
                tok = int(nxt[r])
                if self.trace is not None:  # greedy token and its logit margin over the runner-up
                    st["trace"].append((tok, float(top2[r, 1] - top2[r, 0])))
                done = self.is_eog(tok)
                if not done:
                    st["gen"].append(tok)
                    self.stats.generated_tokens += 1
                    st["text"] += self._piece(tok)
                    text = st["text"].decode("utf-8", errors="ignore")
                    stops = [u for u in until[st["req"]] if u]
                    done = any(u in text for u in stops) or len(st["gen"]) >= max_new_tokens[st["req"]]
                if done:
                    text = self.detokenize(st["gen"])
                    for u in until[st["req"]]:
                        if u:
                            text = text.split(u)[0]
                    out[st["req"]] = text
                    replay = st["req"] in skip
                    if on_result and not replay:
                        on_result(st["req"], text)
                    lc.llama_memory_seq_rm(self._mem, s + 1, -1, -1)
                    slots[s] = None
                    if progress and not replay:
                        progress(1)

    # ------------------------------------------------------------------ logging
    def _install_log_filter(self, verbose: bool) -> None:
        """Silence llama.cpp's stderr chatter unless --verbose; its errors always get through.

        A CUDA error (out of memory, illegal access) is logged at ERROR level just before ggml aborts the
        process: swallowing it would leave the user a bare backtrace with no cause.
        """
        lc_mod = __import__("llama_cpp")
        last = [_LOG_INFO]

        @lc_mod.llama_log_callback
        def _cb(level, text, user_data):
            level = last[0] if level == _LOG_CONT else level  # CONT continues the previous message
            last[0] = level
            if b"llama_kv_cache: size" in text:
                _kv_report[0] = _parse_kv_line(text)
            if verbose or level == _LOG_ERROR:
                os.write(2, text)

        LlamaEngine._log_cb = _cb  # keep a reference: ctypes callbacks must outlive the C side
        lc_mod.llama_log_set(_cb, ctypes.c_void_p(0))
        # A KeyboardInterrupt raised while Python runs this callback is "ignored" by ctypes (reported to
        # sys.unraisablehook, not raised): keep it and raise it after the C call, or Ctrl-C would be lost.
        if not getattr(sys.unraisablehook, "_harness", False):
            prev = sys.unraisablehook

            def hook(u):
                if isinstance(u.exc_value, KeyboardInterrupt):
                    LlamaEngine._interrupted = True
                else:
                    prev(u)

            hook._harness = True
            sys.unraisablehook = hook


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1, dtype=np.float64))


def high_level_llama(model_path: str | Path, **kwargs):
    """llama-cpp-python's high-level ``Llama`` with the engine's CPU buffer choice (no extra buffer types:
    see ``LlamaEngine``), for reference evaluations and the minimal backend. ``Llama`` takes no argument
    for ``use_extra_bufts``, so its default model parameters are adjusted while it loads."""
    import llama_cpp
    from llama_cpp import Llama

    real = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = real()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        return Llama(model_path=str(model_path), **kwargs)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = real


def _parse_kv_line(text: bytes) -> dict | None:
    m = _KV_LINE.search(text)
    if not m:
        return None
    mib, cells, layers, seqs, streams = m.groups()
    return {"mib": mib.decode(), "cells_per_stream": int(cells), "layers": int(layers), "n_seq_max": int(seqs),
            "streams": int(streams)}


def check_kv_allocation(lc, ctx, planned: int) -> dict:
    """What llama.cpp allocated for a new context, checked against the cells planned (the figure the memory
    preflight judged, harness/run/preflight.py): ``cells`` (llama_n_ctx) and llama.cpp's own KV report
    (its log line: cells per stream, streams, MiB). A difference means the preflight misjudged the memory:
    an error, never a silent larger cache."""
    cells = lc.llama_n_ctx(ctx)
    report = _kv_report[0]
    reported = report["cells_per_stream"] * report["streams"] if report else cells
    if cells != planned or reported != planned:
        lc.llama_free(ctx)
        raise HarnessError(
            f"llama.cpp allocated {max(cells, reported)} KV cells where {planned} were planned and checked for memory",
            "report this: the preflight's context sizing (harness/run/preflight.py round_ctx) no longer matches "
            "this llama.cpp build.",
        )
    return {"cells": cells, "report": report}
