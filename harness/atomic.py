"""Files written whole or not at all: a temp file in the same folder, fsync, then rename, so a crash, a
full disk or Ctrl-C never leaves a half-written record, table or cache under its final name.

Every text and JSON file the harness writes goes through here, so this is also where two promises are
kept for all of them: the file's mode follows the umask (``mkstemp`` creates 0600; a record or a published
table is meant to be read by others, as ``open()`` would have made it), and every secret value the run
knows is masked (harness.redact). JSON is strict: a NaN or an infinity is a bug to report, never a file
other tools cannot parse (``allow_nan=False``).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from harness.errors import HarnessError
from harness.redact import redact_known, redact_value

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask (read by setting it and setting it back: POSIX has no other way)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename, so no half-written file is ever visible under the final name; known
    secret values are masked (harness.redact)."""
    atomic_write_bytes(path, redact_known(text).encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Bytes version of :func:`atomic_write_text` (temp file, fsync, rename; mode 0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_text(obj: object, **kwargs) -> str:
    """``obj`` as strict JSON (no NaN or Infinity: :class:`ValueError` names the bug), secrets masked."""
    return json.dumps(redact_value(obj), allow_nan=False, **kwargs)


def write_json(path: Path, obj: dict) -> None:
    """``obj`` as a strict JSON file (indent 1, keys in their order), atomically."""
    try:
        atomic_write_text(path, json_text(obj, indent=1, sort_keys=False, default=str) + "\n")
    except OSError as exc:
        raise HarnessError(
            f"cannot write {path}: {exc.strerror or exc}",
            "check the results folder (free space, permissions).",
        ) from exc
