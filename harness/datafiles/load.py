"""Read one ``tasks/*.yaml`` file into its model; a malformed file is one message naming file, entry and field.

pydantic reports every problem at once, as a location tuple and its own wording; a person fixing a data file
wants the first problem in the file's words: ``models.yaml: model 'llama3-8b': quant Q8_0: sha256 must be 64
lowercase hex digits or null (got 'abc')``. :func:`problem_message` walks the location through the model's
types to find the entry (a key of a mapping marked :class:`~harness.datafiles.base.Entries`), the field, and
the field's ``description`` (what it must be).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from harness.datafiles.base import DataFile, Entries, Problem
from harness.errors import HarnessError

F = TypeVar("F", bound=DataFile)
_CACHE: dict[tuple, DataFile] = {}
_NOT_A_MAPPING = {"model_type", "model_attributes_type", "dict_type"}


class DataFileError(HarnessError):
    """A ``tasks/*.yaml`` file that cannot be read or does not fit its model: one message, one hint."""


def read_yaml(path: Path, title: str) -> Any:
    """The parsed YAML of ``path``; an unreadable or unparsable file is a :class:`DataFileError`."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataFileError(
            f"cannot read {title} {path}: {exc}", f"restore tasks/{Path(path).name} from git."
        ) from exc


def load_file(model: type[F], path: Path) -> F:
    """``path`` read and validated as ``model`` (cached until the file changes)."""
    path = Path(path)
    try:
        st = path.stat()
        key = (model, str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]  # type: ignore[return-value]
    out = validate(model, read_yaml(path, model.TITLE), path)
    if key is not None:
        _CACHE[key] = out
    return out


def validate(model: type[F], data: Any, path: Path) -> F:
    """``data`` (as read from ``path``) validated as ``model``, or one :class:`DataFileError` naming the first
    problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(
            f"{Path(path).name}: {problem_message(model, exc, data)}", model.HINT.format(path=path)
        ) from None


@dataclass
class _Step:
    """One element of an error's location: a field, a labelled entry, a plain key or index."""

    kind: str  # "field" | "entry" | "key"
    text: str  # the field name, the entry's label or the key
    description: str | None  # what the value here must be (a field's or an item type's description)
    value: Any  # the raw value at this place (None where the data has none)


def _unwrap(tp: Any, meta: list) -> tuple[Any, list]:
    """``tp`` without ``Annotated`` (its metadata joins ``meta``) and without ``| None``."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            base, *more = typing.get_args(tp)
            tp, meta = base, [*meta, *more]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp, meta


def _description(meta: list) -> str | None:
    return next((m.description for m in meta if isinstance(m, FieldInfo) and m.description), None)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _item(value: Any, part: Any) -> Any:
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def _walk(model: type[BaseModel], loc: tuple, data: Any) -> tuple[list[_Step], bool, str | None]:
    """The steps of ``loc`` through ``model``'s types, whether ``loc`` ends on a model (a mapping of fields),
    and the key type's description when the error is about a mapping's key (``[key]``)."""
    tp, meta, value, steps = model, [], data, []
    for i, part in enumerate(loc):
        tp, meta = _unwrap(tp, meta)
        if _is_model(tp):
            if not (isinstance(part, str) and part in tp.model_fields):
                break
            info = tp.model_fields[part]
            value = _item(value, part)
            steps.append(_Step("field", part, info.description, value))
            tp, meta = info.annotation, list(info.metadata)
            continue
        origin = typing.get_origin(tp)
        if origin is dict or origin is list:
            if loc[i + 1 : i + 2] == ("[key]",):  # the key itself is wrong (a model name with a space)
                label = next((m for m in meta if isinstance(m, Entries)), None)
                if label is not None:
                    steps.append(_Step("entry", label.name(part, _item(value, part)), None, None))
                _, key_meta = _unwrap(typing.get_args(tp)[0], [])
                return steps, False, _description(key_meta) or "is not allowed"
            item_t = typing.get_args(tp)[-1]
            item_t, item_meta = _unwrap(item_t, [])
            label = next((m for m in meta if isinstance(m, Entries)), None)
            value = _item(value, part)
            if label is not None:
                steps.append(_Step("entry", label.name(part, value), None, value))
            else:
                steps.append(_Step("key", str(part), _description(item_meta), value))
            tp, meta = item_t, item_meta
            continue
        break
    else:
        return steps, _is_model(_unwrap(tp, meta)[0]), None
    return steps, False, None


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _say(head: list[str], path: list[str], problem: str, sep: str = " ") -> str:
    """``entry: sub-entry: field.path problem``."""
    where = ".".join(path)
    return ": ".join([*head, f"{where}{sep}{problem}" if where else problem])


def _split(steps: list[_Step]) -> tuple[list[str], list[_Step]]:
    """The entry labels along the steps, and the steps after the last one (the field path inside it)."""
    head, rest = [], []
    for s in steps:
        if s.kind == "entry":
            head.append(s.text)
            rest = []
        else:
            rest.append(s)
    return head, rest


def problem_message(model: type[BaseModel], exc: ValidationError, data: Any) -> str:
    """The first problem of ``exc`` in the data file's words (see the module docstring)."""
    errors = exc.errors()
    first = errors[0]
    loc, kind = tuple(first["loc"]), first["type"]
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, Problem):
        loc = loc + error.loc
    if kind in ("missing", "extra_forbidden"):
        names = [str(e["loc"][-1]) for e in errors if e["type"] == kind and tuple(e["loc"][:-1]) == loc[:-1]]
        steps, _, _ = _walk(model, loc[:-1], data)
        head, rest = _split(steps)
        what = (
            "missing field(s) " + ", ".join(names)
            if kind == "missing"
            else "unknown field(s) " + ", ".join(sorted(names))
        )
        return _say(head, [s.text for s in rest], what, ": ")
    steps, on_model, key_description = _walk(model, loc, data)
    head, rest = _split(steps)
    path = [s.text for s in rest]
    if isinstance(error, ValueError):  # a model or field validator's own words
        return _say(head, path, str(error.message if isinstance(error, Problem) else error))
    if key_description is not None:
        return _say(head, [], f"the name {key_description}")
    described = [i for i, s in enumerate(rest) if s.description]
    if described:
        at = rest[described[-1]]
        return _say(head, path[: described[-1] + 1], f"{at.description} (got {_show(at.value)})")
    if kind in _NOT_A_MAPPING or on_model:
        return _say(head, path, "not a mapping of fields", ": ")
    return _say(head, path, first["msg"], ": ")
