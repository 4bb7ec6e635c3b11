"""Issue #27 step 4: the tasks/*.yaml data files as types (harness/datafiles/).

Every data file loads through its model; a broken entry (wrong type, missing field, unknown key, empty value)
is one message naming the file, the entry and the field; the committed JSON Schemas are what the models
generate, pass the real ``jsonschema``'s check_schema, and accept every committed data file."""

from __future__ import annotations

import copy
import json
import typing

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from harness.datafiles import MODELS, DataFileError, load
from harness.datafiles.base import Entries
from harness.datafiles.load import validate
from harness.datafiles.schema import SCHEMA_DIR_NAME, schema_file_name, schema_text
from harness.datafiles.tasks import REQUIRED
from harness.errors import HarnessError
from harness.paths import ROOT

TASKS = ROOT / "tasks"
RAW = {name: yaml.safe_load((TASKS / name).read_text()) for name in MODELS}


def test_every_data_file_has_a_model_and_loads():
    assert sorted(p.name for p in TASKS.glob("*.yaml")) == sorted(MODELS)
    for name in MODELS:
        assert load(name).schema_version == 1


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_schema_is_current_and_accepts_the_file(name):
    path = TASKS / SCHEMA_DIR_NAME / schema_file_name(name)
    assert path.read_text() == schema_text(name), f"{path} is stale: run `make schema`"
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads(json.dumps(RAW[name]))  # as an outside reader sees it in JSON: keys are strings
    jsonschema.Draft202012Validator(schema).validate(data)


def test_the_schema_refuses_what_the_model_refuses():
    schema = json.loads((TASKS / SCHEMA_DIR_NAME / "models.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for edit in (
        lambda m: m["llama3-8b"].update(quantz={}),
        lambda m: m["llama3-8b"].update(kind="chat"),
        lambda m: m["llama3-8b"]["quants"]["Q8_0"].update(sha256="abc"),
        lambda m: m["llama3-8b"].pop("family"),
        lambda m: m.update({"bad name": m["llama3-8b"]}),
    ):
        data = copy.deepcopy(RAW["models.yaml"])
        edit(data["models"])
        assert list(validator.iter_errors(json.loads(json.dumps(data))))
        with pytest.raises(DataFileError):
            validate(MODELS["models.yaml"], data, TASKS / "models.yaml")


# ---------------------------------------------------------------------------------------------- broken entries
def _unwrap(tp):
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _entries(model: type[BaseModel]):
    """The file's entries container: (field name, its Entries marker, the entry model), or None."""
    for name, info in model.model_fields.items():
        label = next((m for m in info.metadata if isinstance(m, Entries)), None)
        item = _unwrap(typing.get_args(_unwrap(info.annotation))[-1]) if label else None
        if label and isinstance(item, type) and issubclass(item, BaseModel):
            return name, label, item
    return None


def _required(model: type[BaseModel], target: dict) -> list[str]:
    fields = [n for n, f in model.model_fields.items() if f.is_required() and n in target]
    if not fields and "by_kind" in model.model_fields:  # a task: REQUIRED may come from by_kind overrides
        over = target.get("by_kind") or {}
        fields = [k for k in REQUIRED if k in target and not all(k in (over.get(kd) or {}) for kd in over)]
    return fields


@st.composite
def broken(draw):
    """A committed data file with one entry (or the file itself) broken in one way, and what the message names."""
    name = draw(st.sampled_from(sorted(MODELS)))
    data = copy.deepcopy(RAW[name])
    model, target, label = MODELS[name], data, None
    found = _entries(model)
    if found and data.get(found[0]):
        field, marker, model = found
        container = data[field]
        key = draw(
            st.sampled_from(sorted(container) if isinstance(container, dict) else range(len(container)))
        )
        target = container[key]
    how = draw(st.sampled_from(["unknown", "missing", "wrong type"]))
    if how == "missing" and not _required(model, target):
        how = "unknown"
    if how == "unknown":
        target["zz_typo"] = 1
        field_name = "zz_typo"
    elif how == "missing":
        field_name = draw(st.sampled_from(_required(model, target)))
        del target[field_name]
    else:
        field_name = draw(st.sampled_from(sorted(k for k, v in target.items() if v is not None)))
        target[field_name] = 3.5 if isinstance(target[field_name], str) else "x"
    if found and target is not data:
        label = marker.name(key, target)
    return name, data, label, field_name, how


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken())
def test_a_broken_entry_is_one_message_naming_file_entry_and_field(case):
    name, data, label, field_name, how = case
    with pytest.raises(DataFileError) as err:
        validate(MODELS[name], data, TASKS / name)
    msg = err.value.message
    assert isinstance(err.value, HarnessError) and "\n" not in msg and "Traceback" not in msg
    assert msg.startswith(f"{name}: "), msg
    if label is not None:
        assert msg.startswith(f"{name}: {label}: "), (label, msg)
    assert field_name in msg, (how, field_name, msg)
    if how == "unknown":
        assert msg.endswith("unknown field(s) zz_typo"), msg
    elif how == "missing":
        assert "missing field(s) " in msg, msg


@pytest.mark.parametrize(
    "name,edit,says",
    [
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"].update(family=""),
            "models.yaml: model 'llama3-8b': family must be a non-empty string (got '')",
        ),
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"].update(quants={}),
            "models.yaml: model 'llama3-8b': quants must map each quant name to its files (got {})",
        ),
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"]["quants"]["Q8_0"].update(files=[""]),
            "models.yaml: model 'llama3-8b': quant Q8_0: files must be a list of file names (got [''])",
        ),
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"]["quants"]["Q8_0"].update(files=["../x.gguf"]),
            "quant Q8_0: files must be a list of file names",
        ),
        (
            "models.yaml",
            lambda d: d["models"].update({"bad name": d["models"]["llama3-8b"]}),
            "models.yaml: model 'bad name': the name must be letters, digits, '.', '_' or '-'",
        ),
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"].update(default_quant="Q9"),
            "models.yaml: model 'llama3-8b': default_quant Q9 is not one of its quants",
        ),
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"].update(repo=None),
            "models.yaml: model 'llama3-8b': needs a Hub repo, or a package and package_file",
        ),
        (
            "models.yaml",
            lambda d: d["models"]["llama3-8b"]["quants"]["Q8_0"].update(files=["a", "b"]),
            "models.yaml: model 'llama3-8b': quant Q8_0: several files need split: shards or parts",
        ),
        (
            "tasks.yaml",
            lambda d: d["tasks"]["gsm8k"].update(metrics=[]),
            "tasks.yaml: task 'gsm8k': metrics must be a non-empty list of [metric, filter] pairs (got [])",
        ),
        (
            "tasks.yaml",
            lambda d: d["tasks"]["gsm8k"]["dataset"].update(splits={"train": "train"}),
            "tasks.yaml: task 'gsm8k': dataset.splits needs a test split",
        ),
        (
            "tasks.yaml",
            lambda d: d["tasks"]["mmlu"].update(subjects="mmlu_pro"),
            "tasks.yaml: task 'mmlu': subjects 'mmlu_pro' is not a list under 'subjects'",
        ),
        (
            "tasks.yaml",
            lambda d: d["tasks"]["gsm8k_5shot"].update(lm_eval_task="x_{subject}"),
            "tasks.yaml: task 'gsm8k_5shot': lm_eval_task has {subject} but the task names no subjects",
        ),
        (
            "tasks.yaml",
            lambda d: d["tasks"]["gsm8k"].update(max_gen_toks=0),
            "tasks.yaml: task 'gsm8k': max_gen_toks must be a positive whole number or 'model' (got 0)",
        ),
        (
            "claims.yaml",
            lambda d: d["claims"][0].update(id=""),
            "claims.yaml: claim #0: id must be a non-empty id (got '')",
        ),
        (
            "claims.yaml",
            lambda d: d["claims"].append(dict(d["claims"][0])),
            f"claims.yaml: claim {RAW['claims.yaml']['claims'][0]['id']}: the id appears twice",
        ),
        (
            "claims.yaml",
            lambda d: d["claims"][0]["setting"].update(shots=None),
            f"claims.yaml: claim {RAW['claims.yaml']['claims'][0]['id']}: setting leaves shots unstated",
        ),
        (
            "claims.yaml",
            lambda d: d["claims"][0]["setting"].update(averaging="micro"),
            f"claims.yaml: claim {RAW['claims.yaml']['claims'][0]['id']}: setting: unknown field(s) averaging",
        ),
        ("claims.yaml", lambda d: d.update(schema_version=2), "claims.yaml: schema_version must be 1"),
        (
            "verdict_margins.yaml",
            lambda d: d["tasks"]["gsm8k"].update(reason=" "),
            "verdict_margins.yaml: margin 'gsm8k': reason must say why",
        ),
        (
            "verdict_margins.yaml",
            lambda d: d["tasks"]["gsm8k"].update(points=0),
            "verdict_margins.yaml: margin 'gsm8k': points must be a number > 0 (got 0)",
        ),
        (
            "verdict_margins.yaml",
            lambda d: d.update(power=1),
            "verdict_margins.yaml: power must be a number in [0.5, 1)",
        ),
        (
            "quant_allowance.yaml",
            lambda d: d["allowances"][1].update(quants="Q8_0"),
            "quant_allowance.yaml: allowance Q8_0 (>= 7B): quants must list the quants the rule is for (got 'Q8_0')",
        ),
        (
            "data_pins.yaml",
            lambda d: d["files"]["openai/gsm8k/main/test"].update(sha256=""),
            "data_pins.yaml: pin 'openai/gsm8k/main/test': sha256 must be 64 lowercase hex digits (got '')",
        ),
        (
            "split_sizes.yaml",
            lambda d: d["splits"]["openai/gsm8k"].update(main=0),
            "split_sizes.yaml: data set 'openai/gsm8k': main must be a positive row count (got 0)",
        ),
        (
            "plan_tokens.yaml",
            lambda d: d["tasks"]["gsm8k/chat"]["prompt_tokens"].pop(1319),
            "plan_tokens.yaml: gsm8k/chat: prompt_tokens must reach the whole split",
        ),
        (
            "plan_calibration.yaml",
            lambda d: d["model"].update(name=""),
            "plan_calibration.yaml: model.name must name the model and quant (got '')",
        ),
        (
            "prompt_tokens.yaml",
            lambda d: d["margin"].update(factor=0.9),
            "prompt_tokens.yaml: margin.factor must be a factor >= 1 (got 0.9)",
        ),
        (
            "plan_model.yaml",
            lambda d: d["overhead"]["loglik"].update(point=2.0),
            "plan_model.yaml: overhead.loglik is implausible: needs 1 <= point <= high",
        ),
        ("models.yaml", lambda d: d.clear(), "models.yaml: missing field(s) schema_version, models"),
    ],
)
def test_each_rule_says_what_is_wrong_where(name, edit, says):
    data = copy.deepcopy(RAW[name])
    edit(data)
    with pytest.raises(DataFileError) as err:
        validate(MODELS[name], data, TASKS / name)
    assert says in err.value.message, err.value.message
    assert "\n" not in err.value.message


def test_an_unreadable_file_is_one_message(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models: [unclosed\n")
    with pytest.raises(DataFileError, match=r"cannot read the model catalogue .*models.yaml") as err:
        load("models.yaml", path)
    assert err.value.hint == "restore tasks/models.yaml from git."
    path.write_text("")
    with pytest.raises(DataFileError, match="models.yaml: not a mapping of fields"):
        load("models.yaml", path)
