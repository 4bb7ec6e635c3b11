"""Verified, resumable downloads of catalogue GGUF files from the Hugging Face Hub (huggingface-hub).

Before anything is fetched, :func:`harness.plan.fit.refuse_before_download` judges whether the model can run
here (sizes from the catalogue or the Hub's file metadata, layer and head counts from the GGUF header read
with HTTP range requests: harness/models/hub_files.py).

Files land in the normal HF cache (resume and progress bar are huggingface-hub's). After download each file
is verified (harness/models/verify.py: size and sha256 of the bytes against the catalogue's pin and the Hub's
LFS metadata, then the GGUF header). A cached file is re-checked against the sha256 its blob was stored under
(the Hub's claim) before use, and refetched when its bytes disagree. Byte-split uploads
(``x.gguf.part1of2``) are joined next to the cache after a free-disk check.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness import hub
from harness.disk import check_disk
from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry
from harness.models.gguf_check import check_gguf
from harness.models.hub_files import remote_files, with_retries
from harness.models.locate import cached_model_path, joined_path, local_model_path
from harness.models.verify import cached_intact, verify_download


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
    if done is not None and cached_intact(entry):
        return done
    from huggingface_hub import hf_hub_download

    remote = remote_files(entry)
    total = sum(r["size"] or 0 for r in remote.values())
    if entry.files.size and total and entry.files.size != total:
        raise HarnessError(
            f"the Hub lists {total} bytes for {entry.name} {entry.quant}, the catalogue {entry.files.size}",
            "the upload changed or the catalogue is wrong: check the repo, then fix tasks/models.yaml.",
        )
    cache = hub.cache_dir()  # where hf_hub_download writes
    need = total * (2 if entry.files.split == "parts" else 1)
    check_disk(cache, need, f"{entry.name} {entry.quant}")
    paths = []
    for f in entry.files.files:
        p = with_retries(lambda f=f: hf_hub_download(entry.repo, f, revision=entry.revision), entry, f)
        verify_download(Path(p), f, remote[f], entry)
        paths.append(Path(p))
    if entry.files.split == "parts":
        main = join_parts(paths, joined_path(entry))
    else:
        main = paths[0]
    check_gguf(main, entry, paths[1:] if entry.files.split == "shards" else [])
    return main


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
            raise HarnessError(
                f"joining the parts of {dest.name} failed: {exc.strerror or exc}",
                "free some space (the join needs the parts' size again), then rerun.",
            ) from exc
        raise
    return dest
