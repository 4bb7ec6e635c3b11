"""``tasks/claims.yaml``, ``tasks/quant_allowance.yaml`` and ``tasks/verdict_margins.yaml`` as types: the
claims to re-measure and the two tolerances a verdict allows them."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from harness.datafiles.base import (
    DataFile,
    DataModel,
    Entries,
    NonEmptyText,
    NonNegativeNumber,
    PositiveNumber,
    Problem,
)

SETTING_KEYS = ("shots", "cot", "chat", "metric", "average")


class ClaimSetting(DataModel):
    """The setting a figure was measured in. Every field of ``REQUIRED`` is stated: a null (e.g. ``cot``) would
    let a run in any setting match."""

    REQUIRED: ClassVar[tuple[str, ...]] = SETTING_KEYS

    shots: Annotated[int, Field(ge=0)] | None = Field(
        None, description="must be a whole number of shots >= 0"
    )
    cot: bool | None = Field(None, description="must be true or false")
    chat: bool | None = Field(None, description="must be true or false")
    metric: str | None = Field(None, description="must be the source's metric name")
    average: Literal["micro", "macro"] | None = Field(None, description="must be micro or macro")

    @model_validator(mode="after")
    def _stated(self) -> ClaimSetting:
        missing = [k for k in sorted(self.REQUIRED) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"leaves {', '.join(missing)} unstated")
        return self


class ReferenceSetting(ClaimSetting):
    """The setting of a reference figure: shots and CoT are what published tables mark per figure (e.g. the
    Llama 3 paper's 5-shot / no-CoT / zero-shot footnotes); chat, metric and averaging where it states them."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("shots", "cot")


class Reference(DataModel):
    """A published figure a relation claim compares with, and the setting it was measured in."""

    name: str = Field(description="must name the reference (a model, a product)")
    value: PositiveNumber | None = Field(None, description="must be the figure in points, or null")
    source: str | None = Field(None, description="must be text")
    confirmed: bool | None = Field(None, description="must be true or false")
    setting: ReferenceSetting | None = Field(
        None, description="must be the setting the figure was measured in"
    )

    @model_validator(mode="after")
    def _setting_with_value(self) -> Reference:
        if self.value is not None and self.setting is None:
            raise ValueError(f"{self.name} gives a value but not the setting it was measured in")
        return self


class Relation(DataModel):
    """A claim that a model scores above (``>``) or level with (``>=``) another model or a reference figure."""

    op: Literal[">", ">="] = Field(description="must be '>' or '>='")
    other_model: str | None = Field(None, description="must be a catalogue model name")
    reference: Reference | None = None
    margin: NonNegativeNumber | None = Field(None, description="must be points >= 0")


class Mapping(DataModel):
    """Who chose the benchmark a claim is tested on: the source itself, or us (the source names no benchmark)."""

    by: Literal["source", "ours"]
    reason: str | None = None

    @model_validator(mode="after")
    def _reason_for_ours(self) -> Mapping:
        if self.by == "ours" and not (self.reason or "").strip():
            raise ValueError("by ours needs its reason")
        return self


class Claim(DataModel):
    """One measurable claim: a value, a relation to a reference figure or another model, or a size."""

    id: NonEmptyText = Field(description="must be a non-empty id")
    model: str = Field(description="must be a catalogue model name")
    task: str | None = Field(None, description="must be a task of tasks/tasks.yaml, or null")
    setting: ClaimSetting | None = Field(
        None, description="must be a mapping of shots, cot, chat, metric, average"
    )
    kind: Literal["value", "relation", "params"] = Field(description="must be one of value, relation, params")
    claimed: NonNegativeNumber | None = Field(
        None, description="must be the claimed figure in points, or null"
    )
    claimed_ci95: PositiveNumber | None = Field(
        None, description="is a positive half-width (points) on a value claim"
    )
    claimed_params: PositiveNumber | None = Field(None, description="must be a parameter count")
    relation: Relation | None = None
    source: str = Field("", description="must be text")
    article: str | None = Field(None, description="must be a file name under shared/seeds/, or null")
    summary: str = Field("", description="must be text")
    confirmed: bool | None = Field(None, description="must be true or false")
    mapping: Mapping | None = Field(None, description="must be {by: source|ours, reason: ...}")

    @model_validator(mode="after")
    def _kind_needs(self) -> Claim:
        if self.kind != "params" and (not self.task or self.setting is None):
            raise ValueError(f"a {self.kind} claim needs a task and a setting")
        if self.kind == "relation" and (
            self.relation is None or not (self.relation.other_model or self.relation.reference)
        ):
            raise ValueError("relation needs op '>' or '>=' and other_model or reference")
        if self.kind == "params" and not self.claimed_params:
            raise ValueError("a params claim needs claimed_params")
        if self.claimed_ci95 is not None and self.kind != "value":
            raise ValueError(
                f"claimed_ci95 is a positive half-width (points) on a value claim (got {self.claimed_ci95!r})"
            )
        return self


class OutOfScope(DataModel):
    """A statement of a seed article that is no benchmark claim (a download count, a cost), kept with its source."""

    article: str = Field(description="must be a file name under shared/seeds/")
    summary: str = Field(description="must be text")


class ClaimsFile(DataFile):
    """The benchmark claims to re-measure, with their sources (tasks/claims_sources.md)."""

    FILE = "claims.yaml"
    TITLE = "the claims file"

    params_tolerance: PositiveNumber = Field(0.05, description="must be a positive fraction")
    claims: Annotated[list[Claim], Entries("claim {key}", key_field="id")] = Field(
        [], description="must be a list of claims"
    )
    out_of_scope: list[OutOfScope] = Field([], description="must be a list of {article, summary}")

    @model_validator(mode="after")
    def _unique_ids(self) -> ClaimsFile:
        seen = set()
        for i, c in enumerate(self.claims):
            if c.id in seen:
                raise Problem(("claims", i), "the id appears twice")
            seen.add(c.id)
        return self


class Allowance(DataModel):
    """How many points a quant may trail a full-precision figure, per benchmark, for a range of model sizes."""

    name: str = Field(description="must name the rule")
    quants: list[str] = Field(description="must list the quants the rule is for")
    min_params_b: NonNegativeNumber = Field(0, description="must be billions of parameters")
    max_params_b: NonNegativeNumber | None = Field(None, description="must be billions of parameters")
    points: NonNegativeNumber | dict[str, NonNegativeNumber] = Field(
        description="must be points, or a mapping of task (or default) to points"
    )
    source: str = Field("", description="must say where the figure comes from")


class AllowanceFile(DataFile):
    """The quantization allowances (first matching rule wins; no rule: 0 points)."""

    FILE = "quant_allowance.yaml"
    TITLE = "the quantization allowances file"

    allowances: Annotated[list[Allowance], Entries("allowance {key}", key_field="name")] = Field(
        [], description="must be a list of rules"
    )


class Margin(DataModel):
    """A reproduction margin (points) and why it is what it is."""

    points: PositiveNumber = Field(description="must be a number > 0")
    reason: NonEmptyText = Field(description="must say why (a source, or 'judgement: ...')")


class MarginsFile(DataFile):
    """The reproduction margins and the power at which runs are sized (tasks/verdict_margins.yaml)."""

    FILE = "verdict_margins.yaml"
    TITLE = "the verdict margins file"
    HINT = "restore tasks/verdict_margins.yaml from git."

    power: Annotated[float, Field(ge=0.5, lt=1)] = Field(description="must be a number in [0.5, 1)")
    default: Margin
    tasks: Annotated[dict[str, Margin], Entries("margin {key!r}")] = Field(
        {}, description="must map a task to its margin"
    )
