"""Issue #26 item 5: the data is the data the claims were made on. tasks/data_pins.yaml pins each data file's row
count and content sha256; a mismatch is one message before any model loads; --allow-modified-data runs anyway,
records it, and such a run is never compared with a claim. Real parquet files in a tmp mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openai_stub import StubServer
from test_bench_e2e import run_cli

from harness.analysis.compare import NOT_COMPARABLE, compare_all
from harness.errors import HarnessError
from harness.models.catalogue import resolve
from harness.records.runs import load_runs
from harness.tasks.data import PINS_FILE, content_sha256, load_pins
from harness.tasks.settings import plan_task

GSM8K_TEST = "openai/gsm8k/main/test-00000-of-00001.parquet"


def edited_mirror(tmp_path: Path, mirror: Path, rel: str, edit) -> Path:
    """A copy of the mirror (symlinks) whose file ``rel`` is rewritten with ``edit(rows) -> rows``."""
    root = tmp_path / "data"
    for src in mirror.rglob("*.parquet"):
        dst = root / src.relative_to(mirror)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)
    target = root / rel
    rows = edit(pq.read_table(target.resolve()).to_pylist())
    target.unlink()
    pq.write_table(pa.Table.from_pylist(rows), target)
    return root


def test_the_pins_match_the_mirror_they_were_computed_from(mirror):
    pins = load_pins()
    assert pins["openai/gsm8k/main/test"].rows == 1319 and pins["openai/gsm8k/main/train"].rows == 7473
    assert sum(p.rows for k, p in pins.items() if k.startswith("cais/mmlu/") and k.endswith("/test")) == 14042
    rows, sha = content_sha256(mirror / GSM8K_TEST, ["question", "answer"])
    assert (rows, sha) == (pins["openai/gsm8k/main/test"].rows, pins["openai/gsm8k/main/test"].sha256)
    assert "commit 3101c7d" in PINS_FILE.read_text()  # which revision the pins are of


@pytest.mark.parametrize(
    "pin,says",
    [
        ("{rows: 1319, sha256: abc}", "sha256 must be 64 lowercase hex digits (got 'abc')"),
        ("{rows: 0, sha256: %s}" % ("ab" * 32), "rows must be a positive row count (got 0)"),
        ("{rows: 1319}", "missing field(s) sha256"),
        ("{rows: 1319, sha256: %s, bytes: 9}" % ("ab" * 32), "unknown field(s) bytes"),
    ],
)
def test_a_malformed_pin_is_one_message_naming_it(tmp_path, pin, says):
    path = tmp_path / "data_pins.yaml"
    path.write_text(f"schema_version: 1\nfiles:\n  openai/gsm8k/main/test: {pin}\n")
    with pytest.raises(HarnessError) as err:
        load_pins(path)
    assert err.value.message == f"data_pins.yaml: pin 'openai/gsm8k/main/test': {says}"
    assert "python -m harness.tasks.data" in err.value.hint


def test_the_same_rows_rewritten_by_another_writer_still_match(tmp_path, mirror):
    """Content, not bytes: the same rows written again (other compression) are the pinned data."""
    data = edited_mirror(tmp_path, mirror, GSM8K_TEST, lambda rows: rows)
    assert (data / GSM8K_TEST).read_bytes() != (mirror / GSM8K_TEST).read_bytes()
    plan = plan_task("gsm8k", resolve("smollm2-135m"), limit=3, data_dir=data)
    assert plan.data_modified == []


@pytest.mark.parametrize(
    "edit,says",
    [
        (lambda rows: rows + rows, "has 2638 rows where the claims' data has 1319"),  # every row twice
        (
            lambda rows: rows[:803] + rows[804:],
            "has 1318 rows where the claims' data has 1319",
        ),  # one row missing
        (
            lambda rows: rows[1:] + rows[:1],
            "has the same 1319 rows in number, but other content",
        ),  # reordered
    ],
)
def test_modified_data_is_one_message_before_the_model_loads(tmp_path, mirror, edit, says):
    data = edited_mirror(tmp_path, mirror, GSM8K_TEST, edit)
    res = run_cli(
        "bench", "-t", "gsm8k", "--limit", "2", "--data-dir", str(data), "--results-dir", str(tmp_path / "r")
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"openai/gsm8k/main/test {says}" in res.stderr and "--allow-modified-data" in res.stderr
    assert "Traceback" not in res.stderr and "loading" not in res.stderr.lower()
    assert not list((tmp_path / "r").rglob("*.json"))


def test_allowed_modified_data_is_recorded_and_never_compared_with_a_claim(tmp_path, mirror):
    """Through the real entry point (stub server: no model needed): the run completes, the record names the
    modified file, and `compare` finds the SmolLM2 GSM8K claim not comparable with it."""
    data = edited_mirror(tmp_path, mirror, GSM8K_TEST, lambda rows: rows + rows)
    stub = StubServer()
    try:
        res = run_cli(
            "bench",
            "--backend",
            "server",
            "--base-url",
            stub.url,
            "-t",
            "gsm8k_5shot",
            "--limit",
            "2",
            "--allow-modified-data",
            "--data-dir",
            str(data),
            "--results-dir",
            str(tmp_path / "r"),
        )
    finally:
        stub.close()
    assert res.returncode == 0, res.stderr[-2000:]
    (path,) = [p for p in (tmp_path / "r" / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")]
    rec = json.loads(path.read_text())
    (mod,) = rec["task"]["data_modified"]
    assert mod["file"] == "openai/gsm8k/main/test" and (mod["rows"], mod["pinned_rows"]) == (2638, 1319)
    rows = [
        c
        for c in compare_all(load_runs(tmp_path / "r").runs, model="smollm2-135m")
        if c.claim.task == "gsm8k_5shot"
    ]
    assert rows and all(c.verdict == NOT_COMPARABLE and "modified data" in c.note for c in rows), rows
