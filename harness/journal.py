"""Append-only journal of finished requests, so an interrupted bench run resumes where it stopped.

One JSON line per finished request (key, result, CRC32), flushed as it is written; the kernel holds
it even if the process is killed, and it is fsynced at least once a second against power loss. A
torn last line (killed mid-write) fails its CRC: only that request is recomputed. The file name
carries a hash of everything that can change a result (weights, task config, batching settings),
so a changed setting never reuses an old journal; an exclusive lock keeps two identical runs from
writing one journal at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import zlib
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

VERSION = 1


def identity_hash(identity: dict) -> str:
    """Short hash of a run's identity (what must match for a journal to be reused)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def request_key(*parts: Any) -> str:
    """Stable key of one request (token ids, stop strings, budget...)."""
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()[:24]


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
            self._f = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise HarnessError(f"cannot open the run journal {self.path}: {exc.strerror or exc}",
                               "check that the results folder is writable and not full.") from exc
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._f.close()
            raise HarnessError(
                f"another harness run is writing {self.path.name} (same model, task and settings)",
                "wait for it to finish, or give this run another --results-dir.",
            ) from exc
        self._load()

    def _load(self) -> None:
        self._f.seek(0)
        text = self._f.read()
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        header_seen = False
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                self.torn += 1
                continue
            if "journal" in row:
                if row.get("identity") != json.loads(json.dumps(self.identity, default=str)):
                    self.close()
                    raise HarnessError(
                        f"{self.path} belongs to another run setting",
                        "delete it to start afresh (its results cannot be reused).",
                    )
                header_seen = True
                continue
            if not isinstance(row, dict) or row.get("crc") != _crc(row.get("k", ""), row.get("v")):
                self.torn += 1
                continue
            self.entries[row["k"]] = row["v"]
        self._f.seek(0, os.SEEK_END)
        if text and not text.endswith("\n"):
            self._write("\n")  # a torn last line stays a line of its own; new lines start clean
        if not header_seen:
            self._write(json.dumps({"journal": VERSION, "identity": self.identity}, default=str) + "\n")
            self._sync(force=True)

    def _write(self, s: str) -> None:
        try:
            self._f.write(s)
            self._f.flush()
        except OSError as exc:
            raise HarnessError(f"cannot write the run journal {self.path}: {exc.strerror or exc}",
                               "free disk space, then rerun the same command: finished requests are kept.") from exc

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
        line = json.dumps({"k": key, "v": value, "crc": _crc(key, value)}, separators=(",", ":")) + "\n"
        self._write(line)
        self.entries[key] = value
        self.added += 1
        self._sync()

    def close(self) -> None:
        if not self._f.closed:
            self._sync(force=True)
            try:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            finally:
                self._f.close()

    def remove(self) -> None:
        """Delete the journal once the run's record is safely written."""
        self.close()
        self.path.unlink(missing_ok=True)
