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


def check_memory_spread(weights_bytes: int, kv_bytes: int, n_layer: int, gpu_layers: int, workers: list[dict],
                        what: str, available: int | None = None) -> None:
    """Memory check for a model spread over RPC workers: the offloaded layers (and their KV cache) must fit
    in the workers' free memory together, the rest in this machine's RAM.

    llama.cpp splits offloaded layers over devices in proportion to their free memory, so when the
    total fits, every worker's share fits too.
    """
    if available is None:
        import psutil

        available = psutil.virtual_memory().available
    offloaded = n_layer if gpu_layers < 0 else min(gpu_layers, n_layer)
    share = offloaded / max(n_layer, 1)
    remote = (weights_bytes + kv_bytes) * share
    local = (weights_bytes + kv_bytes) - remote
    free = sum(w["free_bytes"] for w in workers)
    if remote > free:
        each = ", ".join(f"{w['endpoint']} {w['free_bytes'] / GIB:.1f} GiB" for w in workers)
        raise HarnessError(
            f"{what}: the {offloaded} offloaded layers need about {remote / GIB:.1f} GiB on the RPC workers, "
            f"which have {free / GIB:.1f} GiB free ({each})",
            "add workers (--rpc), free memory on them, keep some layers here (--gpu-layers N), or use a smaller quant.",
        )
    if local > available:
        raise HarnessError(
            f"{what}: the {n_layer - offloaded} layers kept on this machine need about {local / GIB:.1f} GiB, "
            f"{available / GIB:.1f} GiB is available",
            "offload more layers to the workers (--gpu-layers, -1 for all) or add workers.",
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
