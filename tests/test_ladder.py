"""The quant ladder (harness/analysis/ladder.py): flips, McNemar and KL checked against a direct computation.

Fast tests use hand-made records; the slow test builds a real ladder of SmolLM2 (scripts/build_ladder.py:
re-quantized with the gguf package), benches it through the installed ``harness`` and recomputes every
figure of ``harness compare``'s ladder from the records with its own code (numpy, math.comb)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from records import make_record, write_record

from harness.analysis import ladder
from harness.records.runs import load_runs

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(sys.executable).parent / "harness"


def _write(
    tmp: Path,
    quant: str,
    size: int,
    correct: list[bool],
    logprobs: list[list[float]] | None = None,
    config_hash: str = "cfg0",
    name: str = "m",
    family: str | None = None,
) -> Path:
    rec = make_record(
        name, "mmlu_loglik", {"mmlu_x": correct}, quant=quant, sha256=quant * 8, config_hash=config_hash
    )
    rec["model"]["size_bytes"] = size
    if family:
        rec["model"]["family"] = family
    for s, lp in zip(rec["samples"], logprobs or []):
        s["response"] = s["extracted"] = [[v, False] for v in lp]
    return write_record(tmp, rec)


def _direct_kl(p_lp: list[float], q_lp: list[float]) -> float:
    p = np.exp(np.array(p_lp) - np.logaddexp.reduce(p_lp))
    q = np.exp(np.array(q_lp) - np.logaddexp.reduce(q_lp))
    return float(np.sum(p * np.log(p / q)))


def _direct_mcnemar(b: int, c: int) -> float:
    n = b + c
    tail = sum(math.comb(n, i) for i in range(0, min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_ladder_figures_from_records(tmp_path):
    ref_c = [True, True, True, False, False, True]
    q_c = [True, False, False, False, True, False]
    ref_lp = [
        [-1.0, -2.0, -3.0, -0.5],
        [-0.1, -3.0, -2.0, -4.0],
        [-1.2, -1.3, -1.4, -1.5],
        [-2.0, -1.0, -2.0, -2.0],
        [-0.7, -0.8, -0.9, -1.0],
        [-5.0, -0.2, -3.0, -1.0],
    ]
    q_lp = [
        [-1.1, -2.0, -2.5, -0.6],
        [-0.9, -0.8, -2.0, -4.0],
        [-1.5, -1.1, -1.4, -1.5],
        [-2.0, -1.0, -2.1, -2.0],
        [-0.2, -0.8, -0.9, -1.0],
        [-1.0, -0.9, -3.0, -1.0],
    ]
    _write(tmp_path, "F16", 300, ref_c, ref_lp)
    _write(tmp_path, "Q4_0", 100, q_c, q_lp)
    lads = ladder.ladders(load_runs(tmp_path).runs)
    assert len(lads) == 1 and lads[0].reference == "F16"
    (g,) = lads[0].rungs
    ref_only = sum(a and not b for a, b in zip(ref_c, q_c))
    this_only = sum(b and not a for a, b in zip(ref_c, q_c))
    assert (g.ref_only, g.this_only) == (ref_only, this_only) == (3, 1)
    assert g.mcnemar_p == pytest.approx(_direct_mcnemar(ref_only, this_only))
    kls = [_direct_kl(a, b) for a, b in zip(ref_lp, q_lp)]
    assert g.kl_mean == pytest.approx(np.mean(kls), rel=1e-9)
    assert g.kl_p99 == pytest.approx(np.percentile(kls, 99), rel=1e-9)
    assert 100 * g.diff.value == pytest.approx(100 * (this_only - ref_only) / len(ref_c))
    loss = ladder.measured_loss(load_runs(tmp_path).runs, "m", "mmlu_loglik", "Q4_0")
    assert (
        loss.points == pytest.approx(100 * (ref_only - this_only) / len(ref_c))
        and loss.lo < loss.points < loss.hi
    )
    assert "measured loss vs F16" in loss.text()


def test_no_ladder_across_settings_or_models(tmp_path):
    """Another subset (task config hash) or another model is never laddered; a local file's name loses its quant."""
    _write(tmp_path, "F16", 300, [True, False])
    _write(tmp_path, "Q4_0", 100, [True, True], config_hash="cfg1")
    _write(tmp_path, "Q8_0", 200, [False, False], name="other")
    assert ladder.ladders(load_runs(tmp_path).runs) == []
    _write(tmp_path, "Q4_0", 100, [False, True], name="m-Q4_0", family="local")
    (lad,) = ladder.ladders(load_runs(tmp_path).runs)
    assert lad.model == "m" and [g.quant for g in lad.rungs] == ["Q4_0"]


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (3, 1), (10, 2), (7, 7)])
def test_mcnemar_two_sided(b, c):
    assert ladder.mcnemar_two_sided(b, c) == pytest.approx(_direct_mcnemar(b, c))


def test_first_divergence_and_percentile():
    assert ladder.first_divergence("abcdef", "abXdef") == 2
    assert ladder.first_divergence("abc", "abcd") == 3
    xs = [0.3, 0.1, 5.0, 2.0, 0.0]
    assert ladder.percentile(xs, 99) == pytest.approx(np.percentile(xs, 99))


@pytest.mark.slow
def test_real_smollm2_ladder(tmp_path, mirror):
    """Q8_0 and Q4_0 re-quantized from the dequantized SmolLM2 (F16 values), benched on the same small subsets:
    every figure ``harness compare`` prints is recomputed from the two records."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_ladder import build_models

    paths = build_models(ROOT / "build" / "ladder" / "models")
    results = tmp_path / "results"
    env = dict(os.environ, HARNESS_DATA_DIR=str(mirror))
    for q in ("Q8_0", "Q4_0"):
        for task, limit in (("mmlu_loglik", "3"), ("gsm8k", "2")):
            subprocess.run(
                [
                    str(HARNESS),
                    "bench",
                    "--model",
                    str(paths[q]),
                    "--tasks",
                    task,
                    "--limit",
                    limit,
                    "--threads",
                    "1",
                    "--results-dir",
                    str(results),
                ],
                check=True,
                env=env,
                capture_output=True,
            )
    out = subprocess.run(
        [str(HARNESS), "compare", "--results-dir", str(results)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "quant ladder" in out.stdout
    recs = {}
    for p in (results / "runs").glob("*.json"):
        if not p.name.endswith(".lm_eval.json"):
            r = json.loads(p.read_text())
            recs[(r["model"]["quant"], r["task"]["name"])] = r
    lads = {lad.task: lad for lad in ladder.ladders(load_runs(results).runs)}
    assert set(lads) == {"mmlu_loglik", "gsm8k"}
    for task, lad in lads.items():
        assert lad.model == "smollm2-135m" and lad.reference == "Q8_0"
        (g,) = lad.rungs
        a = {(s["task"], s["doc_id"]): s for s in recs[("Q8_0", task)]["samples"]}
        b = {(s["task"], s["doc_id"]): s for s in recs[("Q4_0", task)]["samples"]}
        assert set(a) == set(b) and g.n == len(a)
        ref_only = sum(a[k]["correct"] and not b[k]["correct"] for k in a)
        this_only = sum(b[k]["correct"] and not a[k]["correct"] for k in a)
        assert (g.ref_only, g.this_only) == (ref_only, this_only)
        assert g.mcnemar_p == pytest.approx(_direct_mcnemar(ref_only, this_only))
        if task == "mmlu_loglik":
            kls = [_direct_kl([c[0] for c in a[k]["response"]], [c[0] for c in b[k]["response"]]) for k in a]
            assert g.kl_mean == pytest.approx(np.mean(kls), rel=1e-9) and g.kl_mean > 0
            assert g.kl_p99 == pytest.approx(np.percentile(kls, 99), rel=1e-9)
        else:
            same = sum(a[k]["response"] == b[k]["response"] for k in a)
            assert g.identical == pytest.approx(same / len(a))
        row = next(r for r in ladder.ladder_rows([lad]) if r["quant"] == "Q4_0")
        assert f"| {row['McNemar p']} |" in out.stdout.replace("  ", " ") or row["McNemar p"] in out.stdout


def test_ladder_is_published(tmp_path):
    """`make publish` shows the ladder in results/README.md and report.html (and only where one exists)."""
    from harness.publish.build import publish

    _write(tmp_path, "F16", 300, [True, True, False], [[-1.0, -2.0], [-0.5, -0.6], [-3.0, -0.1]])
    publish(tmp_path)
    assert "## Quant ladder" not in (tmp_path / "README.md").read_text()
    _write(tmp_path, "Q4_0", 100, [True, False, False], [[-1.0, -2.5], [-0.7, -0.6], [-2.0, -0.1]])
    publish(tmp_path)
    readme, html = (tmp_path / "README.md").read_text(), (tmp_path / "report.html").read_text()
    (lad,) = ladder.ladders(load_runs(tmp_path).runs)
    row = next(r for r in ladder.ladder_rows([lad]) if r["quant"] == "Q4_0")
    assert "## Quant ladder" in readme and 'id="ladder"' in html
    assert f"| {row['Δ vs ref']} " in readme and f"| {row['KL mean']} " in readme
