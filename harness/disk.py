"""Free disk space and the refusal of a write that would not fit: below every layer that downloads or plans.

The fit decision (harness/plan/fit.py) judges disk with these, and the download itself (harness/models/
download.py) checks again right before it writes, when the real sizes are known.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.errors import HarnessError

GIB = 2**30


def free_disk(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or would: its nearest existing parent)."""
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_disk(path: Path, need_bytes: int, what: str, free: int | None = None) -> None:
    """Refuse a download or join that would not fit on the disk holding ``path``."""
    free = free_disk(path) if free is None else free
    if need_bytes > free:
        raise HarnessError(
            f"{what} needs {need_bytes / GIB:.1f} GiB on {path} but only {free / GIB:.1f} GiB is free",
            "free some space, set HF_HOME to a bigger disk, or choose a smaller quant (QUANT=Q4_K_M or Q3_K_M).",
        )
