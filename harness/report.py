"""Console score table from run records, in lm-eval's ``make_table`` layout (plus n, 95% CI, wall time)."""

from __future__ import annotations

from pathlib import Path

from harness.record import read_record


def score_table(paths: list[Path]) -> str:
    """One row per (record, metric): every scoring variant is labelled (filter, micro/macro, shots, chat)."""
    head = ("model", "quant", "task", "setting", "metric", "filter", "avg", "n", "value", "stderr", "95% CI", "wall")
    rows = [head]
    for p in paths:
        r = read_record(p)
        t = r["task"]
        setting = f"{t['num_fewshot']}-shot{' chat' if t['chat'] else ''}{'' if t['full'] else ' subset'}"
        for key, m in r["metrics"].items():
            metric, filt = key.split(",")[:2]
            lo, hi = m["ci95"]
            rows.append(
                (
                    r["model"]["name"],
                    r["model"]["quant"],
                    t["name"],
                    setting,
                    metric,
                    filt,
                    m["average"],
                    str(m["n"]),
                    f"{100 * m['value']:.1f}",
                    f"{100 * m['stderr']:.1f}" if m["stderr"] == m["stderr"] else "-",
                    f"[{100 * lo:.1f}, {100 * hi:.1f}]",
                    f"{r['timing']['wall_seconds']:.0f}s",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["|" + "|".join(f" {c.ljust(w)} " for c, w in zip(row, widths)) + "|" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
