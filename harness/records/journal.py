"""Append-only journal of finished requests, so an interrupted bench run resumes where it stopped.

One JSON line per finished request (key, result, CRC32), flushed as it is written; the kernel holds
it even if the process is killed, and it is fsynced at least once a second against power loss. A
torn last line (killed mid-write) fails its CRC: only that request is recomputed. Any line that is not
intact (a flipped byte, garbage appended after a kill, bytes that are not UTF-8, valid JSON that is not
an object) is skipped the same way, so a journal can always be resumed. The file name
carries a hash of everything that can change a result (weights, task config, batching settings),
so a changed setting never reuses an old journal; an exclusive lock keeps two identical runs from
writing one journal at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.redact import redact_value

VERSION = 1


def request_key(*parts: Any) -> str:
    """Stable key of one request (token ids, stop strings, budget...)."""
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()[:24]


def _parse(raw: bytes) -> dict | None:
    """One journal line as a JSON object, or None for anything else (torn, not UTF-8, not JSON, not an object)."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


def _crc(key: str, value: Any) -> int:
    return zlib.crc32(json.dumps([key, value], separators=(",", ":")).encode())


class Journal:
    """Finished requests of one run identity; ``get``/``add`` by request key."""

    def __init__(self, path: Path, identity: dict, fsync_interval: float = 1.0):
        self.path = Path(path)
        self.identity = identity
        self.entries: dict[str, Any] = {}
        self.torn = 0
        self.added = 0
        self._fsync_interval = fsync_interval
        self._last_sync = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a+b")
        except OSError as exc:
            raise HarnessError(
                f"cannot open the run journal {self.path}: {exc.strerror or exc}",
                "check that the results folder is writable and not full.",
            ) from exc
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._f.close()
            raise HarnessError(
                f"another harness run is writing {self.path.name} (same model, task and settings)",
                "wait for it to finish, or give this run another --results-dir.",
            ) from exc
        try:
            self._load()
        except BaseException:
            self.close()  # release the lock: a failed open must not block the rerun
            raise

    def _load(self) -> None:
        """Read every intact line; anything else (torn, undecodable, not an object, bad CRC) is skipped and
        counted, so its request is recomputed. A journal is never refused for what is inside it."""
        self._f.seek(0)
        data = self._f.read()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        header_seen = False
        want = json.loads(json.dumps(self.identity, default=str))
        for raw in lines:
            row = _parse(raw)
            if row is None:
                self.torn += 1
                continue
            if "journal" in row:
                if row.get("identity") == want:
                    header_seen = True
                    continue
                # A damaged header (no CRC, or its CRC fails) is a torn line: the file name already names the
                # identity. An intact header of another setting later in the file is not ours either: skip it.
                if row.get("crc") != _crc("journal", row.get("identity")) or header_seen or self.entries:
                    self.torn += 1
                    continue
                self._set_aside()  # the file name's identity hash matched, its header does not: keep, start anew
                return self._load()
            if not isinstance(row.get("k"), str) or row.get("crc") != _crc(row["k"], row.get("v")):
                self.torn += 1
                continue
            self.entries[row["k"]] = row["v"]
        self._f.seek(0, os.SEEK_END)
        if data and not data.endswith(b"\n"):
            self._write("\n")  # a torn last line stays a line of its own; new lines start clean
        if not header_seen:
            ident = json.loads(json.dumps(self.identity, default=str))
            self._write(
                json.dumps(
                    {"journal": VERSION, "identity": ident, "crc": _crc("journal", ident)}, allow_nan=False
                )
                + "\n"
            )
            self._sync(force=True)

    def _set_aside(self) -> None:
        """Move a journal whose header names another run setting out of the way (kept, never reused)."""
        aside = self.path.with_name(f"{self.path.name}.other-setting-{int(time.time())}")
        os.replace(self.path, aside)
        fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
        self._f.close()
        print(
            f"warning: {self.path.name} belonged to another run setting; moved to {aside.name}, starting afresh",
            file=sys.stderr,
        )
        self._f = open(self.path, "a+b")
        fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _write(self, s: str) -> None:
        try:
            self._f.write(s.encode())
            self._f.flush()
        except OSError as exc:
            raise HarnessError(
                f"cannot write the run journal {self.path}: {exc.strerror or exc}",
                "free disk space, then rerun the same command: finished requests are kept.",
            ) from exc

    def _sync(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_sync >= self._fsync_interval:
            try:
                os.fsync(self._f.fileno())
            except OSError:
                pass
            self._last_sync = now

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> Any:
        return self.entries[key]

    def add(self, key: str, value: Any) -> None:
        """Record one finished request (flushed now, fsynced within the interval)."""
        value = redact_value(value)  # a completion that echoes a secret is kept masked (harness.redact)
        try:
            line = (
                json.dumps(
                    {"k": key, "v": value, "crc": _crc(key, value)}, separators=(",", ":"), allow_nan=False
                )
                + "\n"
            )
        except ValueError as exc:  # NaN or infinity: never written as a score's input (strict JSON)
            raise HarnessError(
                f"request {key} gave a value that is not a number ({exc})",
                "report this with the model and the task; finished requests are kept.",
            ) from exc
        self._write(line)
        self.entries[key] = value
        self.added += 1
        self._sync()

    def close(self) -> None:
        """Sync and release. Never raises: a line the disk refused (ENOSPC) is simply not in the journal,
        and its request is recomputed by the rerun."""
        if self._f.closed:
            return
        self._sync(force=True)
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        try:
            self._f.close()
        except OSError:  # the buffered tail of a failed write cannot be flushed either
            pass

    def remove(self) -> None:
        """Delete the journal once the run's record is safely written."""
        self.close()
        self.path.unlink(missing_ok=True)
