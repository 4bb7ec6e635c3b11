"""`harness models` and `harness plan` show one size for the same file (issue #29): the catalogue's exact
size, or the estimate params x bits per weight marked "≈", from one function (harness.plan.assumptions.catalogue_size).
Both through the installed entry point, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.models.catalogue import load_catalogue, resolve

HARNESS = Path(sys.executable).parent / "harness"
ENV = dict(
    os.environ,
    HF_HUB_OFFLINE="1",
    HARNESS_MEMORY_AVAILABLE="24GiB",
    HARNESS_GPU_FREE="none",
    HARNESS_DISK_FREE="500GiB",
)


def _run(*args: str) -> str:
    res = subprocess.run([str(HARNESS), *args], capture_output=True, text=True, env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _models_sizes() -> dict[str, str]:
    """model -> its size column in `harness models`."""
    lines = _run("models").splitlines()
    header = lines[0]
    start, end = header.index("size"), header.index("kind")
    return {line.split()[0]: line[start:end].strip() for line in lines[2:]}


def _plan_download(name: str, quant: str) -> str:
    """The download column of QUANT's row in `harness plan NAME`."""
    out = _run("plan", name, "--quant", quant, "--rates", "reference", "--tasks", "gsm8k", "--limit", "10")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("quant "))
    start, end = lines[header].index("download"), lines[header].index("memory")
    row = next(line for line in lines[header + 1 :] if line.startswith(quant + " "))
    return row[start:end].strip()


def test_models_shows_the_size_plan_shows():
    sizes = _models_sizes()
    assert set(sizes) == set(load_catalogue()["models"])
    assert (
        "?" not in sizes.values()
    )  # every Llama quant has a size or an estimate (issue #29: 11 of 14 were "?")
    estimated = [n for n, s in sizes.items() if s.startswith("≈")]
    exact = [n for n, s in sizes.items() if not s.startswith("≈") and resolve(n).repo]
    assert estimated and exact
    for name in (estimated[0], exact[0]):  # one of each kind, the same file in both commands
        assert _plan_download(name, resolve(name).quant) == sizes[name], name
