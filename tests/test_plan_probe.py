"""`harness plan` times llama.cpp itself on a slice of the target (issue #30): probe slices in ggml's block
layouts load and run in the real llama.cpp; the per-layer extrapolation; the installed `harness plan` on a real
GGUF here (its slices timed, cached, the method and the checked size range stated; the numpy probes only as a
named fallback when no slice can be written); `--check-runs` leaves contended runs out and marks runs the plan
was not fitted on; the calibration runs (it swapped a clock the probe no longer read, #27)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models.probe_slice import BLOCKS, SliceShape, build_probe_slice
from harness.plan import calibration, slice_probe
from harness.plan.assumptions import plan_model
from harness.plan.render import checked_text

HARNESS = Path(sys.executable).parent / "harness"
ROOT = Path(__file__).resolve().parent.parent
# Small enough to build and time in seconds; every tensor kind of a Llama layer, a vocabulary past the bytes.
TINY = SliceShape(
    n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=1000, layer_type="Q4_K", output_type="Q6_K"
)
ENV = {
    "HF_HUB_OFFLINE": "1",
    "HARNESS_MEMORY_AVAILABLE": "24GiB",
    "HARNESS_GPU_FREE": "none",
    "HARNESS_DISK_FREE": "500GiB",
}


def test_block_layouts_are_ggml_s():
    import gguf

    for name, (per, size, scales) in BLOCKS.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]] == (per, size), name
        assert all(0 <= off <= size - 2 for off in scales), name


@pytest.mark.parametrize(
    "layer, output", [("Q4_0", "Q4_0"), ("Q4_K", "Q6_K"), ("Q2_K", "Q8_0"), ("Q5_K", "Q3_K")]
)
def test_a_probe_slice_loads_and_runs_in_llama_cpp(layer, output, tmp_path):
    from harness.backends.llamacpp.engine import LlamaEngine
    from harness.backends.llamacpp.settings import EngineSettings

    shape = SliceShape(256, 512, 4, 2, 1000, layer, output)
    path = build_probe_slice(shape, 2, tmp_path / "s.gguf")
    assert not list(tmp_path.glob("*.tmp")) and path.stat().st_size > shape.slice_bytes(2)
    engine = LlamaEngine(path, EngineSettings(threads=2, n_parallel=2))
    try:
        lc, m = engine.lc, engine.model
        assert (
            lc.llama_model_n_layer(m),
            lc.llama_model_n_embd(m),
            lc.llama_model_n_head(m),
            lc.llama_model_n_head_kv(m),
            engine.n_vocab,
        ) == (2, 256, 4, 2, 1000)
        sp = engine.speed_probe(32, 2, 1, 64, streams=True)
        assert all(math.isfinite(sp[k]) and sp[k] > 0 for k in slice_probe.RATE_KEYS)
    finally:
        engine.close()


@pytest.mark.parametrize("a, b, layers", [(0.010, 0.002, 16), (0.050, 0.0, 80), (0.0, 0.004, 1)])
def test_extrapolation_is_a_plus_b_layers_through_the_two_slices(a, b, layers):
    # Three repeats per depth: times a + b x depth at the median, 10% faster and 20% slower around it.
    samples = {d: [{"prompt_tokens_per_s": 1 / ((a + b * d) * f)} for f in (0.9, 1.0, 1.2)] for d in (1, 2)}
    point, fast, slow = slice_probe.extrapolate(samples, layers, (0.85, 1.25))
    t = a + b * layers
    assert 1 / point["prompt_tokens_per_s"] == pytest.approx(t, rel=1e-3)
    assert 1 / fast["prompt_tokens_per_s"] == pytest.approx(t * 0.9 * 0.85, rel=1e-3)
    assert 1 / slow["prompt_tokens_per_s"] == pytest.approx(t * 1.2 * 1.25, rel=1e-3)
    assert set(point) == {"prompt_tokens_per_s"}  # rates not probed stay absent


def test_a_slope_measured_below_zero_is_no_slope():
    samples = {1: [{"prompt_tokens_per_s": 100.0}], 2: [{"prompt_tokens_per_s": 110.0}]}  # 2 layers "faster"
    point, _, _ = slice_probe.extrapolate(samples, 32)
    assert point["prompt_tokens_per_s"] == pytest.approx(100.0)


def test_probe_lengths_shrink_as_layers_grow():
    seventy = SliceShape(8192, 28672, 64, 8, 128256, "Q4_K", "Q6_K")
    one_b = SliceShape(2048, 8192, 32, 8, 128256, "Q4_0", "Q4_0")
    assert (
        slice_probe.probe_lengths(seventy, 80).prompt == 64
        and slice_probe.probe_lengths(one_b, 16).prompt == 256
    )
    assert slice_probe.probe_lengths(one_b, 1).depths == (1, 1)


def test_the_plan_states_the_checked_size_range():
    lo, hi, _ = plan_model()["checked"]
    assert "outside" not in checked_text((lo + hi) / 2)
    assert "lies outside that range" in checked_text(70.6e9) and "lies outside that range" in checked_text(
        0.135e9
    )


def _run(args, env, timeout=600):
    return subprocess.run(
        [str(HARNESS), *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=timeout
    )


def test_plan_of_a_gguf_here_times_its_slices_and_falls_back_by_name(tmp_path):
    model = build_probe_slice(TINY, 3, tmp_path / "tiny-3-layers.Q4_K_M.gguf")
    cache = tmp_path / "cache"
    args = ["plan", str(model), "--tasks", "mmlu", "--limit", "16", "--kind", "base", "--parallel", "2"]
    out = _run(args, {**ENV, "HARNESS_PROBE_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr[-2000:]
    text = " ".join(out.stdout.split())
    assert (
        "llama.cpp timed now on slices of this model (1 and 2 of 3 layers: its hidden size 256, FFN 512, "
        "4/2 heads, vocabulary 1000, Q4_K layers, Q6_K output" in text
    ), text
    assert "this model (0.00B) lies outside that range: its estimate is unchecked" in text
    assert "FALLBACK" not in text and "building a 1-layer probe slice" in out.stderr
    assert sorted(p.name.rsplit("-", 1)[1] for p in cache.iterdir()) == [
        "L1.gguf",
        "L2.gguf",
    ]  # cached, complete
    again = _run(args, {**ENV, "HARNESS_PROBE_CACHE": str(cache)})
    assert again.returncode == 0 and "building" not in again.stderr  # the cache is used
    # No slice can be written (the cache folder would be inside a file): the numpy probes, named a fallback.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = _run(args, {**ENV, "HARNESS_PROBE_CACHE": str(blocker / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    text = " ".join(out.stdout.split())
    assert "FALLBACK (the slice could not be timed: the probe slice could not be written to" in text, text
    assert "numpy probes, not llama.cpp" in text and "Traceback" not in out.stderr


def test_check_runs_leaves_contended_runs_out_and_marks_runs_it_was_not_fitted_on(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    src = ROOT / "results" / "runs"
    fitted = "smollm2-135m-Q4_1-mmlu-c876c3448cf21f97-20261122T115616Z"
    unseen = "smollm2-135m-Q4_1-gsm8k-03992c2e0315f0be-20261122T113735Z"
    assert fitted in plan_model()["fitted_runs"] and unseen not in plan_model()["fitted_runs"]
    for stem in (fitted, unseen):
        shutil.copy(src / f"{stem}.json", runs / f"{stem}.json")
    cloze = "smollm2-135m-Q4_1-mmlu_cloze-fae4a51c1d79b5f1-20261122T121949Z"  # another run, marked contended
    busy = json.loads((src / f"{cloze}.json").read_text())
    busy["efficiency"] = {
        "speed_probe": {"prompt_tokens_per_s": 1.0},
        "floor_seconds": 1.0,
        "wall_over_floor": 9.0,
        "contended": True,
    }
    (runs / f"{cloze}.json").write_text(json.dumps(busy))
    out = _run(["plan", "--check-runs", "--rates", "reference", "--results-dir", str(tmp_path)], ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {ln.split()[2]: ln for ln in out.stdout.splitlines() if ln.startswith("smollm2-135m Q4_1")}
    assert len(rows) == 2, out.stdout
    assert " fitted " in rows["mmlu[1140]"] and " out of sample " in rows["gsm8k[250]"]
    assert "1 contended run(s) left out" in out.stdout


def test_the_calibration_runs(tmp_path):
    """`harness plan --calibrate`'s measurement, short, into a file of its own: it completes and reads back."""
    path = tmp_path / "plan_calibration.yaml"
    out = calibration.calibrate(n_parallel=2, path=path, repeats=1, seconds=0.05)
    cal = calibration.calibration(path)
    assert cal.prompt_tps == out["speed"]["prompt_tokens_per_s"] > 0 and cal.batched_sequences == 2
    assert "process CPU time" in path.read_text()


def test_the_calibration_is_timed_by_its_clock():
    """Every interval of the calibration is read from the clock it is given (issue #27: it once swapped a clock
    the probe no longer read). A clock that advances one second per reading makes each rate its work per second:
    the speed probe's 512 prompt tokens and 16 decode steps (x2 sequences), one 1024^3 matmul, one pass over the
    bandwidth buffer."""
    import itertools

    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path
    from harness.plan.probes import BW_CAP

    ticks = itertools.count()
    got = calibration.measure(
        n_parallel=2, cores=3, repeats=1, seconds=0.05, clock=lambda: float(next(ticks))
    )
    assert got["speed"] == {
        "threads": 1,
        "prompt_tokens_per_s": 512.0,
        "decode_1_tokens_per_s": 16.0,
        "decode_batched_tokens_per_s": 32.0,
        "batched_sequences": 2,
    }
    weights = local_model_path(resolve("smollm2-135m")).stat().st_size
    passes = min(weights, BW_CAP) // (4 * 4096) * 4 * 4096  # the bytes one matrix-vector pass reads
    assert got["probe"] == {"matmul_flops": 2 * 1024**3, "bandwidth": passes, "bandwidth_bytes": weights}
    assert got["reference"]["matmul_flops"] == 3 * 2 * 1024**3 and got["reference"]["bandwidth"] == 3 * BW_CAP
    assert got["model"]["weights_bytes"] == weights and got["model"]["n_layer"] == 30


@pytest.mark.slow
def test_harness_plan_calibrate_writes_a_calibration_that_reads_back(tmp_path):
    """`harness plan --calibrate` through the installed entry point, into a copy of tasks/ (HARNESS_TASKS_DIR, so
    the committed file is untouched): it exits 0, says what it wrote, and the file passes the plan's own checks."""
    tasks = shutil.copytree(ROOT / "tasks", tmp_path / "tasks")
    before = (ROOT / "tasks" / "plan_calibration.yaml").read_bytes()
    out = _run(["plan", "--calibrate", "--parallel", "2"], {**ENV, "HARNESS_TASKS_DIR": str(tasks)})
    assert out.returncode == 0, out.stderr[-2000:]
    written = tasks / "plan_calibration.yaml"
    assert out.stdout.startswith(f"wrote {written} ")
    cal = calibration.calibration(written)
    assert cal.batched_sequences == 2 and cal.threads == 1 and cal.command == "harness plan --calibrate"
    assert cal.prompt_tps > 0 and cal.probe.flops > 0 and cal.probe.bandwidth > 0
    assert calibration.reference_machine(written)["ram_bytes"] > 0
    assert (ROOT / "tasks" / "plan_calibration.yaml").read_bytes() == before
