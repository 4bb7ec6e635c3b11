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


# Room left on a GPU for llama.cpp's compute buffers (activations of one n_batch micro-batch), beyond
# weights and KV cache; ~0.3-1.5 GiB from 8B to 70B at n_batch 512 (llama.cpp's load log).
GPU_COMPUTE_RESERVE = GIB


def fit_layers(weights_bytes: int, kv_bytes: int, n_layer: int, free_bytes: int) -> int:
    """How many of ``n_layer`` (weights + KV cache, spread evenly) fit in ``free_bytes``."""
    per_layer = (weights_bytes + kv_bytes) / max(n_layer, 1)
    return max(0, min(n_layer, int(free_bytes // per_layer)))


def check_memory_spread(weights_bytes: int, kv_bytes: int, n_layer: int, gpu_layers: int, devices: list[dict],
                        what: str, available: int | None = None, kind: str = "rpc") -> None:
    """Memory check for a model whose offloaded layers go to other devices (``kind``: "rpc" workers, or
    this machine's "gpu"s): those layers and their KV cache must fit in the devices' free memory together,
    the rest in this machine's RAM.

    llama.cpp splits offloaded layers over devices in proportion to their free memory, so when the
    total fits, every device's share fits too.
    """
    if available is None:
        import psutil

        available = psutil.virtual_memory().available
    offloaded = n_layer if gpu_layers < 0 else min(gpu_layers, n_layer)
    share = offloaded / max(n_layer, 1)
    remote = (weights_bytes + kv_bytes) * share
    local = (weights_bytes + kv_bytes) - remote
    reserve = GPU_COMPUTE_RESERVE * len(devices) if kind == "gpu" else 0
    free = sum(d["free_bytes"] for d in devices)
    if remote + reserve > free:
        each = ", ".join(f"{d.get('endpoint') or d.get('description') or d['device']} {d['free_bytes'] / GIB:.1f} GiB"
                         for d in devices)
        where = "on the RPC workers" if kind == "rpc" else "on the GPU" + ("s" if len(devices) > 1 else "")
        extra = f" plus ~{reserve / GIB:.0f} GiB of compute buffers" if reserve else ""
        n_fit = fit_layers(weights_bytes, kv_bytes, n_layer, max(0, free - reserve))
        hint = ("add workers (--rpc), free memory on them, keep some layers here (--gpu-layers N), or use a smaller quant."
                if kind == "rpc" else
                f"offload fewer layers: --gpu-layers {n_fit} fits (the other {n_layer - n_fit} run on the CPU, slower), "
                "free GPU memory, or choose a smaller quant.")
        raise HarnessError(
            f"{what}: the {offloaded} offloaded layers need about {remote / GIB:.1f} GiB {where}{extra}, "
            f"which {'have' if kind == 'rpc' or len(devices) > 1 else 'has'} {free / GIB:.1f} GiB free ({each})",
            hint,
        )
    if local > available:
        raise HarnessError(
            f"{what}: the {n_layer - offloaded} layers kept on this machine need about {local / GIB:.1f} GiB, "
            f"{available / GIB:.1f} GiB is available",
            "offload more layers (--gpu-layers, -1 for all)" + (" or add workers." if kind == "rpc" else
                                                                 ", or choose a smaller quant."),
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
