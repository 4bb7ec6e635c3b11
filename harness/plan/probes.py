"""This machine's numpy probes, the plan's fallback instruments: matmul FLOP/s and memory bandwidth.

- **matmul**: float32 matrix products, FLOP/s. Prompt processing is matrix-matrix work, ~2 x params FLOPs per
  token (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1:
  https://arxiv.org/abs/2001.08361).
- **memory**: a matrix-vector product over a buffer the size of the weights (capped at 512 MiB, past the
  last-level cache), bytes/s. One decode step of one sequence reads every weight once, so its time is
  about weight bytes over bandwidth (the same roofline reasoning as llama.cpp's own notes on token
  generation being memory-bound: https://github.com/ggml-org/llama.cpp/discussions/638).

They price a model only through the calibration's factors (harness/plan/calibration.py), when no slice of the
model can be timed (harness/plan/slice_probe.py).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

MIB = 2**20
BW_CAP = 512 * MIB  # past any last-level cache: what a multi-GB model's decode sees


def matmul_flops(
    seconds: float = 0.5, n: int = 1024, clock: Callable[[], float] = time.perf_counter, best: bool = True
) -> float:
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


def memory_bandwidth(
    nbytes: int = BW_CAP,
    seconds: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
    best: bool = True,
) -> float:
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
        """The probe in the plan's method line."""
        return (
            f"matmul {self.flops / 1e9:.1f} GFLOP/s, memory {self.bandwidth / 1e9:.1f} GB/s "
            f"(over {self.bw_bytes / MIB:.0f} MiB); {self.source}"
        )


def probe_now(weights_bytes: int) -> Probe:
    """Both probes on this machine now, about a second in all, wall clock and every core: the median pass, so
    that a machine busy with other work is judged as a long run will find it, not by its best moment."""
    size = min(int(weights_bytes), BW_CAP)
    return Probe(
        matmul_flops(best=False),
        memory_bandwidth(size, best=False),
        size,
        "measured now (median of 0.5 s each, all cores)",
    )
