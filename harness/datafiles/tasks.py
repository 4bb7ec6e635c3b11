"""``tasks/tasks.yaml``, the task settings, as a type: which lm-eval task, data, shots, chat and budget."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.datafiles.base import DataFile, DataModel, Entries, Problem
from harness.datafiles.catalogue import KINDS, Kind

# Each task states these for every model kind it runs on (directly, or in by_kind).
REQUIRED = ("title", "lm_eval_task", "dataset", "num_fewshot", "chat", "metrics")


class Dataset(DataModel):
    """Where a task's data comes from: a Hub data set in the Hub's parquet layout."""

    repo: str = Field(description="must be a Hub data set, OWNER/NAME")
    config: str = Field(description="must be the data set's config ({subject}: one per subject)")
    splits: dict[str, str] = Field(description="must map test (and a few-shot split) to split names")
    columns: list[str] = Field(description="must list the columns the task reads")

    @field_validator("splits")
    @classmethod
    def _has_test(cls, splits: dict[str, str]) -> dict[str, str]:
        if "test" not in splits:
            raise ValueError("needs a test split")
        return splits


Metric = Annotated[list[str], Field(min_length=2, max_length=2)]


class TaskFields(DataModel):
    """The settings of a task that ``by_kind`` may override for one model kind."""

    title: str | None = Field(None, description="must be a title")
    lm_eval_task: str | None = Field(
        None, description="must be an lm-eval task name ({subject}: one per subject)"
    )
    dataset: Dataset | None = Field(None, description="must be a mapping of repo, config, splits and columns")
    num_fewshot: Annotated[int, Field(ge=0)] | None = Field(None, description="must be a whole number >= 0")
    chat: Literal["always", "never", "instruct"] | None = Field(
        None, description="must be always, never or instruct"
    )
    max_gen_toks: Annotated[int, Field(gt=0)] | Literal["model"] | None = Field(
        None, description="must be a positive whole number or 'model'"
    )
    metrics: Annotated[list[Metric], Field(min_length=1)] | None = Field(
        None, description="must be a non-empty list of [metric, filter] pairs"
    )
    default_limit: Annotated[int, Field(ge=1)] | None = Field(
        None, description="must be a positive whole number or null"
    )
    stratify: str | None = Field(None, description="must be the field to stratify the subset by, or null")
    subjects: str | None = Field(None, description="must name a list under 'subjects'")
    requires_kind: Kind | None = Field(None, description="must be base or instruct")
    cot: bool | None = Field(None, description="must be true or false")
    claim_metrics: dict[str, str] | None = Field(
        None, description="must map a published metric name to a record metric ('metric,filter')"
    )


class ByKind(DataModel):
    """Overrides of a task's settings for base and for instruct models."""

    base: TaskFields | None = None
    instruct: TaskFields | None = None


class TaskSetting(TaskFields):
    """One harness task: the lm-eval task it wraps and the settings the claims name."""

    by_kind: ByKind | None = Field(None, description="must map base and/or instruct to overrides")

    def for_kind(self, kind: str) -> dict[str, Any]:
        """The settings stated for ``kind`` (``by_kind`` applied), as given in the file."""
        own = {k: getattr(self, k) for k in self.model_fields_set if k != "by_kind"}
        over = getattr(self.by_kind, kind, None) if self.by_kind else None
        return own | ({k: getattr(over, k) for k in over.model_fields_set} if over else {})

    @model_validator(mode="after")
    def _complete_for_each_kind(self) -> TaskSetting:
        for kind in KINDS:
            s = self.for_kind(kind)
            missing = [k for k in REQUIRED if s.get(k) is None]
            if missing:
                raise ValueError(
                    f"missing field(s) {', '.join(missing)}" + (f" for {kind} models" if self.by_kind else "")
                )
            if "{subject}" in s["lm_eval_task"] and not s.get("subjects"):
                raise ValueError("lm_eval_task has {subject} but the task names no subjects")
        return self


class TaskSettings(DataFile):
    """The benchmark settings the harness runs (tasks/tasks.yaml), and the subject lists they stratify by."""

    FILE = "tasks.yaml"
    TITLE = "task settings"
    HINT = "fix that task in {path}."

    tasks: Annotated[dict[str, TaskSetting], Entries("task {key!r}")] = Field(
        description="must map each task name to its settings"
    )
    subjects: dict[str, list[str]] = Field(description="must map a subject list's name to its subjects")

    @model_validator(mode="after")
    def _subjects_are_listed(self) -> TaskSettings:
        for name, task in self.tasks.items():
            for kind in KINDS:
                subjects = task.for_kind(kind).get("subjects")
                if subjects is not None and subjects not in self.subjects:
                    raise Problem(("tasks", name), f"subjects {subjects!r} is not a list under 'subjects'")
        return self
