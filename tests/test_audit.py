"""``harness audit`` (harness/run/audit.py) on real SmolLM2 records, through the installed entry point.

A fresh record audits clean (bit-identical on re-execution); the same record edited by hand (one log-prob of
one answer choice nudged without changing its answer, a score raised, a generated answer changed) or audited
against another quant's file fails, naming the cause. Hand-made records test the self-consistency check
without a model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records.audits import latest_audits
from harness.run.audit import IDENTICAL

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(sys.executable).parent / "harness"


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(HARNESS), *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def bench(tmp_path_factory, mirror):
    """Two real records (MMLU log-likelihood, 4 questions; GSM8K generation, 2 questions) in one results folder."""
    results = tmp_path_factory.mktemp("audit") / "results"
    env = dict(os.environ, HARNESS_DATA_DIR=str(mirror))
    for task, limit in (("mmlu_loglik", "4"), ("gsm8k", "2")):
        out = _run(
            "bench",
            "--tasks",
            task,
            "--limit",
            limit,
            "--threads",
            "1",
            "--results-dir",
            str(results),
            env=env,
        )
        assert out.returncode == 0, out.stderr
    recs = {
        p.name.split("-")[3]: p
        for p in (results / "runs").glob("*.json")
        if not p.name.endswith(".lm_eval.json")
    }
    return results, recs, env


def _edited(src: Path, dest_root: Path, edit) -> Path:
    """A copy of a record under another results folder's runs/, changed by ``edit(record dict)``."""
    rec = json.loads(src.read_text())
    edit(rec)
    dest = dest_root / "runs" / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(rec, indent=1))
    return dest


@pytest.mark.slow
def test_real_records_audit_clean(bench):
    results, recs, env = bench
    for task in ("mmlu_loglik", "gsm8k"):
        # K=1 of several: the rest of the plan is skipped, as a resumed run skips journaled requests.
        out = _run("audit", str(recs[task]), "--sample", "1", "--threads", "1", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert ": identical: 1 re-run question(s)" in out.stdout
    audits = latest_audits(results)
    assert {a["result"] for a in audits.values()} == {IDENTICAL} and len(audits) == 2
    saved = json.loads((results / "audits" / (recs["gsm8k"].stem + ".json")).read_text())
    assert saved["k"] == 1 and saved["seed"] == 0 and saved["where"]["cpu"] and saved["when"]


@pytest.mark.slow
def test_edited_response_fails_on_reexecution(bench, tmp_path):
    """One answer choice's log-prob nudged in the last digits: the answer, the correctness and the metrics still
    follow, so only re-execution can see it, and it names the question."""
    _, recs, env = bench
    target = {}

    def nudge(rec):
        s = rec["samples"][-1]
        s["response"][0][0] += 1e-9
        s["extracted"] = s["response"]
        target["where"] = f"{s['task']} doc {s['doc_id']}"

    path = _edited(recs["mmlu_loglik"], tmp_path, nudge)
    out = _run("audit", str(path), "--sample", "10", "--threads", "1", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"DIFFERS on re-execution: {target['where']}: choice 0" in out.stdout


@pytest.mark.slow
def test_edited_score_and_answer_fail_self_check(bench, tmp_path):
    _, recs, env = bench

    def raise_score(rec):
        key = next(iter(rec["metrics"]))
        rec["metrics"][key]["value"] += 0.25

    path = _edited(recs["mmlu_loglik"], tmp_path / "a", raise_score)
    out = _run("audit", str(path), "--no-rerun", env=env)
    assert out.returncode == 1 and "INCONSISTENT: metric acc,none:" in out.stdout, out.stdout + out.stderr

    def change_answer(rec):
        s = rec["samples"][0]
        s["response"] = s["response"] + " The final answer is 123456"

    path = _edited(recs["gsm8k"], tmp_path / "b", change_answer)
    out = _run("audit", str(path), "--no-rerun", env=env)
    assert out.returncode == 1 and "its response gives '123456'" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_other_quant_fails_naming_sha256(bench):
    """The record's weights swapped for another quant of the same model (re-quantized with the gguf package)."""
    _, recs, env = bench
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_ladder import build_models

    other = build_models(ROOT / "build" / "ladder" / "models")["Q4_0"]
    out = _run("audit", str(recs["mmlu_loglik"]), "--model", str(other), "--sample", "1", env=env)
    rec = json.loads(recs["mmlu_loglik"].read_text())
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the weights are not the record's" in out.stdout and rec["model"]["sha256"] in out.stdout


def test_self_check_without_a_model(tmp_path, mirror):
    """A committed record (no model needed for step 1) agrees with itself; the same with a sample's correctness
    flipped does not."""
    from harness.run.audit import audit

    src = next((ROOT / "results" / "runs").glob("smollm2-135m-Q4_1-gsm8k_5shot-*[0-9]Z.json"))
    assert audit(src, data_dir=mirror, rerun=False).problems == []
    rec = json.loads(src.read_text())
    rec["samples"][3]["correct"] = not rec["samples"][3]["correct"]
    dest = tmp_path / "runs" / src.name
    dest.parent.mkdir()
    dest.write_text(json.dumps(rec))
    problems = audit(dest, data_dir=mirror, rerun=False).problems
    doc = rec["samples"][3]["doc_id"]
    assert any(p.startswith(f"gsm8k doc {doc}: recorded") for p in problems), problems
    shutil.rmtree(tmp_path / "runs")


def test_latest_audit_is_published(tmp_path):
    """`make publish` lists each record's latest audit (when, where, K, seed, result) in the manifest and the
    report; an audit of bytes the record no longer has says so, and a new audit makes the publication stale."""
    from records import make_record, write_record

    from harness.publish.build import publish, stale
    from harness.run.audit import Audit, write_audit

    rec = write_record(tmp_path, make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True, False]}))
    publish(tmp_path)
    assert "not audited" in (tmp_path / "README.md").read_text()
    write_audit(tmp_path, Audit(record=rec.name, result=IDENTICAL, k=2, seed=7), rec)
    assert stale(tmp_path) == ["README.md", "report.html"]
    publish(tmp_path)
    facts = json.loads((tmp_path / "published.json").read_text())["audits"][rec.name]
    assert (
        facts["result"] == IDENTICAL
        and facts["k"] == 2
        and facts["seed"] == 7
        and facts["when"]
        and facts["where"]
    )
    assert f"audit {IDENTICAL} (K=2, seed 7" in (tmp_path / "README.md").read_text()
    rec.write_text(
        rec.read_text().replace('"n": 2', '"n": 2 ', 1)
    )  # the record's bytes change after its audit
    assert latest_audits(tmp_path)[rec.name]["result"] == f"{IDENTICAL} (record changed since)"
