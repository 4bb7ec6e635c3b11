"""Verified, resumable downloads of catalogue GGUF files from the Hugging Face Hub (huggingface-hub).

Files land in the normal HF cache (resume and progress bar are huggingface-hub's). After download
each file's size and sha256 are checked against the Hub's LFS metadata (and the catalogue), then the
GGUF header is read to check the architecture and parameter count. Byte-split uploads
(``x.gguf.part1of2``) are joined next to the cache after a free-disk check.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from harness.catalogue import ModelEntry
from harness.errors import HarnessError
from harness.gguf_check import check_gguf
from harness.preflight import check_disk

RETRIES = 3
JOINED_DIR_ENV = "HARNESS_MODELS_DIR"


def _joined_dir() -> Path:
    base = os.environ.get(JOINED_DIR_ENV) or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "llama-bench-joined"
    return Path(base)


def _joined_path(entry: ModelEntry) -> Path:
    return _joined_dir() / entry.repo.replace("/", "--") / entry.revision / entry.files.main_file


def cached_model_path(entry: ModelEntry) -> Path | None:
    """The model's main file if it is already complete on disk (no network)."""
    if not entry.repo or not entry.files.files:
        return None
    if entry.files.split == "parts":
        p = _joined_path(entry)
        return p if p.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    paths = []
    for f in entry.files.files:
        got = try_to_load_from_cache(entry.repo, f, revision=entry.revision)
        if not isinstance(got, str):
            return None
        paths.append(Path(got))
    return paths[0]


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


def remote_files(entry: ModelEntry) -> dict[str, dict]:
    """Size and sha256 of each of the quant's files at the pinned revision, from the Hub API."""
    from huggingface_hub import HfApi

    infos = _with_retries(
        lambda: HfApi().get_paths_info(entry.repo, list(entry.files.files), revision=entry.revision, expand=True),
        entry,
        "the file list",
    )
    got = {i.path: i for i in infos}
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
        from harness.catalogue import local_model_path

        return local_model_path(entry)
    if not entry.files.files:
        raise HarnessError(
            f"the file layout of {entry.name} {entry.quant} is unknown (unconfirmed catalogue entry)",
            "pick another quant (`harness models`) or add the files to tasks/models.yaml.",
        )
    done = cached_model_path(entry)
    if done is not None:
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
        main = _join_parts(paths, _joined_path(entry))
    else:
        main = paths[0]
    check_gguf(main, entry, paths[1:] if entry.files.split == "shards" else [])
    return main


def _verify(path: Path, name: str, remote: dict, entry: ModelEntry) -> None:
    from harness.record import file_sha256

    size = path.stat().st_size
    if remote["size"] is not None and size != remote["size"]:
        _quarantine(path)
        raise HarnessError(f"{name}: {size} bytes on disk, the Hub says {remote['size']}", "rerun the download.")
    expected = [s for s in (remote.get("sha256"), entry.files.sha256 if entry.files.split == "single" else None) if s]
    if expected:
        got = file_sha256(path)
        for want in expected:
            if got != want:
                _quarantine(path)
                raise HarnessError(
                    f"{name}: sha256 {got[:12]}… does not match the expected {want[:12]}…",
                    "the file was corrupted or the upload changed; it was removed: rerun the download.",
                )


def _quarantine(path: Path) -> None:
    """Remove a bad file (blob and snapshot link) so it never looks complete."""
    real = path.resolve()
    for p in {path, real}:
        try:
            p.unlink()
        except OSError:
            pass


def _join_parts(parts: list[Path], dest: Path) -> Path:
    """Concatenate raw byte parts into one GGUF (temp file + rename: never half-joined under its name)."""
    total = sum(p.stat().st_size for p in parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_disk(dest.parent, total, dest.name)
    tmp = dest.with_name(dest.name + ".joining")
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)
    os.replace(tmp, dest)
    return dest
