"""``harness scores``, ``compare``, ``publish``, ``regress`` and ``audit``: what the run records say, and
whether they hold (a record re-checked, a score that fell)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from harness.cli.options import data_dir_option, results_dir_option, seed_option, threads_option
from harness.errors import ExitCode, HarnessError
from harness.paths import DATA_DIR_ENV, RESULTS_DIR
from harness.paths import data_dir as resolve_data_dir


def _echo_claims(results_dir: Path, model: str | None) -> None:
    """The claims of a model (or all) beside the measurements in results_dir."""
    from harness.analysis.compare import compare_all
    from harness.publish.report import claims_table
    from harness.records.runs import load_runs

    loaded = load_runs(results_dir)
    _warn_unreadable(loaded)
    comps = compare_all(loaded.runs, model=model)
    if comps:
        click.echo(f"\nclaims{f' about {model}' if model else ''}:")
        click.echo(claims_table(comps))
    _echo_ladders(loaded.runs, model)


def _echo_ladders(runs, model: str | None) -> None:
    """Quants of one model on the same questions and setting, beside the highest-precision one (issue #25)."""
    from harness.analysis.ladder import LADDER_COLUMNS, ladder_rows, ladders
    from harness.publish.report import markdown_table

    lads = ladders(runs, model)
    if lads:
        click.echo(
            "\nquant ladder (paired on the same questions; Δ and its 95% CI: quant minus the reference, "
            "points; McNemar p: exact, two-sided; KL: reference || quant over the answer choices, nats):"
        )
        click.echo(markdown_table(ladder_rows(lads), LADDER_COLUMNS))


@click.command()
@click.option("--model", "-m", help="Only the claims about this catalogue model.")
@results_dir_option()
def compare(model: str | None, results_dir: str) -> None:
    """Put every claim of tasks/claims.yaml beside the matching measurement, with a verdict."""
    from harness.models.catalogue import resolve

    if model:
        model = resolve(model).name  # unknown names fail with suggestions
    _echo_claims(Path(results_dir), model)


@click.command()
@click.argument("record", type=click.Path(dir_okay=False))
@click.option(
    "--sample",
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Questions to re-run (seeded random; all of them when K >= the record's n).",
)
@seed_option("Seed of the sample.", type=click.IntRange(min=0))
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, exists=True),
    help="The weights' file (default: the catalogue's, found on this machine); its sha256 is checked.",
)
@data_dir_option(f"Local Hub-layout data mirror (or ${DATA_DIR_ENV}).")
@threads_option("CPU threads (0: all cores; never changes a result).")
@click.option(
    "--no-rerun", is_flag=True, help="Only check that the record agrees with itself (runs nothing)."
)
@results_dir_option(
    "Where audits/ is written (default: the folder holding the record's runs/).", default=None
)
def audit(record, k, seed, model_path, data_dir, threads, no_rerun, results_dir) -> None:
    """Check a run record: it agrees with itself, and K of its questions re-run give its bytes (exit 1 if not)."""
    from harness.run.audit import audit as do_audit
    from harness.run.audit import write_audit
    from harness.run.console import configure

    path = Path(record)
    if not path.is_file():
        raise HarnessError(f"no such record: {record}", "give a file under results/runs/.")
    # results/runs/X.json -> results/audits/X.json; a record elsewhere gets audits/ beside it.
    here = path.resolve().parent
    out_dir = Path(results_dir) if results_dir else (here.parent if here.name == "runs" else here)
    configure(False, out_dir / ".journal" / "console.log")
    os.environ.setdefault("TQDM_DISABLE", "1")
    a = do_audit(
        path,
        k=k,
        seed=seed,
        model_path=Path(model_path) if model_path else None,
        data_dir=resolve_data_dir(data_dir),
        threads=threads,
        rerun=not no_rerun,
    )
    written = write_audit(out_dir, a, path)
    click.echo(f"{a.record}: {a.summary()}")
    for p in a.problems[1:5]:
        click.echo(f"  also: {p}")
    click.echo(f"audit written to {written}")
    if not a.ok:
        sys.exit(1)


@click.command()
@results_dir_option()
@click.option(
    "--check", is_flag=True, help="Only check that the published files match the records (exit 1 if stale)."
)
def publish(results_dir: str, check: bool) -> None:
    """Regenerate results/README.md, CSV tables, plots and report.html from the run records."""
    from harness.publish.build import publish as do_publish
    from harness.publish.build import stale, unpublished
    from harness.records.runs import load_runs

    _warn_unreadable(load_runs(Path(results_dir)))
    if check:
        out = stale(Path(results_dir))
        if out:
            raise HarnessError(
                f"published files are stale against the records they list: {', '.join(out)}",
                "run `make publish` and commit the result.",
            )
        new = unpublished(Path(results_dir))
        click.echo(
            "published files are up to date"
            + (
                f"; {len(new)} run record(s) not published yet ({', '.join(new[:3])}{'...' if len(new) > 3 else ''}): "
                "`make publish` adds them"
                if new
                else ""
            )
        )
        return
    written = do_publish(Path(results_dir))
    click.echo(f"{len(written)} file(s) updated in {results_dir}" if written else "nothing changed")
    for p in written:
        click.echo(f"  {p}")


@click.command()
@results_dir_option()
def scores(results_dir: str) -> None:
    """Print the score table of every run record under RESULTS_DIR/runs."""
    from harness.publish.report import score_table
    from harness.records.runs import load_runs

    loaded = load_runs(Path(results_dir))
    _warn_unreadable(loaded)
    if not loaded.runs:
        raise HarnessError(f"no run records in {results_dir}/runs", "run `make bench` first.")
    click.echo(score_table(loaded.runs))


@click.command()
@results_dir_option("Where the new run records are (RESULTS_DIR/runs).")
@click.option(
    "--baselines",
    type=click.Path(file_okay=False),
    default=str(RESULTS_DIR / "baselines"),
    show_default=True,
    help="Folder of baseline run records.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Significance level of the one-sided McNemar test.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(0, 100),
    default=0.0,
    show_default=True,
    help="Points a significant drop may lose and still pass.",
)
@click.option("--strict", is_flag=True, help="Also fail when a run is not comparable with its baseline.")
def regress(results_dir: str, baselines: str, alpha: float, max_drop: float, strict: bool) -> None:
    """Compare new run records with the baselines; exit 1 when a score fell by more than the noise allows."""
    from harness.analysis.regress import failed
    from harness.analysis.regress import regress as do_regress
    from harness.publish.report import markdown_table

    if not Path(baselines).is_dir():
        raise HarnessError(f"no baselines folder {baselines}", "create one with `make baseline`.")
    from harness.records.runs import load_runs

    _warn_unreadable(load_runs(Path(results_dir)))  # a bad record is named here, as by scores/compare/publish
    checks = do_regress(Path(baselines), Path(results_dir), alpha, max_drop)
    if not checks:
        raise HarnessError(f"no baseline records in {baselines}", "create them with `make baseline`.")
    rows = [
        {
            "model": c.model,
            "quant": c.quant,
            "task": c.task,
            "baseline": f"{c.baseline:.1f}",
            "new": "-" if c.new is None else f"{c.new:.1f}",
            "n": str(c.n),
            "worse": str(c.worse),
            "better": str(c.better),
            "p": "-" if c.p_value is None else f"{c.p_value:.3g}",
            "status": c.status,
            "note": c.note,
        }
        for c in checks
    ]
    click.echo(markdown_table(rows, tuple(rows[0])))
    if failed(checks, strict):
        click.echo("regression check FAILED", err=True)
        sys.exit(ExitCode.CHECK_FAILED)
    click.echo("regression check passed")


def _warn_unreadable(loaded) -> None:
    """Name the files load_runs skipped (on stderr): they are left out, the command goes on."""
    line = loaded.warning()
    if line:
        click.echo(line, err=True)


COMMANDS = (scores, compare, publish, regress, audit)
