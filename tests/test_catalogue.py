from pathlib import Path

import pytest

from harness.catalogue import REQUIRED_KEYS, load_catalogue, local_model_path, resolve
from harness.errors import HarnessError

REQUIRED_MODELS = {
    "llama3-8b", "llama3-8b-instruct", "llama3-70b", "llama3-70b-instruct", "llama3.1-8b",
    "llama3.1-8b-instruct", "llama3.1-70b", "llama3.1-70b-instruct", "llama3.1-405b",
    "llama3.1-405b-instruct", "llama3.2-1b-instruct", "llama3.2-3b-instruct", "llama3.3-70b-instruct",
    "smollm2-135m",
}


def test_catalogue_complete_and_consistent():
    data = load_catalogue()
    models = data["models"]
    assert REQUIRED_MODELS <= set(models)
    seen = set()
    for name, e in models.items():
        for key in REQUIRED_KEYS:
            assert key in e, f"{name} lacks {key}"
        assert e["kind"] in ("base", "instruct")
        assert e.get("repo") or e.get("package"), name
        for alias in [name, *(e.get("aliases") or [])]:
            assert alias not in seen, f"duplicate name {alias}"
            seen.add(alias)
            assert resolve(alias).name == name
        for q, qf in e["quants"].items():
            assert qf.get("split", "single") in ("single", "shards", "parts"), (name, q)
            if qf.get("split") == "parts":
                assert qf.get("joined"), (name, q)


def test_llama33_alias():
    assert resolve("llama3.3-70b").name == "llama3.3-70b-instruct"


def test_smollm2_found_through_package_metadata():
    p = local_model_path(resolve("smollm2-135m"))
    assert p.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and p.stat().st_size > 90_000_000


@pytest.mark.parametrize(
    "name,quant,match",
    [
        ("llama3.1-8b-instrct", None, "did you mean llama3.1-8b-instruct"),
        ("../etc/passwd", None, "no such file"),
        ("/tmp", None, "a folder"),
        ("llama 3; rm -rf", None, "not allowed"),
        ("llama3.1-8b-instruct", "Q9_X", "no quant 'Q9_X'"),
    ],
)
def test_bad_names(name, quant, match):
    with pytest.raises(HarnessError) as err:
        resolve(name, quant)
    assert match in err.value.format_message()


CATALOGUE_TEXT = (Path(__file__).resolve().parent.parent / "tasks" / "models.yaml").read_text()


@pytest.mark.parametrize("edit,match", [
    (lambda m: m["llama3-8b"].pop("kind"), "missing field(s) kind"),
    (lambda m: m["llama3-8b"].update(kind="chat"), "kind must be base or instruct"),
    (lambda m: m["llama3-8b"].update(params="8B"), "params must be a positive number"),
    (lambda m: m["llama3-8b"].update(quantz={}), "unknown field(s) quantz"),
    (lambda m: m["llama3-8b"]["quants"]["Q8_0"].update(sha256="abc"), "quant Q8_0: sha256 must be 64"),
    (lambda m: m["llama3-8b"]["quants"]["Q8_0"].update(files="x.gguf"), "quant Q8_0: files must be a list"),
    (lambda m: m["llama3-8b"].update(quants=None), "quants must map"),
    (lambda m: m.update({"bad": "not a mapping"}), "not a mapping of fields"),
])
def test_malformed_catalogue_entry_is_one_message(tmp_path, edit, match):
    import yaml

    from harness.catalogue import load_catalogue

    data = yaml.safe_load(CATALOGUE_TEXT)
    edit(data["models"])
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError) as err:
        load_catalogue(path)
    assert match in err.value.format_message() and "models.yaml" in err.value.format_message()


def test_malformed_task_setting_is_one_message(tmp_path):
    import yaml

    from harness.tasks import load_settings

    data = yaml.safe_load((Path(__file__).resolve().parent.parent / "tasks" / "tasks.yaml").read_text())
    del data["tasks"]["gsm8k"]["dataset"]
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError, match="task 'gsm8k': missing key"):
        load_settings(path)
    data["tasks"]["gsm8k"]["dataset"] = {"repo": "openai/gsm8k"}
    path.write_text(yaml.safe_dump(data))
    load_settings.cache_clear()
    with pytest.raises(HarnessError, match="dataset needs repo, config, splits and columns"):
        load_settings(path)
