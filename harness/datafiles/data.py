"""``tasks/data_pins.yaml`` and ``tasks/split_sizes.yaml`` as types: what the benchmark data held when the
claims were measured on it (content pins), and how many rows each test split has (for sizing runs)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness.datafiles.base import SHA256, DataFile, DataModel, Entries, PositiveInt


class Pin(DataModel):
    """What one data file held: its row count and the sha256 of its content (harness/tasks/data.py)."""

    rows: PositiveInt = Field(description="must be a positive row count")
    sha256: Annotated[str, Field(pattern=SHA256)] = Field(description="must be 64 lowercase hex digits")


class DataPins(DataFile):
    """The data the claims were made on, per data file ``repo/config/split``."""

    FILE = "data_pins.yaml"
    TITLE = "the data pins"
    HINT = "restore tasks/data_pins.yaml, or regenerate it: python -m harness.tasks.data DATA_DIR."

    files: Annotated[dict[str, Pin], Entries("pin {key!r}")] = Field(
        description="must map each data file (repo/config/split) to {rows: N, sha256: 64 hex digits}"
    )


RowCount = Annotated[int, Field(gt=0, description="must be a positive row count")]


class SplitSizes(DataFile):
    """Rows in each test split the claims were measured on, per data set and config."""

    FILE = "split_sizes.yaml"
    TITLE = "the split sizes"
    HINT = "restore tasks/split_sizes.yaml from git."

    splits: Annotated[dict[str, dict[str, RowCount]], Entries("data set {key!r}")] = Field(
        description="must map each data set (repo) to {config: rows}"
    )
