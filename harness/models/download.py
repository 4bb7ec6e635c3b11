"""Verified, resumable downloads of catalogue GGUF files from the Hugging Face Hub (huggingface-hub).

Before anything is fetched, :func:`harness.plan.fit.refuse_before_download` judges whether the model can run
here, from what this module reads without the weights: sizes (:func:`quant_sizes`, :func:`remote_files`) and the
GGUF header's shape read with HTTP range requests (:func:`remote_shape`).

Files land in the normal HF cache (resume and progress bar are huggingface-hub's). After download
each file's bytes are hashed (sha256, harness/hashing.py) and checked, with the size, against the
catalogue's pin and the Hub's LFS metadata, then the GGUF header is read to check the architecture and
parameter count. A cached file is re-checked against the sha256 its blob was stored under (the Hub's
claim) before use, and refetched when its bytes disagree. Byte-split uploads (``x.gguf.part1of2``) are
joined next to the cache after a free-disk check.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.hashing import file_sha256, forget
from harness.models.catalogue import ModelEntry
from harness.models.gguf_check import check_gguf, read_header_shape
from harness.models.locate import cached_model_path, joined_path, local_model_path
from harness.plan.fit import check_disk

RETRIES = 3


def _friendly(exc: Exception, entry: ModelEntry, what: str) -> HarnessError:
    """Map huggingface-hub / network errors to one actionable message (never echoing the token)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return HarnessError(
            f"the disk filled up while downloading {what}",
            "free some space or set HF_HOME to a bigger disk, then rerun the same command: the partial file resumes.",
        )
    if _unreachable(exc):
        return HarnessError(
            f"could not reach the Hub for {what} ({type(exc).__name__}, after {RETRIES} tries)",
            "check the connection, HF_ENDPOINT and HF_HUB_DOWNLOAD_TIMEOUT; rerun the same command to resume.",
        )
    if isinstance(exc, GatedRepoError) or status in (401, 403):
        lic = entry.licence or "the model's licence"
        page = entry.upstream or entry.repo
        return HarnessError(
            f"access to {entry.repo} was refused (HTTP {status or 'gated'}): the repo is gated or needs a token",
            f"accept {lic} on https://huggingface.co/{page} with your account, create a read token, "
            "and set HF_TOKEN=<token> (or run `hf auth login`).",
        )
    if isinstance(exc, RevisionNotFoundError):
        return HarnessError(f"revision {entry.revision} of {entry.repo} does not exist", "fix the catalogue's revision pin.")
    if isinstance(exc, (EntryNotFoundError, RepositoryNotFoundError)) or status == 404:
        return HarnessError(
            f"{what} was not found on the Hub (404) in {entry.repo}@{entry.revision}",
            "the catalogue entry is stale or unconfirmed: check the repo's file list and fix tasks/models.yaml.",
        )
    if isinstance(exc, HfHubHTTPError):
        return HarnessError(f"the Hub answered HTTP {status} for {what}", "try again later.")
    return HarnessError(
        f"network error while fetching {what}: {type(exc).__name__}",
        "check the connection (or HF_ENDPOINT); rerun the same command to resume.",
    )


def _unreachable(exc: Exception) -> bool:
    """A timeout or refused connection. huggingface-hub reports a failed HEAD as LocalEntryNotFoundError
    (no cached copy to fall back on), which is also a FileNotFoundError: not a 404 from the Hub."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(exc, LocalEntryNotFoundError):
        return True
    name = type(exc).__name__
    return isinstance(exc, (ConnectionError, TimeoutError)) or "Timeout" in name or "ConnectError" in name


def _transient(exc: Exception) -> bool:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return status >= 500 or status == 429
    if _unreachable(exc):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return False  # retrying cannot free disk space
    return isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)


def _with_retries(fn, entry: ModelEntry, what: str):
    """Bounded retries with backoff, for transient errors (5xx, 429, connection, timeout) only."""
    for attempt in range(RETRIES):
        try:
            return fn()
        except HarnessError:
            raise
        except Exception as exc:  # huggingface-hub and httpx raise many types; classified below
            if attempt + 1 < RETRIES and _transient(exc) and not _is_client_error(exc):
                time.sleep(min(8.0, 0.5 * 2**attempt))
                continue
            raise _friendly(exc, entry, what) from None


def _is_client_error(exc: Exception) -> bool:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status is not None and 400 <= status < 500 and status != 429


def _paths_info(entry: ModelEntry, files: list[str]) -> dict:
    from huggingface_hub import HfApi

    infos = _with_retries(
        lambda: HfApi().get_paths_info(entry.repo, files, revision=entry.revision, expand=True),
        entry,
        "the file list",
    )
    return {i.path: i for i in infos}


def remote_files(entry: ModelEntry) -> dict[str, dict]:
    """Size and sha256 of each of the quant's files at the pinned revision, from the Hub API."""
    got = _paths_info(entry, list(entry.files.files))
    out = {}
    for f in entry.files.files:
        if f not in got:
            raise HarnessError(
                f"{f} is not in {entry.repo}@{entry.revision}",
                "the catalogue entry is stale or unconfirmed: check the repo's files and fix tasks/models.yaml.",
            )
        i = got[f]
        lfs = getattr(i, "lfs", None)
        out[f] = {"size": i.size, "sha256": getattr(lfs, "sha256", None) if lfs else None}
    return out


def download_model(entry: ModelEntry) -> Path:
    """Fetch, verify and (for byte splits) join a quant's files; return the path llama.cpp loads."""
    if entry.local_path or entry.package:
        return local_model_path(entry)
    if not entry.files.files:
        raise HarnessError(
            f"the file layout of {entry.name} {entry.quant} is unknown (unconfirmed catalogue entry)",
            "pick another quant (`harness models`) or add the files to tasks/models.yaml.",
        )
    done = cached_model_path(entry)
    if done is not None and _cached_intact(entry):
        return done
    from huggingface_hub import hf_hub_download

    remote = remote_files(entry)
    total = sum(r["size"] or 0 for r in remote.values())
    if entry.files.size and total and entry.files.size != total:
        raise HarnessError(
            f"the Hub lists {total} bytes for {entry.name} {entry.quant}, the catalogue {entry.files.size}",
            "the upload changed or the catalogue is wrong: check the repo, then fix tasks/models.yaml.",
        )
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub")
    need = total * (2 if entry.files.split == "parts" else 1)
    check_disk(cache, need, f"{entry.name} {entry.quant}")
    paths = []
    for f in entry.files.files:
        p = _with_retries(lambda f=f: hf_hub_download(entry.repo, f, revision=entry.revision), entry, f)
        _verify(Path(p), f, remote[f], entry)
        paths.append(Path(p))
    if entry.files.split == "parts":
        main = join_parts(paths, joined_path(entry))
    else:
        main = paths[0]
    check_gguf(main, entry, paths[1:] if entry.files.split == "shards" else [])
    return main


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


def _verify(path: Path, name: str, remote: dict, entry: ModelEntry) -> None:
    """Size against the Hub's, then the sha256 of the bytes against every expected value; a bad file is removed."""
    size = path.stat().st_size
    if remote["size"] is not None and size != remote["size"]:
        _quarantine(path)
        raise HarnessError(f"{name}: {size} bytes on disk, the Hub says {remote['size']}", "rerun the download.")
    bad = _mismatch(path, _expected(path, entry, remote.get("sha256")))
    if bad:
        _quarantine(path)
        raise HarnessError(f"{name}: {bad}", "the file was corrupted or the upload changed; it was removed: rerun the download.")


def _mismatch(path: Path, expected: list[tuple[str, str]], fresh: bool = False) -> str | None:
    """None when the bytes hash to every expected value, else what disagrees."""
    if not expected:
        return None
    got = file_sha256(path, fresh=fresh)
    for source, want in expected:
        if got != want:
            return f"sha256 of the bytes {got[:12]}… does not match {want[:12]}… from {source}"
    return None


def _cached_intact(entry: ModelEntry) -> bool:
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
            _quarantine(p)
            return False
    return True


def verify_model(entry: ModelEntry) -> list[tuple[str, str, str]]:
    """Re-hash what is on disk for a model (no remembered hashes) against the catalogue pin and the Hub's
    sha256 its blob was stored under; remove a corrupted file. Returns (file, sha256, checked against)."""
    if entry.local_path or entry.package:
        paths = [(Path(local_model_path(entry)), entry.files.files[0] if entry.files.files else "")]
    else:
        if not entry.files.files:
            raise HarnessError(f"the file layout of {entry.name} {entry.quant} is unknown", "pick another quant.")
        from huggingface_hub import try_to_load_from_cache

        paths = []
        for f in entry.files.files:
            got = try_to_load_from_cache(entry.repo, f, revision=entry.revision)
            if not isinstance(got, str):
                raise HarnessError(f"{entry.name} {entry.quant}: {f} is not downloaded",
                                   f"run `harness download {entry.name} --quant {entry.quant}`.")
            paths.append((Path(got), f))
    out = []
    for p, name in paths:
        expected = _expected(p, entry)
        bad = _mismatch(p, expected, fresh=True)
        if bad:
            _quarantine(p)
            raise HarnessError(f"{name or p.name}: {bad}; the file is corrupted and was removed",
                               f"run `harness download {entry.name} --quant {entry.quant}` to fetch it again.")
        out.append((name or p.name, file_sha256(p), ", ".join(s for s, _ in expected) or "nothing (no known hash)"))
    if entry.files.split == "parts":
        joined = joined_path(entry)
        if joined.is_file() and joined.stat().st_size != sum(p.stat().st_size for p, _ in paths):
            _quarantine(joined)
            raise HarnessError(f"{joined.name} is not the size of its parts: removed",
                               f"run `harness download {entry.name} --quant {entry.quant}` to join them again.")
        main = joined
    else:
        main = paths[0][0]
    if main.is_file():
        check_gguf(main, entry, [p for p, _ in paths[1:]] if entry.files.split == "shards" else [])
    return out


def _quarantine(path: Path) -> None:
    """Remove a bad file (blob and snapshot link) so it never looks complete."""
    real = path.resolve()
    forget(real)
    for p in {path, real}:
        try:
            p.unlink()
        except OSError:
            pass


def join_parts(parts: list[Path], dest: Path) -> Path:
    """Concatenate raw byte parts into one GGUF (temp file + rename: never half-joined under its name)."""
    total = sum(p.stat().st_size for p in parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_disk(dest.parent, total, dest.name)
    tmp = dest.with_name(dest.name + ".joining")
    try:
        with open(tmp, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, dest)
    except BaseException as exc:  # disk full, a part gone, Ctrl-C: never leave a half-joined file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise HarnessError(f"joining the parts of {dest.name} failed: {exc.strerror or exc}",
                               "free some space (the join needs the parts' size again), then rerun.") from exc
        raise
    return dest


# ---------------------------------------------------------------------------- before any download
def range_fetch(entry: ModelEntry, filename: str, log: list[tuple[int, int]] | None = None):
    """``fetch(start, end)`` over HTTP range requests on the Hub's resolve URL (redirects followed,
    token sent only to the Hub: httpx drops it on a redirect to another host)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(entry.repo, filename, revision=entry.revision)
    timeout = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or 10)

    def once(start: int, end: int) -> bytes:
        headers = build_hf_headers() | {"Range": f"bytes={start}-{end}"}
        with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as r:
            if r.status_code == 416:  # past the end of the file
                return b""
            hf_raise_for_status(r)
            skip = start if r.status_code == 200 else 0  # a server that ignores Range: read up to the end only
            want = end - start + 1
            buf = bytearray()
            for chunk in r.iter_bytes():
                buf += chunk
                if len(buf) >= skip + want:
                    break
            return bytes(buf[skip : skip + want])

    # The first bytes already read, kept for the process: the kind decision (tokenizer metadata) and the fit
    # check (model shape) read the same header, and neither should send a byte twice.
    key = url  # the endpoint, repo, revision and file
    head = _HEADS.setdefault(key, bytearray())

    def read(start: int, end: int) -> bytes:
        data = _with_retries(lambda: once(start, end), entry, f"the header of {filename}")
        if log is not None:
            log.append((start, start + len(data)))
        return data

    def fetch(start: int, end: int) -> bytes:
        if start > len(head):
            return read(start, end)
        if end >= len(head) and key not in _SIZES:
            want = end - len(head) + 1
            more = read(len(head), end)
            head.extend(more)
            if len(more) < want:  # the end of the file: never ask past it again
                _SIZES[key] = len(head)
        return bytes(head[start : end + 1])

    return fetch


_HEADS: dict[str, bytearray] = {}
_SIZES: dict[str, int] = {}  # file size, once a read came back short


def remote_shape(entry: ModelEntry) -> dict:
    """Layer and attention shape of the quant's GGUF, from its header read with range requests (~1 MB)."""
    first = entry.files.files[0]  # a single file, the first shard, or the first byte part: all start with the header
    return read_header_shape(range_fetch(entry, first))


def quant_sizes(entry: ModelEntry, remote: bool = True) -> dict[str, int | None]:
    """Total bytes of each quant of the entry's model: the catalogue's figure, else (``remote``) the Hub's
    file metadata (one request for all quants); None where neither is known."""
    if entry.local_path or entry.family == "hub":
        return {entry.quant: entry.files.size or (entry.local_path.stat().st_size if entry.local_path else None)}
    from harness.models.catalogue import load_catalogue

    model = load_catalogue()["models"].get(entry.name) or {}
    quants = {q: v for q, v in (model.get("quants") or {}).items() if isinstance(v, dict)}
    out: dict[str, int | None] = {q: v.get("size") for q, v in quants.items()}
    missing = {q: list(v.get("files") or []) for q, v in quants.items() if not v.get("size") and v.get("files")}
    if remote and missing and entry.repo:
        got = _paths_info(entry, [f for fs in missing.values() for f in fs])
        for q, fs in missing.items():
            if all(f in got and got[f].size is not None for f in fs):
                out[q] = sum(got[f].size for f in fs)
    return out
