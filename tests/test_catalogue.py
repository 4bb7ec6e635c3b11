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
        ("../etc/passwd", None, "not allowed"),
        ("llama3.1-8b-instruct", "Q9_X", "no quant 'Q9_X'"),
    ],
)
def test_bad_names(name, quant, match):
    with pytest.raises(HarnessError) as err:
        resolve(name, quant)
    assert match in err.value.format_message()
