"""The building blocks of every data file's model: strict types, named entries, cross-field problems.

A field's ``description`` says what the field must be, written to follow its name ("must be a positive
number"): the JSON Schema shows it, and a value that fails is reported with it ("params must be a positive
number (got '8B')", harness/datafiles/load.py), so the rule and its message are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class DataModel(BaseModel):
    """A part of a data file: exact YAML types (``"8"`` is not 8), unknown keys refused, read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataFile(DataModel):
    """A whole ``tasks/*.yaml`` file: its name, what it is called in a message, and what to do when broken."""

    FILE: ClassVar[str]  # the file's name under tasks/
    TITLE: ClassVar[str]  # "cannot read {TITLE} {path}"
    HINT: ClassVar[str] = "fix that entry in {path}."  # the hint of a malformed entry ({path}: the file)

    schema_version: Literal[1] = Field(description="must be 1 (this harness reads version 1)")


@dataclass(frozen=True)
class Entries:
    """Marks a mapping or list whose items are entries: messages name one as ``label`` (``{key}``: its key in
    a mapping, its ``key_field`` value in a list, else ``#{index}``), e.g. ``model 'llama3-8b'``."""

    label: str
    key_field: str | None = None

    def name(self, key: object, item: object) -> str:
        """The label of one entry, from its key (or list index) and its raw value."""
        if self.key_field is not None:
            got = item.get(self.key_field) if isinstance(item, dict) else None
            key = got if isinstance(got, str) and got else f"#{key}"
        return self.label.format(key=key)


class Problem(ValueError):
    """A cross-field or cross-entry problem found by a model validator, at ``loc`` below the model that raises
    it (e.g. ``("tasks", "gsm8k")``), so the message names the entry even though the check ran on the file."""

    def __init__(self, loc: tuple, message: str):
        self.loc = tuple(loc)
        self.message = message
        super().__init__(message)


# Numbers as YAML writes them: an integer stays an integer (int | float, as in harness/records/schema.py).
PositiveNumber = Annotated[int, Field(gt=0)] | Annotated[float, Field(gt=0)]
NonNegativeNumber = Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonEmptyText = Annotated[str, Field(min_length=1, pattern=r"\S")]
SHA256 = r"^[0-9a-f]{64}$"
