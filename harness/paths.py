"""Where things live: the project's data files, results folder, and the benchmark data source."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = Path(os.environ.get("HARNESS_TASKS_DIR", ROOT / "tasks"))
RESULTS_DIR = Path(os.environ.get("HARNESS_RESULTS_DIR", ROOT / "results"))
# A local folder laid out like the Hub (`<owner>/<dataset>/<config>/<split>-00000-of-00001.parquet`);
# unset means: download from the Hugging Face Hub.
DATA_DIR_ENV = "HARNESS_DATA_DIR"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """The local data mirror to use, or None for the Hub."""
    value = explicit or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser().resolve() if value else None
