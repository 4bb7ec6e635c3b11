"""What a bench needs of a backend: the one interface the in-process llama.cpp engine
(harness/backends/llamacpp/backend.py) and an OpenAI-compatible server (harness/backends/server/run.py)
implement, so that one ``run_bench`` (harness/run/bench.py) plans, journals, runs and records both.

The order of calls is fixed by ``run_bench``: :meth:`~BenchBackend.model_entry` (what the records will
name), :meth:`~BenchBackend.check` with every task planned (refuse what cannot run before anything is
loaded or asked), :meth:`~BenchBackend.identity` per task (its resume journal), :meth:`~BenchBackend.start`,
then per task :meth:`~BenchBackend.make_lm`, :meth:`~BenchBackend.stats` and, after the task ran,
:meth:`~BenchBackend.backend_facts`; :meth:`~BenchBackend.close` on every way out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.models.catalogue import ModelEntry
    from harness.records.journal import Journal
    from harness.tasks.settings import TaskPlan


def data_row(req: object, samples: dict[str, list[int]] | None = None) -> int | None:
    """The data row of an lm-eval request: its place in the test split, never its place in this run's subset.

    lm-eval numbers the documents of a ``samples`` subset 0, 1, 2... in data order (``doc_id`` is the
    position in the subset: lm_eval/api/task.py, ``enumerate(x for i, x in enumerate(self.eval_docs) if i in
    samples)``), so the data row is the ``doc_id``-th smallest of the task's sample ids; without a subset
    (``samples`` None, or the task absent from it) ``doc_id`` is the row itself.
    """
    pos = getattr(req, "doc_id", None)
    if not isinstance(pos, int):
        return None
    ids = (samples or {}).get(getattr(req, "task_name", None))
    return sorted(ids)[pos] if ids and 0 <= pos < len(ids) else pos


def request_name(req: object, what: str = "request", samples: dict[str, list[int]] | None = None) -> str:
    """A request as messages name it: its task and data row (:func:`data_row`)."""
    task = getattr(req, "task_name", None) or "a task"
    row = data_row(req, samples)
    return f"the {what} for {task} data row {row}" if row is not None else f"a {what} of {task}"


class TooLong(HarnessError):
    """Questions that cannot fit the model's context, found before any decoding. ``rows``: one entry per
    question (task, data row, tokens needed, context), for ``--skip-bad-rows`` to leave out and record."""

    def __init__(self, message: str, hint: str, rows: list[dict]):
        super().__init__(message, hint)
        self.rows = rows


class Stats(Protocol):
    """A backend's running counters (token counts are what the progress bars and the record show)."""

    prompt_tokens: int
    generated_tokens: int

    def as_record(self) -> dict: ...


class BenchBackend(Protocol):
    """One way of running a model under lm-eval (see the module docstring for the order of calls)."""

    load_seconds: float  # loading the model (0 for a server: it is already loaded)
    speed: dict | None  # this machine's measured rates (in-process only): each record's efficiency floor

    def model_entry(self) -> ModelEntry:
        """The catalogue entry the records name (a server may run another quant than the one asked)."""
        ...

    def check(self, plans: list[TaskPlan]) -> None:
        """Refuse (HarnessError) what this backend cannot run with these plans, before anything loads."""
        ...

    def identity(self, plan: TaskPlan) -> dict:
        """The measurement identity of ``plan`` on this backend (harness.records.identity.measurement)."""
        ...

    def start(self) -> None:
        """Load what the runs need (the in-process engine); a server is already running."""
        ...

    def close(self) -> None:
        """Free what :meth:`start` loaded; safe to call when it never ran."""
        ...

    def make_lm(self, plan: TaskPlan, progress: Callable, journal: Journal) -> object:
        """The lm-eval model that answers ``plan``'s requests (resuming from ``journal``)."""
        ...

    def stats(self, plan: TaskPlan) -> Stats:
        """The counters ``plan``'s requests add to."""
        ...

    def model_facts(self) -> dict:
        """What the backend found about the weights (file, sha256, parameters...): the record's ``model``."""
        ...

    def backend_facts(self, plan: TaskPlan) -> dict:
        """The record's ``backend`` part, asked after ``plan`` ran (context size, retries are known then)."""
        ...
