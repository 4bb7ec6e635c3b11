"""Faults and bad input: each ends with one clear message, a non-zero exit, and nothing lost or corrupted."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import FakeHub
from test_download import catalogue, download, make_gguf

from harness.errors import HarnessError


@pytest.fixture()
def hub(tmp_path):
    with FakeHub() as h:
        h.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")] = make_gguf(tmp_path / "a.gguf", 1000)
        h.files[("acme/gated-GGUF", "gated-Q4_K_M.gguf")] = h.files[("acme/tiny-GGUF", "tiny-Q4_K_M.gguf")]
        yield h


def _clean(res):
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


def test_5xx_is_retried_then_succeeds(hub, tmp_path):
    catalogue(tmp_path)
    hub.fail_next = [503, 502]
    res = _clean(download(hub, tmp_path, "tiny"))
    assert res.returncode == 0, res.stderr
    assert hub.answered == [503, 502]


def test_persistent_5xx_gives_up_after_bounded_retries(hub, tmp_path):
    catalogue(tmp_path)
    hub.fail_next = [503] * 50
    res = _clean(download(hub, tmp_path, "tiny"))
    assert res.returncode == 2 and "HTTP 503" in res.stderr and "try again later" in res.stderr
    assert len(hub.answered) == 3  # RETRIES attempts, then a message


def test_403_is_not_retried_and_names_the_licence(hub, tmp_path):
    catalogue(tmp_path)
    hub.forbidden.add("acme/gated-GGUF")
    res = _clean(download(hub, tmp_path, "gated", token="hf_secret_marker_123"))
    assert res.returncode == 2 and "HTTP 403" in res.stderr and "Llama 3.1 Community License" in res.stderr
    assert hub.answered == [403]
    assert "hf_secret_marker_123" not in res.stdout + res.stderr  # the token never appears


def test_timeouts_are_retried(hub, tmp_path):
    catalogue(tmp_path)
    hub.slow_next, hub.stall_seconds = 1, 8.0  # > the 5 s client timeout set by download()
    res = _clean(download(hub, tmp_path, "tiny"))
    assert res.returncode == 0, res.stderr
    assert 0 in hub.answered


@pytest.fixture()
def small_disk(tmpfs):
    """A 4 MiB tmpfs (conftest's ``tmpfs``)."""
    return tmpfs("4m")


def test_disk_full_during_download_is_a_message_not_a_retry_loop(tmp_path, small_disk):
    catalogue(tmp_path)
    with FakeHub() as h:
        h.files[("acme/big-GGUF", "big-Q4_K_M.gguf")] = make_gguf(tmp_path / "big.gguf", 2_000_000)  # 8 MB
        h.fake_size["big-Q4_K_M.gguf"] = 1_000_000  # the Hub understates: the disk preflight lets it through
        env_home = small_disk / "hf"
        res = _clean(download(h, tmp_path, "big", hf_home=env_home))
        assert res.returncode == 2 and "disk filled up" in res.stderr and "HF_HOME" in res.stderr
        gets = [x for x in h.log if x[0] == "GET" and "/resolve/" in x[1]]
        assert len(gets) == 1  # ENOSPC is not retried


def test_unreachable_hub_is_a_connection_message(tmp_path):
    catalogue(tmp_path)

    class Nowhere:
        url = "http://127.0.0.1:9"  # discard port: connection refused

    res = _clean(download(Nowhere, tmp_path, "tiny"))
    assert res.returncode == 2 and "could not reach the Hub" in res.stderr and "404" not in res.stderr


def test_truncated_and_foreign_ggufs_are_refused(tmp_path, smollm2_path):
    from harness.models.gguf_check import check_gguf

    cut = tmp_path / "cut-Q4_1.gguf"
    with open(smollm2_path, "rb") as f:
        cut.write_bytes(f.read(2_000_000))  # header intact, tensor data missing
    with pytest.raises(HarnessError, match="damaged GGUF"):
        check_gguf(cut)
    gpt2 = tmp_path / "gpt2-Q8_0.gguf"
    make_gguf(gpt2, 100, arch="gpt2")
    with pytest.raises(HarnessError, match="'gpt2' model"):
        check_gguf(gpt2)


def test_other_architectures_run_from_a_users_own_file_but_not_from_the_catalogue(tmp_path, capsys):
    """A Qwen/Gemma/... GGUF given by path runs with a note (a rival beside a Llama model); a catalogue entry
    whose file turns out not to be Llama-architecture is refused."""
    from harness.models.catalogue import resolve
    from harness.models.gguf_check import check_gguf

    qwen = tmp_path / "Qwen2.5-0.5B-Instruct-Q8_0.gguf"
    make_gguf(qwen, 100, arch="qwen2")
    info = check_gguf(qwen, resolve(str(qwen)))
    assert (
        info["architecture"] == "qwen2" and "'qwen2' model, not Llama-architecture" in capsys.readouterr().err
    )
    with pytest.raises(
        HarnessError, match="not the Llama-architecture file the catalogue names for llama3.1-8b"
    ):
        check_gguf(qwen, resolve("llama3.1-8b"))


def _bench(tmp_path, *args):
    return subprocess.run(
        [str(Path(sys.executable).parent / "harness"), "bench", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_empty_data_file(tmp_path):
    import pandas as pd

    d = tmp_path / "openai" / "gsm8k" / "main"
    d.mkdir(parents=True)
    pd.DataFrame({"question": [], "answer": []}).to_parquet(d / "test-00000-of-00001.parquet")
    res = _clean(
        _bench(tmp_path, "--tasks", "gsm8k", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path))
    )
    assert res.returncode == 2 and "no rows" in res.stderr


def test_unwritable_results_folder_fails_before_any_work(tmp_path, mirror):
    res = _clean(
        _bench(
            tmp_path,
            "--tasks",
            "gsm8k",
            "--limit",
            "1",
            "--data-dir",
            str(mirror),
            "--results-dir",
            "/proc/harness-results",
        )
    )
    assert res.returncode == 2 and "results folder" in res.stderr and "--results-dir" in res.stderr


def test_disk_full_while_writing_a_record_keeps_the_old_file(tmp_path, monkeypatch):
    from harness import atomic

    path = tmp_path / "r.json"
    atomic.write_json(path, {"schema_version": 1, "ok": True})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(HarnessError, match="No space left"):
        atomic.write_json(path, {"schema_version": 1, "ok": False})
    assert json.loads(path.read_text())["ok"] is True  # the previous complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


# A full disk while journaling: tests/test_hardening.py fills a real tmpfs (this file's old test swapped a
# fake file back in before close(), which hid exactly the failure it was about).


@pytest.mark.slow
def test_token_never_reaches_records_or_output(tmp_path, mirror):
    env = dict(os.environ, HF_TOKEN="hf_secret_marker_456")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "bench",
            "--tasks",
            "gsm8k",
            "--limit",
            "1",
            "--threads",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    written = "".join(p.read_text() for p in Path(tmp_path).rglob("*.json"))
    assert "hf_secret_marker_456" not in written + res.stdout + res.stderr
