"""A shard folder that holds two upload generations: the downloader fetches exactly the catalogue's files.

The situation is real: bartowski/Meta-Llama-3-70B-Instruct-GGUF's ``Meta-Llama-3-70B-Instruct-Q8_0.gguf/`` folder
holds a stale 3-shard set (``-0000N-of-00003``) next to the current 2-shard set (``-0000N-of-00002``) at the
revision the catalogue pins (https://huggingface.co/bartowski/Meta-Llama-3-70B-Instruct-GGUF/tree/
f15b00f9f7612feed6f6a65aa5e4ebc1b8000611/Meta-Llama-3-70B-Instruct-Q8_0.gguf). A folder pattern would pull
all five files (75 GB of stale bytes, and a mixed set for llama.cpp); the catalogue lists exact names instead.
Runs `harness download` (the installed entry point) against a local fake Hub on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hub_server import COMMIT, FakeHub
from test_download import make_gguf

HARNESS = Path(sys.executable).parent / "harness"
FOLDER = "m-Q8_0.gguf"  # the older bartowski layout: the shard folder itself ends in ".gguf"
CURRENT = [f"{FOLDER}/m-Q8_0-00001-of-00002.gguf", f"{FOLDER}/m-Q8_0-00002-of-00002.gguf"]
STALE = [f"{FOLDER}/m-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


@pytest.fixture()
def hub(tmp_path):
    current = [make_gguf(tmp_path / "c1.gguf", 600), make_gguf(tmp_path / "c2.gguf", 400)]  # 1000 = catalogue
    stale = [make_gguf(tmp_path / f"s{i}.gguf", 500) for i in range(3)]  # 1500: wrong if it were ever used
    with FakeHub() as h:
        for name, data in zip(CURRENT + STALE, current + stale):
            h.files[("acme/mixed-GGUF", name)] = data
        for name, data in zip(STALE, stale):  # the repo as it was before the 2-shard upload
            h.files[("acme/old-GGUF", name)] = data
        yield h


def write_catalogue(tmp_path: Path) -> Path:
    entry = {
        "family": "llama3",
        "kind": "instruct",
        "params": 1000,
        "context_length": 8192,
        "gsm8k_max_gen_toks": 512,
        "revision": COMMIT,
        "confirmed": True,
        "licence": "Meta Llama 3 Community License",
        "upstream": "meta-llama/Meta-Llama-3-70B-Instruct",
        "quants": {"Q8_0": {"files": CURRENT, "split": "shards", "size": None, "sha256": None}},
    }
    models = {"mixed": dict(entry, repo="acme/mixed-GGUF"), "old": dict(entry, repo="acme/old-GGUF")}
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "models.yaml").write_text(
        yaml.safe_dump({"schema_version": 1, "default_quant": "Q8_0", "models": models})
    )
    return d


def harness_download(hub: FakeHub, tmp_path: Path, model: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HARNESS_TASKS_DIR": str(write_catalogue(tmp_path)),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    return subprocess.run(
        [str(HARNESS), "download", model, "--quant", "Q8_0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def requested_files(hub: FakeHub) -> set[str]:
    """Repo paths the client asked the file endpoint for (HEAD or GET)."""
    out = set()
    for method, path, _ in hub.log:
        if method in ("HEAD", "GET") and "/resolve/" in path:
            out.add(path.split("/resolve/", 1)[1].split("/", 1)[1])
    return out


def test_mixed_shard_folder_downloads_exactly_the_listed_set(hub, tmp_path):
    res = harness_download(hub, tmp_path, "mixed")
    assert res.returncode == 0, res.stderr
    main = Path(res.stdout.split("ready: ")[1].strip())
    assert (
        main.name == "m-Q8_0-00001-of-00002.gguf"
    )  # llama.cpp is pointed at the first shard of the listed set
    assert requested_files(hub) == set(CURRENT)
    assert not any("of-00003" in p for _, p, _ in hub.log)
    snapshot = main.parent.parent
    on_disk = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if not p.is_dir())
    assert on_disk == CURRENT
    for name in CURRENT:
        assert (snapshot / name).read_bytes() == hub.files[("acme/mixed-GGUF", name)]


def test_revision_without_the_listed_set_is_a_clear_refusal(hub, tmp_path):
    """Pinned to a revision that has only the stale set, the entry fails by name; no stale shard is fetched."""
    res = harness_download(hub, tmp_path, "old")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "m-Q8_0-00001-of-00002.gguf" in res.stderr and "acme/old-GGUF" in res.stderr
    assert "tasks/models.yaml" in res.stderr
    assert not requested_files(hub)
    assert not [p for p in (tmp_path / "hf").rglob("*.gguf") if p.is_file()]
