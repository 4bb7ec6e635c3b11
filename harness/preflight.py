"""Preflight: refuse before downloading or loading when disk or memory cannot hold the model."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.errors import HarnessError

GIB = 2**30


def free_disk(path: Path) -> int:
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_disk(path: Path, need_bytes: int, what: str, free: int | None = None) -> None:
    """Refuse a download or join that would not fit on the disk holding ``path``."""
    free = free_disk(path) if free is None else free
    if need_bytes > free:
        raise HarnessError(
            f"{what} needs {need_bytes / GIB:.1f} GiB on {path} but only {free / GIB:.1f} GiB is free",
            "free some space, set HF_HOME to a bigger disk, or choose a smaller quant (QUANT=Q4_K_M or Q3_K_M).",
        )


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, n_ctx: int, bytes_per: int = 2) -> int:
    """f16 K and V for every layer and cell."""
    return 2 * n_layers * n_kv_heads * head_dim * n_ctx * bytes_per


def check_memory(weights_bytes: int, kv_bytes: int, what: str, available: int | None = None) -> None:
    """Refuse to load when weights + KV cache exceed the available RAM (the OS would swap or kill us)."""
    if available is None:
        import psutil

        available = psutil.virtual_memory().available
    need = weights_bytes + kv_bytes
    if need > available:
        raise HarnessError(
            f"{what} needs about {need / GIB:.1f} GiB (weights {weights_bytes / GIB:.1f} + KV cache "
            f"{kv_bytes / GIB:.1f}) but {available / GIB:.1f} GiB is available",
            "choose a smaller quant, lower --parallel (smaller KV cache), or offload layers to a GPU (--gpu-layers).",
        )


def check_writable(results_dir: Path) -> None:
    """Refuse a run whose results could not be saved, before any model is loaded or question asked."""
    probe = Path(results_dir) / "runs" / ".write-probe"
    try:
        for sub in ("runs", ".journal"):
            (Path(results_dir) / sub).mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(
            f"the results folder {results_dir} is not writable ({exc.strerror or exc})",
            "choose another folder with --results-dir, or fix its permissions or free space.",
        ) from exc
