"""The user's CI (.github/workflows/regress.yml), checked (issue #29): actionlint reads it; it keys the wheel
cache on constraints.txt, runs on pull requests and on a schedule, uploads results/report.html with the smoke
run's records; it runs the same Makefile targets as this project's own CI (.ci/run), so the two cannot drift;
and a failed `make regress` fails the job with regress's own message (the step's script run here against a
stand-in `make`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "regress.yml"
ACTIONLINT = Path(sys.executable).parent / "actionlint"  # dev dependency (pyproject.toml)


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps() -> list[dict]:
    (job,) = _workflow()["jobs"].values()
    return job["steps"]


def _make_targets(script: str) -> list[str]:
    """The targets of every `make TARGET` command line in a shell script, in order."""
    return [m.group(1) for m in re.finditer(r"^\s*(?:if ! )?make ([a-z][\w-]*)", script, re.M)]


def test_actionlint_passes():
    res = subprocess.run(
        [str(ACTIONLINT), "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_actionlint_sees_a_broken_workflow(tmp_path):
    """The lint is real: an undefined step output in a copy of the workflow is an error."""
    bad = tmp_path / ".github" / "workflows" / "regress.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(WORKFLOW.read_text().replace("steps.cpu.outputs.hash", "steps.cpuu.outputs.hash"))
    res = subprocess.run(
        [str(ACTIONLINT), "-no-color", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode != 0 and "cpuu" in res.stdout


def test_triggers_cache_keys_and_artifacts():
    wf = _workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the bare key `on` as true
    assert "pull_request" in on and on["schedule"][0]["cron"]
    caches = {s["name"]: s["with"] for s in _steps() if s.get("uses", "").startswith("actions/cache@")}
    pip = next(w for n, w in caches.items() if "pip" in n)
    assert pip["path"] == "~/.cache/pip" and "hashFiles('constraints.txt')" in pip["key"]
    assert "pyproject.toml" not in pip["key"]
    assert all("steps.cpu.outputs.hash" in w["key"] for n, w in caches.items() if "Hugging Face" not in n)
    (upload,) = [s for s in _steps() if s.get("uses", "").startswith("actions/upload-artifact@")]
    paths = upload["with"]["path"].split()
    assert upload["if"] == "always()"
    assert {"results/report.html", "build/smoke/runs/", "build/smoke/report.html"} <= set(paths)


def test_workflow_and_ci_run_call_the_same_make_targets():
    ci_run = _make_targets((ROOT / ".ci" / "run").read_text())
    workflow = [t for s in _steps() for t in _make_targets(s.get("run", ""))]
    assert ci_run == ["ci-test", "regress"]
    assert workflow[: len(ci_run)] == ci_run and set(workflow) - set(ci_run) == {"smoke-report"}
    makefile = (ROOT / "Makefile").read_text()
    for target in workflow:
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_failed_regress_fails_the_job_with_its_message(tmp_path):
    """The workflow's regression step, run by bash as GitHub runs it, with `make` standing in for a regress that
    fails: the step exits non-zero and its ::error annotation carries regress's own lines."""
    (step,) = [s for s in _steps() if "make regress" in s.get("run", "")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "make"
    fake.write_text(
        "#!/bin/sh\necho '| smollm2-135m | Q4_1 | gsm8k | 6.2 | 0.0 | significant drop |'\n"
        "echo 'regression check FAILED' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    res = subprocess.run(
        ["bash", "-e", "-c", step["run"]], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert res.returncode == 1
    (error,) = [line for line in res.stdout.splitlines() if line.startswith("::error")]
    assert "significant drop" in error and "regression check FAILED" in error
    # and a passing regress passes the step
    fake.write_text("#!/bin/sh\necho 'regression check passed'\n")
    res = subprocess.run(
        ["bash", "-e", "-c", step["run"]], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert res.returncode == 0 and "::error" not in res.stdout
