"""The quant's files on the Hugging Face Hub, without downloading them: sizes and sha256s at the pinned
revision (the Hub API's file metadata), the GGUF header read with HTTP range requests, and the sizes of every
quant of a model. Requests are retried on transient failures only, and a failure is one actionable message
(gated repo, missing revision or file, no connection), never huggingface-hub's exception.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TypeVar

from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry
from harness.models.gguf_check import read_header_shape

RETRIES = 3
T = TypeVar("T")


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
        return HarnessError(
            f"revision {entry.revision} of {entry.repo} does not exist", "fix the catalogue's revision pin."
        )
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


def with_retries(fn: Callable[[], T], entry: ModelEntry, what: str) -> T:
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

    infos = with_retries(
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


def range_fetch(
    entry: ModelEntry, filename: str, log: list[tuple[int, int]] | None = None
) -> Callable[[int, int], bytes]:
    """``fetch(start, end)`` over HTTP range requests on the Hub's resolve URL (redirects followed,
    token sent only to the Hub: httpx drops it on a redirect to another host)."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(entry.repo, filename, revision=entry.revision)
    timeout = float(constants.HF_HUB_DOWNLOAD_TIMEOUT)  # HF_HUB_DOWNLOAD_TIMEOUT, else huggingface-hub's 10 s

    def once(start: int, end: int) -> bytes:
        headers = build_hf_headers() | {"Range": f"bytes={start}-{end}"}
        with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as r:
            if r.status_code == 416:  # past the end of the file
                return b""
            hf_raise_for_status(r)
            skip = (
                start if r.status_code == 200 else 0
            )  # a server that ignores Range: read up to the end only
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
        data = with_retries(lambda: once(start, end), entry, f"the header of {filename}")
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
    first = entry.files.files[
        0
    ]  # a single file, the first shard, or the first byte part: all start with the header
    return read_header_shape(range_fetch(entry, first))


def quant_sizes(entry: ModelEntry, remote: bool = True) -> dict[str, int | None]:
    """Total bytes of each quant of the entry's model: the catalogue's figure, else (``remote``) the Hub's
    file metadata (one request for all quants); None where neither is known."""
    if entry.local_path or entry.family == "hub":
        return {
            entry.quant: entry.files.size or (entry.local_path.stat().st_size if entry.local_path else None)
        }
    from harness.models.catalogue import load_catalogue

    model = load_catalogue()["models"].get(entry.name) or {}
    quants = {q: v for q, v in (model.get("quants") or {}).items() if isinstance(v, dict)}
    out: dict[str, int | None] = {q: v.get("size") for q, v in quants.items()}
    missing = {
        q: list(v.get("files") or []) for q, v in quants.items() if not v.get("size") and v.get("files")
    }
    if remote and missing and entry.repo:
        got = _paths_info(entry, [f for fs in missing.values() for f in fs])
        for q, fs in missing.items():
            if all(f in got and got[f].size is not None for f in fs):
                out[q] = sum(got[f].size for f in fs)
    return out
