"""The data files of ``harness plan`` and of the memory preflight as types: the plan's assumptions
(``plan_model.yaml``), the tasks' prompt tokens (``plan_tokens.yaml``), the rate calibration
(``plan_calibration.yaml``) and the longest prompt per task (``prompt_tokens.yaml``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from harness.datafiles.base import DataFile, DataModel, Entries, NonEmptyText, PositiveInt, PositiveNumber


class Shape(DataModel):
    """A model's shape by its parameter count: what the KV cache needs, and what the probe slice needs."""

    n_layer: PositiveInt = Field(description="must be a positive whole number")
    n_kv_heads: PositiveInt = Field(description="must be a positive whole number")
    head_dim: PositiveInt = Field(description="must be a positive whole number")
    n_embd: PositiveInt | None = Field(None, description="must be a positive whole number")
    n_ff: PositiveInt | None = Field(None, description="must be a positive whole number")
    n_head: PositiveInt | None = Field(None, description="must be a positive whole number")
    n_vocab: PositiveInt | None = Field(None, description="must be a positive whole number")


class Typical(DataModel):
    """Generated tokens per question, and where the figure comes from."""

    tokens: PositiveNumber = Field(description="must be a positive number of tokens")
    source: str = Field(description="must say where the figure comes from")


class Overhead(DataModel):
    """Wall time over the token floor: the point and the high end (1 <= point <= high)."""

    point: PositiveNumber = Field(description="must be a factor >= 1")
    high: PositiveNumber = Field(description="must be a factor >= point")
    source: str = Field(description="must say where the figure comes from")

    @model_validator(mode="after")
    def _ordered(self) -> Overhead:
        if not 1 <= self.point <= self.high:
            raise ValueError(f"is implausible: needs 1 <= point <= high (got {self.point}, {self.high})")
        return self


class Overheads(DataModel):
    """The overhead of each kind of task output."""

    generate: Overhead
    loglik: Overhead


class Interval(DataModel):
    """A factor interval around 1 (low <= 1 <= high)."""

    low: PositiveNumber = Field(description="must be a factor in (0, 1]")
    high: PositiveNumber = Field(description="must be a factor >= 1")
    source: str | None = Field(None, description="must say where the figures come from")

    @model_validator(mode="after")
    def _around_one(self) -> Interval:
        if not self.low <= 1 <= self.high:
            raise ValueError(f"is implausible: needs low <= 1 <= high (got {self.low}, {self.high})")
        return self


class Checked(DataModel):
    """The model sizes the estimate is checked on against real runs."""

    low_params: PositiveNumber = Field(description="must be a parameter count")
    high_params: PositiveNumber = Field(description="must be a parameter count >= low_params")
    source: str = Field(description="must say where the check comes from")

    @model_validator(mode="after")
    def _ordered(self) -> Checked:
        if self.low_params > self.high_params:
            raise ValueError("is implausible: needs low_params <= high_params")
        return self


BitsPerWeight = Annotated[float, Field(ge=1, le=33)] | Annotated[int, Field(ge=1, le=33)]
SliceTypes = Annotated[
    list[str], Field(min_length=2, max_length=2, description="must be [layers type, output type]")
]


class PlanModel(DataFile):
    """What ``harness plan`` assumes where it has no measurement of its own; every figure says its source."""

    FILE = "plan_model.yaml"
    TITLE = "the plan assumptions"

    bits_per_weight: dict[str, BitsPerWeight] = Field(
        description="must map a quant to its bits per weight (1 to 33)"
    )
    shapes: Annotated[dict[int, Shape], Entries("shape {key}")] = Field(
        description="must map a parameter count to its shape"
    )
    slice_types: dict[str, SliceTypes] = Field(description="must map a quant to [layers type, output type]")
    extrapolation: Interval
    checked: Checked
    fitted_runs: list[str] | None = Field(None, description="must list run names")
    typical_generated: Annotated[dict[str, Typical], Entries("task {key!r}")] = Field(
        description="must map a task to its typical generated tokens"
    )
    overhead: Overheads
    fallback_overhead: Overheads
    rate_spread: Annotated[float, Field(ge=1)] | Annotated[int, Field(ge=1)] = Field(
        description="must be a factor >= 1"
    )
    prompt_token_factor: Interval


class TokenRow(DataModel):
    """Prompt tokens one task costs the engine in one prompt format, at each measured subset size."""

    docs: PositiveInt = Field(description="must be the test split's size")
    output: Literal["generate", "loglik"] = Field(description="must be generate or loglik")
    gen_budget: Annotated[int, Field(ge=0)] | Literal["model"] = Field(
        description="must be generated tokens allowed per question, or 'model'"
    )
    prompt_tokens: dict[PositiveInt, PositiveInt] = Field(
        description="must map a subset size to its prompt tokens (positive)"
    )

    @model_validator(mode="after")
    def _up_to_the_split(self) -> TokenRow:
        if not self.prompt_tokens or max(self.prompt_tokens) != self.docs:
            raise ValueError("prompt_tokens must reach the whole split (its largest size is docs)")
        return self


class PlanTokens(DataFile):
    """Prompt tokens each task costs the engine, per prompt format and subset size (``task/chat``, ``task/plain``)."""

    FILE = "plan_tokens.yaml"
    TITLE = "the task token table"
    HINT = "rerun scripts/measure_plan_tokens.py."

    tasks: Annotated[dict[str, TokenRow], Entries("{key}")] = Field(
        description="must map task/format to its token counts"
    )


class CalibrationModel(DataModel):
    """The offline model the calibration ran."""

    name: NonEmptyText = Field(description="must name the model and quant")
    params: PositiveInt = Field(description="must be a positive parameter count")
    weights_bytes: PositiveInt = Field(description="must be a positive byte count")
    n_layer: PositiveInt = Field(description="must be a positive layer count")


class CalibrationProbe(DataModel):
    """The matmul and memory probes on one thread."""

    matmul_flops: PositiveNumber = Field(description="must be a positive rate")
    bandwidth: PositiveNumber = Field(description="must be a positive rate")
    bandwidth_bytes: PositiveInt = Field(description="must be a positive byte count")


class CalibrationSpeed(DataModel):
    """``harness speed`` on the offline model, one thread."""

    threads: PositiveInt = Field(description="must be a positive thread count")
    prompt_tokens_per_s: PositiveNumber = Field(description="must be a positive rate")
    decode_1_tokens_per_s: PositiveNumber = Field(description="must be a positive rate")
    decode_batched_tokens_per_s: PositiveNumber = Field(description="must be a positive rate")
    batched_sequences: Annotated[int, Field(ge=2)] = Field(description="must be 2 or more")

    @model_validator(mode="after")
    def _batched_slower(self) -> CalibrationSpeed:
        if self.batched_sequences / self.decode_batched_tokens_per_s <= 1 / self.decode_1_tokens_per_s:
            raise ValueError(
                "shows a batched decode step measured faster than a one-sequence step (the machine "
                "was busy during the calibration)"
            )
        return self


class ReferenceMachine(DataModel):
    """The machine class of the published report's estimates."""

    name: NonEmptyText = Field(description="must name the machine class")
    matmul_flops: PositiveNumber = Field(description="must be a positive rate")
    bandwidth: PositiveNumber = Field(description="must be a positive rate")
    bandwidth_bytes: PositiveInt = Field(description="must be a positive byte count")
    ram_bytes: PositiveInt = Field(description="must be a positive byte count")


class PlanCalibration(DataFile):
    """The rate calibration written by ``harness plan --calibrate`` (do not edit)."""

    FILE = "plan_calibration.yaml"
    TITLE = "the plan calibration"
    HINT = "rerun `harness plan --calibrate`."

    date: NonEmptyText = Field(description="must be the calibration's date (YYYY-MM-DD, quoted)")
    command: str = Field(description="must be the command that wrote the file")
    clock: str = Field(description="must say which clock timed it")
    machine: str = Field(description="must describe the machine")
    model: CalibrationModel
    probe: CalibrationProbe
    speed: CalibrationSpeed
    reference: ReferenceMachine


class PromptMargin(DataModel):
    """bound = ceil(longest * factor) + plus: never smaller than the measured length."""

    factor: Annotated[float, Field(ge=1)] | Annotated[int, Field(ge=1)] = Field(
        description="must be a factor >= 1"
    )
    plus: Annotated[int, Field(ge=0)] = Field(description="must be whole tokens >= 0")


class Longest(DataModel):
    """The longest prompt of a task in one prompt format, over its whole test split."""

    longest: PositiveInt = Field(description="must be a positive token count")
    docs: PositiveInt = Field(description="must be the test split's size")


class PromptTokens(DataFile):
    """Longest prompt of each task in tokens: the memory preflight's bound before a model is downloaded."""

    FILE = "prompt_tokens.yaml"
    TITLE = "the prompt-length table"

    margin: PromptMargin
    unknown_task: PositiveInt = Field(description="must be a positive token count")
    tasks: Annotated[dict[str, Longest], Entries("{key}")] = Field(
        description="must map task/format to its longest prompt"
    )
