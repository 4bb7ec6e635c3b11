"""Issue #26 items 2, 3 and 6: numbers checked where they enter, a message for every exit, small truths.

Through the installed ``harness`` entry point wherever argv, exit status or the terminal matter: records with
impossible numbers in a real runs folder, a real tmpfs that fills while a task runs with stderr redirected,
a Hub endpoint on a closed port of 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from records import make_record, write_record

from harness.errors import ExitCode, HarnessError

HARNESS = Path(sys.executable).parent / "harness"


def harness(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [str(HARNESS), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


# ------------------------------------------------------------------ 2. numbers checked where they enter
def _good_and_bad(results: Path) -> dict[str, Path]:
    """A good record (5 of 10 right) and, newer and of the same measurement, records whose numbers are not
    numbers or impossible: written as raw JSON (Python's json writes NaN), as a hand edit or a bug would."""
    good = make_record(
        "smollm2-135m",
        "gsm8k",
        {"gsm8k_cot_llama": [True, False] * 5},
        sizes={"gsm8k_cot_llama": 1319},
        quant="Q4_1",
        n_params=1.345e8,
    )
    paths = {"good": write_record(results, good)}
    head = next(iter(good["metrics"]))
    for i, (name, change) in enumerate(
        {
            "nan": {"value": float("nan")},
            "inf": {"value": float("inf"), "ci95": [0.0, float("inf")]},
            "impossible": {"value": -3.0, "ci95": [5.0, -2.0]},  # -300%, interval [500, -200]
            "outside": {"value": 0.9, "ci95": [0.1, 0.2]},  # the interval does not hold the value
            "no_samples": {"n": 0},
        }.items()
    ):
        bad = json.loads(json.dumps(good))
        bad["created"] = f"2026-12-0{i + 1}T10:00:00+00:00"  # newer: it would replace the good one
        bad["run_id"] = f"bad{i}"
        bad["metrics"][head].update(change)
        path = results / "runs" / f"zz-{name}.json"
        path.write_text(json.dumps(bad))
        paths[name] = path
    return paths


def test_bad_numbers_are_named_skipped_and_never_replace_a_good_record(tmp_path):
    """Without the checks: NaN/inf stop compare and publish (internal error, exit 70), and the -300% record,
    being the newer duplicate, is published instead of the real one."""
    paths = _good_and_bad(tmp_path)
    for args in (["scores"], ["compare"], ["publish"]):
        res = harness(*args, "--results-dir", str(tmp_path))
        assert res.returncode == 0, (args, res.stderr)
        assert "skipped 5 unreadable run record(s)" in res.stderr, res.stderr
        assert "zz-impossible.json: field metrics" in res.stderr or "zz-impossible.json" in res.stderr
    base = tmp_path / "baselines"
    base.mkdir()
    base.joinpath(paths["good"].name).write_bytes(paths["good"].read_bytes())
    reg = harness("regress", "--results-dir", str(tmp_path), "--baselines", str(base))
    assert reg.returncode == 0 and "skipped 5 unreadable run record(s)" in reg.stderr, reg.stderr
    assert "| 50.0     | 50.0 |" in reg.stdout or "50.0" in reg.stdout, reg.stdout
    scores = harness("scores", "--results-dir", str(tmp_path)).stdout
    assert "| 50.0 " in scores and "-300" not in scores and "nan" not in scores.lower()
    readme = (tmp_path / "README.md").read_text()
    assert paths["good"].name in readme and not any(paths[k].name in readme for k in paths if k != "good")
    assert "-300" not in readme and "nan" not in readme.lower().replace("nanochat", "")


@pytest.mark.parametrize(
    "change,field",
    [
        ({"value": 1.5}, "value"),
        ({"value": float("nan")}, "value"),
        ({"stderr": float("inf")}, "stderr"),
        ({"ci95": [0.6, 0.7]}, "interval"),
        ({"n": 0}, "n"),
    ],
)
def test_a_bad_metric_can_never_be_written(change, field):
    from harness.records.build import build_record

    rec = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True, False]}, quant="Q4_1")
    head = next(iter(rec["metrics"]))
    rec["metrics"][head].update(change)
    parts = {
        k: rec[k]
        for k in (
            "model",
            "backend",
            "task",
            "metrics",
            "per_subtask",
            "samples",
            "timing",
            "hardware",
            "packages",
            "harness_version",
            "harness_commit",
            "command",
            "created",
        )
    }
    with pytest.raises(HarnessError, match="the run record would not be valid") as err:
        build_record(stem="s", **parts)
    assert field in err.value.message


def test_one_sample_stderr_is_null_not_nan():
    from harness.analysis.estimate import mean_stderr

    assert mean_stderr([1.0]) is None and mean_stderr([1.0, 0.0]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "args,env,match",
    [
        (["--seed", str(2**32)], {}, "--seed"),
        (["--limit", str(10**8)], {}, "--limit"),
        (["--gpu-layers", str(10**9)], {}, "--gpu-layers"),
        (["--budget", "1e300"], {}, "--budget"),
        (["--rpc", ","], {}, "--rpc ',' names no worker"),
        (["--rpc", ""], {}, "names no worker"),
        ([], {"HARNESS_MEMORY_AVAILABLE": "9" * 400}, "HARNESS_MEMORY_AVAILABLE="),
        (
            [],
            {"HF_HUB_DOWNLOAD_TIMEOUT": "abc"},
            "HF_HUB_DOWNLOAD_TIMEOUT=",
        ),  # was: huggingface-hub's import failing
    ],
)
def test_numbers_are_bounded_before_any_work(tmp_path, mirror, args, env, match):
    """Without the bounds: --seed 2**32 fails inside numpy after the model loaded, a 400-digit size is an
    OverflowError (internal error, exit 70), and `--rpc ','` runs locally (exit 0)."""
    res = harness(
        "bench",
        "-t",
        "gsm8k",
        "--limit",
        "1",
        *args,
        "--data-dir",
        str(mirror),
        "--results-dir",
        str(tmp_path),
        env=env,
        timeout=120,
    )
    assert res.returncode == ExitCode.USER_ERROR, res.stderr
    assert match in res.stderr and len(res.stderr.strip().splitlines()) <= 4, res.stderr
    assert not list((tmp_path / "runs").glob("*.json")) if (tmp_path / "runs").exists() else True


# ------------------------------------------------------------------ 3. a message for every exit
def test_exit_codes_are_one_table():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 70, 130]
    assert HarnessError("x").exit_code == ExitCode.USER_ERROR


def test_disk_full_while_stderr_is_redirected_still_says_so(tmpfs, mirror, smollm2_path):
    """The results folder is on a real tmpfs with one free page: the journal's header takes it, then
    console.log (where stderr goes while the task runs) and the journal both meet ENOSPC. Without the fix the
    process exits 120 and prints nothing: the message went to console.log on the full disk, fd 2 stayed
    there, and Python's own flush at exit failed."""
    import openai_stub

    disk = tmpfs("64k")
    (disk / "filler").write_bytes(b"x" * (60 * 1024))  # something else took the rest of the disk
    stub = openai_stub.StubServer()
    from harness.backends.llamacpp.vocab import LocalVocab

    stub.count_tokens = LocalVocab(smollm2_path).count  # true counts: the first prompt's BOS check passes
    real = openai_stub.answer
    openai_stub.answer = lambda prompt: "y" * 6000 + real(prompt)  # an answer larger than the free space
    try:
        res = harness(
            "bench",
            "--backend",
            "server",
            "--base-url",
            stub.url,
            "-t",
            "gsm8k",
            "--limit",
            "4",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(disk),
            "--retry-for",
            "1",
        )
    finally:
        openai_stub.answer = real
        stub.close()
    assert res.returncode == ExitCode.USER_ERROR, (res.returncode, res.stderr[-2000:])
    assert "No space left on device" in res.stderr and "rerun the same command" in res.stderr, res.stderr[
        -2000:
    ]


# ------------------------------------------------------------------ 6. small truths
def test_published_strings_are_bounded(tmp_path):
    """A record field of 10 MB made a 110 MB results/README.md; long strings are now cut, with a hash."""
    rec = make_record(
        "smollm2-135m",
        "gsm8k",
        {"gsm8k_cot_llama": [True, False] * 5},
        sizes={"gsm8k_cot_llama": 1319},
        quant="Q4_1",
        n_params=1.345e8,
    )
    rec["command"] = "harness bench " + "A" * 10_000_000
    rec["hardware"]["cpu"] = "B" * 1_000_000
    write_record(tmp_path, rec)
    res = harness("publish", "--results-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p.is_file()}
    assert max(sizes.values()) < 200_000, sizes


def test_two_long_strings_stay_apart():
    from harness.publish.report import bounded

    a, b = "x" * 5000 + "a", "x" * 5000 + "b"
    assert len(bounded(a)) <= 400 and bounded(a) != bounded(b) and bounded("short") == "short"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_hub_fails_fast_with_one_line(tmp_path):
    """No network, no data mirror: before, 28 s and 10 lines of retry noise before the clear error."""
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "HARNESS_DATA_DIR": "",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "ds"),
    }
    env = {k: v for k, v in env.items()}
    t0 = time.monotonic()
    res = harness(
        "bench",
        "-t",
        "gsm8k",
        "--limit",
        "1",
        "--results-dir",
        str(tmp_path / "r"),
        env=env | {"HF_HUB_OFFLINE": "0"},
        timeout=120,
    )
    took = time.monotonic() - t0
    assert res.returncode == ExitCode.USER_ERROR, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert any("Hub" in ln and "not reachable" in ln for ln in lines), res.stderr
    assert len([ln for ln in lines if "Error" in ln or "retry" in ln.lower() or "Retry" in ln]) <= 1, (
        res.stderr
    )
    assert took < 15, took


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.none(),
    st.sampled_from([0.0, 1.0, 0.5, -0.0, 1e-300, 1 + 1e-12]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=NUMBERS, stderr=NUMBERS, lo=NUMBERS, hi=NUMBERS, n=st.integers(-5, 50))
def test_any_numbers_in_a_newer_record_never_make_a_wrong_score(tmp_path_factory, value, stderr, lo, hi, n):
    """Arbitrary numbers in a newer duplicate of a good record: loading never raises; either the record is
    skipped (and the good one kept), or every number it brings is a valid score."""
    import math

    from harness.records.runs import load_runs

    results = tmp_path_factory.mktemp("results")
    good = make_record(
        "smollm2-135m",
        "gsm8k",
        {"gsm8k_cot_llama": [True, False] * 5},
        sizes={"gsm8k_cot_llama": 1319},
        quant="Q4_1",
        n_params=1.345e8,
    )
    write_record(results, good)
    bad = json.loads(json.dumps(good))
    bad["created"], bad["run_id"] = "2026-12-01T10:00:00+00:00", "newer"
    head = next(iter(bad["metrics"]))
    bad["metrics"][head].update(value=value, stderr=stderr, ci95=[lo, hi], n=n)
    (results / "runs" / "newer.json").write_text(json.dumps(bad))
    loaded = load_runs(results)
    (run,) = loaded.runs
    m = run.rec.metrics[head]
    assert math.isfinite(m.value) and 0 <= m.value <= 1 and m.n >= 1
    assert m.ci95[0] - 1e-9 <= m.value <= m.ci95[1] + 1e-9 and all(0 <= x <= 1 for x in m.ci95)
    assert m.stderr is None or (math.isfinite(m.stderr) and m.stderr >= 0)
    if run.rec.run_id != "newer":
        assert [p.name for p, _ in loaded.unreadable] == ["newer.json"]
