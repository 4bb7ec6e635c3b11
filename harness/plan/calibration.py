"""The numpy fallback's calibration (tasks/plan_calibration.yaml, written by ``harness plan --calibrate``).

It holds the two numpy probes (harness/plan/probes.py) next to ``harness speed`` on the offline model, measured
once on one machine with the date and command. Its ratios (how much of the probed rate llama.cpp reaches) are
the efficiency factors the fallback applies to any model on any machine: rate = factor x probe / model cost
(harness/plan/rates.py ``token_rates``). Its ``reference`` is the machine class of the published report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import yaml

from harness.datafiles import load_file
from harness.datafiles.plan import PlanCalibration
from harness.errors import HarnessError
from harness.paths import TASKS_DIR
from harness.plan.probes import BW_CAP, Probe, matmul_flops, memory_bandwidth

CALIBRATION_FILE = TASKS_DIR / "plan_calibration.yaml"


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
    """tasks/plan_calibration.yaml, validated by its type (harness/datafiles/plan.py ``PlanCalibration``)."""
    d = load_file(PlanCalibration, path)
    p, s = d.probe, d.speed
    return Calibration(
        date=d.date,
        command=d.command,
        machine=d.machine,
        model=d.model.name,
        params=d.model.params,
        weights_bytes=d.model.weights_bytes,
        n_layer=d.model.n_layer,
        threads=s.threads,
        probe=Probe(float(p.matmul_flops), float(p.bandwidth), p.bandwidth_bytes, f"calibration of {d.date}"),
        prompt_tps=float(s.prompt_tokens_per_s),
        decode_1_tps=float(s.decode_1_tokens_per_s),
        decode_batched_tps=float(s.decode_batched_tokens_per_s),
        batched_sequences=s.batched_sequences,
    )


def reference_machine(path: Path = CALIBRATION_FILE) -> dict:
    """The reference machine class (``reference`` in tasks/plan_calibration.yaml): its name, probe and RAM, for
    estimates that must not depend on the machine computing them (the published report)."""
    cal = calibration(path)
    r = load_file(PlanCalibration, path).reference
    return {
        "name": r.name,
        "ram_bytes": r.ram_bytes,
        "probe": Probe(
            float(r.matmul_flops),
            float(r.bandwidth),
            r.bandwidth_bytes,
            f"reference machine class: {r.name}, calibrated {cal.date}",
        ),
    }


def reference_probe() -> Probe:
    """The reference machine class's probe (see :func:`reference_machine`)."""
    return reference_machine()["probe"]


def calibrate(
    n_parallel: int = 8,
    path: Path = CALIBRATION_FILE,
    cores: int | None = None,
    repeats: int = 5,
    seconds: float = 2.0,
) -> dict:
    """Measure the calibration on this machine (:func:`measure`) and write it to ``path``; returns what was written.

    Run in a child process so that numpy's BLAS and llama.cpp both start with one thread, timed there by the
    process's CPU time (:func:`measure`'s default clock). It calibrates the numpy fallback only."""
    import os
    import subprocess
    import sys

    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = (
        f"from harness.plan.calibration import measure, write; from pathlib import Path; "
        f"write(measure({int(n_parallel)}, {cores!r}, {int(repeats)}, {float(seconds)!r}), Path({str(path)!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **one}, capture_output=True, text=True
    )
    if proc.returncode:
        raise HarnessError(
            f"the calibration failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
            "run it again; `harness speed` must work on the offline model.",
        )
    calibration.cache_clear()
    return yaml.safe_load(Path(path).read_text())


def measure(
    n_parallel: int = 8,
    cores: int | None = None,
    repeats: int = 5,
    seconds: float = 2.0,
    clock: Callable[[], float] = time.process_time,
) -> dict:
    """The calibration's figures on this machine: ``harness speed``'s probe on the offline model (best of
    ``repeats``, one llama.cpp thread) beside the two numpy probes over its weights' size (``seconds`` each),
    every interval timed by ``clock``. The default, the process's CPU time, not the wall clock: a machine
    shared with other jobs (CI runners, this project's own agents on 2 cores) then still gives the rates of an
    idle core, and the ratios (the efficiency factors) do not depend on how busy the machine was. ``reference``
    is an idle machine of ``cores`` (default: this one's) such cores, the probes scaled by the core count: the
    machine class of the published report's estimates."""
    import datetime
    import os

    import psutil

    from harness.backends.llamacpp import speed as speed_mod
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.catalogue import resolve
    from harness.models.gguf_check import read_header_shape
    from harness.models.gguf_header import file_fetch
    from harness.models.locate import local_model_path
    from harness.plan.machine import cpu_name

    entry = resolve("smollm2-135m")
    path_gguf = local_model_path(entry)
    weights = Path(path_gguf).stat().st_size
    shape = read_header_shape(file_fetch(Path(path_gguf)))
    engine = LlamaEngine(path_gguf, EngineSettings(threads=1, n_parallel=n_parallel))
    try:
        speed = speed_mod.probe(
            engine, repeats=repeats, clock=clock
        )  # `harness speed`'s probe, timed by ``clock``
    finally:
        engine.close()
    flops = matmul_flops(seconds, clock=clock)
    small = memory_bandwidth(weights, seconds, clock=clock)
    big = memory_bandwidth(BW_CAP, seconds, clock=clock)
    cpu = cpu_name()
    cores = cores or os.cpu_count() or 1
    machine = f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    return {
        "schema_version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "command": "harness plan --calibrate",
        "clock": "process CPU time, one thread (llama.cpp --threads 1, BLAS 1 thread)",
        "machine": machine,
        "model": {
            "name": f"{entry.name} {entry.quant}",
            "params": int(entry.params),
            "weights_bytes": weights,
            "n_layer": int(shape["n_layer"]),
        },
        "probe": {
            "matmul_flops": round(flops),
            "bandwidth": round(small),
            "bandwidth_bytes": min(weights, BW_CAP),
        },
        "speed": {
            "threads": 1,
            **{
                k: speed[k]
                for k in (
                    "prompt_tokens_per_s",
                    "decode_1_tokens_per_s",
                    "decode_batched_tokens_per_s",
                    "batched_sequences",
                )
            },
        },
        "reference": {
            "name": f"an idle {cores}-core machine of this CPU ({cpu}; probes x {cores} cores)",
            "matmul_flops": round(flops * cores),
            "bandwidth": round(big * cores),
            "bandwidth_bytes": BW_CAP,
            "ram_bytes": psutil.virtual_memory().total,
        },
    }


def write(figures: dict, path: Path = CALIBRATION_FILE) -> None:
    """Write :func:`measure`'s figures to ``path`` under the header that says where they come from."""
    head = (
        "# Written by `harness plan --calibrate` (harness/plan/calibration.py): `harness speed` on the offline model\n"
        "# beside the matmul and memory probes, on one thread and the CPU-time clock, on the machine named\n"
        "# below; `reference` is the machine class of the published report's estimates. Do not edit.\n"
    )
    Path(path).write_text(head + yaml.safe_dump(figures, sort_keys=False))
