import re
from pathlib import Path

import pytest

from harness.datafiles.catalogue import ModelEntry
from harness.errors import HarnessError
from harness.models.catalogue import load_catalogue, resolve
from harness.models.locate import local_model_path

REQUIRED_KEYS = [name for name, f in ModelEntry.model_fields.items() if f.is_required()]
REQUIRED_MODELS = {
    "llama3-8b",
    "llama3-8b-instruct",
    "llama3-70b",
    "llama3-70b-instruct",
    "llama3.1-8b",
    "llama3.1-8b-instruct",
    "llama3.1-70b",
    "llama3.1-70b-instruct",
    "llama3.1-405b",
    "llama3.1-405b-instruct",
    "llama3.2-1b-instruct",
    "llama3.2-3b-instruct",
    "llama3.3-70b-instruct",
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


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m: m["llama3-8b"].pop("kind"), "missing field(s) kind"),
        (lambda m: m["llama3-8b"].update(kind="chat"), "kind must be base or instruct"),
        (lambda m: m["llama3-8b"].update(params="8B"), "params must be a positive number"),
        (lambda m: m["llama3-8b"].update(quantz={}), "unknown field(s) quantz"),
        (lambda m: m["llama3-8b"]["quants"]["Q8_0"].update(sha256="abc"), "quant Q8_0: sha256 must be 64"),
        (
            lambda m: m["llama3-8b"]["quants"]["Q8_0"].update(files="x.gguf"),
            "quant Q8_0: files must be a list",
        ),
        (lambda m: m["llama3-8b"].update(quants=None), "quants must map"),
        (lambda m: m.update({"bad": "not a mapping"}), "not a mapping of fields"),
    ],
)
def test_malformed_catalogue_entry_is_one_message(tmp_path, edit, match):
    import yaml

    from harness.models.catalogue import load_catalogue

    data = yaml.safe_load(CATALOGUE_TEXT)
    edit(data["models"])
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError) as err:
        load_catalogue(path)
    assert match in err.value.format_message() and "models.yaml" in err.value.format_message()


def test_malformed_task_setting_is_one_message(tmp_path):
    import yaml

    from harness.tasks.settings import load_settings

    data = yaml.safe_load((Path(__file__).resolve().parent.parent / "tasks" / "tasks.yaml").read_text())
    del data["tasks"]["gsm8k"]["dataset"]
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError, match=r"task 'gsm8k': missing field\(s\) dataset for base models"):
        load_settings(path)
    data["tasks"]["gsm8k"]["dataset"] = {"repo": "openai/gsm8k"}
    path.write_text(yaml.safe_dump(data))
    load_settings.cache_clear()
    with pytest.raises(
        HarnessError, match=r"task 'gsm8k': dataset: missing field\(s\) config, splits, columns"
    ):
        load_settings(path)


_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_PART = re.compile(r"^(?P<joined>.+\.gguf)\.part(?P<i>\d+)of(?P<n>\d+)$")


def layout_problems(qf: dict) -> list[str]:
    """What is wrong with one quant's file list: mixed shard sets, gaps, a count that disagrees with the names."""
    files, split = qf["files"], qf.get("split", "single")
    if split == "single":
        return [] if len(files) == 1 and files[0].endswith(".gguf") else [f"single file expected: {files}"]
    pattern = _SHARD if split == "shards" else _PART
    matches = [pattern.match(Path(f).name if split == "shards" else f) for f in files]
    if not all(matches):
        return [f"not {split} names: {files}"]
    out = []
    counts = {int(m["n"]) for m in matches}
    if counts != {len(files)}:
        out.append(f"names say {sorted(counts)} pieces, {len(files)} listed (mixed or partial set)")
    if [int(m["i"]) for m in matches] != list(range(1, len(files) + 1)):
        out.append("pieces not listed 1..N in order")
    if split == "shards":
        if len({Path(f).parent for f in files}) != 1 or len({m["stem"] for m in matches}) != 1:
            out.append("shards from more than one folder or stem")
    elif {m["joined"] for m in matches} != {qf.get("joined")}:
        out.append(f"joined name {qf.get('joined')!r} is not what the parts name")
    return out


def test_every_hub_entry_is_pinned_and_its_file_lists_are_whole_sets():
    for name, e in load_catalogue()["models"].items():
        if e.get("package"):
            assert not e.get("repo") and not e.get("revision"), name
            continue
        # a branch name moves (these repos were re-uploaded); a sha256 only holds at the commit it came from
        assert re.fullmatch(r"[0-9a-f]{40}", str(e.get("revision"))), (
            f"{name}: revision {e.get('revision')!r}"
        )
        for q, qf in e["quants"].items():
            if e.get("confirmed"):
                assert qf["files"], f"{name} {q}: a confirmed entry lists its files"
            if qf["files"]:
                assert layout_problems(qf) == [], (name, q, layout_problems(qf))
            if qf.get("sha256") is not None:
                assert (
                    re.fullmatch(r"[0-9a-f]{64}", qf["sha256"]) and qf.get("split", "single") == "single"
                ), (name, q)
            if qf.get("size") is not None:
                assert isinstance(qf["size"], int) and qf["size"] > 0, (name, q)


def test_layout_check_catches_a_stale_shard_set():
    folder = "Meta-Llama-3-70B-Instruct-Q8_0.gguf/Meta-Llama-3-70B-Instruct-Q8_0"
    good = {"split": "shards", "files": [f"{folder}-00001-of-00002.gguf", f"{folder}-00002-of-00002.gguf"]}
    assert layout_problems(good) == []
    mixed = {"split": "shards", "files": [f"{folder}-00001-of-00003.gguf", f"{folder}-00002-of-00002.gguf"]}
    assert layout_problems(mixed)
    stale_too = {"split": "shards", "files": good["files"] + [f"{folder}-00003-of-00003.gguf"]}
    assert layout_problems(stale_too)
    parts = {
        "split": "parts",
        "joined": "m.Q2_K.gguf",
        "files": [f"m.Q2_K.gguf.part{i}of4" for i in (1, 2, 3)],
    }
    assert layout_problems(parts)  # 3 of 4 parts
    assert layout_problems(dict(parts, files=[f"m.Q2_K.gguf.part{i}of4" for i in range(1, 5)])) == []


def test_issue17_confirmations():
    """The entries the Hub listings settled: part/shard layouts as seen, each at its pinned commit."""
    m = load_catalogue()["models"]
    assert all(
        m[n]["confirmed"]
        for n in (
            "llama3-70b",
            "llama3.1-70b",
            "llama3-70b-instruct",
            "llama3.1-405b",
            "llama3.1-405b-instruct",
        )
    )
    q8 = m["llama3-70b-instruct"]["quants"]["Q8_0"]["files"]
    folder = "Meta-Llama-3-70B-Instruct-Q8_0.gguf/Meta-Llama-3-70B-Instruct-Q8_0"
    assert q8 == [
        f"{folder}-00001-of-00002.gguf",
        f"{folder}-00002-of-00002.gguf",
    ]  # not the stale -of-00003 set
    assert re.fullmatch(r"[0-9a-f]{40}", m["llama3-70b-instruct"]["revision"])
    assert len(m["llama3.1-405b"]["quants"]["Q8_0"]["files"]) == 9
    assert len(m["llama3.1-405b"]["quants"]["Q4_K_S"]["files"]) == 5
    assert len(m["llama3.1-405b-instruct"]["quants"]["Q4_K_M"]["files"]) == 5
    assert len(m["llama3.1-405b-instruct"]["quants"]["Q2_K"]["files"]) == 4
    for n in ("llama3-70b", "llama3.1-70b"):
        qs = m[n]["quants"]
        assert qs["Q2_K"].get("split", "single") == qs["Q4_K_M"].get("split", "single") == "single"
        assert qs["Q8_0"]["split"] == "parts" and len(qs["Q8_0"]["files"]) == 2
