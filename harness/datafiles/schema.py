"""The JSON Schema of each ``tasks/*.yaml`` data file, generated from its model (``make schema``).

An outside reader (an editor, CI of a fork) checks a data file with ``tasks/schema/<file>.schema.json`` and
any JSON Schema validator; tests/test_datafiles.py keeps the committed schemas equal to what the models
generate. Cross-field checks (a default quant that is one of the model's quants) are in the models only.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.datafiles import MODELS

SCHEMA_DIR_NAME = "schema"  # under tasks/


def json_schema(name: str) -> dict:
    """The JSON Schema (draft 2020-12) of the data file ``name`` (e.g. ``models.yaml``)."""
    model = MODELS[name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_file_name(name),
        **model.model_json_schema(),
    }


def schema_file_name(name: str) -> str:
    """``models.yaml`` -> ``models.schema.json``."""
    return f"{Path(name).stem}.schema.json"


def schema_text(name: str) -> str:
    """The schema file's text, as ``make schema`` writes it."""
    return json.dumps(json_schema(name), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(tasks_dir: Path) -> list[Path]:
    """Write every data file's schema under ``tasks_dir/schema/``; returns the paths written."""
    from harness.atomic import atomic_write_text

    out = []
    for name in MODELS:
        path = Path(tasks_dir) / SCHEMA_DIR_NAME / schema_file_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, schema_text(name))
        out.append(path)
    return out


if __name__ == "__main__":  # `make schema`
    from harness.paths import ROOT

    for p in write_schemas(ROOT / "tasks"):
        print(f"wrote {p.relative_to(ROOT)}")
