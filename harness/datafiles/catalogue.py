"""``tasks/models.yaml``, the model catalogue, as a type: each model's Hub repo (or package), quants and files."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import Field, model_validator

from harness.datafiles.base import SHA256, DataFile, DataModel, Entries, NonEmptyText, PositiveNumber

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # a model name: also a file-name part, never a path
Kind = Literal["base", "instruct"]  # a model's kind: which prompt format and which claims apply
KINDS: tuple[str, ...] = typing.get_args(Kind)
_SEGMENT = r"(|[^/.][^/]*|\.|\.[^/.][^/]*|\.\.[^/]+)"  # a path segment other than ".."
FileName = Annotated[str, Field(min_length=1, pattern=f"^{_SEGMENT}(/{_SEGMENT})*$")]


class QuantFiles(DataModel):
    """The file(s) of one quant: a single file, numbered shards, or raw byte parts to join."""

    files: list[FileName] = Field(description="must be a list of file names")
    size: Annotated[int, Field(gt=0)] | None = Field(
        None, description="must be a positive byte count or null"
    )
    sha256: Annotated[str, Field(pattern=SHA256)] | None = Field(
        None, description="must be 64 lowercase hex digits or null"
    )
    split: Literal["single", "shards", "parts"] = Field(
        "single", description="must be single, shards or parts"
    )
    joined: str | None = Field(None, description="must be a file name")
    note: str | None = Field(None, description="must be text")

    @model_validator(mode="after")
    def _one_file_unless_split(self) -> QuantFiles:
        if self.split == "single" and len(self.files) > 1:
            raise ValueError("several files need split: shards or parts")
        return self


class ModelEntry(DataModel):
    """One catalogue model: what it is, where its GGUF files are, and its eval settings."""

    family: NonEmptyText = Field(description="must be a non-empty string")
    kind: Kind = Field(description="must be base or instruct")
    params: PositiveNumber = Field(description="must be a positive number")
    context_length: PositiveNumber = Field(description="must be a positive number")
    quants: Annotated[dict[str, QuantFiles], Entries("quant {key}"), Field(min_length=1)] = Field(
        description="must map each quant name to its files"
    )
    gsm8k_max_gen_toks: PositiveNumber = Field(description="must be a positive number")
    aliases: list[str] | None = Field(None, description="must be a list of names")
    upstream: str | None = Field(None, description="must be a string")
    licence: str | None = Field(None, description="must be a string")
    repo: Annotated[str, Field(pattern=r"^[^/]*/[^/]*$")] | None = Field(
        None, description="must be OWNER/NAME"
    )
    revision: str | None = Field(None, description="must be a string")
    confirmed: bool = Field(False, description="must be true or false")
    package: str | None = Field(None, description="must be a string")
    package_file: str | None = Field(None, description="must be a string")
    default_quant: str | None = Field(None, description="must be a string")
    note: str | None = Field(None, description="must be a string")
    unconfirmed_reason: str | None = Field(None, description="must be a string")

    @model_validator(mode="after")
    def _source_and_default(self) -> ModelEntry:
        if not self.repo and not (self.package and self.package_file):
            raise ValueError("needs a Hub repo, or a package and package_file")
        if self.default_quant and self.default_quant not in self.quants:
            raise ValueError(f"default_quant {self.default_quant} is not one of its quants")
        return self


ModelName = Annotated[str, Field(pattern=SAFE_NAME, description="must be letters, digits, '.', '_' or '-'")]


def _names_schema(schema: dict) -> None:
    """pydantic writes a pattern-keyed mapping as ``patternProperties``, which lets any other name through
    unchecked; a catalogue name that does not match is an error, so: ``propertyNames`` with the pattern."""
    (entry,) = schema.pop("patternProperties").values()
    schema["additionalProperties"] = entry
    schema["propertyNames"]["pattern"] = SAFE_NAME


class Catalogue(DataFile):
    """The model catalogue: every model the harness knows by name (how each was verified: models_sources.md)."""

    FILE = "models.yaml"
    TITLE = "the model catalogue"

    default_quant: str = Field("Q4_K_M", description="must be a quant name")
    models: Annotated[dict[ModelName, ModelEntry], Entries("model {key!r}")] = Field(
        description="must map each model name to its entry", json_schema_extra=_names_schema
    )
