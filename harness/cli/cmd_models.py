"""``harness models``, ``harness download`` and ``harness verify``: the catalogue, and weights fetched and checked."""

from __future__ import annotations

import click

from harness.cli.options import echo_err, quant_option
from harness.errors import HarnessError


@click.command()
@quant_option("Show this quant instead of each model's default.")
def models(quant: str | None) -> None:
    """List the model catalogue: name, params, quant, size, kind, downloaded or not."""
    from harness.models.catalogue import load_catalogue, resolve
    from harness.models.locate import local_model_path
    from harness.plan.assumptions import catalogue_size
    from harness.plan.render import size_text

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
        size = size_text(
            *catalogue_size(e)
        )  # the size `harness plan` shows: the catalogue's, else ≈ estimate
        src = e.repo or f"pip:{e.package}"
        if not e.confirmed:
            src += " (unconfirmed)"
        rows.append((e.name, f"{e.params / 1e9:.1f}B", e.quant, size, e.kind, src, "yes" if here else "no"))
    print_table(rows)


@click.command()
@click.argument("model")
@quant_option("Quant to fetch (default: the catalogue's, usually Q4_K_M).")
def download(model: str, quant: str | None) -> None:
    """Download MODEL's GGUF file(s) from the Hub, verified (size, sha256 of the bytes, GGUF header).

    First prints whether this machine could run it (the default bench: gsm8k,mmlu, --parallel 8), but
    downloads either way: the files may be meant for another machine.
    """
    from harness.models.catalogue import resolve
    from harness.run.bench import download_judged

    path = download_judged(resolve(model, quant), echo_err)
    click.echo(f"ready: {path}")


@click.command()
@click.argument("model")
@quant_option("Quant to check (default: the catalogue's).")
def verify(model: str, quant: str | None) -> None:
    """Re-hash MODEL's files on disk (sha256 of the bytes) against the catalogue pin and the Hub's sha256;
    a corrupted file is removed (the next download or bench fetches it again)."""
    from harness.models.catalogue import resolve
    from harness.models.verify import verify_model

    entry = resolve(model, quant)
    for name, sha, against in verify_model(entry):
        click.echo(f"ok  {name}  sha256 {sha}  (checked against {against})")
    click.echo(f"{entry.name} {entry.quant}: verified")


def print_table(rows: list[tuple]) -> None:
    """Rows as left-aligned columns under a dashed header line."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))


COMMANDS = (models, download, verify)
