"""`make publish`: deterministic output, a staleness check, and an HTML report that renders in Chromium."""

import json
import re
import shutil
import subprocess

import pytest
from records import make_record, write_record

from harness.paths import RESULTS_DIR
from harness.publish.build import publish, stale, unpublished


def _results(tmp_path):
    subjects = {"mmlu_llama_anatomy": 135, "mmlu_llama_virology": 166}
    write_record(tmp_path, make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True] * 3 + [False] * 47},
                                       sizes={"gsm8k_cot_llama": 1319}, quant="Q4_1", n_params=1.345e8))
    for q in ("Q4_K_M", "Q8_0"):
        write_record(tmp_path, make_record("llama3.1-8b-instruct", "mmlu",
                                           {s: [True] * 7 + [False] * 3 for s in subjects}, sizes=subjects, quant=q))
    return tmp_path


def _snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_publish_is_deterministic_and_complete(tmp_path):
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    publish(a)
    publish(b)
    sa, sb = _snapshot(a), _snapshot(b)
    assert sa == sb
    for f in ("README.md", "claims.csv", "scores.csv", "report.html", "published.json",
              "plots/claims-mmlu.png", "plots/quant-llama3.1-8b-instruct.png"):
        assert f in sa, f
    assert publish(a) == []  # nothing to rewrite the second time
    readme = (a / "README.md").read_text()
    assert "llama3.1-8b-instruct.mmlu.card" in readme and "no measurement" in readme
    assert "| Q8_0 " in readme and "| Q4_K_M " in readme


def test_stale_check_sees_new_records_and_edits(tmp_path):
    d = _results(tmp_path)
    assert stale(d) == ["published.json"]  # never published
    publish(d)
    assert stale(d) == []
    (d / "README.md").write_text("hand edit\n")
    assert stale(d) == ["README.md"]
    publish(d)
    (d / "plots" / "claims-gsm8k.png").write_bytes(b"not the plot")
    assert stale(d) == ["plots/claims-gsm8k.png"]
    publish(d)
    # A user's new run is not yet published: not stale (`make bench` then `make test` passes), but named.
    new = write_record(d, make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True] * 10}, quant="Q8_0"))
    assert stale(d) == [] and unpublished(d) == [new.name]
    assert "smollm2-135m,Q8_0" not in (d / "scores.csv").read_text()
    publish(d)  # `make publish` takes it in
    assert unpublished(d) == [] and "smollm2-135m,Q8_0" in (d / "scores.csv").read_text()
    assert new.name in json.loads((d / "published.json").read_text())["records"]
    # A record the publication was built from that changes, or goes, makes it stale.
    new.write_text(new.read_text().replace('"run_id": "', '"run_id": "x', 1))
    assert stale(d)[0] == f"runs/{new.name} (changed or missing)"
    new.unlink()
    assert stale(d)[0] == f"runs/{new.name} (changed or missing)"


def test_committed_results_are_not_stale():
    assert stale(RESULTS_DIR) == [], "run `make publish` and commit results/"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    d = _results(tmp_path)
    publish(d)
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--enable-logging=stderr",
         "--dump-dom", (d / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    total = int(re.search(r'data-images-total="(\d+)"', dom).group(1))
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total >= 2 and loaded and int(loaded.group(1)) == total, "a plot failed to load"
    assert dom.count('<tr data-verdict=') >= 40
    assert "Uncaught" not in proc.stderr and ":CONSOLE(" not in proc.stderr
