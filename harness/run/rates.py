"""This machine's compute and memory rates, measured in about a second, and the model of llama.cpp's
token rates built on them: what `harness plan` scales to a model it has not loaded.

Two probes (numpy; OpenBLAS threads over every core, as llama.cpp's ``--threads 0``):

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
applied to any model on any machine: rate = factor x probe / model cost.
"""

from __future__ import annotations

import dataclasses
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


def calibrate(n_parallel: int = 8, path: Path = CALIBRATION_FILE, cores: int | None = None) -> dict:
    """Measure the calibration on this machine and write it to ``path``.

    ``harness speed`` on the offline model (best of 5) beside the two probes over its weights' size, all on
    one thread and timed by the process's CPU time, not the wall clock: a machine shared with other jobs
    (CI runners, this project's own agents on 2 cores) then still gives the rates of an idle core, and the
    ratios (the efficiency factors) do not depend on how busy the machine was. Run in a child process so
    that numpy's BLAS and llama.cpp both start with one thread. ``reference`` is an idle machine of
    ``cores`` (default: this one's) such cores, the probes scaled by the core count: the machine class of
    the published report's estimates.
    """
    import os
    import subprocess
    import sys

    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = (f"from harness.run.rates import _calibrate_here; from pathlib import Path; "
            f"_calibrate_here({int(n_parallel)}, Path({str(path)!r}), {cores!r})")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **one}, capture_output=True, text=True)
    if proc.returncode:
        raise HarnessError(f"the calibration failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
                           "run it again; `harness speed` must work on the offline model.")
    calibration.cache_clear()
    return yaml.safe_load(Path(path).read_text())


def _calibrate_here(n_parallel: int, path: Path, cores: int | None) -> None:
    """The calibration's measurement (one thread, CPU-time clock), in the child process."""
    import datetime
    import os
    import platform
    import types

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
    saved = getattr(speed_mod, "time", None)
    if saved is None or not hasattr(saved, "perf_counter"):
        raise HarnessError("the speed probe no longer times with time.perf_counter", "update rates._calibrate_here.")
    speed_mod.time = types.SimpleNamespace(perf_counter=clock)  # `harness speed`'s probe, on the CPU-time clock
    try:
        speed = speed_mod.probe(engine, repeats=5)
    finally:
        speed_mod.time = saved
        engine.close()
    flops = matmul_flops(2.0, clock=clock)
    small = memory_bandwidth(weights, 2.0, clock=clock)
    big = memory_bandwidth(BW_CAP, 2.0, clock=clock)
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
