"""The plan as text: the head (the tasks, this machine), the table of quants, the notes (recommendation,
sources, rates, checked range, method), bench's one line; durations and sizes as every plan line writes them."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from harness.disk import GIB
from harness.plan.assumptions import plan_model

if TYPE_CHECKING:
    from harness.plan.estimate import Plan, QuantPlan


def duration_text(s: float) -> str:
    """Seconds as the plan writes them: s, min, h or d."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def interval_text(t: tuple | None) -> str:
    """(low, point, high) seconds as "point (low – high)", "-" when there is no estimate."""
    return "-" if not t else f"{duration_text(t[1])} ({duration_text(t[0])} – {duration_text(t[2])})"


def size_text(size: int | None, source: str) -> str:
    """A size as `harness plan` and `harness models` print it: "4.9 GB", "≈4.9 GB" for an estimate, "?"
    when unknown."""
    if size is None:
        return "?"
    return f"{'≈' if source.startswith('≈') else ''}{size / 1e9:.1f} GB"


def rates_text(q: QuantPlan) -> str:
    """One quant's rates at its full depth (point and interval), as the estimate uses them."""
    r = q.rates
    if r is None:
        return f"{q.quant}: no rates"
    dec = (
        "decode_streams_tokens_per_s"
        if r.point.get("decode_streams_tokens_per_s")
        else "decode_batched_tokens_per_s"
    )

    def rate(key: str) -> str:
        return f"{r.point[key]:.1f} ({r.slow[key]:.1f}–{r.fast[key]:.1f})"

    return (
        f"{q.quant}: prompt {rate('prompt_tokens_per_s')} tok/s, batched decode {rate(dec)} tok/s "
        f"({r.point.get('batched_sequences')} sequences{', in KV streams' if 'streams' in dec else ''})"
    )


def method_text(rates_method: str) -> str:
    """The plan's method line: how time is computed from tokens, rates and overhead, and where each comes from."""
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
    text = (
        f"checked against real runs on models of {lo / 1e9:.2f}B-{hi / 1e9:.2f}B parameters only ({source})"
    )
    if params and not lo * 0.95 <= params <= hi * 1.05:
        text += f"; this model ({params / 1e9:.2f}B) lies outside that range: its estimate is unchecked"
    return text


def render(plan: Plan) -> str:
    """The full plan as text: a head (the tasks, this machine), the table of quants, then the notes
    (recommendation, sources, the rates, the checked range, the method). Each part is a list of lines, so more
    can be appended between them (e.g. per-claim lines after the table)."""
    return "\n".join(render_head(plan) + [""] + render_table(plan) + [""] + render_notes(plan))


def render_head(plan: Plan) -> list[str]:
    """The plan's first two lines: the model and its tasks, this machine's memory, GPUs and disk."""
    tasks = ", ".join(
        f"{c.name} ({c.n} questions{f', budget {c.gen_budget} tokens' if c.gen_budget else ''})"
        for c in plan.tasks
    )
    gpu = (
        "no GPU"
        if not plan.gpus
        else ", ".join(f"{g['device']} {g['free_bytes'] / GIB:.1f} GiB free" for g in plan.gpus)
    )
    return [
        f"plan: {plan.model} ({plan.kind}, {f'{plan.params / 1e9:.2f}B' if plan.params else 'unknown'} params): "
        f"{tasks}; --parallel {plan.n_parallel}",
        f"this machine: {plan.available / GIB:.1f} GiB RAM available, {gpu}, "
        f"{plan.disk_free / GIB:.1f} GiB free in {plan.disk_path}",
    ]


def render_table(plan: Plan) -> list[str]:
    """The table: per quant, the download, weights + KV cache, where it runs, the wall time."""
    rows = [("quant", "download", "memory: weights + KV cache", "runs in", "wall time: estimate (interval)")]
    for q in plan.quants:
        if q.size is None:
            rows.append((q.quant, "size unknown", "", "", ""))
            continue
        dl = (
            "here"
            if q.download == 0
            else (size_text(q.size, q.size_source) + ("" if q.disk_ok else " (NO ROOM)"))
        )
        if q.shape is None:
            rows.append((q.quant, dl, "shape unknown", "", ""))
            continue
        mem = f"{q.size / GIB:.1f} + {q.kv / GIB:.1f} = {(q.size + q.kv) / GIB:.1f} GiB"
        where = "RAM" if q.fits_ram else (f"--gpu-layers {q.gpu_layers}" if q.gpu_layers else "does not fit")
        rows.append((q.quant, dl, mem, where, interval_text(q.seconds)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render_notes(plan: Plan) -> list[str]:
    """The notes under the table: recommendation, sources, rates, checked range, method."""

    def fill(text: str) -> str:
        return textwrap.fill(text, width=110, subsequent_indent="  ")

    lines = [f"recommended: {plan.recommended or 'none'} ({plan.why})"]
    sources = sorted({q.size_source for q in plan.quants if q.size} | {q.shape_source for q in plan.quants})
    n_ctx = max((q.n_ctx for q in plan.quants), default=0)
    lines.append(
        fill(
            f"sizes and shapes: {'; '.join(sources)}; KV cache for {n_ctx} cells (what the engine "
            "allocates for these tasks: harness/backends/llamacpp/sizing.py); free disk counts a byte-split "
            "quant twice (joined)"
        )
    )
    lines += [fill(f"rates: {rates_text(q)}") for q in plan.quants if q.rates]
    lines.append(fill(f"{checked_text(plan.params)}"))
    lines.append(fill(f"method: {method_text(plan.rates_method)}"))
    return lines


def one_line(plan: Plan, quant: str) -> str:
    """The plan of one quant in one line (printed by `harness bench` before it starts)."""
    q = next(x for x in plan.quants if x.quant == quant)
    tasks = "+".join(f"{c.name}[{c.n}]" for c in plan.tasks)
    mem = (
        f"{(q.size + q.kv) / GIB:.1f} GiB of {plan.available / GIB:.1f} GiB RAM"
        if q.size and q.shape
        else "memory unknown"
    )
    how = (
        "llama.cpp timed on a slice"
        if q.rates and q.rates.method.startswith("llama.cpp")
        else "numpy fallback"
    )
    return (
        f"plan: {plan.model} {quant} {tasks}: ~{interval_text(q.seconds)} on this machine ({how}), needs {mem}"
        f" (`harness plan {plan.model}` for the method)"
    )
