"""The fit decision, before and after download: refuse when disk or memory cannot hold the model.

One computation (:func:`fit_or_refuse`) judges memory both before a download (:func:`refuse_before_download`:
sizes from the catalogue or the Hub, shape from a ranged read of the GGUF header) and after it
(:func:`preflight_file`: the real file and header): weights plus the KV cache the engine will allocate for the
planned tasks (``planned_ctx``), against this machine's RAM, each GPU's free memory and the RPC workers'.
:func:`fits` is the same verdict as a yes/no, for `harness plan`'s table.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from harness.backends.llamacpp.sizing import kv_cache_bytes, planned_ctx
from harness.disk import GIB
from harness.errors import HarnessError
from harness.plan.machine import available_memory

# Room left on a GPU for llama.cpp's compute buffers (activations of one n_batch micro-batch), beyond
# weights and KV cache; ~0.3-1.5 GiB from 8B to 70B at n_batch 512 (llama.cpp's load log).
GPU_COMPUTE_RESERVE = GIB


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


def check_memory(weights_bytes: int, kv_bytes: int, what: str, available: int | None = None) -> None:
    """Refuse to load when weights + KV cache exceed the available RAM (the OS would swap or kill us)."""
    if available is None:
        available = available_memory()
    need = weights_bytes + kv_bytes
    if need > available:
        raise HarnessError(
            f"{what} needs about {need / GIB:.1f} GiB (weights {weights_bytes / GIB:.1f} + KV cache "
            f"{kv_bytes / GIB:.1f}) but {available / GIB:.1f} GiB is available",
            "choose a smaller quant, lower --parallel (smaller KV cache), or offload layers to a GPU (--gpu-layers).",
        )


def fit_layers(weights_bytes: int, kv_bytes: int, n_layer: int, free_bytes: int) -> int:
    """How many of ``n_layer`` (weights + KV cache, spread evenly) fit in ``free_bytes``."""
    per_layer = (weights_bytes + kv_bytes) / max(n_layer, 1)
    return max(0, min(n_layer, int(free_bytes // per_layer)))


def check_memory_spread(
    weights_bytes: int,
    kv_bytes: int,
    n_layer: int,
    gpu_layers: int,
    devices: list[dict],
    what: str,
    available: int | None = None,
    kind: str = "rpc",
) -> None:
    """Memory check for a model whose offloaded layers go to other devices (``kind``: "rpc" workers, or
    this machine's "gpu"s): those layers and their KV cache must fit in the devices' free memory together,
    the rest in this machine's RAM.

    llama.cpp splits offloaded layers over devices in proportion to their free memory, so when the
    total fits, every device's share fits too.
    """
    if available is None:
        available = available_memory()
    offloaded = n_layer if gpu_layers < 0 else min(gpu_layers, n_layer)
    share = offloaded / max(n_layer, 1)
    remote = (weights_bytes + kv_bytes) * share
    local = (weights_bytes + kv_bytes) - remote
    reserve = GPU_COMPUTE_RESERVE * len(devices) if kind == "gpu" else 0
    free = sum(d["free_bytes"] for d in devices)
    if remote + reserve > free:
        each = ", ".join(
            f"{d.get('endpoint') or d.get('description') or d['device']} {d['free_bytes'] / GIB:.1f} GiB"
            for d in devices
        )
        where = "on the RPC workers" if kind == "rpc" else "on the GPU" + ("s" if len(devices) > 1 else "")
        extra = f" plus ~{reserve / GIB:.0f} GiB of compute buffers" if reserve else ""
        n_fit = fit_layers(weights_bytes, kv_bytes, n_layer, max(0, free - reserve))
        hint = (
            "add workers (--rpc), free memory on them, keep some layers here (--gpu-layers N), or use a smaller quant."
            if kind == "rpc"
            else f"offload fewer layers: --gpu-layers {n_fit} fits (the other {n_layer - n_fit} run on the CPU, slower), "
            "free GPU memory, or choose a smaller quant."
        )
        raise HarnessError(
            f"{what}: the {offloaded} offloaded layers need about {remote / GIB:.1f} GiB {where}{extra}, "
            f"which {'have' if kind == 'rpc' or len(devices) > 1 else 'has'} {free / GIB:.1f} GiB free ({each})",
            hint,
        )
    if local > available:
        raise HarnessError(
            f"{what}: the {n_layer - offloaded} layers kept on this machine need about {local / GIB:.1f} GiB, "
            f"{available / GIB:.1f} GiB is available",
            "offload more layers (--gpu-layers, -1 for all)"
            + (" or add workers." if kind == "rpc" else ", or choose a smaller quant."),
        )


def placement(settings) -> tuple[str, list[dict]]:
    """Where offloaded layers go: ("rpc", workers), ("gpu", this machine's GPUs) or ("cpu", [])."""
    if settings.rpc_servers:
        from harness.backends.llamacpp.rpc import add_workers

        return "rpc", add_workers(settings.rpc_servers)
    if settings.gpu_layers != 0:
        from harness.backends.llamacpp.devices import local_gpus

        gpus = local_gpus()
        if gpus:
            return "gpu", gpus
    return "cpu", []


def check_fit(
    weights: int,
    kv: int,
    n_layer: int,
    gpu_layers: int,
    kind: str,
    devices: list[dict],
    what: str,
    available: int | None = None,
) -> None:
    """Weights + KV cache against RAM (``kind`` "cpu"), or spread over GPUs / RPC workers and RAM."""
    if kind == "cpu":
        check_memory(weights, kv, what, available)
    else:
        check_memory_spread(weights, kv, n_layer, gpu_layers, devices, what, available, kind=kind)


def fits(
    weights: int,
    kv: int,
    n_layer: int,
    gpu_layers: int,
    kind: str,
    devices: list[dict],
    available: int | None = None,
) -> bool:
    """The fit decision as a yes/no: whether :func:`check_fit` accepts these figures (the plan's table, the
    refusal's suggestions)."""
    try:
        check_fit(weights, kv, n_layer, gpu_layers, kind, devices, "", available)
        return True
    except HarnessError:
        return False


def max_gpu_layers(
    weights: int, kv: int, n_layer: int, kind: str, devices: list[dict], available: int | None = None
) -> int | None:
    """The most ``--gpu-layers`` (``n_layer`` down to 0) that :func:`fits` on ``devices``; None when none does."""
    return next(
        (n for n in range(n_layer, -1, -1) if fits(weights, kv, n_layer, n, kind, devices, available)), None
    )


def fit_or_refuse(
    weights: int,
    shape: dict,
    plans: list,
    settings,
    what: str,
    *,
    quant: str | None = None,
    quant_sizes: dict[str, int | None] | None = None,
    placed: tuple[str, list[dict]] | None = None,
    available: int | None = None,
    longest: dict[str, int] | None = None,
    copies: int = 1,
) -> dict:
    """Refuse (HarnessError) when ``weights`` bytes plus the planned KV cache cannot be held here.

    ``shape``: n_layer, n_kv_heads, head_dim (a GGUF header). ``quant_sizes``: the model's quants (name ->
    bytes, None when unknown; ``quant`` is the one judged), to name the largest other one that fits. The refusal gives the figures, the
    largest quant and the ``--gpu-layers`` value that fit with the same settings (or says none does).
    Returns the figures (weights, KV bytes, cells, per-task sizing) when it fits.
    ``copies``: engine processes (``--engines``), each with its own model and KV cache: on a CPU all of them
    in RAM, on GPUs one per GPU (each GPU must hold a whole copy).
    """
    ctx = planned_ctx(plans, settings, longest)
    kv = kv_cache_bytes(shape["n_layer"], shape["n_kv_heads"], shape["head_dim"], ctx["cells"])
    kind, devices = placed if placed is not None else placement(settings)
    if available is None:
        available = available_memory()
    n_layer = shape["n_layer"]
    if copies > 1 and kind == "gpu":
        if copies > len(devices):
            raise HarnessError(
                f"--engines {copies} puts one engine on each GPU, and this machine has {len(devices)}",
                f"use --engines {len(devices)} or fewer.",
            )
        for d in devices[:copies]:  # one whole copy per GPU
            check_fit(weights, kv, n_layer, settings.gpu_layers, kind, [d], what, available)
        return {
            "weights_bytes": weights * copies,
            "kv_bytes": kv * copies,
            "n_ctx": ctx["cells"],
            "tasks": ctx["tasks"],
            "placement": kind,
            "available_bytes": available,
            "copies": copies,
        }
    weights, kv = weights * copies, kv * copies
    figures = {
        "weights_bytes": weights,
        "kv_bytes": kv,
        "n_ctx": ctx["cells"],
        "tasks": ctx["tasks"],
        "placement": kind,
        "available_bytes": available,
    }
    try:
        check_fit(weights, kv, n_layer, settings.gpu_layers, kind, devices, what, available)
        return figures
    except HarnessError as exc:
        err = exc
    parts = []
    for t, v in ctx["tasks"].items():
        gen = f" + {v['gen_budget']} generated" if v["gen_budget"] else ""
        parts.append(
            f"{t} {v['cells']} cells ({'' if v['exact'] else '<= '}{v['prompt_tokens']}-token prompt{gen})"
        )
    sized = ", ".join(parts)
    ideas = []
    known = {q: s for q, s in (quant_sizes or {}).items() if s}
    others = {q: s for q, s in known.items() if q != quant}
    fitting = [
        q for q, s in others.items() if fits(s, kv, n_layer, settings.gpu_layers, kind, devices, available)
    ]
    if fitting:
        best = max(fitting, key=lambda q: others[q])
        ideas.append(f"the largest quant that fits is {best} ({others[best] / GIB:.1f} GiB): --quant {best}")
    elif others:
        smallest = min(known, key=lambda q: known[q])
        ideas.append(
            f"no quant of this model fits (the smallest, {smallest}, is {known[smallest] / GIB:.1f} GiB)"
        )
    else:
        ideas.append("no other quant of this model has a known size")
    if kind != "cpu":
        n_fit = max_gpu_layers(weights, kv, n_layer, kind, devices, available)
        ideas.append(f"--gpu-layers {n_fit} fits" if n_fit is not None else "no --gpu-layers value fits")
    else:
        ideas.append("there is no GPU or RPC worker to offload to")
    if settings.n_parallel > 1:
        one = planned_ctx(plans, dataclasses.replace(settings, n_parallel=1), longest)["cells"]
        kv1 = kv_cache_bytes(shape["n_layer"], shape["n_kv_heads"], shape["head_dim"], one)
        ideas.append(
            f"a smaller --parallel (now {settings.n_parallel}) shrinks the KV cache "
            f"({kv1 / GIB:.1f} GiB at --parallel 1)"
        )
    raise HarnessError(f"{err.message}; KV cache sized for {sized}", "; ".join(ideas) + ".")


def preflight_file(
    model, model_path: Path, plans: list, settings, quant_sizes: dict | None = None, copies: int = 1
) -> tuple[dict, bool]:
    """The preflight after download, on the real file: its GGUF header (the final word on the shape) and
    the bytes of all its shards, through :func:`fit_or_refuse`. ``quant_sizes`` (the model's other quants
    and their sizes, from the catalogue) lets a refusal name a smaller quant that fits. Returns the header
    summary and whether layers are offloaded (GPU or RPC)."""
    from harness.models.gguf_check import check_gguf

    info = check_gguf(
        model_path, model
    )  # a damaged or non-Llama file fails here with a message, not in llama.cpp
    shards = re.sub(r"-00001-of-(\d+)\.gguf$", r"-*-of-\1.gguf", Path(model_path).name)  # all shards
    weights = sum(p.stat().st_size for p in Path(model_path).parent.glob(shards))
    placed = placement(settings)
    fit_or_refuse(
        weights,
        info,
        plans,
        settings,
        f"{model.name} {model.quant}",
        placed=placed,
        quant=model.quant,
        quant_sizes=quant_sizes,
        copies=copies,
    )
    return info, settings.gpu_layers != 0 and placed[0] != "cpu"


def refuse_before_download(
    entry, plans: list, settings, download_only: bool = False, note: str = ""
) -> dict | None:
    """Judge, before fetching a byte of weights, whether the model can run here with these plans and
    settings (the same computation as the preflight after download: sizes from the catalogue or the Hub's
    file metadata, layer and head counts from the GGUF header read with HTTP range requests). Refuse with the
    figures, the largest quant and --gpu-layers that would fit; with ``download_only`` print the verdict and go
    on. Returns the figures, or None when the model needs no download."""
    from harness.models.hub_files import quant_sizes, remote_files, remote_shape
    from harness.models.locate import cached_model_path

    if entry.local_path or entry.package or not entry.files.files or cached_model_path(entry) is not None:
        return None
    what = f"{entry.name} {entry.quant}"
    sizes = quant_sizes(entry, remote=False)
    if sizes.get(entry.quant) is None:
        sizes[entry.quant] = sum(r["size"] or 0 for r in remote_files(entry).values()) or None
    if sizes[entry.quant] is None:
        return None
    try:
        sizes = {**quant_sizes(entry, remote=True), entry.quant: sizes[entry.quant]}
    except HarnessError:
        pass  # the other quants' sizes only feed the suggestion
    shape = remote_shape(entry)
    try:
        figures = fit_or_refuse(
            sizes[entry.quant], shape, plans, settings, what, quant=entry.quant, quant_sizes=sizes
        )
    except HarnessError as exc:
        if not download_only:
            raise HarnessError(
                f"{exc.message}. No weights were downloaded (only the file's header: "
                f"{shape['fetched'] / 2**20:.1f} MiB)",
                exc.hint,
            ) from None
        print(
            f"warning: {exc.format_message()}\ndownloading {what} anyway{note}: this machine cannot run it "
            "with these settings (another machine may).",
            file=sys.stderr,
        )
        return None
    print(
        f"preflight: {what} fits{note}: weights {figures['weights_bytes'] / GIB:.1f} GiB + KV cache "
        f"{figures['kv_bytes'] / GIB:.1f} GiB ({figures['n_ctx']} cells) of {figures['available_bytes'] / GIB:.1f} "
        f"GiB available ({figures['placement']})",
        file=sys.stderr,
    )
    return figures
