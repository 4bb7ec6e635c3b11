"""The layers of harness/ hold (docs/contributing.md, "Layers"): the installed ``lint-imports``
(import-linter, a dev dependency) checks the contract in pyproject.toml, and an upward import added to a
copy of the tree breaks it, so this test can see the fault it names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # import-linter's command (pyproject.toml, dev)


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` with ``root``'s pyproject.toml (no cache left behind)."""
    env = dict(os.environ, PYTHONPATH=str(root))  # the harness/ under root, not the installed checkout
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], capture_output=True, text=True, cwd=root, env=env, timeout=300
    )


def test_the_layers_contract_is_kept():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 1 kept, 0 broken." in done.stdout, done.stdout[-4000:]


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    record = tmp_path / "harness" / "records" / "record.py"
    record.write_text(record.read_text() + "\nfrom harness.run.runner import summarise  # noqa: E402,F401\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout[-4000:]
    assert "harness.records.record -> harness.run.runner" in done.stdout, done.stdout[-4000:]


RUFF = Path(sys.executable).parent / "ruff"


def test_the_code_is_linted_and_formatted():
    """``make lint``'s ruff half: the rules of pyproject.toml ([tool.ruff.lint]) and ``ruff format`` at its line
    length (110), so a line too long, an unused import or a hand-formatted block fails here, not in review."""
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [str(RUFF), *args, "harness", "tests", "scripts"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert done.returncode == 0, f"ruff {' '.join(args)}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
