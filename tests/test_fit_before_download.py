"""Issue #20: `harness bench` judges whether a model can run here BEFORE downloading it (fake Hub on
127.0.0.1, a fixed memory figure through HARNESS_MEMORY_AVAILABLE); the header is read with range requests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hub_server import FakeHub

from harness.backends.llamacpp.sizing import kv_cache_bytes, planned_ctx
from harness.disk import GIB
from harness.errors import HarnessError
from harness.models.gguf_check import gguf_summary, read_header_shape
from harness.models.gguf_header import file_fetch
from harness.plan.fit import fit_or_refuse

ROOT = Path(__file__).resolve().parent.parent
REPO = (
    "unsloth/Llama-3.3-70B-Instruct-GGUF"  # the real catalogue's entry (sizes null there: the Hub gives them)
)
Q4 = "Llama-3.3-70B-Instruct-Q4_K_M.gguf"
Q8 = [f"Llama-3.3-70B-Instruct-Q8_0/Llama-3.3-70B-Instruct-Q8_0-0000{i}-of-00002.gguf" for i in (1, 2)]
Q4_SIZE = (
    42_520_395_584  # a 70B Q4_K_M's size as the fake Hub announces it (the real Hub is unreachable here)
)
HARNESS = Path(sys.executable).parent / "harness"


def llama70b_header_gguf(path: Path, vocab: int = 150_000) -> bytes:
    """A GGUF with Llama 3.3 70B's shape (80 layers, 64 heads, 8 KV heads, 8192 wide), a vocabulary big
    enough that the header runs past the first range read, and one small tensor standing for the weights."""
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_name("Llama 3.3 70B Instruct (test header)")
    w.add_context_length(131072)
    w.add_embedding_length(8192)
    w.add_block_count(80)
    w.add_feed_forward_length(28672)
    w.add_head_count(64)
    w.add_head_count_kv(8)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i:06d}".encode() for i in range(vocab)])
    w.add_tensor("token_embd.weight", np.ones(200_000, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def tasks_dir(tmp_path: Path) -> Path:
    """A copy of the project's task and model files (HARNESS_TASKS_DIR)."""
    d = tmp_path / "tasks"
    shutil.copytree(ROOT / "tasks", d)
    return d


def env_for(hub, tmp_path: Path, mirror: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HARNESS_TASKS_DIR": str(tmp_path / "tasks"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "HARNESS_DATA_DIR": str(mirror),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    return env | extra


def weight_bytes_served(hub, name: str, data: bytes) -> int:
    """Bytes of ``name`` at or past its tensor data (the weights) the fake Hub sent."""
    from gguf import GGUFReader

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"probe-{os.getpid()}.gguf"
    tmp.write_bytes(data)
    try:
        start = GGUFReader(str(tmp)).data_offset
    finally:
        tmp.unlink()
    return sum(max(0, end - max(a, start)) for f, a, end in hub.served if f == name)


@pytest.fixture()
def hub70(tmp_path):
    g = llama70b_header_gguf(tmp_path / "70b.gguf")
    with FakeHub() as h:
        h.files[(REPO, Q4)] = g
        for f in Q8:
            h.files[(REPO, f)] = g
        h.fake_size[Q4] = Q4_SIZE
        h.fake_size[Q8[0]] = 37_000_000_000
        h.fake_size[Q8[1]] = 38_000_000_000
        h.files[("acme/big-GGUF", "Big-70B-Instruct-Q4_K_M.gguf")] = g
        h.fake_size["Big-70B-Instruct-Q4_K_M.gguf"] = Q4_SIZE
        h.data = g
        yield h


def test_70b_on_a_24gib_cpu_machine_is_refused_with_no_weight_byte_fetched(hub70, tmp_path, mirror):
    tasks_dir(tmp_path)
    env = env_for(hub70, tmp_path, mirror, HARNESS_MEMORY_AVAILABLE="24GiB")
    res = subprocess.run(
        [
            str(HARNESS),
            "bench",
            "--model",
            "llama3.3-70b",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path / "results"),
            "--gpu-layers",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    print(res.stderr)  # the message quoted in the closing note
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "llama3.3-70b-instruct Q4_K_M needs about" in res.stderr and "24.0 GiB is available" in res.stderr
    assert f"weights {Q4_SIZE / GIB:.1f}" in res.stderr  # the size came from the Hub's metadata
    assert "No weights were downloaded (only the file's header: 1.0 MiB)" in res.stderr
    assert (
        "no quant of this model fits (the smallest, Q4_K_M" in res.stderr
    )  # Q8_0's 75 GB were looked up too
    assert weight_bytes_served(hub70, Q4, hub70.data) == 0
    gets = [(m, p, r) for m, p, r in hub70.log if m == "GET" and "/resolve/" in p]
    assert gets and all(r and r.startswith("bytes=0-") for _, _, r in gets)  # header range reads only
    assert (
        sum(end - a for _, a, end in hub70.served) <= 1 << 20
    )  # one 1 MiB read: the shape precedes the vocab
    assert not list((tmp_path / "hf").rglob("*.gguf"))


def test_download_only_and_download_say_it_cannot_run_here_and_fetch_anyway(tmp_path, mirror):
    tasks_dir(tmp_path)
    g = llama70b_header_gguf(tmp_path / "70b.gguf", vocab=1000)
    with FakeHub() as h:
        h.files[("acme/big-GGUF", "Big-70B-Instruct-Q4_K_M.gguf")] = g
        # 20 GiB stated: with its 8.4 GiB KV cache more than the 24 GiB of RAM pretended, but within the free
        # disk of any machine that runs the tests (the download's own disk check is real, not pretended).
        h.fake_size["Big-70B-Instruct-Q4_K_M.gguf"] = 20 * GIB
        env = env_for(h, tmp_path, mirror, HARNESS_MEMORY_AVAILABLE="24GiB")
        spec = "hf:acme/big-GGUF/Big-70B-Instruct-Q4_K_M.gguf"
        # The size check after download would refuse the fake file (the Hub overstated it): the verdict
        # printed before the download is what is tested here.
        res = subprocess.run(
            [str(HARNESS), "bench", "--model", spec, "--download-only", "--tasks", "gsm8k"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert "Traceback" not in res.stderr
        assert "downloading Big-70B-Instruct-Q4_K_M Q4_K_M anyway (--download-only)" in res.stderr
        assert "24.0 GiB is available" in res.stderr
        assert [
            x for x in h.log if x[0] == "GET" and "/resolve/" in x[1] and not x[2]
        ]  # the whole file was requested
        dl = subprocess.run(
            [str(HARNESS), "download", spec], capture_output=True, text=True, env=env, timeout=300
        )
        assert "Traceback" not in dl.stderr
        assert "downloading Big-70B-Instruct-Q4_K_M Q4_K_M anyway (default bench settings)" in dl.stderr


def test_hf_model_without_catalogue_sizes_takes_its_size_from_the_hub(hub70, tmp_path, mirror):
    tasks_dir(tmp_path)
    env = env_for(hub70, tmp_path, mirror, HARNESS_MEMORY_AVAILABLE="24GiB")
    res = subprocess.run(
        [
            str(HARNESS),
            "bench",
            "--model",
            "hf:acme/big-GGUF/Big-70B-Instruct-Q4_K_M.gguf",
            "--tasks",
            "gsm8k",
            "--gpu-layers",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert (
        f"weights {Q4_SIZE / GIB:.1f}" in res.stderr
        and "no other quant of this model has a known size" in res.stderr
    )
    assert [x for x in hub70.log if x[0] == "POST" and "paths-info" in x[1]]
    assert weight_bytes_served(hub70, "Big-70B-Instruct-Q4_K_M.gguf", hub70.data) == 0


def test_header_range_read_gives_the_full_files_kv_figure(hub70, tmp_path):
    local = tmp_path / "70b-copy.gguf"
    local.write_bytes(hub70.data)
    code = (
        "import json; from harness.models.catalogue import resolve; from harness.models.hub_files import remote_shape; "
        f"print(json.dumps(remote_shape(resolve('hf:{REPO}/{Q4}'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_ENDPOINT": hub70.url,
        "HF_HOME": str(tmp_path / "hf"),
    }
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    remote = json.loads(res.stdout)
    full = gguf_summary(local)  # the whole file, through the gguf package
    keys = ("n_layer", "n_kv_heads", "head_dim")
    assert (
        {k: remote[k] for k in keys}
        == {k: full[k] for k in keys}
        == {"n_layer": 80, "n_kv_heads": 8, "head_dim": 128}
    )
    cells = 27648
    assert kv_cache_bytes(*(remote[k] for k in keys), cells) == kv_cache_bytes(
        *(full[k] for k in keys), cells
    )
    assert remote["fetched"] <= 1 << 20 < len(hub70.data)
    # The same reader over a local file, with a first read smaller than the header: it fetches on.
    small = read_header_shape(file_fetch(local), first=4096)
    assert {k: small[k] for k in keys} == {k: full[k] for k in keys}


class _Plan:
    """The parts of a TaskPlan the KV sizing reads."""

    def __init__(self, name, chat, gen_budget=None):
        self.name, self.chat = name, chat
        self.configs = [
            {"output_type": "generate_until", "generation_kwargs": {"max_gen_toks": gen_budget}}
            if gen_budget
            else {"output_type": "multiple_choice"}
        ]


SHAPE_70B = {"n_layer": 80, "n_kv_heads": 8, "head_dim": 128}


def test_refusal_names_the_largest_quant_that_fits():
    from harness.backends.llamacpp.settings import EngineSettings

    plans = [_Plan("gsm8k", True, 1024)]
    sizes = {"Q8_0": 75 * 10**9, "Q4_K_M": Q4_SIZE, "IQ2_XS": 12 * 10**9, "Q2_K": 26 * 10**9}
    with pytest.raises(HarnessError) as err:
        fit_or_refuse(
            Q4_SIZE,
            SHAPE_70B,
            plans,
            EngineSettings(n_parallel=2),
            "llama3.3-70b-instruct Q4_K_M",
            quant="Q4_K_M",
            quant_sizes=sizes,
            placed=("cpu", []),
            available=24 * GIB,
        )
    assert "the largest quant that fits is IQ2_XS" in err.value.hint
    assert "there is no GPU" in err.value.hint and "gsm8k" in err.value.message


def test_refusal_on_a_small_gpu_names_the_gpu_layers_that_fit():
    from harness.backends.llamacpp.settings import EngineSettings

    gpu = {"device": "CUDA0", "description": "RTX 4090", "free_bytes": 23 * GIB, "total_bytes": 24 * GIB}
    settings = EngineSettings(n_parallel=2)
    with pytest.raises(HarnessError) as err:
        fit_or_refuse(
            Q4_SIZE,
            SHAPE_70B,
            [_Plan("gsm8k", True, 1024)],
            settings,
            "70b",
            quant_sizes={},
            placed=("gpu", [gpu]),
            available=64 * GIB,
        )
    n = int(err.value.hint.split("--gpu-layers ")[1].split()[0])
    assert 0 < n < 80
    fit_or_refuse(
        Q4_SIZE,
        SHAPE_70B,
        [_Plan("gsm8k", True, 1024)],
        EngineSettings(n_parallel=2, gpu_layers=n),
        "70b",
        placed=("gpu", [gpu]),
        available=64 * GIB,
    )  # the suggestion passes the same check
    with pytest.raises(HarnessError):
        fit_or_refuse(
            Q4_SIZE,
            SHAPE_70B,
            [_Plan("gsm8k", True, 1024)],
            EngineSettings(n_parallel=2, gpu_layers=n + 1),
            "70b",
            placed=("gpu", [gpu]),
            available=64 * GIB,
        )


def test_kv_cells_follow_the_engines_sizing():
    from harness.backends.llamacpp.settings import EngineSettings

    s = EngineSettings()  # 8 slots, each in its own stream, plus the prefix stream
    got = planned_ctx([_Plan("x", True, 1024)], s, longest={"x": 1000})
    assert got["cells"] == 2048 * 9  # 1000 + 1024 + 1 cells per stream, rounded up to 1024
    assert planned_ctx([_Plan("x", True, 1024)], s, longest={"x": 1100})["cells"] == 3072 * 9
    ll = planned_ctx([_Plan("y", False)], s, longest={"y": 700})
    assert (
        ll["cells"] == 2048
    )  # log-likelihood: one unified cache of the longest branch + n_batch (the probe's too)
    assert (
        planned_ctx([_Plan("y", False)], EngineSettings(max_branches=4), longest={"y": 700})["cells"]
        == 2048 * 5
    )


@pytest.mark.slow
def test_a_model_that_fits_is_judged_then_downloaded_and_run(tmp_path, mirror, smollm2_path):
    tasks_dir(tmp_path)
    data = Path(smollm2_path).read_bytes()
    name = "SmolLM2-135M-Instruct-Q4_1.gguf"
    with FakeHub() as h:
        h.files[("acme/smol-GGUF", name)] = data
        env = env_for(h, tmp_path, mirror)
        res = subprocess.run(
            [
                str(HARNESS),
                "bench",
                "--model",
                f"hf:acme/smol-GGUF/{name}",
                "--tasks",
                "mmlu_cloze",
                "--limit",
                "1",
                "--threads",
                "2",
                "--results-dir",
                str(tmp_path / "results"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert "preflight: SmolLM2-135M-Instruct-Q4_1 Q4_1 fits" in res.stderr
        ranged = [r for m, p, r in h.log if m == "GET" and "/resolve/" in p and r]
        assert ranged and ranged[0] == "bytes=0-1048575"  # the header first, then the file
        assert sum(end - a for f, a, end in h.served if f == name) >= len(data)
    records = [
        p for p in (tmp_path / "results" / "runs").glob("*.json") if not p.name.endswith(".lm_eval.json")
    ]
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    import hashlib

    assert rec["model"]["sha256"] == hashlib.sha256(data).hexdigest()  # hashed over the bytes


def test_header_read_of_a_real_gguf_stops_before_its_vocabulary(smollm2_path):
    from gguf import GGUFReader

    got = read_header_shape(file_fetch(smollm2_path))
    full = gguf_summary(smollm2_path)
    assert {k: got[k] for k in ("n_layer", "n_kv_heads", "head_dim", "n_ctx_train")} == {
        k: full[k] for k in ("n_layer", "n_kv_heads", "head_dim", "n_ctx_train")
    }
    assert (
        got["fetched"] < GGUFReader(str(smollm2_path)).data_offset
    )  # less than the header (1.8 MB): no tensor byte
