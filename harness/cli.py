"""``harness`` command line: noun-verb commands, user errors as one clear message (no traceback)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from harness.errors import HarnessError
from harness.paths import DATA_DIR_ENV, RESULTS_DIR
from harness.paths import data_dir as resolve_data_dir


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llama-bench-harness")
def cli() -> None:
    """Re-measure Llama benchmark claims (GSM8K, MMLU) on quantized GGUF weights with llama.cpp."""


@cli.command()
@click.option("--quant", help="Show this quant instead of each model's default.")
def models(quant: str | None) -> None:
    """List the model catalogue: name, params, quant, size, kind, downloaded or not."""
    from harness.catalogue import load_catalogue, local_model_path, resolve

    data = load_catalogue()
    rows = [("model", "params", "quant", "size", "kind", "source", "downloaded")]
    for name in data["models"]:
        try:
            e = resolve(name, quant, data)
        except HarnessError:
            continue
        try:
            here = local_model_path(e) is not None
        except HarnessError:
            here = False
        size = f"{e.files.size / 1e9:.2f} GB" if e.files.size else "?"
        src = e.repo or f"pip:{e.package}"
        if not e.confirmed:
            src += " (unconfirmed)"
        rows.append((e.name, f"{e.params / 1e9:.1f}B", e.quant, size, e.kind, src, "yes" if here else "no"))
    _print_table(rows)


@cli.command()
@click.argument("model")
@click.option("--quant", help="Quant to fetch (default: the catalogue's, usually Q4_K_M).")
def download(model: str, quant: str | None) -> None:
    """Download MODEL's GGUF file(s) from the Hub, verified (size, sha256, GGUF header)."""
    from harness.catalogue import resolve
    from harness.download import download_model

    path = download_model(resolve(model, quant))
    click.echo(f"ready: {path}")


@cli.command()
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Catalogue name or path to a .gguf file.")
@click.option("--quant", help="Quant (default: the catalogue's).")
@click.option("--tasks", "-t", default="gsm8k,mmlu", show_default=True, help="Comma-separated: gsm8k, mmlu, mmlu_loglik, mmlu_cot.")
@click.option("--limit", type=int, help="Seeded subset size per task (MMLU: stratified over subjects).")
@click.option("--full", is_flag=True, help="Run every test question (ignores --limit).")
@click.option("--seed", default=0, show_default=True, help="Subset seed.")
@click.option("--data-dir", type=click.Path(file_okay=False), help=f"Local Hub-layout data mirror (or ${DATA_DIR_ENV}); default: the Hub.")
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
@click.option("--threads", default=0, help="CPU threads (0: all cores).")
@click.option("--gpu-layers", default=-1, help="Layers to offload (-1: all when the build has a GPU backend).")
@click.option("--parallel", default=8, show_default=True, help="Generation sequences decoded together.")
@click.option("--flash-attn/--no-flash-attn", default=False, show_default=True, help="llama.cpp flash attention.")
@click.option("--verbose", is_flag=True, help="Show llama.cpp's own log.")
def bench(model, quant, tasks, limit, full, seed, data_dir, results_dir, threads, gpu_layers, parallel, flash_attn, verbose):
    """Run GSM8K / MMLU on a model and write one run record per task under results/runs/."""
    from harness.catalogue import local_model_path, resolve
    from harness.engine import EngineSettings
    from harness.report import score_table
    from harness.runner import run_bench

    if limit is not None and limit <= 0:
        raise HarnessError(f"--limit must be positive (got {limit})", "omit it for the default subset, or use --full.")
    entry = resolve(model, quant)
    path = local_model_path(entry)
    if path is None:
        from harness.download import download_model

        path = download_model(entry)
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    settings = EngineSettings(threads=threads, gpu_layers=gpu_layers, n_parallel=parallel, flash_attn=flash_attn)
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's own per-task bars; ours are forced on
    paths = run_bench(
        entry, Path(path), task_list, limit, full, seed, resolve_data_dir(data_dir), settings, Path(results_dir), verbose
    )
    click.echo(score_table(paths))
    for p in paths:
        click.echo(f"record: {p}")


@cli.command()
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
def scores(results_dir: str) -> None:
    """Print the score table of every run record under RESULTS_DIR/runs."""
    from harness.report import score_table

    paths = sorted(p for p in (Path(results_dir) / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json"))
    if not paths:
        raise HarnessError(f"no run records in {results_dir}/runs", "run `make bench` first.")
    click.echo(score_table(paths))


def _print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))


def main() -> None:
    """Entry point: HarnessError -> message + exit 2; Ctrl-C -> exit 130 without a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
