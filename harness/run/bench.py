"""``harness bench``: one path for every backend.

:class:`BenchOptions` is everything the command was asked, as one frozen value built in cli.py;
:func:`run_bench` plans every task (bad input fails before a model loads), lets the backend refuse
what it cannot run, opens each task's resume journal (a second identical run is refused at once), then
runs the tasks in turn and writes one record each (harness/run/runner.py). The in-process engine and an
OpenAI-compatible server differ only behind harness/backends/base.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.backends.base import BenchBackend
from harness.backends.llamacpp.engine import EngineSettings
from harness.models.catalogue import ModelEntry
from harness.paths import RESULTS_DIR
from harness.plan.fit import check_writable
from harness.run.journal import Journal
from harness.run.runner import open_journal, run_task
from harness.tasks.settings import TaskPlan, plan_task


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
    """What ``harness bench`` was asked (cli.py builds it once; nothing downstream reads click)."""

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
        return [plan_task(t, model, limit=self.limit_of(t)[0], full=self.limit_of(t)[1], seed=self.seed,
                          data_dir=self.data_dir, skip_bad_rows=self.skip_bad_rows,
                          allow_modified_data=self.allow_modified_data) for t in self.tasks]


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
