"""Building a run record: the one way a record is made (in-process runs, server runs, the tests' hand-made
records), validated against its type (harness.records.schema) before anything is written, so a record that
would not read back is refused with one message naming the field instead of landing in results/.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError
from harness.records.parse import validation_message
from harness.records.schema import (
    SCHEMA_VERSION,
    Backend,
    Efficiency,
    Hardware,
    ModelFacts,
    Packages,
    Resume,
    RunRecord,
    TaskFacts,
    Timing,
)


def _plain(obj: object) -> object:
    """``obj`` as JSON data (parts may be models, tuples...): exactly what ``json`` would write."""

    def default(o: object) -> object:
        if isinstance(o, BaseModel):
            return o.model_dump(mode="python", by_alias=True, exclude_unset=True)
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def build_record(
    *,
    created: str,
    stem: str,
    model: ModelFacts | dict,
    backend: Backend | dict,
    task: TaskFacts | dict,
    metrics: dict,
    per_subtask: dict,
    samples: list,
    timing: Timing | dict,
    hardware: Hardware | dict,
    packages: Packages | dict | None,
    harness_version: str | None,
    harness_commit: str | None,
    command: str | None,
    resume: Resume | dict | None = None,
    efficiency: Efficiency | dict | None = None,
    status: str = "complete",
) -> RunRecord:
    """The one way a run record is made (in-process runs, server runs and the tests' hand-made records):
    validated here, so a record that would not read back is never written."""
    m = model if isinstance(model, dict) else model.model_dump(by_alias=True, exclude_unset=True)
    raw = {
        "schema_version": SCHEMA_VERSION,
        "run_id": hashlib.sha256(f"{stem}{m.get('sha256')}".encode()).hexdigest()[:12],
        "created": created,
        "harness_version": harness_version,
        "harness_commit": harness_commit,
        "command": command,
        "status": status,
        "model": model,
        "backend": backend,
        "packages": packages,
        "hardware": hardware,
        "task": task,
        "metrics": metrics,
        "per_subtask": per_subtask,
        "timing": timing,
        "resume": resume,
        "lm_eval_results_file": f"{stem}.lm_eval.json",
        "samples": samples,
        "efficiency": efficiency,
    }
    try:
        return RunRecord.model_validate(_plain(raw))
    except ValidationError as exc:  # a harness bug: said plainly; the caller has not removed the journal yet
        raise HarnessError(
            f"the run record would not be valid: {validation_message(exc)}",
            "report this; the finished requests are kept in the journal, so a rerun resumes.",
        ) from exc
