"""Whether a model file on disk holds the bytes it should: its size against the Hub's, the sha256 of its bytes
against the catalogue pin, the Hub's LFS metadata and the name of the HF-cache blob holding it, then its GGUF
header (architecture, parameter count). A file that fails is removed (blob and snapshot link), so it never
looks complete and the next download fetches it again.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.hashing import file_sha256, forget
from harness.models.catalogue import ModelEntry
from harness.models.gguf_check import check_gguf
from harness.models.locate import joined_path, local_model_path


def _expected(path: Path, entry: ModelEntry, hub_sha: str | None = None) -> list[tuple[str, str]]:
    """What a file's sha256 must be: (source, hex) from the catalogue pin, the Hub's LFS metadata, and the
    name of the HF-cache blob holding it (huggingface-hub names an LFS blob after the sha256 the Hub
    announced: https://huggingface.co/docs/huggingface_hub/guides/manage-cache)."""
    out = []
    if entry.files.sha256 and entry.files.split == "single":
        out.append(("the catalogue", entry.files.sha256))
    if hub_sha:
        out.append(("the Hub", hub_sha))
    real = Path(path).resolve()
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        out.append(("the Hub (at download)", real.name))
    return out


def verify_download(path: Path, name: str, remote: dict, entry: ModelEntry) -> None:
    """Size against the Hub's, then the sha256 of the bytes against every expected value; a bad file is removed."""
    size = path.stat().st_size
    if remote["size"] is not None and size != remote["size"]:
        quarantine(path)
        raise HarnessError(
            f"{name}: {size} bytes on disk, the Hub says {remote['size']}", "rerun the download."
        )
    bad = _mismatch(path, _expected(path, entry, remote.get("sha256")))
    if bad:
        quarantine(path)
        raise HarnessError(
            f"{name}: {bad}",
            "the file was corrupted or the upload changed; it was removed: rerun the download.",
        )


def _mismatch(path: Path, expected: list[tuple[str, str]], fresh: bool = False) -> str | None:
    """None when the bytes hash to every expected value, else what disagrees."""
    if not expected:
        return None
    got = file_sha256(path, fresh=fresh)
    for source, want in expected:
        if got != want:
            return f"sha256 of the bytes {got[:12]}… does not match {want[:12]}… from {source}"
    return None


def cached_intact(entry: ModelEntry) -> bool:
    """Whether the quant's cached files still hold the bytes they were stored for (hashed once per file
    version, harness/hashing.py). A file that does not is reported and removed, and False is returned so
    that the caller fetches it again."""
    if entry.files.split == "parts":
        return True  # the parts were checked before the join; the joined file has no published hash
    from huggingface_hub import try_to_load_from_cache

    for f in entry.files.files:
        got = try_to_load_from_cache(entry.repo, f, revision=entry.revision)
        if not isinstance(got, str):
            return False  # gone since it was found: fetch it
        p = Path(got)
        bad = _mismatch(p, _expected(p, entry))
        if bad:
            print(f"{f}: {bad}; the cached file is corrupted: removed, fetching it again", file=sys.stderr)
            quarantine(p)
            return False
    return True


def verify_model(entry: ModelEntry) -> list[tuple[str, str, str]]:
    """Re-hash what is on disk for a model (no remembered hashes) against the catalogue pin and the Hub's
    sha256 its blob was stored under; remove a corrupted file. Returns (file, sha256, checked against)."""
    if entry.local_path or entry.package:
        paths = [(Path(local_model_path(entry)), entry.files.files[0] if entry.files.files else "")]
    else:
        if not entry.files.files:
            raise HarnessError(
                f"the file layout of {entry.name} {entry.quant} is unknown", "pick another quant."
            )
        from huggingface_hub import try_to_load_from_cache

        paths = []
        for f in entry.files.files:
            got = try_to_load_from_cache(entry.repo, f, revision=entry.revision)
            if not isinstance(got, str):
                raise HarnessError(
                    f"{entry.name} {entry.quant}: {f} is not downloaded",
                    f"run `harness download {entry.name} --quant {entry.quant}`.",
                )
            paths.append((Path(got), f))
    out = []
    for p, name in paths:
        expected = _expected(p, entry)
        bad = _mismatch(p, expected, fresh=True)
        if bad:
            quarantine(p)
            raise HarnessError(
                f"{name or p.name}: {bad}; the file is corrupted and was removed",
                f"run `harness download {entry.name} --quant {entry.quant}` to fetch it again.",
            )
        out.append(
            (name or p.name, file_sha256(p), ", ".join(s for s, _ in expected) or "nothing (no known hash)")
        )
    if entry.files.split == "parts":
        joined = joined_path(entry)
        if joined.is_file() and joined.stat().st_size != sum(p.stat().st_size for p, _ in paths):
            quarantine(joined)
            raise HarnessError(
                f"{joined.name} is not the size of its parts: removed",
                f"run `harness download {entry.name} --quant {entry.quant}` to join them again.",
            )
        main = joined
    else:
        main = paths[0][0]
    if main.is_file():
        check_gguf(main, entry, [p for p, _ in paths[1:]] if entry.files.split == "shards" else [])
    return out


def quarantine(path: Path) -> None:
    """Remove a bad file (blob and snapshot link) so it never looks complete."""
    real = path.resolve()
    forget(real)
    for p in {path, real}:
        try:
            p.unlink()
        except OSError:
            pass
