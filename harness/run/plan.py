"""`harness plan`: what a bench will cost on this machine, before a byte of weights is fetched or loaded.

Per quant: the download against free disk, the memory (weights + the KV cache the engine will allocate for
the planned tasks, from :func:`harness.run.preflight.planned_ctx`) against RAM and each GPU, the
``--gpu-layers`` that fits (the preflight's own checks), and the wall time with an interval:

- **tokens**: prompt tokens after prefix sharing, as the engine counts them, measured per task and subset
  size (tasks/plan_tokens.yaml); generated tokens per question: a typical length as the point, the
  generation budget as the upper end (tasks/plan_model.yaml);
- **rates**: llama.cpp itself, timed now on a slice of the model (a few layers at its real shape and quant,
  random weights) and extrapolated per layer to its depth (harness/run/rates.py ``measure_slice``); numpy
  probes only as a named fallback when no slice can be built;
- **time**: the token floor of :func:`harness.backends.llamacpp.speed.floor_seconds` (generation: in KV streams,
  at the task's mean depth) times the measured wall-over-floor overhead of real runs.

Nothing here reads weights; a model's shape comes from its GGUF header when the file is here or the Hub
answers (a 1 MiB range read), else from the published config (plan_model.yaml).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import textwrap
from functools import lru_cache
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.paths import TASKS_DIR
from harness.run import rates
from harness.run.preflight import (
    GIB,
    available_memory,
    check_fit,
    free_disk,
    kv_cache_bytes,
    parse_size,
    planned_ctx,
)

MODEL_FILE = TASKS_DIR / "plan_model.yaml"
TOKENS_FILE = TASKS_DIR / "plan_tokens.yaml"
GPU_FREE_ENV = "HARNESS_GPU_FREE"  # e.g. "24GiB,8GiB": pretend these GPUs (free memory) are here; "none": no GPU
DISK_FREE_ENV = "HARNESS_DISK_FREE"  # e.g. "100GiB": free space where downloads go


# ---------------------------------------------------------------------------- data files
@lru_cache(maxsize=1)
def plan_model(path: Path = MODEL_FILE) -> dict:
    """tasks/plan_model.yaml, checked."""
    try:
        d = yaml.safe_load(Path(path).read_text())
        shape_keys = ("n_layer", "n_kv_heads", "head_dim")
        slice_keys = ("n_embd", "n_ff", "n_head", "n_vocab")
        out = {
            "bpw": {str(q): float(v) for q, v in d["bits_per_weight"].items()},
            "shapes": {int(p): {k: int(s[k]) for k in shape_keys + slice_keys if k in s or k in shape_keys}
                       for p, s in d["shapes"].items()},
            "slice_types": {str(q): (str(v[0]), str(v[1])) for q, v in d["slice_types"].items()},
            "typical": {str(t): (float(v["tokens"]), str(v["source"])) for t, v in d["typical_generated"].items()},
            **{key: {str(k): (float(v["point"]), float(v["high"]), str(v["source"])) for k, v in d[key].items()}
               for key in ("overhead", "fallback_overhead")},
            "extrapolation": (float(d["extrapolation"]["low"]), float(d["extrapolation"]["high"]),
                              str(d["extrapolation"]["source"])),
            "checked": (float(d["checked"]["low_params"]), float(d["checked"]["high_params"]),
                        str(d["checked"]["source"])),
            "fitted_runs": [str(x) for x in d.get("fitted_runs") or []],
            "rate_spread": float(d["rate_spread"]),
            "token_factor": (float(d["prompt_token_factor"]["low"]), float(d["prompt_token_factor"]["high"])),
        }
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise HarnessError(f"cannot read the plan assumptions {path}: {exc}", "restore tasks/plan_model.yaml.")
    from harness.models.probe_slice import BLOCKS

    lo, hi, _ = out["extrapolation"]
    c_lo, c_hi, _ = out["checked"]
    bad = [q for q, v in out["bpw"].items() if not 1 <= v <= 33] + \
          [k for o in ("overhead", "fallback_overhead") for k, (p, h, _) in out[o].items() if not 1 <= p <= h] + \
          [q for q, ts in out["slice_types"].items() if any(t not in BLOCKS for t in ts)] + \
          (["extrapolation"] if not 0 < lo <= 1 <= hi else []) + \
          (["checked"] if not 0 < c_lo <= c_hi else []) + \
          (["rate_spread"] if out["rate_spread"] < 1 else []) + \
          (["prompt_token_factor"] if not 0 < out["token_factor"][0] <= 1 <= out["token_factor"][1] else [])
    if bad or not set(out["overhead"]) == set(out["fallback_overhead"]) == {"generate", "loglik"}:
        raise HarnessError(f"{path}: implausible figures for {', '.join(bad) or 'overhead (generate, loglik)'}",
                           "restore tasks/plan_model.yaml.")
    return out


@lru_cache(maxsize=1)
def plan_tokens(path: Path = TOKENS_FILE) -> dict:
    """tasks/plan_tokens.yaml: per task/format, the docs, output type, budget and measured prompt
    tokens at each subset size (checked: sizes grow, up to the whole split). Tokens need not grow with the
    size: a small MMLU subset has one question per subject, and a prefix shared by nobody costs each time."""
    try:
        d = yaml.safe_load(Path(path).read_text())
        out = {}
        for key, v in d["tasks"].items():
            points = sorted((int(n), int(t)) for n, t in v["prompt_tokens"].items())
            budget = v["gen_budget"]
            out[str(key)] = {"docs": int(v["docs"]), "output": str(v["output"]),
                             "budget": budget if budget == "model" else int(budget),
                             "points": [(0, 0), *points]}
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HarnessError(f"cannot read the task token table {path}: {exc}", "restore tasks/plan_tokens.yaml.")
    for key, v in out.items():
        pts = v["points"]
        if v["output"] not in ("generate", "loglik") or pts[-1][0] != v["docs"] or \
                any(b[0] <= a[0] or b[1] <= 0 for a, b in zip(pts, pts[1:])):
            raise HarnessError(f"{path}: {key} has an unknown output type or bad points",
                               "rerun scripts/measure_plan_tokens.py.")
    return out


# ---------------------------------------------------------------------------- the tasks
@dataclasses.dataclass(frozen=True)
class TaskCost:
    """One planned task: what preflight.planned_ctx reads (name, chat, configs) and what its time needs."""

    name: str
    chat: bool
    n: int
    output: str  # generate | loglik
    prompt_tokens: int  # SmolLM2 tokens after prefix sharing, interpolated from the measured points
    gen_point: float  # generated tokens per question (typical)
    gen_budget: int
    configs: tuple = ()
    depth: float = 0.0  # mean context position of a generated token: the decode rate depends on it


def task_costs(entry, tasks: list[str], limit: int | None = None, full: bool = False) -> list[TaskCost]:
    """The plan's tasks for a model without reading data or weights: the subset size as ``plan_task`` picks
    it (``--full``, ``--limit`` or the task's default), the budget as it sets it, the measured tokens."""
    from harness.tasks.settings import task_spec

    table, model = plan_tokens(), plan_model()
    out = []
    for name in tasks:
        spec = task_spec(name, entry.kind)
        if spec.get("requires_kind") and spec["requires_kind"] != entry.kind:
            raise HarnessError(f"task {name} is defined for {spec['requires_kind']} models; {entry.name} is a "
                               f"{entry.kind} model", "pick the instruct variant of the model, or another task.")
        chat = spec.get("chat") == "always" or (spec.get("chat") == "instruct" and entry.is_instruct)
        key = f"{name}/{'chat' if chat else 'plain'}"
        if key not in table:
            raise HarnessError(f"no measured token counts for {key}", "run scripts/measure_plan_tokens.py for it.")
        t = table[key]
        lim = None if full else (limit if limit is not None else spec.get("default_limit"))
        n = t["docs"] if lim is None else min(int(lim), t["docs"])
        budget = 0
        configs: tuple = ({"output_type": "loglikelihood"},)
        if t["output"] == "generate":
            mgt = spec.get("max_gen_toks")
            # As plan_task sets it: the task's max_gen_toks ("model": the catalogue's), else lm-eval's config's.
            budget = int(entry.gsm8k_max_gen_toks if mgt == "model" else mgt or t["budget"])
            configs = ({"output_type": "generate_until", "generation_kwargs": {"max_gen_toks": budget}},)
        typical = model["typical"].get(name, (0.0, ""))[0] if t["output"] == "generate" else 0.0
        gen = min(typical, budget)
        out.append(TaskCost(name, chat, n, t["output"], _interpolate(t["points"], n), gen, budget, configs,
                            _question_tokens(t["points"]) + gen / 2))
    return out


def _question_tokens(points: list[tuple[int, int]]) -> float:
    """One question's whole prompt (its shared prefix + its own suffix), from the two smallest measured subset
    sizes: each question adds its suffix, the prefix is paid once."""
    (n1, t1), (n2, t2) = points[1], points[2]
    suffix = (t2 - t1) / (n2 - n1)
    return max(0.0, t1 - n1 * suffix) + suffix


def _interpolate(points: list[tuple[int, int]], n: int) -> int:
    """Prompt tokens at ``n`` questions, linear between the measured subset sizes."""
    for (n0, t0), (n1, t1) in zip(points, points[1:]):
        if n <= n1:
            return round(t0 + (t1 - t0) * (n - n0) / (n1 - n0))
    return points[-1][1]


# ---------------------------------------------------------------------------- the machine
def gpus() -> list[dict]:
    """This machine's GPUs with free memory (``HARNESS_GPU_FREE`` pretends: "24GiB,8GiB", or "none")."""
    raw = os.environ.get(GPU_FREE_ENV, "").strip()
    if raw:
        if raw.lower() == "none":
            return []
        return [{"device": f"GPU{i}", "description": f"{GPU_FREE_ENV}", "free_bytes": parse_size(s, GPU_FREE_ENV),
                 "total_bytes": parse_size(s, GPU_FREE_ENV)} for i, s in enumerate(raw.split(","))]
    from harness.backends.llamacpp.devices import local_gpus

    return local_gpus()


def download_dir() -> Path:
    """Where downloads land: the Hugging Face cache (huggingface-hub's HF_HUB_CACHE / HF_HOME rules)."""
    from harness import hub

    return hub.cache_dir()


def disk_free() -> int:
    raw = os.environ.get(DISK_FREE_ENV, "").strip()
    return parse_size(raw, DISK_FREE_ENV) if raw else free_disk(download_dir())


def _fits_here(*args) -> bool:
    """The preflight's verdict (check_fit) as a yes/no."""
    try:
        check_fit(*args)
        return True
    except HarnessError:
        return False


# ---------------------------------------------------------------------------- one quant
@dataclasses.dataclass
class QuantPlan:
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
        return self.fits_ram or bool(self.gpu_layers)



def _offline() -> bool:
    from harness import hub

    return hub.offline()


def catalogue_size(entry) -> tuple[int | None, str]:
    """A quant's size without touching the network: the catalogue's exact bytes, else the estimate params x
    bits per weight (tasks/plan_model.yaml; its source starts with "≈"), else (None, "unknown"). The one
    size both `harness plan` and `harness models` show for a file that is not here (issue #29)."""
    if entry.files.size:
        return entry.files.size, "catalogue"
    bpw = plan_model()["bpw"].get(entry.quant)
    if bpw is not None and entry.params:
        return int(entry.params * bpw / 8), "≈ params x bits per weight (tasks/plan_model.yaml)"
    return None, "unknown"


def size_text(size: int | None, source: str) -> str:
    """A size as `harness plan` and `harness models` print it: "4.9 GB", "≈4.9 GB" for an estimate, "?"
    when unknown."""
    if size is None:
        return "?"
    return f"{'≈' if source.startswith('≈') else ''}{size / 1e9:.1f} GB"


def _quant_facts(entry, network: bool = True, local: bool = True) -> tuple[int | None, str, int, dict | None, str]:
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
    if network and not _offline() and entry.repo and entry.files.files:
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


# ---------------------------------------------------------------------------- rates
def slice_target(entry, quant: str, params: float, shape: dict | None,
                 local: bool = True) -> tuple[object, int] | str:
    """What the probe slice copies from one quant of the model (harness.models.probe_slice.SliceShape) and its layer
    count; or why no slice can be made (a string). A file here: its own header and tensor types (the gguf
    package's reader); else the published shape of the catalogue's parameter count (tasks/plan_model.yaml
    ``shapes``) and the quant's main and output types (``slice_types``)."""
    from harness.models.probe_slice import BLOCKS, SliceShape

    path = _local_file(entry) if local else None
    if path is not None:
        try:
            return _file_slice_target(path)
        except (HarnessError, OSError, ValueError, KeyError, IndexError) as exc:
            return f"its header gives no slice ({getattr(exc, 'message', exc)})"
    m = plan_model()
    known = m["shapes"].get(int(params or 0))
    types = m["slice_types"].get(quant)
    if not known or "n_embd" not in known or not types:
        return f"no published shape for {entry.name} {quant} (tasks/plan_model.yaml shapes, slice_types)"
    if any(t not in BLOCKS for t in types):
        return f"no probe slice for {types}"
    return (SliceShape(known["n_embd"], known["n_ff"], known["n_head"], known["n_kv_heads"], known["n_vocab"],
                       types[0], types[1], known["head_dim"]), known["n_layer"])


def _local_file(entry) -> Path | None:
    from harness.models.locate import cached_model_path, local_model_path

    try:
        path = local_model_path(entry)
    except HarnessError:
        path = None
    if path is None and entry.repo and entry.files.files:
        path = cached_model_path(entry)
    return Path(path) if path else None


def _file_slice_target(path: Path):
    """A GGUF here: its architecture's sizes and the types of a layer's FFN and of the output matrix."""
    import gguf

    from harness.models.probe_slice import SliceShape

    reader = gguf.GGUFReader(str(path))

    def num(key: str, default: int | None = None) -> int:
        f = reader.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(key)
            return default
        return int(f.contents())

    arch = reader.fields["general.architecture"].contents()
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    n_head = num(f"{arch}.attention.head_count")
    n_embd = num(f"{arch}.embedding_length")
    vocab = num(f"{arch}.vocab_size", 0) or len(reader.fields["tokenizer.ggml.tokens"].data)
    layer = types.get("blk.0.ffn_up.weight") or types["blk.0.attn_q.weight"]
    output = types.get("output.weight") or types["token_embd.weight"]
    return (SliceShape(n_embd, num(f"{arch}.feed_forward_length"), n_head, num(f"{arch}.attention.head_count_kv", n_head),
                       vocab, layer, output, num(f"{arch}.attention.key_length", n_embd // n_head)),
            num(f"{arch}.block_count"))


def scaled_rates(r: rates.Rates, from_bytes: int, to_bytes: int, quant: str) -> rates.Rates:
    """Another quant's rates from a probed one: decode reads every weight once per step, so its time per token
    scales with the weights' bytes; prompt processing is compute and stays as probed."""
    f = from_bytes / to_bytes

    def one(d: dict) -> dict:
        return {k: (v * f if k.startswith("decode_") and k.endswith("_per_s") else v) for k, v in d.items()}

    return rates.Rates(one(r.point), one(r.fast), one(r.slow),
                       f"{quant}: the probed quant's rates, decode scaled by the weights' bytes ({1 / f:.2f}x)",
                       sliced=r.sliced)


# ---------------------------------------------------------------------------- time
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
        rows.append({"task": c.name, "n": c.n, "prompt_tokens": c.prompt_tokens,
                     "generated_point": round(c.n * c.gen_point), "generated_max": c.n * c.gen_budget,
                     "seconds": (lo, pt, hi)})
        tot = [tot[0] + lo, tot[1] + pt, tot[2] + hi]
    return tuple(tot), rows


def method_text(rates_method: str) -> str:
    m = plan_model()
    ovh = m["overhead" if rates_method.startswith("llama.cpp") else "fallback_overhead"]
    return (
        "time = (prompt tokens / prompt rate + generated tokens / batched decode rate at the task's mean depth) x "
        "wall-over-floor overhead. Prompt tokens: after prefix sharing, as the engine counts them "
        f"(tasks/plan_tokens.yaml, SmolLM2 tokenizer; x{m['token_factor'][0]}..x{m['token_factor'][1]} for other "
        "tokenizers in the interval). Generated: a typical length per question (point), half of it (low), the full "
        f"budget (high). Rates: {rates_method}. Overhead: {ovh['generate'][0]} (generation), "
        f"{ovh['loglik'][0]} (log-likelihood), up to {ovh['generate'][1]} and {ovh['loglik'][1]}: "
        f"{'; '.join(dict.fromkeys((ovh['generate'][2], ovh['loglik'][2])))}. This machine's llama.cpp only: RPC workers "
        "and servers are not covered; download and load times excluded."
    )


def checked_text(params: float) -> str:
    """The range of model sizes the estimate was checked on against real runs, and whether ``params`` is in it."""
    lo, hi, source = plan_model()["checked"]
    text = f"checked against real runs on models of {lo / 1e9:.2f}B-{hi / 1e9:.2f}B parameters only ({source})"
    if params and not lo * 0.95 <= params <= hi * 1.05:
        text += f"; this model ({params / 1e9:.2f}B) lies outside that range: its estimate is unchecked"
    return text


# ---------------------------------------------------------------------------- the plan
@dataclasses.dataclass
class Plan:
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


def _quant_names(entry) -> list[str]:
    if entry.family in ("local", "hub"):
        return [entry.quant]
    from harness.models.catalogue import load_catalogue

    quants = (load_catalogue()["models"].get(entry.name) or {}).get("quants") or {}
    return [q for q, v in quants.items() if isinstance(v, dict)] or [entry.quant]


def make_plan(model: str, quant: str | None = None, tasks: list[str] | None = None, limit: int | None = None,
              full: bool = False, budget_hours: float | None = None, settings=None,
              probe: rates.Probe | None = None, kind: str | None = None, network: bool = True, log=None) -> Plan:
    """The plan of ``model`` (a catalogue name, a .gguf path or hf:...; every quant, or ``quant``)."""
    from harness.models.catalogue import resolve

    return plan_entry(resolve(model, quant), quant is not None, tasks, limit, full, budget_hours, settings, probe,
                      kind, network, log=log)


def plan_entry(entry, one_quant: bool, tasks: list[str] | None = None, limit: int | None = None,
               full: bool = False, budget_hours: float | None = None, settings=None,
               probe: rates.Probe | None = None, kind: str | None = None, network: bool = True,
               machine: dict | None = None, log=None) -> Plan:
    """Fit and time per quant of ``entry``'s model (only ``entry.quant`` with ``one_quant``) and the
    recommendation. ``network``: may ask the Hub for sizes and headers it lacks (never weights).
    ``probe``: stored numpy-probe figures (the reference machine class) instead of timing llama.cpp here.
    ``machine``: another machine's figures instead of this one's (``available``, ``gpus``, ``disk_free``
    bytes); then nothing of this machine is looked at, files already here included (a deterministic plan)."""
    from harness.backends.llamacpp.engine import EngineSettings
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
    for q in ([entry.quant] if one_quant else _quant_names(entry)):
        e = entry if q == entry.quant else dataclasses.replace(resolve(entry.name, q), kind=entry.kind)
        entries[q] = e
        size, source, download, shape, shape_source = _quant_facts(e, network, local=machine is None)
        params = e.params or (size * 8 / plan_model()["bpw"].get(q, 5.0) if size else 0)
        need = download * (2 if e.files.split == "parts" else 1)  # byte parts are joined beside the cache
        qp = QuantPlan(q, size, source, download, need, shape, shape_source, params=params, disk_ok=need <= free)
        if shape and size:
            qp.kv = kv_cache_bytes(shape["n_layer"], shape["n_kv_heads"], shape["head_dim"], ctx["cells"])
            qp.n_ctx = ctx["cells"]
            what = f"{e.name} {q}"
            qp.fits_ram = _fits_here(size, qp.kv, shape["n_layer"], 0, "cpu", [], what, avail)
            if devs:
                fit = [n for n in range(shape["n_layer"], 0, -1)
                       if _fits_here(size, qp.kv, shape["n_layer"], n, "gpu", devs, what, avail)]
                qp.gpu_layers = fit[0] if fit else 0
        quants.append(qp)
    # Only a quant that can run here is timed: a slice of a model that fits neither RAM nor a GPU would cost
    # a probe (minutes and gigabytes for a 70B slice) before the refusal it cannot change.
    timed = [q for q in quants if q.shape and q.size and q.params and (q.fits_ram or q.gpu_layers)]
    method = ("none: the size or shape is unknown" if not any(q.shape and q.size for q in quants)
              else "none: no quant fits this machine")
    if timed:
        probed = next((q for q in timed if q.quant == entry.quant), timed[0])
        r = _rates(entries[probed.quant], probed, settings, probe, machine is None, log)
        method = r.method
        for qp in timed:
            qp.rates = r if qp is probed else scaled_rates(r, probed.size, qp.size, qp.quant)
            qp.seconds, qp.per_task = estimate_seconds(costs, qp.rates)
    rec, why = recommend(quants, budget_hours)
    return Plan(entry.name, entry.kind, quants[0].params if quants else 0, costs, settings.n_parallel, quants,
                avail, free, download_dir(), devs, method, budget_hours, rec, why)


def _rates(entry, q: QuantPlan, settings, probe: rates.Probe | None, local: bool, log) -> rates.Rates:
    """The rates of one quant: stored numpy figures when ``probe`` is given (the reference machine class), else
    llama.cpp timed here on a slice of it, else (no slice possible) the numpy probes here, named a fallback."""
    m = plan_model()
    if probe is not None:
        r = rates.fallback_rates(q.params, q.size, q.shape["n_layer"], probe, settings.n_parallel, m["rate_spread"],
                                 "stored figures of the reference machine class")
        return dataclasses.replace(r, method=r.method.replace("FALLBACK (", "(", 1))
    target = slice_target(entry, q.quant, q.params, q.shape, local)
    why = target if isinstance(target, str) else ""
    if not why:
        shape, n_layer = target
        try:
            return rates.measure_slice(shape, n_layer, settings, m["extrapolation"][:2], log=log)
        except HarnessError as exc:
            why = f"the slice could not be timed: {exc.message}"
    return rates.fallback_rates(q.params, q.size, q.shape["n_layer"], rates.probe_now(min(q.size, rates.BW_CAP)),
                                settings.n_parallel, m["rate_spread"], why)


def recommend(quants: list[QuantPlan], budget_hours: float | None) -> tuple[str | None, str]:
    """The largest quant that fits (RAM, or GPU offload with the rest in RAM), has room on disk and, with a
    budget, whose point estimate is within it."""
    if not any(q.size and q.shape for q in quants):
        return None, ("the size or shape is unknown before download: the Hub was not asked (HF_HUB_OFFLINE) or did "
                      "not answer, and the catalogue has neither")
    ok = [q for q in quants if q.fits and q.disk_ok and q.size]
    if not ok:
        return None, "no quant fits this machine's memory and disk"
    if budget_hours is not None:
        within = [q for q in ok if q.seconds and q.seconds[1] <= budget_hours * 3600]
        if not within:
            fastest = min(ok, key=lambda q: q.seconds[1] if q.seconds else math.inf)
            return None, (f"no quant that fits finishes within {budget_hours:g} h (the quickest, {fastest.quant}, "
                          f"~{_dur(fastest.seconds[1])}): fewer questions (--limit) or fewer tasks")
        ok = within
    best = max(ok, key=lambda q: q.size)
    return best.quant, ("the largest quant that fits" + (f" and finishes within {budget_hours:g} h"
                                                         if budget_hours is not None else ""))


# ---------------------------------------------------------------------------- text
def _dur(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def interval_text(t: tuple | None) -> str:
    return "-" if not t else f"{_dur(t[1])} ({_dur(t[0])} – {_dur(t[2])})"


def rates_text(q: QuantPlan) -> str:
    """One quant's rates at its full depth (point and interval), as the estimate uses them."""
    r = q.rates
    if r is None:
        return f"{q.quant}: no rates"
    dec = "decode_streams_tokens_per_s" if r.point.get("decode_streams_tokens_per_s") else "decode_batched_tokens_per_s"

    def rate(key: str) -> str:
        return f"{r.point[key]:.1f} ({r.slow[key]:.1f}–{r.fast[key]:.1f})"

    return (f"{q.quant}: prompt {rate('prompt_tokens_per_s')} tok/s, batched decode {rate(dec)} tok/s "
            f"({r.point.get('batched_sequences')} sequences{', in KV streams' if 'streams' in dec else ''})")


def render(plan: Plan) -> str:
    """The full plan as text: a head (the tasks, this machine), the table of quants, then the notes
    (recommendation, sources, the rates, the checked range, the method). Each part is a list of lines, so more
    can be appended between them (e.g. per-claim lines after the table)."""
    return "\n".join(render_head(plan) + [""] + render_table(plan) + [""] + render_notes(plan))


def render_head(plan: Plan) -> list[str]:
    tasks = ", ".join(f"{c.name} ({c.n} questions{f', budget {c.gen_budget} tokens' if c.gen_budget else ''})"
                      for c in plan.tasks)
    gpu = ("no GPU" if not plan.gpus else
           ", ".join(f"{g['device']} {g['free_bytes'] / GIB:.1f} GiB free" for g in plan.gpus))
    return [
        f"plan: {plan.model} ({plan.kind}, {f'{plan.params / 1e9:.2f}B' if plan.params else 'unknown'} params): "
        f"{tasks}; --parallel {plan.n_parallel}",
        f"this machine: {plan.available / GIB:.1f} GiB RAM available, {gpu}, "
        f"{plan.disk_free / GIB:.1f} GiB free in {plan.disk_path}",
    ]


def render_table(plan: Plan) -> list[str]:
    rows = [("quant", "download", "memory: weights + KV cache", "runs in", "wall time: estimate (interval)")]
    for q in plan.quants:
        if q.size is None:
            rows.append((q.quant, "size unknown", "", "", ""))
            continue
        dl = "here" if q.download == 0 else (size_text(q.size, q.size_source) + ("" if q.disk_ok else " (NO ROOM)"))
        if q.shape is None:
            rows.append((q.quant, dl, "shape unknown", "", ""))
            continue
        mem = f"{q.size / GIB:.1f} + {q.kv / GIB:.1f} = {(q.size + q.kv) / GIB:.1f} GiB"
        where = "RAM" if q.fits_ram else (f"--gpu-layers {q.gpu_layers}" if q.gpu_layers else "does not fit")
        rows.append((q.quant, dl, mem, where, interval_text(q.seconds)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render_notes(plan: Plan) -> list[str]:
    def fill(text: str) -> str:
        return textwrap.fill(text, width=110, subsequent_indent="  ")

    lines = [f"recommended: {plan.recommended or 'none'} ({plan.why})"]
    sources = sorted({q.size_source for q in plan.quants if q.size} | {q.shape_source for q in plan.quants})
    n_ctx = max((q.n_ctx for q in plan.quants), default=0)
    lines.append(fill(f"sizes and shapes: {'; '.join(sources)}; KV cache for {n_ctx} cells (what the engine "
                      "allocates for these tasks: harness/run/preflight.py); free disk counts a byte-split "
                      "quant twice (joined)"))
    lines += [fill(f"rates: {rates_text(q)}") for q in plan.quants if q.rates]
    lines.append(fill(f"{checked_text(plan.params)}"))
    lines.append(fill(f"method: {method_text(plan.rates_method)}"))
    return lines


def one_line(plan: Plan, quant: str) -> str:
    """The plan of one quant in one line (printed by `harness bench` before it starts)."""
    q = next(x for x in plan.quants if x.quant == quant)
    tasks = "+".join(f"{c.name}[{c.n}]" for c in plan.tasks)
    mem = (f"{(q.size + q.kv) / GIB:.1f} GiB of {plan.available / GIB:.1f} GiB RAM" if q.size and q.shape
           else "memory unknown")
    how = "llama.cpp timed on a slice" if q.rates and q.rates.method.startswith("llama.cpp") else "numpy fallback"
    return (f"plan: {plan.model} {quant} {tasks}: ~{interval_text(q.seconds)} on this machine ({how}), needs {mem}"
            f" (`harness plan {plan.model}` for the method)")


def bench_plan(entry, tasks: list[str], limit: int | None, full: bool, settings, budget_hours: float | None,
               kind: str | None, echo) -> None:
    """`harness bench`'s plan: one line before it starts; over ``budget_hours`` a refusal with the plan."""
    try:
        plan = plan_entry(entry, True, tasks, limit, full, budget_hours, settings, kind=kind, network=False)
    except HarnessError as exc:
        if budget_hours is not None:
            raise HarnessError(f"--budget {budget_hours:g} h cannot be judged: {exc.message}", exc.hint) from None
        echo(f"plan: not available ({exc.message})")
        return
    echo(one_line(plan, entry.quant))
    q = plan.quants[0]
    if budget_hours is not None and q.seconds is None:
        raise HarnessError(f"--budget {budget_hours:g} h cannot be judged: the size or shape of {entry.name} "
                           f"{entry.quant} is unknown before download", "run without --budget, or `harness download` "
                           "it first (its header then gives the shape).")
    if budget_hours is not None and q.seconds[1] > budget_hours * 3600:
        raise HarnessError(f"{entry.name} {entry.quant} is estimated at {interval_text(q.seconds)}, over --budget "
                           f"{budget_hours:g} h\n{render(plan)}",
                           "run fewer questions (--limit), fewer tasks, a smaller quant, or raise --budget.")


# ---------------------------------------------------------------------------- against real runs
def check_runs(results_dir: Path, rate_source: str = "here", log=None) -> tuple[list[dict], int]:
    """The estimate of each run's own plan (its model, task, subset size and engine settings) beside its measured
    wall time and tokens, and how many runs were left out as contended (``efficiency.contended``: the machine was
    busy with other work, so its wall time says nothing of the machine). Each row says whether the run is one the
    plan's figures were fitted on (tasks/plan_model.yaml ``fitted_runs``) or out of sample. Rates: ``here``, llama.cpp
    timed now on a slice of each run's model (runs taken on this machine); ``reference``, the stored reference
    machine class's (the committed runs' machine)."""
    from harness.records.runs import load_runs

    out, contended, cache = [], 0, {}
    fitted = set(plan_model()["fitted_runs"])
    for run in load_runs(Path(results_dir)).runs:
        rec = run.rec.as_json()  # the record as written (harness.records.schema)
        if ((rec.get("efficiency") or {}).get("contended")) is True:
            contended += 1
            continue
        try:
            row = _check_one(rec, rate_source, cache, log)
        except (HarnessError, KeyError, TypeError, ValueError) as exc:
            out.append({"run": _run_name(rec), "skipped": str(getattr(exc, "message", exc))})
            continue
        row["sample"] = "fitted" if Path(run.path).stem in fitted else "out of sample"
        row["load"] = "quiet" if (rec.get("efficiency") or {}).get("contended") is False else "load unknown"
        out.append(row)
    return out, contended


def _run_name(rec: dict) -> str:
    m, t = rec.get("model") or {}, rec.get("task") or {}
    return f"{m.get('name')} {m.get('quant')} {t.get('name')}[{t.get('n')}]"


def _check_one(rec: dict, rate_source: str, cache: dict, log) -> dict:
    from harness.backends.llamacpp.engine import EngineSettings
    from harness.models.catalogue import resolve

    m, t, timing = rec["model"], rec["task"], rec["timing"]
    entry = dataclasses.replace(resolve(m["name"], m.get("quant")), kind=m.get("kind") or "instruct")
    cost = task_costs(entry, [t["name"]], limit=int(t["n"]))[0]
    if bool(t.get("chat")) != cost.chat:
        raise HarnessError(f"the run's prompt format (chat={t.get('chat')}) is not the plan's", "")
    weights = int(m.get("size_bytes") or 0)
    params = float(m.get("n_params") or m.get("catalogue_params") or entry.params or 0)
    size, _, _, shape, _ = _quant_facts(entry, network=False, local=rate_source == "here")
    if not weights or not shape:
        raise HarnessError("the run names no weight size, or its model's shape is unknown", "")
    fields = {f.name for f in dataclasses.fields(EngineSettings)}
    recorded = {k: v for k, v in (((rec.get("backend") or {}).get("settings")) or {}).items() if k in fields}
    recorded["rpc_servers"] = tuple(recorded.get("rpc_servers") or ())
    settings = EngineSettings(**recorded)
    key = (m["name"], m.get("quant"), settings.n_parallel, settings.threads, rate_source)
    if key not in cache:
        q = QuantPlan(m.get("quant") or entry.quant, weights, "record", 0, 0, shape, "", params=params)
        probe = rates.reference_probe() if rate_source == "reference" else None
        cache[key] = _rates(entry, q, settings, probe, rate_source == "here", log)
    (lo, pt, hi), _ = estimate_seconds([cost], cache[key])
    wall = float(timing["wall_seconds"])
    return {"run": _run_name(rec), "created": rec.get("created"), "prompt_est": cost.prompt_tokens,
            "prompt_actual": int(timing.get("prompt_tokens") or 0), "gen_est": round(cost.n * cost.gen_point),
            "gen_actual": int(timing.get("generated_tokens") or 0), "seconds": (lo, pt, hi), "wall": wall,
            "ratio": pt / wall if wall else math.nan, "within": lo <= wall <= hi,
            "rates": cache[key].method.split(":")[0]}


def render_check(rows: list[dict], contended: int = 0) -> str:
    lines = [f"{'run':<40} {'sample':<13} {'prompt tok est/actual':>22} {'gen tok est/actual':>19} "
             f"{'wall est (interval)':>26} {'actual':>8} {'est/actual':>10}"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['run']:<40} skipped: {r['skipped']}")
            continue
        lines.append(f"{r['run']:<40} {r['sample']:<13} {r['prompt_est']:>10} / {r['prompt_actual']:<9} "
                     f"{r['gen_est']:>8} / {r['gen_actual']:<8} {interval_text(r['seconds']):>26} "
                     f"{_dur(r['wall']):>8} {r['ratio']:>9.2f}{'' if r['within'] else ' (outside the interval)'}")
    lines.append(f"{contended} contended run(s) left out (efficiency.contended: the machine was busy with other "
                 "work); runs without that mark are kept" if contended else
                 "no contended run left out (runs recorded before efficiency.contended existed are kept)")
    return "\n".join(lines)


def plan_command(model: str | None, quant: str | None, tasks: list[str], limit: int | None, full: bool,
                 budget: float | None, parallel: int, gpu_layers: int, kind: str | None, rate_source: str,
                 check: bool, calibrate: bool, results_dir: Path, log=None) -> str:
    """`harness plan`: the text to print (the CLI's options, see harness/cli/cmd_bench.py). ``log``: progress lines
    (building a probe slice)."""
    from harness.backends.llamacpp.engine import EngineSettings

    if calibrate:
        out = rates.calibrate(n_parallel=parallel)
        return (f"wrote {rates.CALIBRATION_FILE} (the numpy fallback's factors and the reference machine class; "
                "`harness plan` times llama.cpp itself otherwise):\n" + yaml.safe_dump(out, sort_keys=False))
    if check:
        return render_check(*check_runs(results_dir, rate_source, log))
    if not model:
        raise HarnessError("harness plan needs a MODEL (a catalogue name, a .gguf path or hf:...)",
                           "e.g. `harness plan llama3.1-8b-instruct`; `harness models` lists the catalogue.")
    settings = EngineSettings(n_parallel=parallel, gpu_layers=gpu_layers)
    probe = rates.reference_probe() if rate_source == "reference" else None
    return render(make_plan(model, quant, tasks, limit, full, budget, settings, probe, kind, log=log))
