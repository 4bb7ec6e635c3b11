"""``make publish``: regenerate result tables, CSV files, plots and an HTML report from the run records alone.

Output is deterministic (sorted inputs, fixed formatting, PNG metadata stripped) and listed in
``results/published.json`` with a hash per file (per plot: a hash of the data it shows) and the
sha256 of every record file it was built from, so ``harness publish --check`` can tell, without
network or a GPU, whether the committed files are stale. The check judges the published files
against the records they list: a user's new run in ``results/runs/`` is not yet published (the
check names it), not stale; ``make publish`` adds it.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.analysis.claims import load_claims
from harness.analysis.compare import compare_all
from harness.analysis.ladder import LADDER_COLUMNS, ladder_rows, ladders
from harness.atomic import atomic_write_bytes, atomic_write_text
from harness.errors import HarnessError
from harness.publish.plots import COLOURS, claims_spec, quant_spec, render
from harness.publish.report import (
    CLAIM_COLUMNS,
    SCORE_COLUMNS,
    VERDICT_COLUMNS,
    bounded_all,
    claim_rows,
    hardware_text,
    markdown_table,
    score_rows,
)
from harness.publish.summary import awaiting, headline_rows, judged_rows, reference_estimate, reference_text
from harness.records.audits import latest_audits
from harness.records.runs import load_runs, record_paths
from harness.redact import redact_command
from harness.tasks.settings import task_spec

MANIFEST = "published.json"
README_CLAIM_COLUMNS = (
    "claim",
    "setting",
    "claimed",
    "source (short)",
    "article",
    "quant",
    "measured",
    "95% CI",
    "n",
    "verdict",
    "strength",
    "note",
)


HEADLINE_COLUMNS = ("model", "quant", "task", "metric", "score", "95% CI", "n")


def count_text(comps: list) -> str:
    """'1 holds, 3 inconclusive, 59 not comparable (1 of 4 judged claims decided)': every verdict counted,
    and how many of the judged ones the measurement could decide."""
    counts = collections.Counter(c.verdict for c in comps)
    text = ", ".join(f"{counts[v]} {v}" for v in COLOURS if counts[v])
    judged = [c for c in comps if c.verdict != "not comparable"]
    if judged:
        text += f" ({sum(c.decisive for c in judged)} of {len(judged)} judged claims decided)"
    return text


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows, columns=list(columns)).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def build(results_dir: Path, names: set[str] | None = None) -> tuple[dict[str, str], dict[str, dict]]:
    """Text outputs (relative path -> content) and plot specs (relative path -> spec) for a results folder
    (``names``: from only these record files)."""
    loaded = load_runs(results_dir, names)
    runs, dupes = loaded.runs, loaded.duplicates
    claims = load_claims()
    comps = compare_all(runs, claims)
    crow = claim_rows(comps)
    srow = score_rows([r.rec for r in runs])
    verdict_counts = count_text(comps)
    hardware = sorted({hardware_text(r.rec.hardware) for r in runs}) or ["(no runs yet)"]

    plots: dict[str, dict] = {}
    for task in sorted({c.task for c in claims if c.kind == "value" and c.task}):
        spec = claims_spec(task, comps)
        if spec["rows"]:
            plots[f"plots/claims-{task}.png"] = spec
    for model in sorted({r.model for r in runs}):
        kind = next(r.rec.model.kind for r in runs if r.model == model)
        keys = {}
        for t in sorted({r.task for r in runs if r.model == model}):
            head = task_spec(t, kind)["metrics"][0]
            keys[t] = ",".join(head)
        spec = quant_spec(model, runs, keys)
        if spec:
            plots[f"plots/quant-{model}.png"] = spec
    measured = claims_spec(
        "measured", [c for c in comps if c.measured is not None and c.claim.kind == "value"], any_task=True
    )
    if measured["rows"]:
        plots["plots/claims-measured.png"] = measured
    plot_list = [
        {
            "path": p,
            "title": (
                "claims with a measurement"
                if s.get("task") == "measured"
                else f"{s['task']}: measured vs claimed"
                if s["kind"] == "claims"
                else f"{s['model']}: score vs quant"
            ),
        }
        for p, s in plots.items()
    ]
    # The summary: headline scores, judged claims and the plots of what was measured; then what awaits a run.
    heads = headline_rows(runs)
    summary_plots = [p for p in plot_list if p["path"] == "plots/claims-measured.png"] or plot_list[:1]
    models = []
    for model in sorted({r.model for r in runs}):
        quant_plot = f"plots/quant-{model}.png"
        models.append(
            {
                "model": model,
                "rows": [h for h in heads if h["model"] == model],
                "quants": sorted({r.quant for r in runs if r.model == model}),
                "plot": quant_plot if quant_plot in plots else None,
            }
        )
    other_plots = [
        p for p in plot_list if p not in summary_plots and not p["path"].startswith("plots/quant-")
    ]
    audits = latest_audits(results_dir)
    records = [
        {
            "file": r.path.name,
            "model": r.model,
            "quant": r.quant,
            "task": r.task,
            "n": r.n,
            "created": r.rec.created,
            "command": redact_command(r.rec.command),
            "audit": _audit_text(audits.get(r.path.name)),
        }
        for r in runs
    ]
    lrows = ladder_rows(ladders(runs))
    ctx = dict(
        ladder_columns=LADDER_COLUMNS,
        ladder_rows=lrows,
        n_runs=len(runs),
        n_dupes=dupes,
        n_claims=len(claims),
        verdict_counts=verdict_counts,
        hardware=hardware,
        plots=plot_list,
        records=records,
        headlines=heads,
        judged=judged_rows(comps),
        awaiting=awaiting(comps, reference_estimate),
        reference=reference_text(),
        models=models,
        summary_plots=summary_plots,
        other_plots=other_plots,
    )
    # Every string a record brings is bounded before it is published (a hash keeps long ones apart).
    ctx, crow, srow, heads = bounded_all(ctx), bounded_all(crow), bounded_all(srow), bounded_all(heads)
    # Tables are rendered from the bounded rows (a whole table is long by nature, and is not cut).
    ctx["ladder_table"] = markdown_table(ctx["ladder_rows"], LADDER_COLUMNS) if ctx["ladder_rows"] else ""
    # HTML templates are escaped, the markdown one is not.
    env = Environment(
        loader=PackageLoader("harness.publish", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=select_autoescape(["html.j2"]),
    )
    readme = env.get_template("results_readme.md.j2").render(
        headlines_table=(
            markdown_table([h | {"95% CI": h["ci"]} for h in heads], HEADLINE_COLUMNS)
            if heads
            else "(no runs yet)"
        ),
        claims_table=markdown_table(crow, README_CLAIM_COLUMNS),
        scores_table=markdown_table(srow, SCORE_COLUMNS),
        **ctx,
    )
    html = env.get_template("report.html.j2").render(
        claim_columns=CLAIM_COLUMNS,
        claim_rows=crow,
        score_columns=SCORE_COLUMNS,
        score_rows=srow,
        colours=COLOURS,
        **ctx,
    )
    texts = {
        "README.md": readme,
        "claims.csv": _csv(crow, CLAIM_COLUMNS + VERDICT_COLUMNS + ("article",)),
        "scores.csv": _csv(srow, SCORE_COLUMNS),
        "report.html": html,
    }
    return texts, plots


def _audit_text(a: dict | None) -> str:
    """A record's latest audit in a few words (``harness audit``), or that it has none."""
    if a is None:
        return "not audited"
    return f"audit {a['result']} (K={a['k']}, seed {a['seed']}, {a['when']}, {a['where']})"


def _spec_sha(spec: dict) -> str:
    """Hash of the data a plot shows (what makes a PNG current, whatever matplotlib version drew it)."""
    return _sha(json.dumps(spec, sort_keys=True).encode())


def _manifest(
    texts: dict[str, str],
    plots: dict[str, dict],
    png_sha: dict[str, str],
    records: dict[str, str],
    audits: dict[str, dict] | None = None,
) -> str:
    files = {p: _sha(t.encode()) for p, t in sorted(texts.items())}
    data = {p: _spec_sha(s) for p, s in sorted(plots.items())}
    out = {
        "generator": "harness publish",
        "files": files,
        "plot_data": data,
        "png": png_sha,
        "records": records,
    }
    if audits:  # each listed record's latest `harness audit` (when, where, K, seed, result)
        out["audits"] = {name: a for name, a in sorted(audits.items()) if name in records}
    return json.dumps(out, indent=1, sort_keys=True, allow_nan=False) + "\n"


def _record_hashes(results_dir: Path) -> dict[str, str]:
    """sha256 of every record file in the runs folder (what a publication is built from)."""
    return {p.name: _sha(p.read_bytes()) for p in record_paths(results_dir)}


def publish(results_dir: Path) -> list[Path]:
    """Write every published file (only those whose content changed are rewritten) and the manifest."""
    results_dir = Path(results_dir)
    records = _record_hashes(results_dir)
    texts, plots = build(results_dir, set(records))
    written = []
    try:
        for rel, text in texts.items():
            path = results_dir / rel
            if not path.exists() or path.read_text() != text:
                atomic_write_text(path, text)
                written.append(path)
        png_sha = {}
        for rel, spec in plots.items():
            png = render(spec)
            png_sha[rel] = _sha(png)
            path = results_dir / rel
            if not path.exists() or path.read_bytes() != png:
                atomic_write_bytes(path, png)
                written.append(path)
        for old in (results_dir / "plots").glob("*.png") if (results_dir / "plots").exists() else []:
            if f"plots/{old.name}" not in plots:
                old.unlink()
                written.append(old)
        atomic_write_text(
            results_dir / MANIFEST, _manifest(texts, plots, png_sha, records, latest_audits(results_dir))
        )
    except OSError as exc:
        raise HarnessError(
            f"cannot write published files in {results_dir}: {exc}",
            "check free space and permissions of the results folder.",
        ) from exc
    return written


def _read_manifest(results_dir: Path) -> dict | None:
    try:
        manifest = json.loads((Path(results_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("records"), dict) else None


def unpublished(results_dir: Path) -> list[str]:
    """Record files in the runs folder that the published files do not include yet (a user's new runs)."""
    manifest = _read_manifest(results_dir) or {"records": {}}
    return sorted(set(_record_hashes(Path(results_dir))) - set(manifest["records"]))


def stale(results_dir: Path) -> list[str]:
    """Published files that do not match what the records they list give now (empty when up to date).

    A listed record that changed or disappeared makes the publication stale; a record that is not
    listed (a new run) does not: see :func:`unpublished`."""
    results_dir = Path(results_dir)
    manifest = _read_manifest(results_dir)
    if manifest is None:
        return [MANIFEST]
    now = _record_hashes(results_dir)
    out = sorted(
        f"runs/{name} (changed or missing)" for name, h in manifest["records"].items() if now.get(name) != h
    )
    texts, plots = build(results_dir, set(manifest["records"]))
    for rel, text in texts.items():
        path = results_dir / rel
        if not path.exists() or path.read_text() != text:
            out.append(rel)
    want = {p: _spec_sha(s) for p, s in plots.items()}
    for rel, h in want.items():
        path = results_dir / rel
        # A plot is current when it shows the current data and is the file the publisher wrote.
        if (
            manifest.get("plot_data", {}).get(rel) != h
            or not path.exists()
            or manifest.get("png", {}).get(rel) != _sha(path.read_bytes())
        ):
            out.append(rel)
    extra = set(manifest.get("plot_data", {})) - set(want)
    out += sorted(f"{p} (no longer produced)" for p in extra)
    return out
