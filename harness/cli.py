"""``harness`` command line: noun-verb commands, user errors as one clear message (no traceback)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.errors import ExitCode, HarnessError
from harness.paths import DATA_DIR_ENV, RESULTS_DIR
from harness.paths import data_dir as resolve_data_dir
from harness.redact import redact_text

if TYPE_CHECKING:
    from harness.backends.server.run import ServerBackend
    from harness.models.catalogue import ModelEntry
    from harness.run.bench import BenchOptions

# More threads than this machine has cores only slows llama.cpp down (they contend for the same cores).
THREADS = click.IntRange(0, os.cpu_count() or 1)
# Every number a user gives is bounded where it enters, so a huge value is one usage message (exit 2) before
# anything loads, never an overflow inside a library. The seed goes to random, numpy (which accepts 0..2**32-1
# only), torch and lm-eval: the range every one of them accepts.
SEED = click.IntRange(0, 2**32 - 1)
LIMIT = click.IntRange(1, 10_000_000)  # questions per task: far above any test split (MMLU: 14,042)
GPU_LAYERS = click.IntRange(-1, 100_000)  # -1: all; llama.cpp takes an int32
BUDGET = click.FloatRange(min=0, min_open=True, max=100_000)  # hours (over 11 years)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llama-bench-harness")
def cli() -> None:
    """Re-measure Llama benchmark claims (GSM8K, MMLU) on quantized GGUF weights with llama.cpp."""
    _check_env_numbers()


# Numbers that libraries read from the environment when imported (huggingface-hub: int(); a bad value is a
# ValueError at import, deep inside whichever command first needs the Hub). Checked first, one message each.
ENV_SECONDS = ("HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT")


def _check_env_numbers() -> None:
    for name in ENV_SECONDS:
        raw = os.environ.get(name, "").strip()
        if raw and not (raw.isdigit() and 0 < int(raw) <= 86_400):
            shown = raw if len(raw) <= 40 else raw[:20] + "..."
            raise HarnessError(f"{name}={shown!r} is not a whole number of seconds (1 to 86400)",
                               f"set {name} to e.g. 10, or unset it.")


@cli.command()
@click.option("--quant", help="Show this quant instead of each model's default.")
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
        size = size_text(*catalogue_size(e))  # the size `harness plan` shows: the catalogue's, else ≈ estimate
        src = e.repo or f"pip:{e.package}"
        if not e.confirmed:
            src += " (unconfirmed)"
        rows.append((e.name, f"{e.params / 1e9:.1f}B", e.quant, size, e.kind, src, "yes" if here else "no"))
    _print_table(rows)


@cli.command()
@click.argument("model")
@click.option("--quant", help="Quant to fetch (default: the catalogue's, usually Q4_K_M).")
def download(model: str, quant: str | None) -> None:
    """Download MODEL's GGUF file(s) from the Hub, verified (size, sha256 of the bytes, GGUF header).

    First prints whether this machine could run it (the default bench: gsm8k,mmlu, --parallel 8), but
    downloads either way: the files may be meant for another machine.
    """
    from harness.backends.llamacpp.engine import EngineSettings
    from harness.models.catalogue import resolve
    from harness.models.download import download_model
    from harness.models.kind import decide_kind
    from harness.plan.fit import refuse_before_download
    from harness.tasks.settings import plan_task

    entry = resolve(model, quant)
    try:
        entry = decide_kind(entry)  # an hf: GGUF's base/instruct (its prompt format) from its header
        plans = [plan_task(t, entry, data_dir=resolve_data_dir(None)) for t in ("gsm8k", "mmlu")]
    except HarnessError as exc:
        click.echo(f"cannot judge whether {entry.name} fits here (planning the default tasks failed: {exc.message})",
                   err=True)
    else:
        refuse_before_download(entry, plans, EngineSettings(), download_only=True, note=" (default bench settings)")
    path = download_model(entry)
    click.echo(f"ready: {path}")


@cli.command()
@click.argument("model")
@click.option("--quant", help="Quant to check (default: the catalogue's).")
def verify(model: str, quant: str | None) -> None:
    """Re-hash MODEL's files on disk (sha256 of the bytes) against the catalogue pin and the Hub's sha256;
    a corrupted file is removed (the next download or bench fetches it again)."""
    from harness.models.catalogue import resolve
    from harness.models.download import verify_model

    entry = resolve(model, quant)
    for name, sha, against in verify_model(entry):
        click.echo(f"ok  {name}  sha256 {sha}  (checked against {against})")
    click.echo(f"{entry.name} {entry.quant}: verified")


@cli.command()
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Catalogue name or path to a .gguf file.")
@click.option("--quant", help="Quant (default: the catalogue's).")
@click.option("--tasks", "-t", default="gsm8k,mmlu", show_default=True, help="Comma-separated: gsm8k, mmlu, mmlu_loglik, mmlu_cot.")
@click.option("--limit", type=LIMIT, help="Seeded subset size per task (MMLU: stratified over subjects).")
@click.option("--full", is_flag=True, help="Run every test question (ignores --limit).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Subset seed.")
@click.option("--data-dir", type=click.Path(file_okay=False), help=f"Local Hub-layout data mirror (or ${DATA_DIR_ENV}); default: the Hub.")
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
@click.option("--threads", type=THREADS, default=0, help="CPU threads (0: all cores).")
@click.option("--gpu-layers", type=GPU_LAYERS, default=-1,
              help="Layers to offload (-1: all when the build has a GPU backend).")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Generation sequences decoded together.")
@click.option("--gen-unit", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Generation requests per fixed scheduling unit (a resumed run replays at most one unit).")
@click.option("--flash-attn/--no-flash-attn", default=False, show_default=True, help="llama.cpp flash attention.")
@click.option("--max-branches", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Log-likelihood questions decoded together after their shared prefix (>1: one KV stream each).")
@click.option("--gen-streams/--no-gen-streams", default=True, show_default=True,
              help="Generation slots in separate KV streams (answers as one-at-a-time) or one unified cache.")
@click.option("--rpc", "rpc", help="llama.cpp RPC workers host:port,... holding the offloaded layers (RPC build).")
@click.option("--engines", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Engine processes, each with its own copy of the model: one per GPU, or on a CPU sharing the "
                   "cores (--threads split between them). Every result equals one engine's.")
@click.option("--max-restarts", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Engine deaths in a row, with no request finished in between, before the run stops (resumable).")
@click.option("--engine-process/--no-engine-process", default=True, show_default=True,
              help="Run llama.cpp in its own process (a crash costs a restart, not the run) or in this one.")
@click.option("--backend", type=click.Choice(["inprocess", "server"]), default="inprocess", show_default=True,
              help="inprocess: llama.cpp on this machine (in engine processes); server: an OpenAI-compatible server (--base-url).")
@click.option("--base-url", help="Server URL for --backend server, e.g. http://127.0.0.1:8080/v1.")
@click.option("--api-key-env", help="Name of the environment variable holding the server's API key.")
@click.option("--server-model", help="Served model id (default: the first one the server lists).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Server requests in flight (match its slots).")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True, max=86_400), default=600.0,
              show_default=True, help="Seconds one server request may take.")
@click.option("--retry-for", type=click.FloatRange(min=0, max=86_400), default=120.0, show_default=True,
              help="Seconds to keep retrying an unreachable or failing server before stopping (resumable).")
@click.option("--verbose", is_flag=True, help="Show llama.cpp's own log.")
@click.option("--skip-bad-rows", is_flag=True,
              help="Leave out test rows whose data cannot be scored (counted in the record) instead of stopping.")
@click.option("--allow-modified-data", is_flag=True,
              help="Run on data unlike the claims' (tasks/data_pins.yaml): recorded, never compared with a claim.")
@click.option("--download-only", is_flag=True,
              help="Fetch the model (saying whether it could run here with these settings) and stop.")
@click.option("--kind", type=click.Choice(["base", "instruct"]),
              help="Base (plain few-shot) or instruct (chat template). Default: the catalogue's, else the GGUF's.")
@click.option("--budget", type=BUDGET,
              help="Hours the run may take: refused before it starts when `harness plan` estimates more.")
@click.option("--decide", is_flag=True, help="Size each task to the smallest subset that decides every claim of the "
              "model (or the full test), instead of --limit (`harness plan MODEL` shows the sizes).")
def bench(model, quant, tasks, limit, full, seed, data_dir, results_dir, threads, gpu_layers, parallel, gen_unit,
          flash_attn, max_branches, gen_streams, rpc, engines, max_restarts, engine_process, backend, base_url, api_key_env, server_model, concurrency,
          request_timeout, retry_for,
          verbose, skip_bad_rows, allow_modified_data, download_only, kind, budget, decide):
    """Run GSM8K / MMLU on a model and write one run record per task under results/runs/."""
    from harness.backends.llamacpp.engine import EngineSettings
    from harness.run.bench import BenchOptions, ServerOptions

    on_server = backend == "server" or bool(base_url)
    rpc_servers = ()
    if rpc is not None and not on_server:
        from harness.backends.llamacpp.rpc import parse_endpoints

        rpc_servers = parse_endpoints(rpc)
    opts = BenchOptions(
        model=model, quant=quant, kind=kind, tasks=tuple(parse_tasks(tasks)), limit=limit, full=full, seed=seed,
        data_dir=resolve_data_dir(data_dir), results_dir=Path(results_dir), skip_bad_rows=skip_bad_rows,
        allow_modified_data=allow_modified_data, verbose=verbose, download_only=download_only, budget=budget,
        engines=engines, max_restarts=max_restarts, engine_process=engine_process,
        engine=EngineSettings(threads=threads, gpu_layers=gpu_layers, n_parallel=parallel, gen_unit=gen_unit,
                              flash_attn=flash_attn, max_branches=max_branches, gen_streams=gen_streams,
                              rpc_servers=rpc_servers),
        server=ServerOptions(base_url, api_key_env, server_model, concurrency, request_timeout, retry_for)
        if on_server else None,
        task_limits=_deciding_limits(model, quant, kind, parse_tasks(tasks), limit, full) if decide else (),
    )
    _bench(opts)


def _deciding_limits(model: str, quant: str | None, kind: str | None, tasks: list[str], limit: int | None,
                     full: bool) -> tuple[tuple[str, int | None], ...]:
    """``--decide``: each task's subset that decides every claim of the model (refused with --limit/--full, and
    for a model no claim is about)."""
    from harness.analysis.decide import decide
    from harness.models.catalogue import resolve

    if limit is not None or full:
        raise HarnessError("--decide sizes each task itself: it cannot be combined with --limit or --full",
                           "drop --limit/--full, or drop --decide.")
    entry = _claims_entry(resolve(model, quant), kind)
    if entry is None:
        raise HarnessError(f"--decide needs a catalogue model (claims are about catalogue models); {model} is not one",
                           "run with --limit N or --full.")
    limits = decide(entry, tasks)
    return tuple(limits.items())


def _bench(opts: BenchOptions) -> None:
    """``harness bench`` from its options: the server route, or the model fetched (judged first) and run here."""
    from dataclasses import replace

    from harness.backends.llamacpp.backend import LlamaCppBackend
    from harness.models.catalogue import UNDECIDED, resolve
    from harness.models.download import download_model
    from harness.models.locate import local_model_path
    from harness.plan.fit import refuse_before_download
    from harness.run.bench import run_bench

    entry = resolve(opts.model, opts.quant)
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's own per-task bars; ours are forced on
    from harness.run.console import configure

    configure(opts.verbose, opts.results_dir / ".journal" / "console.log")  # what lm-eval prints goes there
    if opts.server is not None:
        entry = _decided_kind(entry, opts.kind)
        _echo_results(run_bench(opts, _server_backend(entry, opts)), opts.results_dir, entry.name)
        return
    if opts.engine.rpc_servers:
        from harness.backends.llamacpp.rpc import require_rpc

        require_rpc()
    if opts.data_dir is None and entry.kind != UNDECIDED and not opts.download_only:
        from harness import hub

        if hub.offline() or hub.unreachable():  # no Hub: data not in its cache fails now, before the plan's probe
            opts.plans(entry)
    if not opts.download_only:  # the plan's one line (time, memory) before anything is fetched or loaded
        from harness.plan.command import bench_plan

        limits = [opts.limit_of(t) for t in opts.tasks]  # the largest subset: the plan line is an upper bound
        bench_plan(entry, list(opts.tasks), max((n for n, f in limits if n is not None), default=None),
                   any(f for _, f in limits), opts.engine, opts.budget, opts.kind,
                   lambda line: click.echo(line, err=True))
        _echo_undecided(entry, opts)
    judged = False
    if (opts.kind is None and entry.kind == UNDECIDED and not opts.download_only
            and local_model_path(entry) is None):
        # An hf: GGUF not on this machine: whether it can run is judged first, from the model's shape alone (a
        # 1 MiB header read), sized as an instruct model (its chat prompts are the longer ones). Reading the
        # tokenizer metadata that tells base from instruct goes further into the file, so it comes after.
        assumed = replace(entry, kind="instruct")
        refuse_before_download(assumed, opts.plans(assumed), opts.engine)
        judged = True  # an upper bound: the base-model prompts are shorter, so no second verdict is needed
    entry = _decided_kind(entry, opts.kind)
    path = local_model_path(entry)
    if path is None or opts.download_only:
        # Judged before a byte of weights is fetched: a model that cannot run here is refused now, not hours later.
        if not judged:
            refuse_before_download(entry, opts.plans(entry), opts.engine, download_only=opts.download_only,
                                   note=" (--download-only)" if opts.download_only else "")
        path = download_model(entry)
        if opts.download_only:
            click.echo(f"ready: {path}")
            return
    elif entry.repo:
        path = download_model(entry)  # cached: re-checks the bytes' sha256 (once per file version); refetches if corrupted
    paths = run_bench(opts, LlamaCppBackend(entry, Path(path), opts.engine, opts.verbose, engines=opts.engines,
                                            engine_process=opts.engine_process, max_restarts=opts.max_restarts))
    _echo_results(paths, opts.results_dir, entry.name)


def _echo_undecided(entry, opts: BenchOptions) -> None:
    """The plan line's companion: which claims of this model the planned subsets cannot decide."""
    from harness.analysis.decide import for_entry, planned_limit, undecided_note

    entry = _claims_entry(entry, opts.kind)
    if entry is None:
        return
    limits = {t: planned_limit(entry, t, *opts.limit_of(t)) for t in opts.tasks}
    note = undecided_note(for_entry(entry, list(opts.tasks), limits))
    if note:
        click.echo(note, err=True)


def _claims_entry(entry: ModelEntry, kind: str | None) -> ModelEntry | None:
    """The entry the claims sections judge: ``--kind`` applied; None for a GGUF whose kind is still undecided
    (no catalogue model, so no claim is about it)."""
    from dataclasses import replace

    from harness.models.catalogue import UNDECIDED

    entry = replace(entry, kind=kind) if kind else entry
    return None if entry.kind == UNDECIDED else entry


def _decided_kind(entry, kind):
    """Settle base/instruct (--kind, catalogue, else the GGUF) and say how, before anything runs."""
    from harness.models.kind import decide_kind

    entry = decide_kind(entry, kind)
    click.echo(f"{entry.name}: {entry.kind} model ({entry.kind_source})", err=True)
    return entry


def parse_tasks(spec: str) -> list[str]:
    """``--tasks a,b``: known names, each once, at least one (checked before any model is touched)."""
    from harness.tasks.settings import task_names

    names = [t.strip() for t in spec.split(",") if t.strip()]
    known = task_names()
    if not names:
        raise HarnessError("--tasks names no task", f"choose from: {', '.join(known)}.")
    twice = sorted({t for t in names if names.count(t) > 1})
    if twice:
        raise HarnessError(f"--tasks lists {', '.join(twice)} more than once", "name each task once.")
    unknown = [t for t in names if t not in known]
    if unknown:
        raise HarnessError(f"unknown task(s) {', '.join(unknown)} in --tasks", f"choose from: {', '.join(known)}.")
    return names


def _server_backend(entry: ModelEntry, opts: BenchOptions) -> ServerBackend:
    """``bench --backend server``: the same tasks through an OpenAI-compatible server."""
    from harness.backends.server.client import ServerClient
    from harness.backends.server.run import ServerBackend, api_key_from_env
    from harness.models.locate import local_model_path

    srv = opts.server
    if not srv.base_url:
        raise HarnessError("--backend server needs --base-url", "e.g. --base-url http://127.0.0.1:8080/v1.")
    key = api_key_from_env(srv.api_key_env)
    if key is not None and not (key.isascii() and key.isprintable()):  # sent as an HTTP header: visible ASCII
        raise HarnessError(f"the value of {srv.api_key_env} holds a character an HTTP header cannot carry "
                           "(non-ASCII or a control character)", f"check {srv.api_key_env}: API keys are ASCII.")
    client = ServerClient(srv.base_url, key, srv.model, srv.request_timeout, srv.retry_for)
    try:
        local = local_model_path(entry)  # its chat template (when the server reports none) and token counts
    except HarnessError:
        local = None
    return ServerBackend(entry, opts.quant is not None, client, srv.concurrency, local)


def _echo_results(paths: list[Path], results_dir: Path, model: str) -> None:
    from harness.run.console import final_summary

    click.echo(final_summary(paths, results_dir, model))


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
        click.echo("\nquant ladder (paired on the same questions; Δ and its 95% CI: quant minus the reference, "
                   "points; McNemar p: exact, two-sided; KL: reference || quant over the answer choices, nats):")
        click.echo(markdown_table(ladder_rows(lads), LADDER_COLUMNS))


@cli.command()
@click.option("--model", "-m", help="Only the claims about this catalogue model.")
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
def compare(model: str | None, results_dir: str) -> None:
    """Put every claim of tasks/claims.yaml beside the matching measurement, with a verdict."""
    from harness.models.catalogue import resolve

    if model:
        model = resolve(model).name  # unknown names fail with suggestions
    _echo_claims(Path(results_dir), model)


@cli.command()
@click.argument("record", type=click.Path(dir_okay=False))
@click.option("--sample", "-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Questions to re-run (seeded random; all of them when K >= the record's n).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the sample.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, exists=True),
              help="The weights' file (default: the catalogue's, found on this machine); its sha256 is checked.")
@click.option("--data-dir", type=click.Path(file_okay=False), help=f"Local Hub-layout data mirror (or ${DATA_DIR_ENV}).")
@click.option("--threads", type=THREADS, default=0, help="CPU threads (0: all cores; never changes a result).")
@click.option("--no-rerun", is_flag=True, help="Only check that the record agrees with itself (runs nothing).")
@click.option("--results-dir", type=click.Path(file_okay=False),
              help="Where audits/ is written (default: the folder holding the record's runs/).")
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
    a = do_audit(path, k=k, seed=seed, model_path=Path(model_path) if model_path else None,
                 data_dir=resolve_data_dir(data_dir), threads=threads, rerun=not no_rerun)
    written = write_audit(out_dir, a, path)
    click.echo(f"{a.record}: {a.summary()}")
    for p in a.problems[1:5]:
        click.echo(f"  also: {p}")
    click.echo(f"audit written to {written}")
    if not a.ok:
        sys.exit(1)


@cli.command()
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
@click.option("--check", is_flag=True, help="Only check that the published files match the records (exit 1 if stale).")
def publish(results_dir: str, check: bool) -> None:
    """Regenerate results/README.md, CSV tables, plots and report.html from the run records."""
    from harness.publish.build import publish as do_publish
    from harness.publish.build import stale, unpublished
    from harness.records.runs import load_runs

    _warn_unreadable(load_runs(Path(results_dir)))
    if check:
        out = stale(Path(results_dir))
        if out:
            raise HarnessError(f"published files are stale against the records they list: {', '.join(out)}",
                               "run `make publish` and commit the result.")
        new = unpublished(Path(results_dir))
        click.echo("published files are up to date" + (
            f"; {len(new)} run record(s) not published yet ({', '.join(new[:3])}{'...' if len(new) > 3 else ''}): "
            "`make publish` adds them" if new else ""))
        return
    written = do_publish(Path(results_dir))
    click.echo(f"{len(written)} file(s) updated in {results_dir}" if written else "nothing changed")
    for p in written:
        click.echo(f"  {p}")


@cli.command()
@click.argument("model", required=False)
@click.option("--quant", help="Only this quant (default: every quant of the model).")
@click.option("--tasks", "-t", default="gsm8k,mmlu", show_default=True, help="Comma-separated tasks, as for bench.")
@click.option("--limit", type=LIMIT, help="Questions per task (default: each task's default subset).")
@click.option("--full", is_flag=True, help="Every test question.")
@click.option("--budget", type=BUDGET, help="Hours the run may take: the recommended "
              "quant must finish within it.")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True, help="As for bench.")
@click.option("--gpu-layers", type=GPU_LAYERS, default=-1, help="As for bench (0: judge the CPU only).")
@click.option("--kind", type=click.Choice(["base", "instruct"]), help="As for bench.")
@click.option("--rates", type=click.Choice(["here", "reference"]), default="here", show_default=True,
              help="here: time llama.cpp now on a slice of the model (under a minute; cached slices); reference: the "
              "stored reference machine class.")
@click.option("--check-runs", is_flag=True, help="Instead: each run in --results-dir, estimated beside its real wall time "
              "(contended runs left out; fitted or out of sample).")
@click.option("--calibrate", is_flag=True, help="Instead: measure the numpy fallback's calibration on this machine (the "
              "offline model) and write tasks/plan_calibration.yaml.")
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
@click.option("--decide", is_flag=True, help="Size each task to the smallest subset that decides every claim of the "
              "model (or the full test), as `harness bench --decide` runs it.")
def plan(model, quant, tasks, limit, full, budget, parallel, gpu_layers, kind, rates, check_runs, calibrate,
         results_dir, decide):
    """What MODEL would cost here, per quant, before anything is downloaded: disk, memory, --gpu-layers, time;
    and what the planned subsets can decide about the claims made for it."""
    from harness.plan.command import plan_command

    task_list = parse_tasks(tasks)
    lines: list[str] = []
    if model and not (check_runs or calibrate):
        limits = dict(_deciding_limits(model, quant, kind, task_list, limit, full)) if decide else None
        lines = _decision_lines(model, quant, kind, task_list, limit, full, limits)
        if limits:  # one subset size for the time estimate: the largest (an upper bound)
            full = any(v is None for v in limits.values())
            limit = None if full else max(limits.values())
    click.echo(plan_command(model, quant, task_list, limit, full, budget, parallel, gpu_layers, kind, rates,
                            check_runs, calibrate, Path(results_dir), log=lambda line: click.echo(line, err=True)))
    if lines:
        click.echo("\n" + "\n".join(lines))


def _decision_lines(model: str, quant: str | None, kind: str | None, tasks: list[str], limit: int | None,
                    full: bool, limits: dict[str, int | None] | None) -> list[str]:
    """`harness plan`'s claims section: each claim's expected half-width and decide-size (none for a GGUF
    that is no catalogue model)."""
    from harness.analysis.decide import for_entry, planned_limits, render
    from harness.models.catalogue import resolve

    entry = _claims_entry(resolve(model, quant), kind)
    if entry is None:
        return []
    decided = limits is not None
    if limits is None:
        limits = planned_limits(entry, tasks, limit, full)
    lines = render(for_entry(entry, tasks, limits))
    if decided:
        sizes = ", ".join(f"{t} {'full' if n is None else n}" for t, n in limits.items())
        lines.insert(0, f"--decide: {sizes} (the time above is for the largest, an upper bound)")
    return lines


@cli.command()
@click.argument("model", default="smollm2-135m")
@click.option("--quant", help="Quant (default: the catalogue's).")
@click.option("--threads", type=THREADS, default=0, help="CPU threads (0: all cores).")
@click.option("--gpu-layers", type=GPU_LAYERS, default=-1,
              help="Layers to offload (-1: all when the build has a GPU backend).")
@click.option("--parallel", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Sequences in the batched decode test.")
def speed(model: str, quant: str | None, threads: int, gpu_layers: int, parallel: int) -> None:
    """Probe MODEL's prompt rate and single/batched decode rate on this machine (like llama-bench)."""
    from harness.backends.llamacpp.engine import EngineSettings
    from harness.backends.llamacpp.engine_proc import EngineProcess
    from harness.backends.llamacpp.speed import probe
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    entry = resolve(model, quant)
    path = local_model_path(entry)
    if path is None:
        raise HarnessError(f"{entry.name} {entry.quant} is not downloaded", f"run `harness download {model}`.")
    # In an engine process, as a bench runs it (no torch or pyarrow beside llama.cpp).
    engine = EngineProcess(path, EngineSettings(threads=threads, gpu_layers=gpu_layers, n_parallel=parallel))
    try:
        res = probe(engine)
    finally:
        engine.close()
    click.echo(f"{entry.name} {entry.quant}: prompt {res['prompt_tokens_per_s']:.0f} tok/s, "
               f"decode {res['decode_1_tokens_per_s']:.0f} tok/s (1 sequence), "
               f"{res['decode_batched_tokens_per_s']:.0f} tok/s ({parallel} sequences)")


@cli.command("rpc-worker")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all; trusted networks only).")
@click.option("--port", type=click.IntRange(1, 65535), default=50052, show_default=True)
@click.option("--threads", type=THREADS, default=0, help="CPU threads (0: all cores).")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Keep received tensors here (faster reloads).")
def rpc_worker(host: str, port: int, threads: int, cache_dir: str | None) -> None:
    """Serve this machine's CPU as a llama.cpp RPC worker for `harness bench --rpc` (needs an RPC build)."""
    from harness.backends.llamacpp.rpc import serve_worker

    click.echo(f"RPC worker on {host}:{port} (Ctrl-C to stop); an RPC worker runs any graph a client sends: "
               "expose it on trusted networks only", err=True)
    serve_worker(host, port, threads or os.cpu_count() or 1, cache_dir)


@cli.command()
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True)
def scores(results_dir: str) -> None:
    """Print the score table of every run record under RESULTS_DIR/runs."""
    from harness.publish.report import score_table
    from harness.records.runs import load_runs

    loaded = load_runs(Path(results_dir))
    _warn_unreadable(loaded)
    if not loaded.runs:
        raise HarnessError(f"no run records in {results_dir}/runs", "run `make bench` first.")
    click.echo(score_table(loaded.runs))


@cli.command()
@click.option("--results-dir", type=click.Path(file_okay=False), default=str(RESULTS_DIR), show_default=True,
              help="Where the new run records are (RESULTS_DIR/runs).")
@click.option("--baselines", type=click.Path(file_okay=False), default=str(RESULTS_DIR / "baselines"),
              show_default=True, help="Folder of baseline run records.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level of the one-sided McNemar test.")
@click.option("--max-drop", type=click.FloatRange(0, 100), default=0.0, show_default=True,
              help="Points a significant drop may lose and still pass.")
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
    rows = [{"model": c.model, "quant": c.quant, "task": c.task, "baseline": f"{c.baseline:.1f}",
             "new": "-" if c.new is None else f"{c.new:.1f}", "n": str(c.n), "worse": str(c.worse),
             "better": str(c.better), "p": "-" if c.p_value is None else f"{c.p_value:.3g}", "status": c.status,
             "note": c.note} for c in checks]
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


def _print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))


def _terminate(signum, frame) -> None:
    """SIGTERM ends a run like Ctrl-C: the journal keeps what finished and the rerun resumes."""
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: every way out is one message and an exit status from :class:`ExitCode`.

    HarnessError -> its message, exit 2; Ctrl-C or SIGTERM -> exit 130 without a traceback. Anything else is
    a bug of the harness: one line on stderr, the traceback in a file for the report (``HARNESS_DEBUG=1``
    shows it instead), exit 70 (EX_SOFTWARE).

    First, the secrets the run knows are collected and stdout/stderr wrapped so that nothing printed shows
    them (harness.redact), and a duplicate of the real terminal's fd 2 is kept: the final message reaches
    it even when stderr was redirected to ``console.log`` and that disk is full (harness.run.console)."""
    from harness.redact import collect_secrets, wrap_streams
    from harness.run.console import keep_terminal

    signal.signal(signal.SIGTERM, _terminate)
    collect_secrets(sys.argv[1:])
    wrap_streams()
    keep_terminal()
    _finish(_run())


def _run() -> int:
    """Run the command line; the exit status (its final message already printed)."""
    from harness.run.console import last_word

    try:
        cli.main(standalone_mode=False)
    except HarnessError as exc:  # the one place a user-facing error becomes a message and an exit status
        last_word(f"Error: {exc.format_message()}")
        return exc.exit_code
    except click.ClickException as exc:  # click's own usage errors (bad option values, unknown commands)
        try:
            exc.show()
        except OSError:
            last_word(f"Error: {exc.format_message()}")
        return exc.exit_code
    except click.exceptions.Abort:
        last_word("aborted")
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        last_word("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `harness scores | head`: the reader left; nothing to say
        return ExitCode.OK
    except SystemExit as exc:  # `regress` exits 1 after its table; click's --help/--version exit 0
        code = exc.code
        return code if isinstance(code, int) else (ExitCode.OK if code is None else ExitCode.CHECK_FAILED)
    except Exception as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        log = _save_traceback()
        last_word(f"internal error: {type(exc).__name__}: {redact_text(str(exc))[:300]}\n"
                  f"  -> this is a bug in the harness; please report it with {log or 'HARNESS_DEBUG=1 output'}.")
        return ExitCode.INTERNAL_ERROR
    return ExitCode.OK


def _finish(code: int) -> None:
    """Exit with ``code``. Python flushes stdout/stderr at exit and turns a failed flush into status 120,
    which would hide the real status (a full disk, a closed pipe): flush here, and when that fails leave
    without Python's exit flush (``os._exit``), the message already on the terminal."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        os._exit(int(code))
    sys.exit(int(code))


def _save_traceback() -> str | None:
    """Write the current traceback (redacted) to the cache folder; return its path, or None."""
    import tempfile
    import traceback

    text = redact_text(traceback.format_exc())
    try:
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llama-bench-harness"
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="error-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    except OSError:
        return None


if __name__ == "__main__":
    main()
