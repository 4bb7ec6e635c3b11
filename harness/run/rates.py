"""The token rates `harness plan` prices a run at: llama.cpp itself, timed on a small slice of the target model.

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

Why: llama.cpp's quantized kernels (int8 dot products, VNNI, AMX) keep no fixed ratio to any other instrument
across CPUs; the numpy probes below, scaled by factors fitted on one Intel CPU, estimated 4.3 times the real time
of a 1B-shape run on an AMD EPYC (issue #30).

**The fallback** (:func:`fallback_rates`), named as such wherever it is used: when the slice cannot be built or
run (no disk space, no llama.cpp), this machine's numpy matmul and memory probes scaled to the model:

- **matmul**: float32 matrix products, FLOP/s. Prompt processing is matrix-matrix work, ~2 x params FLOPs per
  token (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1:
  https://arxiv.org/abs/2001.08361).
- **memory**: a matrix-vector product over a buffer the size of the weights (capped at 512 MiB, past the
  last-level cache), bytes/s. One decode step of one sequence reads every weight once, so its time is
  about weight bytes over bandwidth (the same roofline reasoning as llama.cpp's own notes on token
  generation being memory-bound: https://github.com/ggml-org/llama.cpp/discussions/638).

The calibration (tasks/plan_calibration.yaml, written by ``harness plan --calibrate``) holds the
same two probes next to ``harness speed`` on the offline model, measured once on one machine with the
date and command. Its ratios (how much of the probed rate llama.cpp reaches) are the efficiency factors
the fallback applies to any model on any machine: rate = factor x probe / model cost. Its ``reference`` is the
machine class of the published report.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from functools import lru_cache
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.paths import TASKS_DIR

CALIBRATION_FILE = TASKS_DIR / "plan_calibration.yaml"
MIB = 2**20
BW_CAP = 512 * MIB  # past any last-level cache: what a multi-GB model's decode sees


def matmul_flops(seconds: float = 0.5, n: int = 1024, clock=time.perf_counter, best: bool = True) -> float:
    """Float32 FLOP/s of an n x n matrix product over ``seconds``: the best product (``best``) or the median
    (what a busy machine gives a long run), each timed by ``clock``."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up (threads started)
    got, end = [], time.perf_counter() + seconds
    while True:
        t0 = clock()
        a @ b
        got.append(2 * n**3 / max(clock() - t0, 1e-9))
        if time.perf_counter() >= end:
            return max(got) if best else statistics.median(got)


def memory_bandwidth(nbytes: int = BW_CAP, seconds: float = 0.5, clock=time.perf_counter, best: bool = True) -> float:
    """Bytes/s of a float32 matrix-vector product reading ``nbytes`` (capped at 512 MiB) per pass: the best
    pass or the median (``best``)."""
    import numpy as np

    cols = 4096
    rows = max(1, min(int(nbytes), BW_CAP) // (4 * cols))
    a = np.full((rows, cols), 0.5, dtype=np.float32)
    v = np.ones(cols, dtype=np.float32)
    a @ v  # pages touched, threads started
    got, end = [], time.perf_counter() + seconds
    while True:
        t0 = clock()
        a @ v
        got.append(a.nbytes / max(clock() - t0, 1e-9))
        if time.perf_counter() >= end:
            return max(got) if best else statistics.median(got)


@dataclasses.dataclass(frozen=True)
class Probe:
    """A machine's probed rates: FLOP/s and bytes/s (over ``bw_bytes`` of buffer)."""

    flops: float
    bandwidth: float
    bw_bytes: int
    source: str  # "measured now" or where the figures come from

    def describe(self) -> str:
        return (f"matmul {self.flops / 1e9:.1f} GFLOP/s, memory {self.bandwidth / 1e9:.1f} GB/s "
                f"(over {self.bw_bytes / MIB:.0f} MiB); {self.source}")


def probe_now(weights_bytes: int) -> Probe:
    """Both probes on this machine now, about a second in all, wall clock and every core: the median pass, so
    that a machine busy with other work is judged as a long run will find it, not by its best moment."""
    size = min(int(weights_bytes), BW_CAP)
    return Probe(matmul_flops(best=False), memory_bandwidth(size, best=False), size,
                 "measured now (median of 0.5 s each, all cores)")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """``harness speed`` on the offline model beside the two probes, on one machine (see the module doc)."""

    date: str
    command: str
    machine: str
    model: str
    params: int
    weights_bytes: int
    n_layer: int
    threads: int
    probe: Probe
    prompt_tps: float
    decode_1_tps: float
    decode_batched_tps: float
    batched_sequences: int

    @property
    def prompt_eff(self) -> float:
        """Share of the matmul probe llama.cpp reaches on prompt tokens (2 x params FLOPs each)."""
        return self.prompt_tps * 2 * self.params / self.probe.flops

    @property
    def decode_overhead_per_layer(self) -> float:
        """Seconds per layer of a one-sequence decode step beyond reading the weights at the probed bandwidth
        (graph building, thread synchronisation, the small kernels), on the calibration machine: the step is
        taken to read the weights at the gemv probe's rate, and what the offline model's measured step takes
        beyond that is a fixed cost per layer. Compute-like work, so it scales with the matmul rate."""
        return max(0.0, 1 / self.decode_1_tps - self.weights_bytes / self.probe.bandwidth) / self.n_layer

    @property
    def batch_eff(self) -> float:
        """Share of the matmul probe reached by each extra sequence of a batched decode step."""
        t1 = 1 / self.decode_1_tps
        tb = self.batched_sequences / self.decode_batched_tps
        extra = max((tb - t1) / max(self.batched_sequences - 1, 1), 1e-9)
        return 2 * self.params / (extra * self.probe.flops)


@lru_cache(maxsize=1)
def calibration(path: Path = CALIBRATION_FILE) -> Calibration:
    """Read and check tasks/plan_calibration.yaml."""
    try:
        d = yaml.safe_load(Path(path).read_text())
        p, s = d["probe"], d["speed"]
        cal = Calibration(
            date=str(d["date"]), command=str(d["command"]), machine=str(d["machine"]), model=str(d["model"]["name"]),
            params=int(d["model"]["params"]), weights_bytes=int(d["model"]["weights_bytes"]),
            n_layer=int(d["model"]["n_layer"]), threads=int(s["threads"]),
            probe=Probe(float(p["matmul_flops"]), float(p["bandwidth"]), int(p["bandwidth_bytes"]),
                        f"calibration of {d['date']}"),
            prompt_tps=float(s["prompt_tokens_per_s"]), decode_1_tps=float(s["decode_1_tokens_per_s"]),
            decode_batched_tps=float(s["decode_batched_tokens_per_s"]),
            batched_sequences=int(s["batched_sequences"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"cannot read the plan calibration {path}: {exc}",
                           "restore tasks/plan_calibration.yaml or rerun `harness plan --calibrate`.")
    if min(cal.probe.flops, cal.probe.bandwidth, cal.prompt_tps, cal.decode_1_tps, cal.decode_batched_tps) <= 0 \
            or cal.params <= 0 or cal.weights_bytes <= 0 or cal.n_layer <= 0 or cal.batched_sequences < 2:
        raise HarnessError(f"{path}: every rate and size must be positive, with 2 or more batched sequences",
                           "rerun `harness plan --calibrate`.")
    if cal.batched_sequences / cal.decode_batched_tps <= 1 / cal.decode_1_tps:
        raise HarnessError(f"{path}: a batched decode step measured faster than a one-sequence step (the machine "
                           "was busy during the calibration)", "rerun `harness plan --calibrate` on a quieter machine.")
    return cal


def reference_machine(path: Path = CALIBRATION_FILE) -> dict:
    """The reference machine class (``reference`` in tasks/plan_calibration.yaml): its name, probe and RAM, for
    estimates that must not depend on the machine computing them (the published report)."""
    cal = calibration(path)
    try:
        d = yaml.safe_load(Path(path).read_text())["reference"]
        out = {"name": str(d["name"]), "ram_bytes": int(d["ram_bytes"]),
               "probe": Probe(float(d["matmul_flops"]), float(d["bandwidth"]), int(d["bandwidth_bytes"]),
                              f"reference machine class: {d['name']}, calibrated {cal.date}")}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"cannot read the reference machine of {path}: {exc}", "rerun `harness plan --calibrate`.")
    if min(out["ram_bytes"], out["probe"].flops, out["probe"].bandwidth) <= 0:
        raise HarnessError(f"{path}: the reference machine's figures must be positive", "rerun `harness plan --calibrate`.")
    return out


def reference_probe() -> Probe:
    """The reference machine class's probe (see :func:`reference_machine`)."""
    return reference_machine()["probe"]


def token_rates(params: float, weights_bytes: int, n_layer: int, probe: Probe, n_parallel: int,
                cal: Calibration | None = None) -> dict:
    """Prompt and decode rates (tokens/s) of a model on a probed machine, in the shape of
    ``harness.backends.llamacpp.speed.probe`` so its ``floor_seconds`` applies.

    prompt = prompt_eff x FLOP/s / (2 x params); one decode step of b sequences takes weights / bytes/s plus
    n_layer x the per-layer overhead (scaled by the calibration's FLOP/s over this machine's) plus
    (b - 1) x 2 x params / (batch_eff x FLOP/s).
    """
    cal = cal or calibration()
    prompt = cal.prompt_eff * probe.flops / (2 * params)
    t1 = weights_bytes / probe.bandwidth + n_layer * cal.decode_overhead_per_layer * cal.probe.flops / probe.flops
    extra = 2 * params / (cal.batch_eff * probe.flops)
    tb = t1 + (n_parallel - 1) * extra
    return {"prompt_tokens_per_s": prompt, "decode_1_tokens_per_s": 1 / t1,
            "decode_batched_tokens_per_s": n_parallel / tb, "batched_sequences": n_parallel}


def calibrate(n_parallel: int = 8, path: Path = CALIBRATION_FILE, cores: int | None = None, repeats: int = 5,
              seconds: float = 2.0) -> dict:
    """Measure the calibration on this machine and write it to ``path``.

    ``harness speed`` on the offline model (best of 5) beside the two probes over its weights' size, all on
    one thread and timed by the process's CPU time, not the wall clock: a machine shared with other jobs
    (CI runners, this project's own agents on 2 cores) then still gives the rates of an idle core, and the
    ratios (the efficiency factors) do not depend on how busy the machine was. Run in a child process so
    that numpy's BLAS and llama.cpp both start with one thread. ``reference`` is an idle machine of
    ``cores`` (default: this one's) such cores, the probes scaled by the core count: the machine class of
    the published report's estimates. ``repeats`` and ``seconds``: the speed probe's repeats and each numpy
    probe's duration (shorter in tests). It calibrates the numpy fallback only (:func:`fallback_rates`).
    """
    import os
    import subprocess
    import sys

    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = (f"from harness.run.rates import _calibrate_here; from pathlib import Path; "
            f"_calibrate_here({int(n_parallel)}, Path({str(path)!r}), {cores!r}, {int(repeats)}, {float(seconds)!r})")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **one}, capture_output=True, text=True)
    if proc.returncode:
        raise HarnessError(f"the calibration failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
                           "run it again; `harness speed` must work on the offline model.")
    calibration.cache_clear()
    return yaml.safe_load(Path(path).read_text())


def _calibrate_here(n_parallel: int, path: Path, cores: int | None, repeats: int = 5, seconds: float = 2.0) -> None:
    """The calibration's measurement (one thread, CPU-time clock), in the child process."""
    import datetime
    import os
    import platform

    import psutil

    from harness.backends.llamacpp import speed as speed_mod
    from harness.backends.llamacpp.engine import EngineSettings, LlamaEngine
    from harness.models.catalogue import resolve
    from harness.models.gguf_check import read_header_shape
    from harness.models.gguf_header import file_fetch
    from harness.models.locate import local_model_path

    clock = time.process_time
    entry = resolve("smollm2-135m")
    path_gguf = local_model_path(entry)
    weights = Path(path_gguf).stat().st_size
    shape = read_header_shape(file_fetch(Path(path_gguf)))
    engine = LlamaEngine(path_gguf, EngineSettings(threads=1, n_parallel=n_parallel))
    try:
        speed = speed_mod.probe(engine, repeats=repeats, clock=clock)  # `harness speed`'s probe, CPU-time clock
    finally:
        engine.close()
    flops = matmul_flops(seconds, clock=clock)
    small = memory_bandwidth(weights, seconds, clock=clock)
    big = memory_bandwidth(BW_CAP, seconds, clock=clock)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = cores or os.cpu_count() or 1
    machine = f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    out = {
        "schema_version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "command": "harness plan --calibrate",
        "clock": "process CPU time, one thread (llama.cpp --threads 1, BLAS 1 thread)",
        "machine": machine,
        "model": {"name": f"{entry.name} {entry.quant}", "params": int(entry.params), "weights_bytes": weights,
                  "n_layer": int(shape["n_layer"])},
        "probe": {"matmul_flops": round(flops), "bandwidth": round(small), "bandwidth_bytes": min(weights, BW_CAP)},
        "speed": {"threads": 1, **{k: speed[k] for k in ("prompt_tokens_per_s", "decode_1_tokens_per_s",
                                                         "decode_batched_tokens_per_s", "batched_sequences")}},
        "reference": {"name": f"an idle {cores}-core machine of this CPU ({cpu}; probes x {cores} cores)",
                      "matmul_flops": round(flops * cores), "bandwidth": round(big * cores),
                      "bandwidth_bytes": BW_CAP, "ram_bytes": psutil.virtual_memory().total},
    }
    head = ("# Written by `harness plan --calibrate` (harness/run/rates.py): `harness speed` on the offline model\n"
            "# beside the matmul and memory probes, on one thread and the CPU-time clock, on the machine named\n"
            "# below; `reference` is the machine class of the published report's estimates. Do not edit.\n")
    Path(path).write_text(head + yaml.safe_dump(out, sort_keys=False))


# ---------------------------------------------------------------------------- the method: a slice of the target
# Below this share of wall time x threads in CPU time, the probe ran on a busy machine and says so.
BUSY_SHARE = 0.8
CACHE_ENV = "HARNESS_PROBE_CACHE"  # where probe slices are cached (default: ~/.cache/llama-bench-harness/probe)
# The speed probe's figures, each a rate in tokens/s: per token they are times, extrapolated per layer.
RATE_KEYS = ("prompt_tokens_per_s", "decode_1_tokens_per_s", "decode_batched_tokens_per_s",
             "decode_batched_deep_tokens_per_s", "decode_streams_tokens_per_s", "decode_streams_deep_tokens_per_s")


def probe_cache() -> Path:
    """The probe slices' cache: ``HARNESS_PROBE_CACHE``, else ``$XDG_CACHE_HOME`` (or ~/.cache)/llama-bench-harness/probe."""
    import os

    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "llama-bench-harness" / "probe"


@dataclasses.dataclass(frozen=True)
class Rates:
    """A model's token rates on a machine, each a dict in the shape of the engine's speed probe (so
    ``harness.backends.llamacpp.speed.floor_seconds`` applies): the point and the interval's fast and slow ends,
    and one line saying how they were had (the plan's method line)."""

    point: dict
    fast: dict
    slow: dict
    method: str
    probe_seconds: float | None = None  # the probe's own wall time (building the slices included)
    sliced: bool = True  # llama.cpp timed on a slice; False: the numpy fallback (or stored reference figures)


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


def measure_slice(shape, n_layer: int, settings, extrapolation: tuple[float, float] = (1.0, 1.0),
                  lengths: ProbeLengths | None = None, cache: Path | None = None, log=None,
                  clock=time.perf_counter) -> Rates:
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
                log(f"plan: building a {depth}-layer probe slice ({shape.slice_bytes(depth) / 1e9:.1f} GB) in {cache}")
            try:
                build_probe_slice(shape, depth, path)
            except OSError as exc:
                for p in (path, path.with_name(path.name + ".tmp")):
                    try:
                        p.unlink(missing_ok=True)  # nothing half-written under the final name
                    except OSError:
                        pass
                raise HarnessError(f"the probe slice could not be written to {cache}: {exc.strerror or exc}",
                                   f"free disk space there, or set {CACHE_ENV} to another folder.") from None
        if log:
            log(f"plan: timing llama.cpp on the {depth}-layer slice ({lengths.repeats} repeats)")
        samples[depth], got = time_slice(path, settings, lengths)
        info = {**got, "cpu_share": min(info.get("cpu_share", 1.0), got["cpu_share"])}
    point, fast, slow = extrapolate(samples, n_layer, extrapolation)
    base = {"batched_sequences": settings.n_parallel, "prompt_len": lengths.prompt, "deep_len": lengths.deep}
    d1, d2 = lengths.depths
    seconds = clock() - t_start
    method = (f"llama.cpp timed now on slices of this model ({d1} and {d2} of {n_layer} layers: its hidden size "
              f"{shape.n_embd}, FFN {shape.n_ff}, {shape.n_head}/{shape.n_head_kv} heads, vocabulary {shape.n_vocab}, "
              f"{shape.layer_type} layers, {shape.output_type} output; random weights), "
              f"{lengths.repeats} repeats, {info['threads']} threads, --parallel {settings.n_parallel}"
              f"{', on the GPU' if info['gpu_offload'] else ', on the CPU'}; time per token = a + b x layers through "
              f"the two slices, extrapolated to {n_layer}; the interval: the repeats' spread, "
              f"x{extrapolation[0]:g}..x{extrapolation[1]:g} for the extrapolation's checked error ({seconds:.0f} s)"
              + (f"; the machine was busy during the probe (it got {info['cpu_share']:.0%} of {info['threads']} "
                 "threads' CPU time): these are a busy machine's rates" if not info["gpu_offload"]
                 and info["cpu_share"] < BUSY_SHARE else ""))
    return Rates({**base, **point}, {**base, **fast}, {**base, **slow}, method, seconds)


def time_slice(path: Path, settings, lengths: ProbeLengths) -> tuple[list[dict], dict]:
    """The engine's speed probe on one slice, ``lengths.repeats`` times (a list of its result dicts), and what the
    engine ran with: ``threads``, ``gpu_offload``, and ``cpu_share``, the process's CPU time over wall time x
    threads while it ran (well under 1 on CPU: other work had the cores, and the rates are a busy machine's)."""
    import dataclasses as dc

    from harness.backends.llamacpp.engine import LlamaEngine

    try:
        engine = LlamaEngine(path, dc.replace(settings, rpc_servers=()))
    except ImportError as exc:
        raise HarnessError(f"llama.cpp is not importable here ({exc})", "run `make setup`.") from None
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out = [engine.speed_probe(lengths.prompt, lengths.steps, 1, lengths.deep, streams=True)
               for _ in range(lengths.repeats)]
        share = (time.process_time() - cpu0) / max((time.perf_counter() - wall0) * engine.threads, 1e-9)
        return out, {"threads": engine.threads, "gpu_offload": bool(engine.gpu_offload), "cpu_share": share}
    finally:
        engine.close()


def extrapolate(samples: dict[int, list[dict]], n_layer: int, error: tuple[float, float] = (1.0, 1.0)
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


def fallback_rates(params: float, weights_bytes: int, n_layer: int, probe: Probe, n_parallel: int,
                   spread: float, why: str) -> Rates:
    """The fallback: :func:`token_rates` from the numpy probes, the interval the rates /``spread``..x``spread``
    (one calibration point: no measured spread). ``why``: why the slice was not used, for the method line."""
    cal = calibration()
    point = token_rates(params, weights_bytes, n_layer, probe, n_parallel, cal)
    scale = {k: point[k] for k in ("prompt_tokens_per_s", "decode_1_tokens_per_s", "decode_batched_tokens_per_s")}
    fast = dict(point, **{k: v * spread for k, v in scale.items()})
    slow = dict(point, **{k: v / spread for k, v in scale.items()})
    method = (f"FALLBACK ({why}): numpy probes, not llama.cpp: {probe.describe()}; prompt = {cal.prompt_eff:.2f} x "
              f"FLOP/s / (2 x params), decode step = weights / bandwidth + {cal.decode_overhead_per_layer * 1e3:.2f} ms "
              f"per layer + (sequences - 1) x 2 x params / ({cal.batch_eff:.2f} x FLOP/s); factors from "
              f"`{cal.command}` on {cal.machine}, {cal.date}, which need not hold on this CPU; the interval scales "
              f"the rates by /{spread:g}..x{spread:g}")
    return Rates(point, fast, slow, method, sliced=False)
