"""Files written whole or not at all: a temp file in the same folder, fsync, then rename, so a crash, a
full disk or Ctrl-C never leaves a half-written record, table or cache under its final name."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from harness.errors import HarnessError


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
