"""The in-process engine's settings that can change scores, its counters, and the batching scheme's name:
what a run record says about how the numbers were computed (light: no numpy, no llama.cpp)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
        """The settings as the run record holds them, with the batching scheme's name."""
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
        """The counters as the run record holds them."""
        return asdict(self)
