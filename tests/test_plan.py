"""`harness plan`: sizes, fit and recommendation for every catalogue entry on a pretended machine (RAM, GPU and
disk figures from environment variables; no network); the plan's tasks equal the runner's; the bench's plan
line and its --budget refusal; the estimate beside a real run of the offline model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.llamacpp.settings import EngineSettings
from harness.backends.llamacpp.sizing import planned_ctx
from harness.disk import GIB
from harness.errors import HarnessError
from harness.models.catalogue import load_catalogue, resolve
from harness.plan.assumptions import plan_model, plan_tokens, task_costs
from harness.plan.calibration import reference_probe
from harness.plan.estimate import make_plan
from harness.plan.fit import check_fit, fit_or_refuse
from harness.tasks.settings import plan_task, task_spec

HARNESS = Path(sys.executable).parent / "harness"
TASKS = ["gsm8k", "mmlu"]


@pytest.fixture()
def machine(monkeypatch):
    """A pretended machine: no Hub, the given RAM, GPUs and free disk."""

    def set_(ram="24GiB", gpus="none", disk="500GiB"):
        for k, v in {
            "HF_HUB_OFFLINE": "1",
            "HARNESS_MEMORY_AVAILABLE": ram,
            "HARNESS_GPU_FREE": gpus,
            "HARNESS_DISK_FREE": disk,
        }.items():
            monkeypatch.setenv(k, v)

    set_()
    return set_


def _plan(name, **kw):
    return make_plan(name, probe=reference_probe(), **kw)


def test_every_catalogue_entry_sizes_fit_and_recommendation(machine):
    catalogue = load_catalogue()["models"]
    bpw = plan_model()["bpw"]
    for name in catalogue:
        plan = _plan(name)
        quants = {q: v for q, v in catalogue[name]["quants"].items() if isinstance(v, dict)}
        assert [q.quant for q in plan.quants] == list(quants), name
        for q in plan.quants:
            entry = resolve(name, q.quant)
            want = quants[q.quant].get("size")
            if entry.package:  # the offline model: its real file
                assert q.size_source == "file here" and q.download == 0
            elif want:
                assert (q.size, q.size_source) == (want, "catalogue"), (name, q.quant)
            else:
                assert q.size == int(entry.params * bpw[q.quant] / 8) and q.size_source.startswith("≈"), (
                    name,
                    q.quant,
                )
            assert q.shape is not None
            # Only a quant that can run here is timed (a slice of one that fits nowhere would be probed for nothing).
            if q.fits_ram or q.gpu_layers:
                assert q.seconds is not None and q.seconds[0] < q.seconds[1] < q.seconds[2], (name, q.quant)
            else:
                assert q.seconds is None, (name, q.quant)
            # The fit is the preflight's own verdict, with the same KV cache it would size.
            try:
                fit_or_refuse(
                    q.size,
                    q.shape,
                    task_costs(entry, TASKS),
                    EngineSettings(),
                    name,
                    placed=("cpu", []),
                    available=24 * GIB,
                )
                fits = True
            except HarnessError:
                fits = False
            assert q.fits_ram == fits, (name, q.quant)
        fitting = [q for q in plan.quants if q.fits_ram]
        assert plan.recommended == (max(fitting, key=lambda q: q.size).quant if fitting else None), name
    # What those rules give on a 24 GiB machine without a GPU.
    assert _plan("llama3.1-8b-instruct").recommended == "Q8_0"
    assert _plan("llama3.2-1b-instruct").recommended == "Q8_0"
    assert _plan("smollm2-135m").recommended == "Q4_1"
    seventy = _plan("llama3.1-70b-instruct")
    assert seventy.recommended is None and not any(q.fits for q in seventy.quants)


def test_less_memory_less_disk_and_a_gpu(machine):
    machine(ram="10GiB")
    assert _plan("llama3.1-8b-instruct").recommended == "Q5_K_M"  # Q8_0: 7.9 GiB + 3.4 GiB of KV cache
    machine(ram="6GiB")
    p = _plan("llama3.1-8b-instruct")
    assert p.recommended is None and "no quant fits" in p.why
    assert _plan("llama3.1-8b-instruct", settings=EngineSettings(n_parallel=1)).recommended == "Q4_K_M"
    machine(disk="5GiB")  # Q5_K_M is 5.3 GiB
    assert _plan("llama3.1-8b-instruct").recommended == "Q4_K_M"
    machine(disk="300GiB")  # 405B Q4_K_S: 5 byte parts joined beside the cache, twice its size on disk
    q = _plan("llama3.1-405b", quant="Q4_K_S").quants[0]
    assert q.disk_need == 2 * q.size and not q.disk_ok
    machine(ram="24GiB", gpus="48GiB")
    for q in _plan("llama3.1-70b-instruct").quants:
        n = q.gpu_layers
        assert n is not None
        settings = (q.size, q.kv, q.shape["n_layer"])
        if n:  # the most layers the preflight accepts on that GPU
            check_fit(*settings, n, "gpu", _gpus(48), "x", 24 * GIB)
        if n < q.shape["n_layer"]:
            with pytest.raises(HarnessError):
                check_fit(*settings, n + 1, "gpu", _gpus(48), "x", 24 * GIB)
    assert _plan("llama3.1-70b-instruct").recommended == "Q6_K"  # 62.4 GiB: 47 on the GPU, 15 in RAM


def _gpus(gib):
    return [{"device": "GPU0", "description": "", "free_bytes": gib * GIB, "total_bytes": gib * GIB}]


def test_budget_picks_the_largest_quant_that_finishes(machine):
    plan = _plan("llama3.1-8b-instruct")
    points = {q.quant: q.seconds[1] for q in plan.quants}
    assert _plan("llama3.1-8b-instruct", budget_hours=1e6).recommended == "Q8_0"
    tight = _plan("llama3.1-8b-instruct", budget_hours=min(points.values()) / 3600 / 2)
    assert tight.recommended is None and "finishes within" in tight.why
    cut = sorted(points.values())[1] / 3600  # the second quickest just fits
    got = _plan("llama3.1-8b-instruct", budget_hours=cut).recommended
    assert points[got] <= cut * 3600
    assert all(points[q] > cut * 3600 for q in points if plan_size(plan, q) > plan_size(plan, got))


def plan_size(plan, quant):
    return next(q.size for q in plan.quants if q.quant == quant)


def test_plan_tasks_equal_the_runners(mirror):
    """The plan sizes its KV cache and counts its questions from the task settings without reading data: the
    same figures as the runner's own plan (plan_task)."""
    for name, kind in (
        ("smollm2-135m", "instruct"),
        ("llama3.1-8b", "base"),
        ("llama3.1-8b-instruct", "instruct"),
    ):
        entry = dataclasses.replace(resolve(name), kind=kind)
        for task in ("gsm8k", "gsm8k_5shot", "mmlu", "mmlu_loglik", "mmlu_cloze", "mmlu_cot"):
            if task_spec(task, kind).get("requires_kind") not in (None, kind):
                continue
            for limit, full in ((None, False), (16, False), (None, True)):
                real = plan_task(task, entry, limit=limit, full=full, data_dir=mirror)
                light = task_costs(entry, [task], limit, full)
                assert light[0].n == real.n_samples and light[0].chat == real.chat, (name, task, limit)
                for settings in (EngineSettings(), EngineSettings(n_parallel=2, gen_streams=False)):
                    assert planned_ctx(light, settings) == planned_ctx([real], settings), (name, task, limit)


def test_token_table_reproduces_committed_runs():
    """The measured prompt tokens at a subset size equal what the engine counted in the committed runs."""
    table = plan_tokens()
    assert dict(table["gsm8k/chat"]["points"])[1319] == 124729  # results/runs/...gsm8k-8a4e484ea2765835...
    assert dict(table["gsm8k/chat"]["points"])[250] == 24038
    assert dict(table["gsm8k_5shot/plain"]["points"])[100] == 100799
    assert dict(table["mmlu_cloze/plain"]["points"])[1140] == 133318
    assert dict(table["mmlu/chat"]["points"])[1140] == 211660


def _run(args, env=None, timeout=600):
    import os

    return subprocess.run(
        [str(HARNESS), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HARNESS_MEMORY_AVAILABLE": "24GiB",
    "HARNESS_GPU_FREE": "none",
    "HARNESS_DISK_FREE": "500GiB",
}


def test_cli_plan_and_its_messages():
    out = _run(["plan", "llama3.1-8b-instruct", "--rates", "reference"], OFFLINE_ENV)
    assert out.returncode == 0, out.stderr
    for q in ("Q4_K_S", "Q4_K_M", "Q5_K_M", "Q8_0"):
        assert f"\n{q} " in out.stdout
    assert "recommended: Q8_0" in out.stdout and "method: time = " in out.stdout
    assert "reference machine class" in out.stdout
    bad = _run(["plan"], OFFLINE_ENV)
    assert bad.returncode == 2 and "needs a MODEL" in bad.stderr and "Traceback" not in bad.stderr
    bad = _run(["plan", "llama3.1-8b-instruct", "--tasks", "mmlu_cot", "--kind", "base"], OFFLINE_ENV)
    assert bad.returncode == 2 and "instruct" in bad.stderr and "Traceback" not in bad.stderr
    bad = _run(["plan", "smollm2-135m"], {**OFFLINE_ENV, "HARNESS_GPU_FREE": "lots"})
    assert bad.returncode == 2 and "HARNESS_GPU_FREE" in bad.stderr


def test_bench_refuses_a_run_over_budget(tmp_path):
    out = _run(
        ["bench", "--tasks", "gsm8k", "--full", "--budget", "0.01", "--results-dir", str(tmp_path)],
        OFFLINE_ENV,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "over --budget 0.01 h" in out.stderr and "method: time = " in out.stderr
    assert "plan: smollm2-135m Q4_1 gsm8k[1319]" in out.stderr
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.slow
def test_estimate_beside_a_real_run(tmp_path, mirror):
    """A small real bench of the offline model, then `harness plan --check-runs` on it: the prompt tokens the
    plan counted are the engine's exactly (16 is a measured subset size); the time ratio is printed, not
    asserted (the machine is shared)."""
    out = _run(
        [
            "bench",
            "--tasks",
            "mmlu_cloze",
            "--limit",
            "16",
            "--threads",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        ],
        OFFLINE_ENV,
        timeout=3600,
    )  # ~15 s on an idle 2-core machine
    assert out.returncode == 0, out.stderr[-3000:]
    assert "plan: smollm2-135m Q4_1 mmlu_cloze[16]" in out.stderr
    check = _run(["plan", "--check-runs", "--results-dir", str(tmp_path)], OFFLINE_ENV)
    assert check.returncode == 0, check.stderr
    print(check.stdout)
    rec = json.loads(
        next(p for p in (tmp_path / "runs").glob("*.json") if ".lm_eval." not in p.name).read_text()
    )
    if rec["efficiency"]["contended"]:  # a busy machine's run is left out of the check, and the check says so
        assert "1 contended run(s) left out" in check.stdout
        return
    row = next(ln for ln in check.stdout.splitlines() if ln.startswith("smollm2-135m Q4_1 mmlu_cloze[16]"))
    assert (
        f" {rec['timing']['prompt_tokens']} / {rec['timing']['prompt_tokens']} "
        in f" {' '.join(row.split())} "
    )
    assert "est/actual" in check.stdout


def test_hub_model_plan_reads_only_the_header(tmp_path, mirror):
    """An hf: model and a catalogue entry without sizes, against a fake Hub on 127.0.0.1: the plan takes the
    sizes from the Hub's metadata and the shape from a 1 MiB range read of the header, never a weight byte."""
    from hub_server import FakeHub
    from test_fit_before_download import (
        Q4,
        Q4_SIZE,
        REPO,
        env_for,
        llama70b_header_gguf,
        tasks_dir,
        weight_bytes_served,
    )

    tasks_dir(tmp_path)
    g = llama70b_header_gguf(tmp_path / "70b.gguf")
    with FakeHub() as hub:
        hub.files[(REPO, Q4)] = g
        hub.fake_size[Q4] = Q4_SIZE
        hub.files[("acme/big-GGUF", "Big-70B-Instruct-Q4_K_M.gguf")] = g
        hub.fake_size["Big-70B-Instruct-Q4_K_M.gguf"] = Q4_SIZE
        env = env_for(
            hub,
            tmp_path,
            mirror,
            HARNESS_MEMORY_AVAILABLE="24GiB",
            HARNESS_GPU_FREE="none",
            HARNESS_DISK_FREE="500GiB",
        )
        for model in ("hf:acme/big-GGUF/Big-70B-Instruct-Q4_K_M.gguf", "llama3.3-70b"):
            out = subprocess.run(
                [
                    str(HARNESS),
                    "plan",
                    model,
                    "--quant",
                    "Q4_K_M",
                    "--tasks",
                    "gsm8k",
                    "--rates",
                    "reference",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=300,
            )
            assert out.returncode == 0, out.stderr
            row = next(ln for ln in out.stdout.splitlines() if ln.startswith("Q4_K_M"))
            assert f"{Q4_SIZE / 1e9:.1f} GB" in row and "≈" not in row  # the Hub's size, not an estimate
            assert "does not fit" in row
            assert "GGUF header (1 MiB range read)" in out.stdout
        for name in (Q4, "Big-70B-Instruct-Q4_K_M.gguf"):
            assert weight_bytes_served(hub, name, g) == 0
        assert all(r and r.startswith("bytes=0-") for m, p, r in hub.log if m == "GET" and "/resolve/" in p)
