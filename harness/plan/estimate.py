"""The plan of a model: per quant, the download against free disk, weights + KV cache against RAM and each GPU
(the fit decision's own verdict, harness/plan/fit.py), and the wall time with an interval.

- **tokens**: prompt tokens after prefix sharing, as the engine counts them, measured per task and subset
  size (tasks/plan_tokens.yaml); generated tokens per question: a typical length as the point, the
  generation budget as the upper end (tasks/plan_model.yaml; harness/plan/assumptions.py);
- **rates**: llama.cpp itself, timed now on a slice of the model (harness/plan/slice_probe.py); numpy probes
  only as a named fallback when no slice can be built (harness/plan/rates.py);
- **time**: the token floor of :func:`harness.backends.llamacpp.speed.floor_seconds` (generation: in KV streams,
  at the task's mean depth) times the measured wall-over-floor overhead of real runs.

Nothing here reads weights; a model's shape comes from its GGUF header when the file is here or the Hub
answers (a 1 MiB range read), else from the published config (plan_model.yaml).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path

from harness.backends.llamacpp.sizing import kv_cache_bytes, planned_ctx
from harness.errors import HarnessError
from harness.plan import rates
from harness.plan.assumptions import TaskCost, catalogue_size, plan_model, task_costs
from harness.plan.fit import fits, max_gpu_layers
from harness.plan.machine import available_memory, disk_free, download_dir, gpus, offline
from harness.plan.probes import BW_CAP, Probe, probe_now
from harness.plan.render import duration_text
from harness.plan.slice_probe import measure_slice, slice_target


@dataclasses.dataclass
class QuantPlan:
    """One quant's row of the plan: size and where it came from, the download, the fit, the rates and time."""

    quant: str
    size: int | None
    size_source: str  # catalogue | file | Hub | estimated
    download: int  # bytes to fetch (0: already here); parts are joined: twice the size on disk
    disk_need: int
    shape: dict | None
    shape_source: str
    params: float = 0
    disk_ok: bool = True
    kv: int = 0
    n_ctx: int = 0
    fits_ram: bool = False
    gpu_layers: int | None = None  # the most layers that fit on the GPUs (None: no GPU)
    rates: rates.Rates | None = None
    seconds: tuple[float, float, float] | None = None  # low, point, high
    per_task: list[dict] = dataclasses.field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Runs here: in RAM, or with some layers on the GPUs."""
        return self.fits_ram or bool(self.gpu_layers)


@dataclasses.dataclass
class Plan:
    """The plan of one model on one machine: its tasks, this machine, every quant, the recommendation."""

    model: str
    kind: str
    params: float
    tasks: list[TaskCost]
    n_parallel: int
    quants: list[QuantPlan]
    available: int
    disk_free: int
    disk_path: Path
    gpus: list[dict]
    rates_method: str  # how the rates were had (the probed quant's), for the method line
    budget_hours: float | None
    recommended: str | None
    why: str


def quant_facts(
    entry, network: bool = True, local: bool = True
) -> tuple[int | None, str, int, dict | None, str]:
    """Size (and where it came from), bytes to download, shape (and where from) of one quant. ``local``:
    a file already on this machine gives both (its size, its header)."""
    from harness.models.gguf_check import read_header_shape
    from harness.models.gguf_header import file_fetch
    from harness.models.locate import cached_model_path, local_model_path

    path = None
    try:
        path = local_model_path(entry) if local else None
    except HarnessError:
        path = None
    if local and path is None and entry.repo and entry.files.files:
        path = cached_model_path(entry)
    if path is not None:
        shards = re.sub(r"-00001-of-(\d+)\.gguf$", r"-*-of-\1.gguf", Path(path).name)
        size = sum(p.stat().st_size for p in Path(path).parent.glob(shards))
        return size, "file here", 0, read_header_shape(file_fetch(Path(path))), "GGUF header (file here)"
    size, source = entry.files.size, "catalogue"
    shape, shape_source = None, ""
    if network and not offline() and entry.repo and entry.files.files:
        from harness.models.hub_files import remote_files, remote_shape

        try:
            if size is None:
                size = sum(r["size"] or 0 for r in remote_files(entry).values()) or None
                source = "Hub"
            shape, shape_source = remote_shape(entry), "GGUF header (1 MiB range read)"
        except HarnessError:
            pass
    if size is None:
        size, source = catalogue_size(entry)
    if shape is None:
        known = plan_model()["shapes"].get(int(entry.params or 0))
        if known:
            shape, shape_source = dict(known), "published config (no header read)"
    return size, source, size or 0, shape, shape_source or "unknown"


def estimate_seconds(costs: list[TaskCost], r: rates.Rates) -> tuple[tuple, list[dict]]:
    """(low, point, high) seconds and the per-task breakdown, for ``costs`` at the rates ``r``: prompt tokens at
    the prompt rate, generated tokens at the batched decode rate (in KV streams where probed: generation's layout)
    at the task's mean depth, times the measured overhead (its point; 1.0 and its high value for the ends)."""
    from harness.backends.llamacpp.speed import floor_seconds

    m = plan_model()
    f_lo, f_hi = m["token_factor"]
    tot = [0.0, 0.0, 0.0]
    rows = []
    overhead = m["overhead" if r.sliced else "fallback_overhead"]
    for c in costs:
        point_ovh, high_ovh, _ = overhead[c.output]

        def floor(speed: dict, prompt: float, gen: float, c=c) -> float:
            streams = bool(speed.get("decode_streams_tokens_per_s"))
            return floor_seconds(speed, prompt, gen, c.depth if gen else None, streams=streams)

        lo = floor(r.fast, c.prompt_tokens * f_lo, c.n * c.gen_point / 2)
        pt = floor(r.point, c.prompt_tokens, c.n * c.gen_point) * point_ovh
        hi = floor(r.slow, c.prompt_tokens * f_hi, c.n * c.gen_budget) * high_ovh
        rows.append(
            {
                "task": c.name,
                "n": c.n,
                "prompt_tokens": c.prompt_tokens,
                "generated_point": round(c.n * c.gen_point),
                "generated_max": c.n * c.gen_budget,
                "seconds": (lo, pt, hi),
            }
        )
        tot = [tot[0] + lo, tot[1] + pt, tot[2] + hi]
    return tuple(tot), rows


def quant_rates(
    entry, q: QuantPlan, settings, probe: Probe | None, local: bool, log: Callable[[str], None] | None
) -> rates.Rates:
    """The rates of one quant: stored numpy figures when ``probe`` is given (the reference machine class), else
    llama.cpp timed here on a slice of it, else (no slice possible) the numpy probes here, named a fallback."""
    m = plan_model()
    if probe is not None:
        r = rates.fallback_rates(
            q.params,
            q.size,
            q.shape["n_layer"],
            probe,
            settings.n_parallel,
            m["rate_spread"],
            "stored figures of the reference machine class",
        )
        return dataclasses.replace(r, method=r.method.replace("FALLBACK (", "(", 1))
    target = slice_target(entry, q.quant, q.params, q.shape, local)
    why = target if isinstance(target, str) else ""
    if not why:
        shape, n_layer = target
        try:
            return measure_slice(shape, n_layer, settings, m["extrapolation"][:2], log=log)
        except HarnessError as exc:
            why = f"the slice could not be timed: {exc.message}"
    return rates.fallback_rates(
        q.params,
        q.size,
        q.shape["n_layer"],
        probe_now(min(q.size, BW_CAP)),
        settings.n_parallel,
        m["rate_spread"],
        why,
    )


def recommend(quants: list[QuantPlan], budget_hours: float | None) -> tuple[str | None, str]:
    """The largest quant that fits (RAM, or GPU offload with the rest in RAM), has room on disk and, with a
    budget, whose point estimate is within it."""
    if not any(q.size and q.shape for q in quants):
        return None, (
            "the size or shape is unknown before download: the Hub was not asked (HF_HUB_OFFLINE) or did "
            "not answer, and the catalogue has neither"
        )
    ok = [q for q in quants if q.fits and q.disk_ok and q.size]
    if not ok:
        return None, "no quant fits this machine's memory and disk"
    if budget_hours is not None:
        within = [q for q in ok if q.seconds and q.seconds[1] <= budget_hours * 3600]
        if not within:
            fastest = min(ok, key=lambda q: q.seconds[1] if q.seconds else math.inf)
            return None, (
                f"no quant that fits finishes within {budget_hours:g} h (the quickest, {fastest.quant}, "
                f"~{duration_text(fastest.seconds[1])}): fewer questions (--limit) or fewer tasks"
            )
        ok = within
    best = max(ok, key=lambda q: q.size)
    return best.quant, (
        "the largest quant that fits"
        + (f" and finishes within {budget_hours:g} h" if budget_hours is not None else "")
    )


def quant_names(entry) -> list[str]:
    """The quants a plan covers: the catalogue model's every quant, or the one file of a local or hf: model."""
    if entry.family in ("local", "hub"):
        return [entry.quant]
    from harness.models.catalogue import load_catalogue

    quants = (load_catalogue()["models"].get(entry.name) or {}).get("quants") or {}
    return [q for q, v in quants.items() if isinstance(v, dict)] or [entry.quant]


def make_plan(
    model: str,
    quant: str | None = None,
    tasks: list[str] | None = None,
    limit: int | None = None,
    full: bool = False,
    budget_hours: float | None = None,
    settings=None,
    probe: Probe | None = None,
    kind: str | None = None,
    network: bool = True,
    log: Callable[[str], None] | None = None,
) -> Plan:
    """The plan of ``model`` (a catalogue name, a .gguf path or hf:...; every quant, or ``quant``)."""
    from harness.models.catalogue import resolve

    return plan_entry(
        resolve(model, quant),
        quant is not None,
        tasks,
        limit,
        full,
        budget_hours,
        settings,
        probe,
        kind,
        network,
        log=log,
    )


def plan_entry(
    entry,
    one_quant: bool,
    tasks: list[str] | None = None,
    limit: int | None = None,
    full: bool = False,
    budget_hours: float | None = None,
    settings=None,
    probe: Probe | None = None,
    kind: str | None = None,
    network: bool = True,
    machine: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> Plan:
    """Fit and time per quant of ``entry``'s model (only ``entry.quant`` with ``one_quant``) and the
    recommendation. ``network``: may ask the Hub for sizes and headers it lacks (never weights).
    ``probe``: stored numpy-probe figures (the reference machine class) instead of timing llama.cpp here.
    ``machine``: another machine's figures instead of this one's (``available``, ``gpus``, ``disk_free``
    bytes); then nothing of this machine is looked at, files already here included (a deterministic plan)."""
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.models.catalogue import resolve

    settings = settings or EngineSettings()
    if kind:
        entry = dataclasses.replace(entry, kind=kind)
    elif entry.kind not in ("base", "instruct"):
        entry = dataclasses.replace(entry, kind="instruct")  # an undecided hf:/local file: the longer prompts
    costs = task_costs(entry, tasks or ["gsm8k", "mmlu"], limit, full)
    ctx = planned_ctx(costs, settings)
    if machine is not None:
        avail, devs, free = machine["available"], list(machine["gpus"]), machine["disk_free"]
    else:
        avail, devs, free = available_memory(), gpus() if settings.gpu_layers != 0 else [], disk_free()
    quants, entries = [], {}
    for q in [entry.quant] if one_quant else quant_names(entry):
        e = entry if q == entry.quant else dataclasses.replace(resolve(entry.name, q), kind=entry.kind)
        entries[q] = e
        size, source, download, shape, shape_source = quant_facts(e, network, local=machine is None)
        params = e.params or (size * 8 / plan_model()["bpw"].get(q, 5.0) if size else 0)
        need = download * (2 if e.files.split == "parts" else 1)  # byte parts are joined beside the cache
        qp = QuantPlan(
            q, size, source, download, need, shape, shape_source, params=params, disk_ok=need <= free
        )
        if shape and size:
            qp.kv = kv_cache_bytes(shape["n_layer"], shape["n_kv_heads"], shape["head_dim"], ctx["cells"])
            qp.n_ctx = ctx["cells"]
            qp.fits_ram = fits(size, qp.kv, shape["n_layer"], 0, "cpu", [], avail)
            if devs:
                qp.gpu_layers = max_gpu_layers(size, qp.kv, shape["n_layer"], "gpu", devs, avail) or 0
        quants.append(qp)
    # Only a quant that can run here is timed: a slice of a model that fits neither RAM nor a GPU would cost
    # a probe (minutes and gigabytes for a 70B slice) before the refusal it cannot change.
    timed = [q for q in quants if q.shape and q.size and q.params and (q.fits_ram or q.gpu_layers)]
    method = (
        "none: the size or shape is unknown"
        if not any(q.shape and q.size for q in quants)
        else "none: no quant fits this machine"
    )
    if timed:
        probed = next((q for q in timed if q.quant == entry.quant), timed[0])
        r = quant_rates(entries[probed.quant], probed, settings, probe, machine is None, log)
        method = r.method
        for qp in timed:
            qp.rates = r if qp is probed else rates.scaled_rates(r, probed.size, qp.size, qp.quant)
            qp.seconds, qp.per_task = estimate_seconds(costs, qp.rates)
    rec, why = recommend(quants, budget_hours)
    return Plan(
        entry.name,
        entry.kind,
        quants[0].params if quants else 0,
        costs,
        settings.n_parallel,
        quants,
        avail,
        free,
        download_dir(),
        devs,
        method,
        budget_hours,
        rec,
        why,
    )
