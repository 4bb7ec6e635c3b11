"""A small JSON Schema validator: just the keywords pydantic writes into results/record.schema.json
(type, properties, required, additionalProperties, items, anyOf, $ref into $defs, const, enum,
minItems/maxItems, minProperties), per https://json-schema.org/draft/2020-12/json-schema-validation.
The tests use it to show the committed schema file itself accepts a real record and refuses a bad one,
without adding a dependency."""

from __future__ import annotations

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def errors(value: object, schema: dict, root: dict | None = None, where: str = "$") -> list[str]:
    """Why ``value`` does not match ``schema`` (empty: it does)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return errors(value, root["$defs"][name], root, where)
    if "anyOf" in schema:
        if all(errors(value, s, root, where) for s in schema["anyOf"]):
            return [f"{where}: matches none of anyOf"]
    out: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_TYPES[x](value) for x in types):
            return [f"{where}: not {t}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: not one of {schema['enum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            out.append(f"{where}: {len(value)} items")
        if "items" in schema:
            for i, v in enumerate(value):
                out += errors(v, schema["items"], root, f"{where}[{i}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{where}: too few properties")
        props = schema.get("properties", {})
        out += [f"{where}.{k}: missing" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                out += errors(v, props[k], root, f"{where}.{k}")
            elif extra is False:
                out.append(f"{where}.{k}: not allowed")
            elif isinstance(extra, dict):
                out += errors(v, extra, root, f"{where}.{k}")
    return out
