"""Tables from run records and comparisons: rows as dicts, rendered in lm-eval's ``make_table`` layout.

Every scoring variant is labelled (filter, micro/macro, shots, chat, subset), so no two different
numbers ever share a row label.
"""

from __future__ import annotations

from pathlib import Path

from harness.analysis.compare import Comparison
from harness.records.record import read_record
from harness.records.runs import Run
from harness.records.schema import Hardware, RunRecord

SCORE_COLUMNS = (
    "model",
    "quant",
    "task",
    "setting",
    "metric",
    "filter",
    "avg",
    "n",
    "value",
    "stderr",
    "95% CI",
    "wall",
    "hardware",
)
CLAIM_COLUMNS = (
    "claim",
    "model",
    "setting",
    "claimed",
    "source",
    "quant",
    "measured",
    "95% CI",
    "n",
    "delta",
    "allowance",
    "verdict",
    "strength",
    "note",
)
# What decided each verdict, for the CSV: the old reading ("the claim lies inside the interval") stays
# computable from the interval, and the new one is stated with its numbers.
VERDICT_COLUMNS = ("margin", "margin source", "rule", "decide n")


MAX_CELL = 400  # characters of one published string: well above any real one (the longest claim note: ~240)


def bounded(text: str, limit: int = MAX_CELL) -> str:
    """``text`` cut to about ``limit`` characters for a table or a page, with a hash of the whole, so that a
    10 MB field of a record cannot make a 110 MB README and two long values that differ stay apart."""
    if len(text) <= limit:
        return text
    import hashlib

    digest = hashlib.sha256(text.encode(errors="replace")).hexdigest()[:12]
    return f"{text[: limit - 40]}...({len(text)} chars, sha256 {digest})"


def bounded_all(obj):
    """Every string in a structure of dicts, lists and tuples passed through :func:`bounded`."""
    if isinstance(obj, str):
        return bounded(obj)
    if isinstance(obj, dict):
        return {k: bounded_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(bounded_all(v) for v in obj)
    return obj


def _pct(x: float | None, nd: int = 1) -> str:
    return "-" if x is None or x != x else f"{x:.{nd}f}"


def hardware_text(hw: Hardware) -> str:
    """Short hardware label: CPU model, cores, RAM, GPU."""
    gpu = f", {hw.gpu}" if hw.gpu else ""
    return f"{hw.cpu or '?'} ({hw.cores} cores, {hw.ram_gib} GiB{gpu})"


def setting_text(rec: RunRecord) -> str:
    t = rec.task
    subset = "" if t.full else f" subset {t.n}/{t.n_total}"
    return f"{t.num_fewshot}-shot{' chat' if t.chat else ''}{subset}"


def score_rows(recs: list[RunRecord]) -> list[dict]:
    """One row per (record, metric)."""
    rows = []
    for r in recs:
        for key, m in r.metrics.items():
            metric, filt = key.split(",")[:2]
            lo, hi = m.ci95
            rows.append(
                {
                    "model": r.model.name,
                    "quant": r.model.quant,
                    "task": r.task.name,
                    "setting": setting_text(r),
                    "metric": metric,
                    "filter": filt,
                    "avg": m.average,
                    "n": str(m.n),
                    "value": _pct(100 * m.value),
                    "stderr": _pct(None if m.stderr is None else 100 * m.stderr),
                    "95% CI": f"[{100 * lo:.1f}, {100 * hi:.1f}]",
                    "wall": f"{r.timing.wall_seconds:.0f}s",
                    "hardware": hardware_text(r.hardware),
                }
            )
    return rows


def claim_rows(comps: list[Comparison]) -> list[dict]:
    """One row per comparison; relation rows show the measured difference or the model's score."""
    rows = []
    for c in comps:
        cl = c.claim
        is_params = cl.kind == "params"
        measured = "-" if c.measured is None else (f"{c.measured:.2f}B" if is_params else f"{c.measured:.1f}")
        ci = "-" if c.lo is None else f"[{c.lo:.1f}, {c.hi:.1f}]"
        n = "-" if c.n is None else (f"{c.n}" if c.n == c.n_total else f"{c.n}/{c.n_total}")
        delta = "-" if c.delta is None else (f"{c.delta:+.2f}B" if is_params else f"{c.delta:+.1f}")
        rows.append(
            {
                "claim": cl.id,
                "model": cl.model,
                "setting": cl.setting_text(),
                "claimed": cl.claim_text(),
                "source": cl.source_text(),
                "source (short)": cl.source_text(short=True),
                "article": cl.article or "",
                "quant": c.quant or "-",
                "measured": measured,
                "95% CI": ci,
                "n": n,
                "delta": delta,
                "allowance": "-" if c.allowance is None else f"{c.allowance:g}",
                "verdict": c.verdict,
                "strength": c.strength(),
                "note": c.note,
                "margin": "-" if c.margin is None else f"{c.margin:g}",
                "margin source": c.margin_source,
                "rule": c.rule,
                "decide n": "-" if c.decide_n is None else str(c.decide_n),
            }
        )
    return rows


def markdown_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """A padded markdown table (readable as plain text too)."""
    cells = [list(columns)] + [
        [bounded(str(r.get(c, ""))).replace("|", "\\|").replace("\n", " ") for c in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def score_table(paths: list[Path] | list[Run]) -> str:
    """Console score table for record files (or loaded runs), without the hardware column."""
    recs = [p.rec if isinstance(p, Run) else read_record(p) for p in paths]
    return markdown_table(score_rows(recs), SCORE_COLUMNS[:-1])


def claims_table(comps: list[Comparison], short: bool = True, verdict_first: bool = False) -> str:
    """Console claims table; ``short`` leaves out the long source column; ``verdict_first`` leads with it."""
    cols = tuple(c for c in CLAIM_COLUMNS if not (short and c == "source"))
    if verdict_first:
        cols = ("verdict", *(c for c in cols if c != "verdict"))
    return markdown_table(claim_rows(comps), cols)
