"""The token rates `harness plan` prices a run at, as one type (:class:`Rates`), and the two ways to them that
need no slice: the numpy fallback (:func:`fallback_rates`) and another quant's rates scaled from a probed one.

The main way, llama.cpp timed on a slice of the target, is harness/plan/slice_probe.py. The fallback is named
as such wherever it is used: when the slice cannot be built or run (no disk space, no llama.cpp), this
machine's numpy probes (harness/plan/probes.py) scaled to the model by the calibration's factors
(harness/plan/calibration.py). Why not always: llama.cpp's quantized kernels (int8 dot products, VNNI, AMX) keep
no fixed ratio to any other instrument across CPUs; the numpy probes, scaled by factors fitted on one Intel CPU,
estimated 4.3 times the real time of a 1B-shape run on an AMD EPYC (issue #30).
"""

from __future__ import annotations

import dataclasses

from harness.plan.calibration import Calibration, calibration
from harness.plan.probes import Probe


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


def token_rates(
    params: float,
    weights_bytes: int,
    n_layer: int,
    probe: Probe,
    n_parallel: int,
    cal: Calibration | None = None,
) -> dict:
    """Prompt and decode rates (tokens/s) of a model on a probed machine, in the shape of
    ``harness.backends.llamacpp.speed.probe`` so its ``floor_seconds`` applies.

    prompt = prompt_eff x FLOP/s / (2 x params); one decode step of b sequences takes weights / bytes/s plus
    n_layer x the per-layer overhead (scaled by the calibration's FLOP/s over this machine's) plus
    (b - 1) x 2 x params / (batch_eff x FLOP/s).
    """
    cal = cal or calibration()
    prompt = cal.prompt_eff * probe.flops / (2 * params)
    t1 = (
        weights_bytes / probe.bandwidth
        + n_layer * cal.decode_overhead_per_layer * cal.probe.flops / probe.flops
    )
    extra = 2 * params / (cal.batch_eff * probe.flops)
    tb = t1 + (n_parallel - 1) * extra
    return {
        "prompt_tokens_per_s": prompt,
        "decode_1_tokens_per_s": 1 / t1,
        "decode_batched_tokens_per_s": n_parallel / tb,
        "batched_sequences": n_parallel,
    }


def fallback_rates(
    params: float, weights_bytes: int, n_layer: int, probe: Probe, n_parallel: int, spread: float, why: str
) -> Rates:
    """The fallback: :func:`token_rates` from the numpy probes, the interval the rates /``spread``..x``spread``
    (one calibration point: no measured spread). ``why``: why the slice was not used, for the method line."""
    cal = calibration()
    point = token_rates(params, weights_bytes, n_layer, probe, n_parallel, cal)
    scale = {
        k: point[k] for k in ("prompt_tokens_per_s", "decode_1_tokens_per_s", "decode_batched_tokens_per_s")
    }
    fast = dict(point, **{k: v * spread for k, v in scale.items()})
    slow = dict(point, **{k: v / spread for k, v in scale.items()})
    method = (
        f"FALLBACK ({why}): numpy probes, not llama.cpp: {probe.describe()}; prompt = {cal.prompt_eff:.2f} x "
        f"FLOP/s / (2 x params), decode step = weights / bandwidth + {cal.decode_overhead_per_layer * 1e3:.2f} ms "
        f"per layer + (sequences - 1) x 2 x params / ({cal.batch_eff:.2f} x FLOP/s); factors from "
        f"`{cal.command}` on {cal.machine}, {cal.date}, which need not hold on this CPU; the interval scales "
        f"the rates by /{spread:g}..x{spread:g}"
    )
    return Rates(point, fast, slow, method, sliced=False)


def scaled_rates(r: Rates, from_bytes: int, to_bytes: int, quant: str) -> Rates:
    """Another quant's rates from a probed one: decode reads every weight once per step, so its time per token
    scales with the weights' bytes; prompt processing is compute and stays as probed."""
    f = from_bytes / to_bytes

    def one(d: dict) -> dict:
        return {k: (v * f if k.startswith("decode_") and k.endswith("_per_s") else v) for k, v in d.items()}

    return Rates(
        one(r.point),
        one(r.fast),
        one(r.slow),
        f"{quant}: the probed quant's rates, decode scaled by the weights' bytes ({1 / f:.2f}x)",
        sliced=r.sliced,
    )
