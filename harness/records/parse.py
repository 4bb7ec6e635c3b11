"""Reading a run record: parsed JSON as its type (harness.records.schema), a version 1 record upgraded in
memory, and anything else refused with one line naming the first wrong field.

Why a module of its own: every reader (compare, publish, scores, regress, audit) goes through
:func:`parse_record`, and the builder (harness.records.build) words its refusals with the same
:func:`validation_message`, so a record the harness would not read back is never written either.
"""

from __future__ import annotations

from pydantic import ValidationError

from harness.records.schema import SCHEMA_VERSION, RunRecord


class RecordProblem(ValueError):
    """Why a parsed JSON value is not a usable run record (one line)."""


def upgrade_v1(rec: dict) -> dict:
    """A schema-1 record as schema 2 (in memory). Version 1 had the same layout; facts it may lack
    are null (unknown) in version 2, and a model without ``kind`` was read as instruct, as before.
    (What a version 1 record may lack is declared in harness.records.schema.RunRecordV1, for the JSON Schema.)"""
    out = dict(rec, schema_version=2)
    for key in (
        "harness_version",
        "harness_commit",
        "command",
        "packages",
        "resume",
        "lm_eval_results_file",
        "efficiency",
    ):
        out.setdefault(key, None)
    if isinstance(out.get("model"), dict):
        out["model"] = {"kind": "instruct", **out["model"]} if "kind" not in out["model"] else out["model"]
    if "backend" not in out:
        out["backend"] = {"settings": {}}
    elif isinstance(out["backend"], dict) and "settings" not in out["backend"]:
        out["backend"] = dict(out["backend"], settings={})
    return out


def _where(loc: tuple) -> str:
    # Union members add their type's name to an error's location ("task.n.int"): not a field.
    tags = {"int", "float", "str", "bool", "none", "list[str]", "literal['all']", "dict[str,list[int]]"}
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.replace(" ", "") in tags)]
    return ".".join(parts) or "(record)"


def validation_message(exc: ValidationError) -> str:
    """One line naming the first wrong field (a union's alternatives are named together)."""
    errors = exc.errors(include_url=False)
    where = _where(errors[0]["loc"])
    here = [e for e in errors if _where(e["loc"]) == where]
    first = here[0]
    if first["type"] == "missing":
        text = f"field {where} is missing"
    elif first["type"].endswith(("_type", "literal_error")):
        wanted = " or ".join(
            dict.fromkeys(
                e["msg"].removeprefix("Input should be ").removeprefix("a valid ").split(" or instance of")[0]
                for e in here
            )
        )
        text = f"field {where} is {type(first.get('input')).__name__}, not {wanted}"
    else:
        text = f"field {where}: {first['msg'][0].lower()}{first['msg'][1:]}"
    others = {_where(e["loc"]) for e in errors} - {where}
    return text + (f" (and {len(others)} more field(s))" if others else "")


def parse_record(obj: object) -> RunRecord:
    """Parsed JSON as a typed record (version 1 upgraded); :class:`RecordProblem` says why it is not one."""
    if not isinstance(obj, dict):
        raise RecordProblem("not a JSON object")
    version = obj.get("schema_version")
    if type(version) is int and version == 1:
        obj = upgrade_v1(obj)
    elif not (type(version) is int and version == SCHEMA_VERSION):
        raise RecordProblem(f"schema version {version!r}; this harness reads 1 and {SCHEMA_VERSION}")
    try:
        rec = RunRecord.model_validate(obj)
    except ValidationError as exc:
        raise RecordProblem(validation_message(exc)) from None
    # Imported here: the record types stay importable without the task machinery.
    from harness.tasks.settings import task_names

    if rec.task.name not in task_names():
        raise RecordProblem(f"task {rec.task.name!r} is not defined in tasks/tasks.yaml")
    return rec
