"""Downloads against a local fake Hub (127.0.0.1, HF_ENDPOINT): single, shards, byte parts, faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hub_server import FakeHub

from harness.disk import check_disk
from harness.errors import HarnessError
from harness.plan.fit import check_memory


def make_gguf(path: Path, n_params: int, arch: str = "llama") -> bytes:
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_tensor("token_embd.weight", np.zeros(n_params, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


@pytest.fixture()
def hub(tmp_path):
    g1 = make_gguf(tmp_path / "a.gguf", 1000)
    g2 = make_gguf(tmp_path / "b.gguf", 600)  # two shards: 600 + 400 = the catalogue's 1000
    g3 = make_gguf(tmp_path / "c.gguf", 400)
    g4 = make_gguf(tmp_path / "e.gguf", 1000)
    big = make_gguf(tmp_path / "d.gguf", 6_000_000)  # 24 MB: > huggingface-hub's 10 MiB write chunk
    with FakeHub() as h:
        h.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")] = g1
        h.files[("acme/tiny-GGUF", "tiny-Q8_0/tiny-Q8_0-00001-of-00002.gguf")] = g2
        h.files[("acme/tiny-GGUF", "tiny-Q8_0/tiny-Q8_0-00002-of-00002.gguf")] = g3
        h.files[("acme/tiny-GGUF", "tiny.Q6_K.gguf.part1of2")] = g4[: len(g4) // 2]
        h.files[("acme/tiny-GGUF", "tiny.Q6_K.gguf.part2of2")] = g4[len(g4) // 2 :]
        h.files[("acme/tiny-GGUF", "tiny-Q5_K_M.gguf")] = b"this is not a gguf file at all" * 10
        h.files[("acme/big-GGUF", "big-Q4_K_M.gguf")] = big
        h.files[("acme/gated-GGUF", "gated-Q4_K_M.gguf")] = g1
        h.gated.add("acme/gated-GGUF")
        h.sizes = {"g1": len(g1), "big": len(big)}
        yield h


def catalogue(tmp_path: Path) -> Path:
    d = tmp_path / "tasks"
    d.mkdir()
    base = {
        "family": "llama3.1",
        "kind": "instruct",
        "context_length": 8192,
        "gsm8k_max_gen_toks": 512,
        "revision": "main",
        "confirmed": True,
        "licence": "Llama 3.1 Community License",
        "upstream": "meta-llama/Llama-3.1-8B-Instruct",
    }
    models = {
        "tiny": base
        | {
            "params": 1000,
            "repo": "acme/tiny-GGUF",
            "quants": {
                "Q4_K_M": {"files": ["tiny-Q4_K_M.gguf"]},
                "Q8_0": {
                    "files": [
                        "tiny-Q8_0/tiny-Q8_0-00001-of-00002.gguf",
                        "tiny-Q8_0/tiny-Q8_0-00002-of-00002.gguf",
                    ],
                    "split": "shards",
                },
                "Q6_K": {
                    "files": ["tiny.Q6_K.gguf.part1of2", "tiny.Q6_K.gguf.part2of2"],
                    "split": "parts",
                    "joined": "tiny.Q6_K.gguf",
                },
                "Q5_K_M": {"files": ["tiny-Q5_K_M.gguf"]},
                "Q3_K_M": {"files": ["missing-Q3_K_M.gguf"]},
            },
        },
        "big": base
        | {
            "params": 6_000_000,
            "repo": "acme/big-GGUF",
            "quants": {"Q4_K_M": {"files": ["big-Q4_K_M.gguf"]}},
        },
        "gated": base
        | {"params": 1000, "repo": "acme/gated-GGUF", "quants": {"Q4_K_M": {"files": ["gated-Q4_K_M.gguf"]}}},
    }
    (d / "models.yaml").write_text(
        yaml.safe_dump({"schema_version": 1, "default_quant": "Q4_K_M", "models": models})
    )
    return d


def download(hub, tmp_path, *args, token=None, hf_home=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home or tmp_path / "hf"),
        "HARNESS_TASKS_DIR": str(tmp_path / "tasks"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "download", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture()
def cat(tmp_path):
    return catalogue(tmp_path)


def test_single_file_then_cached(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny")
    assert res.returncode == 0, res.stderr
    path = Path(res.stdout.split("ready: ")[1].strip())
    assert path.read_bytes() == hub.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")]
    gets = len([x for x in hub.log if x[0] == "GET"])
    again = download(hub, tmp_path, "tiny")
    assert again.returncode == 0 and len([x for x in hub.log if x[0] == "GET"]) == gets  # nothing refetched


def test_numbered_shards(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny", "--quant", "Q8_0")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("tiny-Q8_0-00001-of-00002.gguf")  # llama.cpp loads the first shard


def test_byte_parts_are_joined(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny", "--quant", "Q6_K")
    assert res.returncode == 0, res.stderr
    joined = Path(res.stdout.split("ready: ")[1].strip())
    assert joined.name == "tiny.Q6_K.gguf"
    parts = [hub.files[("acme/tiny-GGUF", f"tiny.Q6_K.gguf.part{i}of2")] for i in (1, 2)]
    assert joined.read_bytes() == b"".join(parts)
    assert not list(joined.parent.glob("*.joining"))


def test_wrong_sha256_is_refused_and_removed(hub, tmp_path, cat):
    hub.bad_sha.add("tiny-Q4_K_M.gguf")
    res = download(hub, tmp_path, "tiny")
    assert res.returncode == 2 and "sha256" in res.stderr and "Traceback" not in res.stderr
    blobs = list((tmp_path / "hf").rglob("blobs/*"))
    assert not [b for b in blobs if b.stat().st_size == hub.sizes["g1"]]  # nothing left looking complete


def test_gated_repo_401_names_licence_and_token(hub, tmp_path, cat):
    res = download(hub, tmp_path, "gated")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "Llama 3.1 Community License" in res.stderr and "HF_TOKEN" in res.stderr
    ok = download(hub, tmp_path, "gated", token="hf_test_token")
    assert ok.returncode == 0, ok.stderr
    assert "hf_test_token" not in ok.stdout + ok.stderr + res.stderr


def test_interrupted_download_resumes_without_refetching(hub, tmp_path, cat):
    hub.cut_once.add("big-Q4_K_M.gguf")
    first = download(hub, tmp_path, "big")
    if first.returncode != 0:  # huggingface-hub may give up on the cut transfer: rerunning resumes it
        assert "Traceback" not in first.stderr
        second = download(hub, tmp_path, "big")
        assert second.returncode == 0, second.stderr
    ranges = [r for m, p, r in hub.log if m == "GET" and p.endswith("big-Q4_K_M.gguf") and r]
    assert ranges, "no ranged (resuming) request was made"
    start = int(ranges[-1].split("=")[1].split("-")[0])
    half = hub.sizes["big"] // 2
    assert 0 < start <= half
    assert hub.served_bytes == half + hub.sizes["big"] - start  # only what was not on disk was sent again
    path = Path((first if first.returncode == 0 else second).stdout.split("ready: ")[1].strip())
    assert path.read_bytes() == hub.files[("acme/big-GGUF", "big-Q4_K_M.gguf")]


def test_hub_repo_and_file_without_catalogue_edit(hub, tmp_path, cat):
    res = download(hub, tmp_path, "hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf")
    assert res.returncode == 0, res.stderr
    assert (
        Path(res.stdout.split("ready: ")[1].strip()).read_bytes()
        == hub.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")]
    )
    bad = download(hub, tmp_path, "hf:acme/../x.gguf")
    assert bad.returncode == 2 and "hf:OWNER/REPO/FILE.gguf" in bad.stderr


def test_not_a_gguf(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny", "--quant", "Q5_K_M")
    assert res.returncode == 2 and "not a GGUF" in res.stderr


def test_missing_file_404(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny", "--quant", "Q3_K_M")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "missing-Q3_K_M.gguf" in res.stderr


def test_preflight_disk_refusal_names_figures_and_smaller_quant(tmp_path):
    with pytest.raises(HarnessError) as err:
        check_disk(tmp_path, 40 * 2**30, "llama3.1-70b-instruct Q4_K_M", free=10 * 2**30)
    msg = err.value.format_message()
    assert "40.0 GiB" in msg and "10.0 GiB" in msg and "smaller quant" in msg


def test_preflight_memory_refusal(tmp_path):
    with pytest.raises(HarnessError) as err:
        check_memory(40 * 2**30, 2 * 2**30, "llama3.3-70b Q4_K_M", available=24 * 2**30)
    msg = err.value.format_message()
    assert "42.0 GiB" in msg and "24.0 GiB" in msg and "--parallel" in msg
    check_memory(4 * 2**30, 2**30, "llama3.1-8b Q4_K_M", available=24 * 2**30)  # fits: no error


def _flip_one_byte(path: Path, offset: int = 200) -> None:
    """Corrupt a file in place, same size (bit rot, a bad disk, a stray write)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_a_corrupted_cached_blob_is_caught_removed_and_refetched(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny")
    assert res.returncode == 0, res.stderr
    path = Path(res.stdout.split("ready: ")[1].strip())
    good = hub.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")]
    blob = path.resolve()
    assert blob.parent.name == "blobs"
    _flip_one_byte(blob)
    assert blob.stat().st_size == len(good)  # same size: a size check alone passes it

    def file_gets():
        return len([x for x in hub.log if x[0] == "GET" and "/resolve/" in x[1]])

    gets = file_gets()
    again = download(hub, tmp_path, "tiny")
    assert again.returncode == 0, again.stderr
    assert "corrupted" in again.stderr and "fetching it again" in again.stderr
    assert file_gets() == gets + 1  # refetched once
    assert Path(again.stdout.split("ready: ")[1].strip()).read_bytes() == good


def test_verify_rehashes_the_bytes_even_when_size_and_mtime_are_unchanged(hub, tmp_path, cat):
    res = download(hub, tmp_path, "tiny")
    assert res.returncode == 0, res.stderr
    blob = Path(res.stdout.split("ready: ")[1].strip()).resolve()
    ok = _harness(hub, tmp_path, "verify", "tiny")
    assert ok.returncode == 0 and "tiny Q4_K_M: verified" in ok.stdout, ok.stderr
    st = blob.stat()
    _flip_one_byte(blob)
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))  # the remembered hash's key no longer sees the change
    bad = _harness(hub, tmp_path, "verify", "tiny")
    assert bad.returncode == 2 and "corrupted" in bad.stderr and "harness download tiny" in bad.stderr
    assert "Traceback" not in bad.stderr and not blob.exists()
    again = download(hub, tmp_path, "tiny")
    assert again.returncode == 0, again.stderr
    assert (
        Path(again.stdout.split("ready: ")[1].strip()).read_bytes()
        == hub.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")]
    )


def test_verify_of_a_model_not_downloaded_says_what_to_do(hub, tmp_path, cat):
    res = _harness(hub, tmp_path, "verify", "tiny")
    assert res.returncode == 2 and "not downloaded" in res.stderr and "harness download tiny" in res.stderr


def _harness(hub, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HARNESS_TASKS_DIR": str(tmp_path / "tasks"),
    }
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_failed_join_leaves_no_joining_file(tmp_path):
    from harness.models.download import join_parts

    a = tmp_path / "x.gguf.part1of2"
    a.write_bytes(b"GGUF" + b"\0" * 1000)
    b = tmp_path / "x.gguf.part2of2"
    b.mkdir()  # unreadable as a file: the join fails after the first part was written
    dest = tmp_path / "out" / "x.gguf"
    with pytest.raises(HarnessError, match="joining the parts of x.gguf failed"):
        join_parts([a, b], dest)
    assert not list((tmp_path / "out").iterdir())  # no x.gguf.joining, no x.gguf


def _remembered(path: Path, xdg: Path) -> str | None:
    """The sha256 harness.hashing remembered for this exact file version: its cache file under
    $XDG_CACHE_HOME, keyed by the file's identity (device, inode, size, mtime)."""
    import json

    st = path.resolve().stat()
    cache = json.loads((xdg / "llama-bench-harness" / "sha256.json").read_text())
    return cache.get(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")


def test_the_hash_is_of_the_bytes_and_remembered_per_file_version(tmp_path, monkeypatch):
    import hashlib

    from harness import hashing

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    data = b"weights" * 1000
    claimed = hashlib.sha256(data).hexdigest()
    blob = blobs / claimed  # named like an HF cache blob: the name is not trusted
    blob.write_bytes(data)
    _flip_one_byte(blob, 3)
    assert hashing.file_sha256(blob) == hashlib.sha256(blob.read_bytes()).hexdigest() != claimed
    assert _remembered(blob, tmp_path / "xdg") == hashlib.sha256(blob.read_bytes()).hexdigest()
    blob.write_bytes(data)  # rewritten: a new version (mtime), hashed again
    assert hashing.file_sha256(blob) == claimed
