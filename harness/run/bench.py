"""``harness bench``: one path for every backend.

:class:`BenchOptions` is everything the command was asked, as one frozen value built in
harness/cli/cmd_bench.py; :func:`bench` does what the command does with it: the model resolved and its kind
settled, the plan's one line, the fit judged before a byte of weights is fetched, the weights fetched, then the
backend (in process, or an OpenAI-compatible server) handed to :func:`run_bench`. :func:`run_bench` plans
every task (bad input fails before a model loads), lets the backend refuse what it cannot run, opens each
task's resume journal (a second identical run is refused at once), then runs the tasks in turn and writes one
record each (harness/run/runner.py). The in-process engine and an OpenAI-compatible server differ only behind
harness/backends/base.py. :func:`download_judged` is ``harness download``: the same fit judgement against the
default bench, then the fetch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends.base import BenchBackend
from harness.backends.llamacpp.settings import EngineSettings
from harness.errors import HarnessError
from harness.models.catalogue import ModelEntry
from harness.paths import RESULTS_DIR
from harness.plan.fit import check_writable
from harness.records.journal import Journal
from harness.run.runner import open_journal, run_task
from harness.tasks.settings import TaskPlan, plan_task

if TYPE_CHECKING:
    from harness.backends.server.run import ServerBackend

Log = Callable[[str], None]  # where the verdicts and notes before a run go (the CLI: one line on stderr)


@dataclass(frozen=True)
class ServerOptions:
    """``--backend server``: where the server is and how to talk to it."""

    base_url: str | None  # None: refused with a message (--backend server needs --base-url)
    api_key_env: str | None = None  # the name of the variable holding the key, never the key
    model: str | None = None  # the served model id (default: the first the server lists)
    concurrency: int = 4
    request_timeout: float = 600.0
    retry_for: float = 120.0


@dataclass(frozen=True)
class BenchOptions:
    """What ``harness bench`` was asked (harness/cli/cmd_bench.py builds it once; nothing downstream reads click)."""

    model: str = "smollm2-135m"
    quant: str | None = None
    kind: str | None = None  # base / instruct given on the command line (None: the catalogue's or the GGUF's)
    tasks: tuple[str, ...] = ("gsm8k", "mmlu")
    limit: int | None = None
    full: bool = False
    seed: int = 0
    data_dir: Path | None = None  # resolved: --data-dir, else $HARNESS_DATA_DIR, else the Hub
    results_dir: Path = RESULTS_DIR
    skip_bad_rows: bool = False
    allow_modified_data: bool = False  # data unlike tasks/data_pins.yaml runs, recorded, never compared
    verbose: bool = False
    download_only: bool = False
    budget: float | None = None  # hours the run may take (--budget): the plan line says what fits
    engine: EngineSettings = field(default_factory=EngineSettings)  # the llama.cpp engine's settings
    engines: int = 1  # --engines: engine processes, each with its own model copy (one per GPU)
    engine_process: bool = True  # --no-engine-process: llama.cpp in the harness's own process
    max_restarts: int = 3  # --max-restarts: engine deaths in a row (no request finished) before stopping
    server: ServerOptions | None = None  # set: run through a server instead of in process
    # --decide: per task, the subset that decides every claim of the model (None: the full test); overrides
    # limit/full for the tasks it names (harness/analysis/decide.py).
    task_limits: tuple[tuple[str, int | None], ...] = ()

    def limit_of(self, task: str) -> tuple[int | None, bool]:
        """(limit, full) for one task."""
        per = dict(self.task_limits)
        if task in per:
            return per[task], per[task] is None
        return self.limit, self.full

    def plans(self, model: ModelEntry) -> list[TaskPlan]:
        """Every task planned for ``model`` (data read and checked, subsets drawn)."""
        return [
            plan_task(
                t,
                model,
                limit=self.limit_of(t)[0],
                full=self.limit_of(t)[1],
                seed=self.seed,
                data_dir=self.data_dir,
                skip_bad_rows=self.skip_bad_rows,
                allow_modified_data=self.allow_modified_data,
            )
            for t in self.tasks
        ]


def run_bench(options: BenchOptions, backend: BenchBackend) -> list[Path]:
    """Plan, check, journal, run and record every task of ``options`` on ``backend``; the records' paths."""
    results_dir = Path(options.results_dir)
    model = backend.model_entry()
    plans = options.plans(model)
    check_writable(results_dir)
    backend.check(plans)
    # Journals first: a second identical run is refused at once, before it loads anything.
    journals: list[Journal] = []
    try:
        for p in plans:
            journals.append(open_journal(results_dir, model, p.name, backend.identity(p)))
        try:
            backend.start()
            return [run_task(p, model, backend, results_dir, j) for p, j in zip(plans, journals)]
        finally:
            backend.close()
    finally:
        for j in journals:
            j.close()


@dataclass(frozen=True)
class BenchOutcome:
    """What a bench left: the records written, or (``--download-only``) the weights' path."""

    model: str  # the catalogue name (or the file's) the records are about
    records: list[Path] = field(default_factory=list)
    downloaded: Path | None = None  # set for --download-only: nothing ran


def bench(opts: BenchOptions, log: Log) -> BenchOutcome:
    """``harness bench`` from its options: the server route, or the model fetched (judged first) and run here."""
    from harness.backends.llamacpp.backend import LlamaCppBackend
    from harness.models.catalogue import UNDECIDED, resolve
    from harness.models.download import download_model
    from harness.models.locate import local_model_path
    from harness.plan.fit import preflight_file, refuse_before_download
    from harness.run.console import above_bars, configure

    entry = resolve(opts.model, opts.quant)
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's own per-task bars; ours are forced on
    configure(opts.verbose, opts.results_dir / ".journal" / "console.log")  # what lm-eval prints goes there
    if opts.server is not None:
        entry = _decided_kind(entry, opts.kind, log)
        return BenchOutcome(entry.name, run_bench(opts, _server_backend(entry, opts)))
    if opts.engine.rpc_servers:
        from harness.backends.llamacpp.rpc import require_rpc

        require_rpc()
    if opts.data_dir is None and entry.kind != UNDECIDED and not opts.download_only:
        from harness import hub

        if (
            hub.offline() or hub.unreachable()
        ):  # no Hub: data not in its cache fails now, before the plan's probe
            opts.plans(entry)
    if not opts.download_only:  # the plan's one line (time, memory) before anything is fetched or loaded
        from harness.plan.command import bench_plan
        from harness.run.deciding import undecided_line

        limits = [opts.limit_of(t) for t in opts.tasks]  # the largest subset: the plan line is an upper bound
        bench_plan(
            entry,
            list(opts.tasks),
            max((n for n, f in limits if n is not None), default=None),
            any(f for _, f in limits),
            opts.engine,
            opts.budget,
            opts.kind,
            log,
        )
        note = undecided_line(entry, opts.kind, opts.tasks, opts.limit_of)
        if note:
            log(note)
    judged = False
    if (
        opts.kind is None
        and entry.kind == UNDECIDED
        and not opts.download_only
        and local_model_path(entry) is None
    ):
        # An hf: GGUF not on this machine: whether it can run is judged first, from the model's shape alone (a
        # 1 MiB header read), sized as an instruct model (its chat prompts are the longer ones). Reading the
        # tokenizer metadata that tells base from instruct goes further into the file, so it comes after.
        assumed = replace(entry, kind="instruct")
        refuse_before_download(assumed, opts.plans(assumed), opts.engine)
        judged = True  # an upper bound: the base-model prompts are shorter, so no second verdict is needed
    entry = _decided_kind(entry, opts.kind, log)
    path = local_model_path(entry)
    if path is None or opts.download_only:
        # Judged before a byte of weights is fetched: a model that cannot run here is refused now, not hours later.
        if not judged:
            refuse_before_download(
                entry,
                opts.plans(entry),
                opts.engine,
                download_only=opts.download_only,
                note=" (--download-only)" if opts.download_only else "",
            )
        path = download_model(entry)
        if opts.download_only:
            return BenchOutcome(entry.name, downloaded=path)
    elif entry.repo:
        path = download_model(
            entry
        )  # cached: re-checks the bytes' sha256 (once per file version); refetches if corrupted
    paths = run_bench(
        opts,
        LlamaCppBackend(
            entry,
            Path(path),
            opts.engine,
            opts.verbose,
            engines=opts.engines,
            engine_process=opts.engine_process,
            max_restarts=opts.max_restarts,
            fit=preflight_file,
            notify=above_bars,
        ),
    )
    return BenchOutcome(entry.name, paths)


def download_judged(entry: ModelEntry, log: Log) -> Path:
    """``harness download``: say whether this machine could run the model with the default bench (gsm8k and
    mmlu, the default engine settings), then fetch and verify it either way (the files may be meant for
    another machine); the path llama.cpp loads."""
    from harness.models.download import download_model
    from harness.models.kind import decide_kind
    from harness.paths import data_dir
    from harness.plan.fit import refuse_before_download

    try:
        entry = decide_kind(entry)  # an hf: GGUF's base/instruct (its prompt format) from its header
        plans = [plan_task(t, entry, data_dir=data_dir(None)) for t in ("gsm8k", "mmlu")]
    except HarnessError as exc:
        log(f"cannot judge whether {entry.name} fits here (planning the default tasks failed: {exc.message})")
    else:
        refuse_before_download(
            entry, plans, EngineSettings(), download_only=True, note=" (default bench settings)"
        )
    return download_model(entry)


def _decided_kind(entry: ModelEntry, kind: str | None, log: Log) -> ModelEntry:
    """Settle base/instruct (--kind, catalogue, else the GGUF) and say how, before anything runs."""
    from harness.models.kind import decide_kind

    entry = decide_kind(entry, kind)
    log(f"{entry.name}: {entry.kind} model ({entry.kind_source})")
    return entry


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
        raise HarnessError(
            f"the value of {srv.api_key_env} holds a character an HTTP header cannot carry "
            "(non-ASCII or a control character)",
            f"check {srv.api_key_env}: API keys are ASCII.",
        )
    client = ServerClient(srv.base_url, key, srv.model, srv.request_timeout, srv.retry_for)
    try:
        local = local_model_path(entry)  # its chat template (when the server reports none) and token counts
    except HarnessError:
        local = None
    return ServerBackend(entry, opts.quant is not None, client, srv.concurrency, local)
