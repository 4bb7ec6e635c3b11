"""sha256 over a file's bytes, computed once per file version and remembered.

A model file of the HF cache is a blob named after the sha256 the Hub announced for it: that name is a
claim about the bytes, not a check of them, so it is never used as the hash. The bytes are hashed
(streamed, with a progress bar for big files) and the result is remembered under the file's
identity (device, inode, size, mtime), so a rerun does not hash 40 GB again while any rewrite of the
file (a new mtime or size) is hashed anew. ``harness verify`` hashes again regardless (``fresh=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

CHUNK = 1 << 22
PROGRESS_FROM = 256 << 20  # files this big show a progress bar while hashed


def _cache_file() -> Path:
    return (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llama-bench-harness" / "sha256.json"
    )


def _key(real: Path) -> str:
    st = real.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _load() -> dict:
    try:
        data = json.loads(_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: Path, fresh: bool = False, progress: bool | None = None) -> str:
    """sha256 (hex) of the file's bytes; remembered by (device, inode, size, mtime) unless ``fresh``."""
    from harness.atomic import atomic_write_text

    real = Path(path).resolve()
    key = _key(real)
    if not fresh:
        got = _load().get(key)
        if got:
            return got
    size = real.stat().st_size
    show = size >= PROGRESS_FROM if progress is None else progress
    h = hashlib.sha256()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"sha256 {Path(path).name}",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            disable=False,
        )  # ours: shown even under TQDM_DISABLE
    try:
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    digest = h.hexdigest()
    if _key(real) == key:  # not rewritten while we read it
        cache = _load()
        cache[key] = digest
        try:
            atomic_write_text(_cache_file(), json.dumps(cache, indent=0, allow_nan=False))
        except OSError:
            pass  # the cache is an optimisation only
    return digest


def forget(path: Path) -> None:
    """Drop what is remembered about this file version (before it is removed)."""
    from harness.atomic import atomic_write_text

    try:
        key = _key(Path(path).resolve())
    except OSError:
        return
    cache = _load()
    if cache.pop(key, None) is not None:
        try:
            atomic_write_text(_cache_file(), json.dumps(cache, indent=0, allow_nan=False))
        except OSError:
            pass
