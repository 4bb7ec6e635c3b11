"""``harness bench``, ``harness plan``, ``harness speed`` and ``harness rpc-worker``: options parsed here, the
work done by harness/run/bench.py (the bench), harness/plan/ (the plan) and the backends."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harness.cli.options import (
    budget_option,
    data_dir_option,
    decide_option,
    echo_err,
    full_option,
    gpu_layers_option,
    kind_option,
    limit_option,
    parallel_option,
    parse_tasks,
    quant_option,
    results_dir_option,
    seed_option,
    tasks_option,
    threads_option,
)
from harness.errors import HarnessError
from harness.paths import data_dir as resolve_data_dir


@click.command()
@click.option(
    "--model", "-m", default="smollm2-135m", show_default=True, help="Catalogue name or path to a .gguf file."
)
@quant_option()
@tasks_option()
@limit_option()
@full_option()
@seed_option()
@data_dir_option()
@results_dir_option()
@threads_option()
@gpu_layers_option()
@parallel_option()
@click.option(
    "--gen-unit",
    type=click.IntRange(1, 100_000),
    default=64,
    show_default=True,
    help="Generation requests per fixed scheduling unit (a resumed run replays at most one unit).",
)
@click.option(
    "--flash-attn/--no-flash-attn", default=False, show_default=True, help="llama.cpp flash attention."
)
@click.option(
    "--max-branches",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Log-likelihood questions decoded together after their shared prefix (>1: one KV stream each).",
)
@click.option(
    "--gen-streams/--no-gen-streams",
    default=True,
    show_default=True,
    help="Generation slots in separate KV streams (answers as one-at-a-time) or one unified cache.",
)
@click.option(
    "--rpc", "rpc", help="llama.cpp RPC workers host:port,... holding the offloaded layers (RPC build)."
)
@click.option(
    "--engines",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Engine processes, each with its own copy of the model: one per GPU, or on a CPU sharing the "
    "cores (--threads split between them). Every result equals one engine's.",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Engine deaths in a row, with no request finished in between, before the run stops (resumable).",
)
@click.option(
    "--engine-process/--no-engine-process",
    default=True,
    show_default=True,
    help="Run llama.cpp in its own process (a crash costs a restart, not the run) or in this one.",
)
@click.option(
    "--backend",
    type=click.Choice(["inprocess", "server"]),
    default="inprocess",
    show_default=True,
    help="inprocess: llama.cpp on this machine (in engine processes); server: an OpenAI-compatible server (--base-url).",
)
@click.option("--base-url", help="Server URL for --backend server, e.g. http://127.0.0.1:8080/v1.")
@click.option("--api-key-env", help="Name of the environment variable holding the server's API key.")
@click.option("--server-model", help="Served model id (default: the first one the server lists).")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Server requests in flight (match its slots).",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True, max=86_400),
    default=600.0,
    show_default=True,
    help="Seconds one server request may take.",
)
@click.option(
    "--retry-for",
    type=click.FloatRange(min=0, max=86_400),
    default=120.0,
    show_default=True,
    help="Seconds to keep retrying an unreachable or failing server before stopping (resumable).",
)
@click.option("--verbose", is_flag=True, help="Show llama.cpp's own log.")
@click.option(
    "--skip-bad-rows",
    is_flag=True,
    help="Leave out test rows whose data cannot be scored (counted in the record) instead of stopping.",
)
@click.option(
    "--allow-modified-data",
    is_flag=True,
    help="Run on data unlike the claims' (tasks/data_pins.yaml): recorded, never compared with a claim.",
)
@click.option(
    "--download-only",
    is_flag=True,
    help="Fetch the model (saying whether it could run here with these settings) and stop.",
)
@kind_option()
@budget_option()
@decide_option(
    "Size each task to the smallest subset that decides every claim of the model (or the full test), "
    "instead of --limit (`harness plan MODEL` shows the sizes)."
)
def bench(
    model,
    quant,
    tasks,
    limit,
    full,
    seed,
    data_dir,
    results_dir,
    threads,
    gpu_layers,
    parallel,
    gen_unit,
    flash_attn,
    max_branches,
    gen_streams,
    rpc,
    engines,
    max_restarts,
    engine_process,
    backend,
    base_url,
    api_key_env,
    server_model,
    concurrency,
    request_timeout,
    retry_for,
    verbose,
    skip_bad_rows,
    allow_modified_data,
    download_only,
    kind,
    budget,
    decide,
):
    """Run GSM8K / MMLU on a model and write one run record per task under results/runs/."""
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.publish.bench_summary import final_summary
    from harness.run.bench import BenchOptions, ServerOptions
    from harness.run.bench import bench as run_bench_command
    from harness.run.deciding import deciding_limits

    on_server = backend == "server" or bool(base_url)
    rpc_servers = ()
    if rpc is not None and not on_server:
        from harness.backends.llamacpp.rpc import parse_endpoints

        rpc_servers = parse_endpoints(rpc)
    opts = BenchOptions(
        model=model,
        quant=quant,
        kind=kind,
        tasks=tuple(parse_tasks(tasks)),
        limit=limit,
        full=full,
        seed=seed,
        data_dir=resolve_data_dir(data_dir),
        results_dir=Path(results_dir),
        skip_bad_rows=skip_bad_rows,
        allow_modified_data=allow_modified_data,
        verbose=verbose,
        download_only=download_only,
        budget=budget,
        engines=engines,
        max_restarts=max_restarts,
        engine_process=engine_process,
        engine=EngineSettings(
            threads=threads,
            gpu_layers=gpu_layers,
            n_parallel=parallel,
            gen_unit=gen_unit,
            flash_attn=flash_attn,
            max_branches=max_branches,
            gen_streams=gen_streams,
            rpc_servers=rpc_servers,
        ),
        server=ServerOptions(base_url, api_key_env, server_model, concurrency, request_timeout, retry_for)
        if on_server
        else None,
        task_limits=deciding_limits(model, quant, kind, parse_tasks(tasks), limit, full) if decide else (),
    )
    done = run_bench_command(opts, echo_err)
    if done.downloaded is not None:
        click.echo(f"ready: {done.downloaded}")
    else:
        click.echo(final_summary(done.records, opts.results_dir, done.model))


@click.command()
@click.argument("model", required=False)
@quant_option("Only this quant (default: every quant of the model).")
@tasks_option("Comma-separated tasks, as for bench.")
@limit_option("Questions per task (default: each task's default subset).")
@full_option("Every test question.")
@budget_option("Hours the run may take: the recommended quant must finish within it.")
@parallel_option("As for bench.")
@gpu_layers_option("As for bench (0: judge the CPU only).")
@kind_option("As for bench.")
@click.option(
    "--rates",
    type=click.Choice(["here", "reference"]),
    default="here",
    show_default=True,
    help="here: time llama.cpp now on a slice of the model (under a minute; cached slices); reference: the "
    "stored reference machine class.",
)
@click.option(
    "--check-runs",
    is_flag=True,
    help="Instead: each run in --results-dir, estimated beside its real wall time "
    "(contended runs left out; fitted or out of sample).",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="Instead: measure the numpy fallback's calibration on this machine (the "
    "offline model) and write tasks/plan_calibration.yaml.",
)
@results_dir_option()
@decide_option(
    "Size each task to the smallest subset that decides every claim of the model (or the full test), "
    "as `harness bench --decide` runs it."
)
def plan(
    model,
    quant,
    tasks,
    limit,
    full,
    budget,
    parallel,
    gpu_layers,
    kind,
    rates,
    check_runs,
    calibrate,
    results_dir,
    decide,
):
    """What MODEL would cost here, per quant, before anything is downloaded: disk, memory, --gpu-layers, time;
    and what the planned subsets can decide about the claims made for it."""
    from harness.plan.command import plan_command
    from harness.run.deciding import plan_claims

    task_list = parse_tasks(tasks)
    lines: list[str] = []
    if model and not (check_runs or calibrate):
        lines, limit, full = plan_claims(model, quant, kind, task_list, limit, full, decide)
    click.echo(
        plan_command(
            model,
            quant,
            task_list,
            limit,
            full,
            budget,
            parallel,
            gpu_layers,
            kind,
            rates,
            check_runs,
            calibrate,
            Path(results_dir),
            log=echo_err,
        )
    )
    if lines:
        click.echo("\n" + "\n".join(lines))


@click.command()
@click.argument("model", default="smollm2-135m")
@quant_option()
@threads_option()
@gpu_layers_option()
@parallel_option("Sequences in the batched decode test.")
def speed(model: str, quant: str | None, threads: int, gpu_layers: int, parallel: int) -> None:
    """Probe MODEL's prompt rate and single/batched decode rate on this machine (like llama-bench)."""
    from harness.backends.llamacpp.engine_proc import EngineProcess
    from harness.backends.llamacpp.settings import EngineSettings
    from harness.backends.llamacpp.speed import probe
    from harness.models.catalogue import resolve
    from harness.models.locate import local_model_path

    entry = resolve(model, quant)
    path = local_model_path(entry)
    if path is None:
        raise HarnessError(
            f"{entry.name} {entry.quant} is not downloaded", f"run `harness download {model}`."
        )
    # In an engine process, as a bench runs it (no torch or pyarrow beside llama.cpp).
    engine = EngineProcess(path, EngineSettings(threads=threads, gpu_layers=gpu_layers, n_parallel=parallel))
    try:
        res = probe(engine)
    finally:
        engine.close()
    click.echo(
        f"{entry.name} {entry.quant}: prompt {res['prompt_tokens_per_s']:.0f} tok/s, "
        f"decode {res['decode_1_tokens_per_s']:.0f} tok/s (1 sequence), "
        f"{res['decode_batched_tokens_per_s']:.0f} tok/s ({parallel} sequences)"
    )


@click.command("rpc-worker")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: all; trusted networks only).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=50052, show_default=True)
@threads_option()
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="Keep received tensors here (faster reloads)."
)
def rpc_worker(host: str, port: int, threads: int, cache_dir: str | None) -> None:
    """Serve this machine's CPU as a llama.cpp RPC worker for `harness bench --rpc` (needs an RPC build)."""
    from harness.backends.llamacpp.rpc import serve_worker

    click.echo(
        f"RPC worker on {host}:{port} (Ctrl-C to stop); an RPC worker runs any graph a client sends: "
        "expose it on trusted networks only",
        err=True,
    )
    serve_worker(host, port, threads or os.cpu_count() or 1, cache_dir)


COMMANDS = (bench, plan, speed, rpc_worker)
