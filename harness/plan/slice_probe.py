"""The plan's main rates: llama.cpp itself, timed on a small slice of the target model.

**The method** (:func:`measure_slice`): a slice of the target (harness/models/probe_slice.py ``build_probe_slice``: its
hidden size, FFN width, head layout, vocabulary size and quant types, random weights) is built at two depths,
``d1`` and ``d2`` layers, cached under the user's cache (``~/.cache/llama-bench-harness/probe/``, keyed on shape
and quant), and each is timed by the engine's own speed probe (``LlamaEngine.speed_probe``: the prompt rate, one
and ``--parallel`` sequences' decode, at two depths, shared-prefix and in KV streams) with the run's engine
settings (threads, batch, KV layout, GPU offload). Every figure is a time per token; per token,
time(L) = a + b x L through the two depths (a: the output layer and fixed costs, b: one layer), extrapolated to the
target's L layers. The probe is repeated: the median is the point, the fastest and slowest repeat (each
extrapolated the same way) the interval's ends, widened by the extrapolation's checked error (tasks/plan_model.yaml
``extrapolation``, measured by ``scripts/check_plan.py --extrapolation`` against full-depth probes).

When no slice can be made or timed, the plan falls back to the numpy probes (harness/plan/rates.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.plan.assumptions import plan_model
from harness.plan.rates import Rates

# Below this share of wall time x threads in CPU time, the probe ran on a busy machine and says so.
BUSY_SHARE = 0.8
CACHE_ENV = (
    "HARNESS_PROBE_CACHE"  # where probe slices are cached (default: ~/.cache/llama-bench-harness/probe)
)
# The speed probe's figures, each a rate in tokens/s: per token they are times, extrapolated per layer.
RATE_KEYS = (
    "prompt_tokens_per_s",
    "decode_1_tokens_per_s",
    "decode_batched_tokens_per_s",
    "decode_batched_deep_tokens_per_s",
    "decode_streams_tokens_per_s",
    "decode_streams_deep_tokens_per_s",
)


def probe_cache() -> Path:
    """The probe slices' cache: ``HARNESS_PROBE_CACHE``, else ``$XDG_CACHE_HOME`` (or ~/.cache)/llama-bench-harness/probe."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "llama-bench-harness" / "probe"


@dataclasses.dataclass(frozen=True)
class ProbeLengths:
    """The slice probe's lengths: slice depths, prompt tokens, decode steps, deep context, repeats."""

    depths: tuple[int, int]
    prompt: int
    steps: int
    deep: int
    repeats: int


def probe_lengths(shape, n_layer: int) -> ProbeLengths:
    """Lengths that keep the probe near a minute on 2 cores for any catalogue model: the prompt shrinks as a
    layer grows (~4e10 weights x tokens in the deeper slice's prefill: 256 tokens for the 1B and 3B shapes, 128 for
    8B, 64 for 70B-class), the deep context is twice the prompt (decode time is linear in depth: the plan
    extrapolates it to each task's depth), 4 decode steps, 2 repeats."""
    per_layer = shape.layer_params()
    d2 = min(2, n_layer)
    tokens = 4e10 / max(per_layer * d2, 1)
    prompt = int(min(512, max(64, 2 ** round(math.log2(max(tokens, 1))))))
    return ProbeLengths((1, d2), prompt, 4, 2 * prompt, 2)


def measure_slice(
    shape,
    n_layer: int,
    settings,
    extrapolation: tuple[float, float] = (1.0, 1.0),
    lengths: ProbeLengths | None = None,
    cache: Path | None = None,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Rates:
    """Time llama.cpp on slices of ``shape`` (harness.models.probe_slice.SliceShape) and extrapolate to ``n_layer``
    layers (module docstring). ``settings``: the run's EngineSettings (RPC workers are left out: the estimate does
    not cover them). ``extrapolation``: the checked error of the per-layer extrapolation, (low, high) factors on
    the time per token. A :class:`HarnessError` when a slice cannot be built or run (the caller falls back)."""
    from harness.models.probe_slice import build_probe_slice

    t_start = clock()
    lengths = lengths or probe_lengths(shape, n_layer)
    cache = Path(cache or probe_cache())
    samples: dict[int, list[dict]] = {}
    info: dict = {}
    for depth in sorted(set(lengths.depths)):
        path = cache / f"slice-{shape.key}-L{depth}.gguf"
        if not path.is_file():
            if log:
                log(
                    f"plan: building a {depth}-layer probe slice ({shape.slice_bytes(depth) / 1e9:.1f} GB) in {cache}"
                )
            try:
                build_probe_slice(shape, depth, path)
            except OSError as exc:
                for p in (path, path.with_name(path.name + ".tmp")):
                    try:
                        p.unlink(missing_ok=True)  # nothing half-written under the final name
                    except OSError:
                        pass
                raise HarnessError(
                    f"the probe slice could not be written to {cache}: {exc.strerror or exc}",
                    f"free disk space there, or set {CACHE_ENV} to another folder.",
                ) from None
        if log:
            log(f"plan: timing llama.cpp on the {depth}-layer slice ({lengths.repeats} repeats)")
        samples[depth], got = time_slice(path, settings, lengths)
        info = {**got, "cpu_share": min(info.get("cpu_share", 1.0), got["cpu_share"])}
    point, fast, slow = extrapolate(samples, n_layer, extrapolation)
    base = {"batched_sequences": settings.n_parallel, "prompt_len": lengths.prompt, "deep_len": lengths.deep}
    d1, d2 = lengths.depths
    seconds = clock() - t_start
    method = (
        f"llama.cpp timed now on slices of this model ({d1} and {d2} of {n_layer} layers: its hidden size "
        f"{shape.n_embd}, FFN {shape.n_ff}, {shape.n_head}/{shape.n_head_kv} heads, vocabulary {shape.n_vocab}, "
        f"{shape.layer_type} layers, {shape.output_type} output; random weights), "
        f"{lengths.repeats} repeats, {info['threads']} threads, --parallel {settings.n_parallel}"
        f"{', on the GPU' if info['gpu_offload'] else ', on the CPU'}; time per token = a + b x layers through "
        f"the two slices, extrapolated to {n_layer}; the interval: the repeats' spread, "
        f"x{extrapolation[0]:g}..x{extrapolation[1]:g} for the extrapolation's checked error ({seconds:.0f} s)"
        + (
            f"; the machine was busy during the probe (it got {info['cpu_share']:.0%} of {info['threads']} "
            "threads' CPU time): these are a busy machine's rates"
            if not info["gpu_offload"] and info["cpu_share"] < BUSY_SHARE
            else ""
        )
    )
    return Rates({**base, **point}, {**base, **fast}, {**base, **slow}, method, seconds)


def time_slice(path: Path, settings, lengths: ProbeLengths) -> tuple[list[dict], dict]:
    """The engine's speed probe on one slice, ``lengths.repeats`` times (a list of its result dicts), and what the
    engine ran with: ``threads``, ``gpu_offload``, and ``cpu_share``, the process's CPU time over wall time x
    threads while it ran (well under 1 on CPU: other work had the cores, and the rates are a busy machine's)."""
    from harness.backends.llamacpp.engine import LlamaEngine

    try:
        engine = LlamaEngine(path, dataclasses.replace(settings, rpc_servers=()))
    except ImportError as exc:
        raise HarnessError(f"llama.cpp is not importable here ({exc})", "run `make setup`.") from None
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out = [
            engine.speed_probe(lengths.prompt, lengths.steps, 1, lengths.deep, streams=True)
            for _ in range(lengths.repeats)
        ]
        share = (time.process_time() - cpu0) / max((time.perf_counter() - wall0) * engine.threads, 1e-9)
        return out, {"threads": engine.threads, "gpu_offload": bool(engine.gpu_offload), "cpu_share": share}
    finally:
        engine.close()


def extrapolate(
    samples: dict[int, list[dict]], n_layer: int, error: tuple[float, float] = (1.0, 1.0)
) -> tuple[dict, dict, dict]:
    """Per rate: seconds per token at each slice depth -> a + b x depth through the two depths' medians -> the
    rate at ``n_layer`` layers (the point). The interval's ends: the point's time per token times the widest
    spread of the repeats around their median at either depth (fastest / median, slowest / median), times
    ``error`` (low, high), the extrapolation's checked error. A slope measured below zero (a noisy machine) is
    taken as zero: a layer never costs negative time. Returns (point, fast, slow) rate dicts."""
    (d1, s1), (d2, s2) = sorted(samples.items())[0], sorted(samples.items())[-1]
    out: tuple[dict, dict, dict] = ({}, {}, {})
    for key in RATE_KEYS:
        if not all(r.get(key) for r in s1 + s2):
            continue
        per = {d: [1 / r[key] for r in s] for d, s in ((d1, s1), (d2, s2))}
        t1, t2 = statistics.median(per[d1]), statistics.median(per[d2])
        b = max(0.0, (t2 - t1) / (d2 - d1)) if d2 != d1 else t1
        a = t1 - b * d1 if d2 != d1 else 0.0
        t = max(a + b * n_layer, 1e-12)
        lo = min(min(v) / statistics.median(v) for v in per.values())
        hi = max(max(v) / statistics.median(v) for v in per.values())
        for k, f in enumerate((1.0, lo * error[0], hi * error[1])):
            out[k][key] = round(1 / (t * f), 3)
    return out


def slice_target(
    entry, quant: str, params: float, shape: dict | None, local: bool = True
) -> tuple[object, int] | str:
    """What the probe slice copies from one quant of the model (harness.models.probe_slice.SliceShape) and its layer
    count; or why no slice can be made (a string). A file here: its own header and tensor types (the gguf
    package's reader); else the published shape of the catalogue's parameter count (tasks/plan_model.yaml
    ``shapes``) and the quant's main and output types (``slice_types``)."""
    from harness.models.probe_slice import BLOCKS, SliceShape

    path = _local_file(entry) if local else None
    if path is not None:
        try:
            return file_slice_target(path)
        except (HarnessError, OSError, ValueError, KeyError, IndexError) as exc:
            return f"its header gives no slice ({getattr(exc, 'message', exc)})"
    m = plan_model()
    known = m["shapes"].get(int(params or 0))
    types = m["slice_types"].get(quant)
    if not known or "n_embd" not in known or not types:
        return f"no published shape for {entry.name} {quant} (tasks/plan_model.yaml shapes, slice_types)"
    if any(t not in BLOCKS for t in types):
        return f"no probe slice for {types}"
    return (
        SliceShape(
            known["n_embd"],
            known["n_ff"],
            known["n_head"],
            known["n_kv_heads"],
            known["n_vocab"],
            types[0],
            types[1],
            known["head_dim"],
        ),
        known["n_layer"],
    )


def _local_file(entry) -> Path | None:
    """The quant's file on this machine (a local path, or the Hugging Face cache), if any."""
    from harness.models.locate import cached_model_path, local_model_path

    try:
        path = local_model_path(entry)
    except HarnessError:
        path = None
    if path is None and entry.repo and entry.files.files:
        path = cached_model_path(entry)
    return Path(path) if path else None


def file_slice_target(path: Path) -> tuple[object, int]:
    """A GGUF here: its architecture's sizes and the types of a layer's FFN and of the output matrix (a
    SliceShape) and its layer count."""
    import gguf

    from harness.models.probe_slice import SliceShape

    reader = gguf.GGUFReader(str(path))

    def num(key: str, default: int | None = None) -> int:
        f = reader.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(key)
            return default
        return int(f.contents())

    arch = reader.fields["general.architecture"].contents()
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    n_head = num(f"{arch}.attention.head_count")
    n_embd = num(f"{arch}.embedding_length")
    vocab = num(f"{arch}.vocab_size", 0) or len(reader.fields["tokenizer.ggml.tokens"].data)
    layer = types.get("blk.0.ffn_up.weight") or types["blk.0.attn_q.weight"]
    output = types.get("output.weight") or types["token_embd.weight"]
    return (
        SliceShape(
            n_embd,
            num(f"{arch}.feed_forward_length"),
            n_head,
            num(f"{arch}.attention.head_count_kv", n_head),
            vocab,
            layer,
            output,
            num(f"{arch}.attention.key_length", n_embd // n_head),
        ),
        num(f"{arch}.block_count"),
    )
