"""Issue #14 part 3: the run record is a type (harness/records/schema.py).

A record round-trips through the schema; every committed version-1 record still loads (upgraded in
memory, the file untouched); a field of the wrong type is one message naming the field; the committed
JSON Schema file is what the model generates, is a valid draft 2020-12 schema, and, under the reference
validator (the ``jsonschema`` package, as an outside reader would use it), accepts every committed record
and a new one and refuses a wrong one."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from records import make_record, write_record

from harness.atomic import write_json
from harness.paths import ROOT
from harness.records.parse import upgrade_v1
from harness.records.record import UnreadableRecord, read_record
from harness.records.runs import load_runs
from harness.records.schema import (
    SCHEMA_FILE,
    SCHEMA_VERSION,
    RunRecord,
    json_schema,
    schema_text,
)

SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# The committed records: those the published manifest lists, and the baselines. Not every file in
# results/runs/: a user's own new run lands there (the README's `make bench`, CI's first step) and is a
# version-2 record.
COMMITTED = sorted(
    [
        ROOT / "results" / "runs" / name
        for name in json.loads((ROOT / "results" / "published.json").read_text())["records"]
    ]
    + [p for p in (ROOT / "results" / "baselines").glob("*.json") if not p.name.endswith(".lm_eval.json")]
)


# Every run record in the repository: results/runs/ (any version; not the lm-eval results files beside them)
# and the baselines.
ALL_RECORDS = sorted(
    {
        p
        for folder in ("runs", "baselines")
        for p in (ROOT / "results" / folder).glob("*.json")
        if not p.name.endswith(".lm_eval.json")
    }
    | set(COMMITTED)
)


def _validator() -> Draft202012Validator:
    """The published schema file under the reference validator, the schema itself checked first."""
    schema = json.loads((ROOT / "results" / SCHEMA_FILE).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)  # raises SchemaError for a schema that is not valid 2020-12
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, rec: dict) -> list[str]:
    """The validator's findings as "path: message", in document order."""
    found = sorted(validator.iter_errors(rec), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in found]


def test_the_committed_v1_records_are_there():
    assert len(COMMITTED) >= 8 and all(json.loads(p.read_text())["schema_version"] == 1 for p in COMMITTED)


@pytest.mark.parametrize("path", ALL_RECORDS, ids=lambda p: p.name[:60])
def test_every_committed_record_validates_against_the_published_schema(path):
    """What an outside reader does: jsonschema, the committed schema file, the committed record file."""
    assert _errors(_validator(), json.loads(path.read_text())) == []


def _nan_as_null(obj):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_as_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_as_null(v) for v in obj]
    return obj


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name[:60])
def test_every_committed_v1_record_loads_and_keeps_every_fact(path):
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    raw = json.loads(path.read_text())
    rec = read_record(path)
    assert isinstance(rec, RunRecord) and rec.schema_version == SCHEMA_VERSION == 2
    # every key and value of the file, nothing dropped or renamed; an undefined stderr, once NaN, is null
    assert rec.as_json() == _nan_as_null(upgrade_v1(raw))
    assert rec.task.name == raw["task"]["name"] and rec.model.sha256 == raw["model"]["sha256"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # read in memory, never rewritten
    assert _errors(_validator(), rec.as_json()) == []  # upgraded, it is a valid version 2 record too


def test_the_committed_json_schema_is_current():
    committed = (ROOT / "results" / SCHEMA_FILE).read_text()
    assert committed == schema_text(), "results/record.schema.json is out of date: run `make schema`"


def test_the_json_schema_file_accepts_a_real_record_and_refuses_a_wrong_one(tmp_path):
    schema = json.loads((ROOT / "results" / SCHEMA_FILE).read_text())
    assert schema == json_schema()
    validator = _validator()
    rec = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True, False, True]}, quant="Q4_1")
    assert rec["schema_version"] == 2 and _errors(validator, rec) == []
    rec["task"]["n"] = "3"
    rec["samples"][0]["correct"] = "yes"
    assert _errors(validator, rec) == [
        "samples.0.correct: 'yes' is not of type 'boolean'",
        "task.n: '3' is not of type 'integer'",
    ]


def test_the_json_schema_tells_the_versions_apart(tmp_path):
    """Version 1 may lack the facts it did not always keep (and only those); version 2 may not; no other
    version is accepted."""
    validator = _validator()
    v2 = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True, False]}, quant="Q4_1")
    optional_in_v1 = (
        "harness_version",
        "harness_commit",
        "command",
        "packages",
        "resume",
        "lm_eval_results_file",
        "efficiency",
        "backend",
    )
    v1 = {k: v for k, v in v2.items() if k not in optional_in_v1} | {"schema_version": 1}
    v1["model"] = {k: v for k, v in v2["model"].items() if k != "kind"}
    assert _errors(validator, v1) == []
    assert read_record(write_record(tmp_path, v1)).model.kind == "instruct"  # and the harness reads it
    for key in optional_in_v1:
        assert _errors(validator, {k: v for k, v in v2.items() if k != key}) == [
            f": '{key}' is a required property"
        ]
    assert _errors(validator, dict(v1, schema_version=2)) != []  # a version 2 record must have them
    assert _errors(validator, {k: v for k, v in v1.items() if k != "task"}) == [
        ": 'task' is a required property"
    ]
    assert _errors(validator, dict(v2, schema_version=3)) == ["schema_version: 2 was expected"]


# ------------------------------------------------------------------------------------ round trip
NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)  # a record is strict JSON (issue #26)
EXTRA = st.dictionaries(
    st.from_regex(r"x_[a-z]{1,6}", fullmatch=True),
    st.none() | st.booleans() | st.integers() | NAMES | st.lists(st.integers(), max_size=3),
    max_size=2,
)


@st.composite
def records(draw) -> dict:
    task = draw(st.sampled_from(["gsm8k", "mmlu", "mmlu_loglik", "mmlu_cot", "mmlu_cloze"]))
    kind = (
        "instruct" if task == "mmlu_cot" else draw(st.sampled_from(["base", "instruct"]))
    )  # cot: instruct only
    subs = draw(
        st.lists(st.from_regex(r"sub_[a-z]{1,8}", fullmatch=True), min_size=1, max_size=3, unique=True)
    )
    correct = {s: draw(st.lists(st.booleans(), min_size=1, max_size=6)) for s in subs}
    rec = make_record(
        draw(NAMES),
        task,
        correct,
        quant=draw(NAMES),
        kind=kind,
        n_params=draw(st.integers(1, 10**12) | st.floats(1.0, 1e12)),
        created=draw(st.datetimes()).isoformat(timespec="seconds"),
        config_hash=draw(st.from_regex(r"[0-9a-f]{16}", fullmatch=True)),
    )
    rec["timing"]["decode_seconds"] = draw(FLOATS)
    rec["timing"]["setup_seconds"] = draw(st.none() | st.floats(0, 1e6))
    rec["per_subtask"][subs[0]][next(iter(rec["metrics"]))]["stderr"] = draw(st.none() | st.floats(0, 1))
    rec["samples"][0]["response"] = draw(
        NAMES | st.lists(st.tuples(FLOATS, st.booleans()).map(list), max_size=4)
    )
    rec.update(draw(EXTRA))  # keys a newer harness may add: kept
    rec["model"].update(draw(EXTRA))
    return rec


@given(rec=records())
@SETTINGS
def test_a_record_round_trips_through_the_schema(tmp_path_factory, rec):
    path = tmp_path_factory.mktemp("results") / "runs" / "record.json"  # (names may hold any character)
    write_json(path, rec)
    typed = read_record(path)
    same = json.dumps(typed.as_json(), sort_keys=True)
    assert same == json.dumps(rec, sort_keys=True)  # the same keys and values, extras kept
    again = RunRecord.model_validate(json.loads(json.dumps(typed.as_json())))
    assert again == typed or json.dumps(again.as_json(), sort_keys=True) == same  # (NaN != NaN)
    assert list(again.as_json()) == list(typed.as_json())  # and the same key order on every write


# ------------------------------------------------------------------------------------ wrong types
@pytest.mark.parametrize(
    "where,value,message",
    [
        ("task.n", "3", "field task.n is str, not integer"),
        ("model.kind", "chat", "field model.kind is str, not 'base' or 'instruct'"),
        ("samples.0.correct", 1, "field samples.0.correct is int, not boolean"),
        ("timing.wall_seconds", None, "field timing.wall_seconds is NoneType, not number"),
        ("metrics", {}, "field metrics: dictionary should have at least 1 item after validation, not 0"),
        ("hardware", "Test CPU", "field hardware is str, not dictionary"),
        ("run_id", None, "field run_id is NoneType, not string"),
    ],
)
def test_a_wrong_type_is_one_message_naming_the_field(tmp_path, where, value, message):
    rec = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True, False]}, quant="Q4_1")
    *parents, last = where.split(".")
    obj = rec
    for p in parents:
        obj = obj[int(p)] if isinstance(obj, list) else obj[p]
    obj[int(last) if isinstance(obj, list) else last] = value
    path = write_record(tmp_path, rec)
    with pytest.raises(UnreadableRecord) as info:
        read_record(path)
    assert info.value.reason == message
    assert "Traceback" not in str(info.value) and "\n" not in info.value.reason
    loaded = load_runs(tmp_path)  # a bad record is skipped, with the reason, never a traceback
    assert loaded.runs == [] and loaded.unreadable == [(path, message)]


def test_a_missing_field_and_a_future_schema_are_named(tmp_path):
    rec = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True]}, quant="Q4_1")
    del rec["task"]["config_hash"]
    write_json(tmp_path / "a.json", rec)
    with pytest.raises(UnreadableRecord, match="field task.config_hash is missing"):
        read_record(tmp_path / "a.json")
    write_json(tmp_path / "b.json", dict(rec, schema_version=3))
    with pytest.raises(UnreadableRecord, match="schema version 3; this harness reads 1 and 2"):
        read_record(tmp_path / "b.json")


def test_the_builder_refuses_a_record_that_would_not_read_back():
    from harness.errors import HarnessError
    from harness.records.build import build_record

    parts = dict(
        created="2026-11-30T00:00:00+00:00",
        stem="s",
        harness_version=None,
        harness_commit=None,
        command=None,
        packages=None,
        model={"name": "m", "kind": "instruct", "quant": "Q4_1"},
        backend={"settings": {}},
        hardware={"cpu": "c", "cores": 2, "ram_gib": 1.0, "gpu": None},
        task={
            "name": "gsm8k",
            "config_hash": "h",
            "num_fewshot": 8,
            "chat": True,
            "full": False,
            "n": 1,
            "n_total": 2,
        },
        metrics={
            "exact_match,strict-match": {
                "average": "micro",
                "value": 1.0,
                "stderr": None,
                "ci95": [0.0, 1.0],
                "n": 1,
            }
        },
        per_subtask={},
        samples=[{"task": "gsm8k", "doc_id": 0, "correct": True}],
        timing={"wall_seconds": 1.0},
    )
    assert build_record(**parts).task.n == 1
    parts["timing"] = {"wall_seconds": "1s"}
    with pytest.raises(HarnessError, match="run record would not be valid: field timing.wall_seconds is str"):
        build_record(**parts)
