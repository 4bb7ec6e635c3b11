"""The ``tasks/*.yaml`` data files as types: one pydantic model per file, one loader, one JSON Schema each.

``load(name)`` reads ``tasks/<name>`` into its model; a malformed file is one :class:`DataFileError` naming
the file, the entry and the field (harness/datafiles/load.py). ``python -m harness.datafiles.schema``
(``make schema``) writes ``tasks/schema/<file>.schema.json`` from the models.
"""

from __future__ import annotations

from pathlib import Path

from harness.datafiles.base import DataFile
from harness.datafiles.catalogue import Catalogue
from harness.datafiles.claims import AllowanceFile, ClaimsFile, MarginsFile
from harness.datafiles.data import DataPins, SplitSizes
from harness.datafiles.load import DataFileError, load_file
from harness.datafiles.plan import PlanCalibration, PlanModel, PlanTokens, PromptTokens
from harness.datafiles.tasks import TaskSettings

# Every typed data file, by its name under tasks/.
MODELS: dict[str, type[DataFile]] = {
    m.FILE: m
    for m in (
        Catalogue,
        TaskSettings,
        ClaimsFile,
        AllowanceFile,
        MarginsFile,
        DataPins,
        SplitSizes,
        PlanModel,
        PlanTokens,
        PlanCalibration,
        PromptTokens,
    )
}


def load(name: str, path: Path | None = None) -> DataFile:
    """``tasks/<name>`` (or ``path``, read as that file) validated as its model."""
    from harness.paths import TASKS_DIR

    return load_file(MODELS[name], TASKS_DIR / name if path is None else Path(path))


__all__ = ["MODELS", "DataFile", "DataFileError", "load", "load_file"]
