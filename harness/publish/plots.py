"""Result plots (matplotlib, Agg): measured vs claimed per benchmark, and score vs quant per model.

Plots are built from plain data ("specs") so that the publisher can hash what a plot shows and tell
whether a PNG is stale without comparing pixels across matplotlib versions.
"""

from __future__ import annotations

import io

from harness.analysis.compare import Comparison
from harness.analysis.ladder import QUANT_ORDER
from harness.records.runs import Run

# Verdict colours (colour-blind safe Okabe-Ito palette).
# Orange for "inconclusive": an interval too wide to tell the claim from a shortfall of the margin.
COLOURS = {
    "holds": "#009E73",
    "holds within quantization allowance": "#56B4E9",
    "inconclusive": "#E69F00",
    "not reproduced": "#D55E00",
    "exceeded": "#CC79A7",
    "not comparable": "#999999",
}


def claims_spec(task: str, comps: list[Comparison], any_task: bool = False) -> dict:
    """Data of the measured-vs-claimed plot of one benchmark (value claims only); ``any_task``: of every
    comparison given, whatever its benchmark (``task`` then only names the plot)."""
    rows = []
    for c in comps:
        if (c.claim.task != task and not any_task) or c.claim.kind != "value" or c.claim.claimed is None:
            continue
        what = f"{c.claim.task} " if any_task else ""
        label = f"{c.claim.model} {what}[{c.quant or 'no run'}] ({c.claim.id.split('.')[-1]})"
        # The shortfall a "holds" must rule out: from the claim down by margin + allowance.
        floor = None if c.margin is None else c.claim.claimed - c.margin - (c.allowance or 0.0)
        rows.append(
            {
                "label": label,
                "claimed": c.claim.claimed,
                "measured": c.measured,
                "lo": c.lo,
                "hi": c.hi,
                "verdict": c.verdict,
                "setting": c.claim.setting_text(),
                "floor": floor,
            }
        )
    return {"kind": "claims", "task": task, "rows": rows}


def quant_spec(model: str, runs: list[Run], key_of: dict[str, str]) -> dict | None:
    """Data of the score-vs-quant plot of one model (None unless two or more quants were run)."""
    series: dict[str, list[dict]] = {}
    for r in runs:
        if r.model != model or r.task not in key_of:
            continue
        m = r.rec.metrics.get(key_of[r.task])
        if m:
            series.setdefault(r.task, []).append(
                {"quant": r.quant, "value": 100 * m.value, "lo": 100 * m.ci95[0], "hi": 100 * m.ci95[1]}
            )
    if len({p["quant"] for pts in series.values() for p in pts}) < 2:
        return None
    order = {q: i for i, q in enumerate(QUANT_ORDER)}
    for pts in series.values():
        pts.sort(key=lambda p: (order.get(p["quant"], len(order)), p["quant"]))
    return {"kind": "quant", "model": model, "series": dict(sorted(series.items()))}


def render(spec: dict) -> bytes:
    """PNG bytes of a spec; metadata stripped so the same data gives the same file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "llama-bench", "font.size": 9})
    fig = _claims_figure(plt, spec) if spec["kind"] == "claims" else _quant_figure(plt, spec)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _claims_figure(plt, spec: dict):
    rows = spec["rows"]
    compact = spec["task"] == "measured"  # the summary's plot: beside the text, so narrow and legible
    fig, ax = plt.subplots(
        figsize=(5.0, 0.5 * max(len(rows), 2) + 1.3) if compact else (8, 0.38 * max(len(rows), 3) + 1.2)
    )
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        ax.plot(
            [r["claimed"]],
            [y],
            marker="D",
            color="black",
            markersize=5,
            linestyle="none",
            label="claimed" if i == 0 else None,
        )
        if r.get("floor") is not None:
            ax.plot([r["floor"], r["claimed"]], [y + 0.22, y + 0.22], color="black", linewidth=1, alpha=0.6)
        if r["measured"] is not None:
            col = COLOURS.get(r["verdict"], "#999999")
            ax.errorbar(
                [r["measured"]],
                [y],
                xerr=[[r["measured"] - r["lo"]], [r["hi"] - r["measured"]]],
                fmt="o",
                color=col,
                capsize=3,
                markersize=5,
            )
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)])
    ax.set_xlim(0, 100)
    ax.set_xlabel(
        "score (%): measured, 95% interval (colour: verdict); claimed: black diamond;\n"
        "holds only if the interval clears the black bar's left end"
        if compact
        else "score (%) - measured with 95% interval (colour: verdict), claimed as a black diamond; a claim holds"
        " only if the interval clears the left end of the bar above it"
    )
    ax.set_title("claims with a measurement" if compact else f"{spec['task']}: measured vs claimed")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        plt.Line2D([], [], marker="D", color="black", linestyle="none", label="claimed"),
        plt.Line2D([], [], color="black", alpha=0.6, label="claimed - margin - allowance"),
    ]
    handles += [
        plt.Line2D([], [], marker="o", color=c, linestyle="none", label=v)
        for v, c in COLOURS.items()
        if v != "not comparable"
    ]
    if compact:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.28),
            ncol=3,
            fontsize=7,
            frameon=False,
        )
    else:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig


def _quant_figure(plt, spec: dict):
    fig, ax = plt.subplots(figsize=(7, 4))
    for task, pts in spec["series"].items():
        xs = [p["quant"] for p in pts]
        ys = [p["value"] for p in pts]
        err = [[p["value"] - p["lo"] for p in pts], [p["hi"] - p["value"] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=task)
    ax.set_ylabel("score (%), 95% interval")
    ax.set_xlabel("quant (larger to smaller)")
    ax.set_title(f"{spec['model']}: score vs quant")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
