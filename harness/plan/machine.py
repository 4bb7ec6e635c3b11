"""This machine's facts as the plan and the fit decision read them: RAM available, GPUs, free disk, the CPU.

Each can be set from the environment, to judge for another machine or to leave room for other jobs:
``HARNESS_MEMORY_AVAILABLE``, ``HARNESS_GPU_FREE``, ``HARNESS_DISK_FREE`` (sizes: bytes, or ``20GiB``, ``512MiB``).
"""

from __future__ import annotations

import os
import platform
import re
from decimal import Decimal
from pathlib import Path

from harness.disk import free_disk
from harness.errors import HarnessError

MEMORY_AVAILABLE_ENV = "HARNESS_MEMORY_AVAILABLE"
GPU_FREE_ENV = (
    "HARNESS_GPU_FREE"  # e.g. "24GiB,8GiB": pretend these GPUs (free memory) are here; "none": no GPU
)
DISK_FREE_ENV = "HARNESS_DISK_FREE"  # e.g. "100GiB": free space where downloads go
MAX_SIZE = 2**60  # bytes (1 EiB): a size from the environment above this is a mistake


def available_memory() -> int:
    """RAM a run may count on: what the OS reports available, or ``HARNESS_MEMORY_AVAILABLE`` when set
    (bytes, or with a unit: ``20GiB``, ``512MiB``, ``24G``), to judge for another machine or to leave room
    for other jobs."""
    import psutil

    raw = os.environ.get(MEMORY_AVAILABLE_ENV, "").strip()
    if not raw:
        return psutil.virtual_memory().available
    return parse_size(raw, MEMORY_AVAILABLE_ENV)


def parse_size(raw: str, env: str) -> int:
    """Bytes from an environment variable's size (``20GiB``, ``512MiB``, ``24G``: binary units with ``i``
    or none, decimal with a bare ``B``); a value that is not a size is one message naming ``env``."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)", raw.strip(), re.IGNORECASE)
    if not m:
        raise HarnessError(f"{env}={_short(raw)!r} is not a size", "write bytes or e.g. 20GiB, 512MiB.")
    unit = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[m.group(2).upper()]
    base = 1024 if m.group(3).lower().startswith("i") or not m.group(3) else 1000
    size = Decimal(m.group(1)) * base**unit  # exact: a 400-digit value is a number too large, not an overflow
    if size > MAX_SIZE:
        raise HarnessError(
            f"{env}={_short(raw)!r} is larger than any machine ({MAX_SIZE // 2**50} PiB at most)",
            "write the size in bytes or e.g. 20GiB, 512MiB.",
        )
    return int(size)


def _short(raw: str) -> str:
    """A user's value as a message quotes it: at most 40 characters."""
    return raw if len(raw) <= 40 else f"{raw[:20]}...({len(raw)} characters)"


def gpus() -> list[dict]:
    """This machine's GPUs with free memory (``HARNESS_GPU_FREE`` pretends: "24GiB,8GiB", or "none")."""
    raw = os.environ.get(GPU_FREE_ENV, "").strip()
    if raw:
        if raw.lower() == "none":
            return []
        return [
            {
                "device": f"GPU{i}",
                "description": f"{GPU_FREE_ENV}",
                "free_bytes": parse_size(s, GPU_FREE_ENV),
                "total_bytes": parse_size(s, GPU_FREE_ENV),
            }
            for i, s in enumerate(raw.split(","))
        ]
    from harness.backends.llamacpp.devices import local_gpus

    return local_gpus()


def download_dir() -> Path:
    """Where downloads land: the Hugging Face cache (huggingface-hub's HF_HUB_CACHE / HF_HOME rules)."""
    from harness import hub

    return hub.cache_dir()


def disk_free() -> int:
    """Free bytes where downloads go (``HARNESS_DISK_FREE`` pretends)."""
    raw = os.environ.get(DISK_FREE_ENV, "").strip()
    return parse_size(raw, DISK_FREE_ENV) if raw else free_disk(download_dir())


def offline() -> bool:
    """huggingface-hub's offline mode (``HF_HUB_OFFLINE``): the plan asks the Hub nothing."""
    from harness import hub

    return hub.offline()


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return cpu
