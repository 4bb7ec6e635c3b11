"""The fault suite of issue #13: each class of bad input or fault that once ended badly, pinned.

Property-based tests (Hypothesis) feed the parsers arbitrary input: runs folders full of arbitrary files,
server answers of arbitrary JSON shapes, data rows of arbitrary values. Subprocess tests go through the
installed ``harness`` entry point, with real files, a real tmpfs for ENOSPC and a real HTTP server on
127.0.0.1, so that each test can see the fault it names.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from records import make_record, write_record

from harness.errors import HarnessError

HARNESS = Path(sys.executable).parent / "harness"  # the installed entry point, as a user runs it
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def harness(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    import os

    res = subprocess.run(
        [str(HARNESS), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


# ---------------------------------------------------------------- 1. secrets never reach any output
def test_redact_argv_and_urls():
    from harness.redact import redact_argv, redact_url

    assert redact_url("http://alice:pw@h:8080/v1?token=t#f") == "http://***@h:8080/v1?***"
    assert redact_url("http://alice:pw@h:8080/v1?token=t", mark=False) == "http://h:8080/v1"
    argv = [
        "bench",
        "--base-url=https://u:p@x.example/v1?key=s",
        "--api-key",
        "sk-1",
        "--hf-token=hf_2",
        "--api-key-env",
        "MY_KEY",
        "-t",
        "gsm8k",
    ]
    out = " ".join(redact_argv(argv))
    assert not any(s in out for s in ("u:p", "key=s", "sk-1", "hf_2"))
    assert "--api-key-env MY_KEY" in out and "-t gsm8k" in out and "x.example/v1" in out


def test_publish_redacts_a_command_recorded_with_secrets(tmp_path):
    """A record written by an older version (or by hand) with a password in its command: publish masks it."""
    from harness.publish.build import publish

    rec = make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True, False]}, quant="Q4_1")
    rec["command"] = "harness bench --base-url 'http://bob:hunter2@h/v1?key=k9' --api-key sk-77 -t gsm8k"
    write_record(tmp_path, rec)
    publish(tmp_path)
    for name in ("README.md", "report.html", "claims.csv", "scores.csv"):
        text = (tmp_path / name).read_text()
        assert "hunter2" not in text and "k9" not in text and "sk-77" not in text
    assert "harness bench --base-url" in (tmp_path / "README.md").read_text()


@given(st.text(max_size=80), st.text(alphabet="abcdefghijklmnop0123456789", min_size=6, max_size=12))
@SETTINGS
def test_no_url_password_survives_redaction(junk, secret):
    from harness.redact import redact_argv, redact_text

    url = f"https://user:{secret}@host.example/v1?token={secret}"
    assert secret not in redact_text(f"{junk} {url} {junk}").replace(junk, "")
    assert secret not in " ".join(redact_argv([junk, url, f"--base-url={url}"])).replace(junk, "")


@pytest.mark.slow
def test_url_credentials_and_query_reach_no_file_or_output(tmp_path, mirror, smollm2_path):
    """`--base-url http://user:pass@host/v1?token=…` through the installed `harness`: the query reaches the
    server as a parameter (the path stays /v1/completions), and neither secret is in the record, the console,
    lm-eval's JSON or the published README; the recorded command is there, redacted."""
    from openai_stub import StubServer

    from harness.backends.llamacpp.vocab import LocalVocab

    stub = StubServer()
    stub.count_tokens = LocalVocab(smollm2_path).count  # SmolLM2 prompts start with BOS: checked on the first
    try:
        url = stub.url.replace("http://", "http://alice:pw-SECRET-1@") + "?token=tok-SECRET-2"
        res = harness(
            "bench",
            "--backend",
            "server",
            "--base-url",
            url,
            "-t",
            "gsm8k",
            "--limit",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(tmp_path),
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert stub.queries and all(q == {"token": ["tok-SECRET-2"]} for q in stub.queries)
        assert stub.auth and all(a == ("alice", "pw-SECRET-1") for a in stub.auth)
        pub = harness("publish", "--results-dir", str(tmp_path))
        assert pub.returncode == 0, pub.stderr
    finally:
        stub.close()
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*[0-9]Z.json")]
    assert rec["command"].startswith("harness bench --backend server --base-url") and "***" in rec["command"]
    texts = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png"]
    for t in texts + [res.stdout, res.stderr, pub.stdout, pub.stderr]:
        assert "SECRET" not in t and "alice" not in t


# ---------------------------------------------------------------- 4. one bad file never stops everything
def _good(results):
    return write_record(
        results,
        make_record(
            "smollm2-135m",
            "gsm8k",
            {"gsm8k_cot_llama": [True, False] * 5},
            sizes={"gsm8k_cot_llama": 1319},
            quant="Q4_1",
            n_params=1.345e8,
        ),
    )


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


def _mangled_record(draw_key, value):
    rec = make_record("llama3.1-8b-instruct", "mmlu", {"mmlu_llama_anatomy": [True, False, True]})
    obj = rec
    for part in draw_key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            break
        if part == draw_key.split(".")[-1]:
            obj[part] = value
        else:
            obj = obj[part]
    return rec


RECORD_KEYS = st.sampled_from(
    [
        "schema_version",
        "status",
        "model",
        "model.name",
        "model.quant",
        "task",
        "task.n",
        "task.name",
        "task.config_hash",
        "metrics",
        "samples",
        "hardware",
        "timing",
        "timing.wall_seconds",
        "per_subtask",
        "created",
        "run_id",
        "model.kind",
    ]
)
FILE_CONTENT = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.tuples(RECORD_KEYS, JSON_VALUES).map(lambda kv: json.dumps(_mangled_record(*kv)).encode()),
)


@given(files=st.lists(FILE_CONTENT, min_size=1, max_size=4))
@SETTINGS
def test_load_runs_skips_any_bad_file_and_keeps_the_good_ones(tmp_path_factory, files):
    from harness.records.parse import RecordProblem, parse_record
    from harness.records.runs import load_runs

    def usable_record(rec: object) -> bool:
        try:
            parse_record(rec)
        except RecordProblem:
            return False
        return True

    results = tmp_path_factory.mktemp("results")
    good = _good(results)
    (results / "runs" / ".tmp-abc.json").write_bytes(b"half a rec")  # a writer's temp file: never a record
    usable = 0
    for i, data in enumerate(files):
        (results / "runs" / f"other-{i}.json").write_bytes(data)
        try:
            usable += usable_record(json.loads(data.decode()))
        except (UnicodeDecodeError, ValueError):
            pass
    loaded = load_runs(results)  # never raises
    assert good in [r.path for r in loaded.runs]
    assert len(loaded.unreadable) == len(files) - usable
    assert all(p.name.startswith("other-") for p, _ in loaded.unreadable)


def test_bad_files_in_runs_are_named_and_commands_still_succeed(tmp_path):
    _good(tmp_path)
    (tmp_path / "runs" / "empty.json").write_text("")
    (tmp_path / "runs" / "list.json").write_text("[1, 2]")
    (tmp_path / "runs" / "nokey.json").write_text(json.dumps({"schema_version": 1, "status": "complete"}))
    for args in (["scores"], ["compare"], ["publish"], ["publish", "--check"]):
        res = harness(*args, "--results-dir", str(tmp_path))
        assert res.returncode == 0, (args, res.stderr)
        assert "skipped 3 unreadable run record(s)" in res.stderr and "nokey.json: field" in res.stderr


# ---------------------------------------------------------------- 5. record names stay bounded
def test_record_and_journal_names_are_bounded():
    from harness.records.record import file_slug, run_stem

    long = "Meta-Llama-3.1-8B-Instruct-abliterated-" * 8  # 312 characters
    stem = run_stem(long, "Q4_K_M", "mmlu_cot", "0123456789abcdef", "20261130T000000Z")
    assert len(f"{stem}.lm_eval.json") < 160 and stem.startswith("Meta-Llama-3.1-8B")
    assert file_slug(long) != file_slug(long[:-1] + "X")  # two long names stay apart
    assert file_slug("a/b c:d") == "a-b-c-d"


# ---------------------------------------------------------------- 6. bounds that bound
def test_hanging_server_stops_within_timeout_plus_retry_window():
    import time

    from openai_stub import StubServer

    from harness.backends.server.client import ServerClient
    from harness.backends.server.transport import ServerUnavailable

    stub = StubServer()
    stub.stall_next, stub.stall_seconds = 100, 30.0  # accepts the connection, never answers in time
    try:
        client = ServerClient(stub.url, model="stub-model", timeout=1.0, retry_seconds=2.0)
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable) as err:
            client.complete("hello", 4, [])
        elapsed = time.monotonic() - t0
    finally:
        stub.close()
    # One attempt may wait --request-timeout (1 s); retries stop 2 s (--retry-for) after the first fault.
    assert elapsed < 1.0 + 2.0 + 2.0, elapsed
    msg = err.value.format_message()
    assert "--retry-for" in msg and "--request-timeout 1 s" in msg and "no answer within" in msg


# ---------------------------------------------------------------- 7. malformed server answers
class _Canned:
    """A server on 127.0.0.1 that answers every request 200 with the JSON body a test sets."""

    def __init__(self):
        self.body = b"{}"
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            do_GET = do_POST = _send

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def canned():
    c = _Canned()
    yield c
    c.close()


ANSWERS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"choices": JSON_VALUES, "usage": JSON_VALUES}),
    st.fixed_dictionaries(
        {
            "choices": st.lists(
                st.fixed_dictionaries(
                    {"text": JSON_VALUES, "finish_reason": JSON_VALUES, "logprobs": JSON_VALUES}
                ),
                max_size=2,
            ),
            "usage": st.fixed_dictionaries({"prompt_tokens": JSON_VALUES, "completion_tokens": JSON_VALUES}),
        }
    ),
    st.fixed_dictionaries(
        {
            "data": JSON_VALUES,
            "default_generation_settings": JSON_VALUES,
            "model_path": JSON_VALUES,
            "total_slots": JSON_VALUES,
            "version": JSON_VALUES,
        }
    ),
)


@given(answer=ANSWERS)
@SETTINGS
def test_any_server_answer_is_a_result_or_one_message(canned, answer):
    from harness.backends.server.client import ServerClient
    from harness.backends.server.replies import Completion

    canned.body = json.dumps(answer).encode()
    client = ServerClient(canned.url, model="m", timeout=5, retry_seconds=0)
    for call in (
        lambda: client.complete("p", 4, ["\n"]),
        lambda: client.prompt_logprobs("a b c"),
        client.info,
    ):
        try:
            out = call()
        except HarnessError as exc:
            assert exc.format_message()  # one message, never another exception type
            continue
        if isinstance(out, Completion):
            assert isinstance(out.text, str) and isinstance(out.prompt_tokens, int)


# ---------------------------------------------------------------- 3. bad data is named, never scored in silence
ROWS = st.fixed_dictionaries({"question": JSON_VALUES, "answer": JSON_VALUES, "choices": JSON_VALUES})


@given(row=ROWS)
@SETTINGS
def test_row_checks_name_a_field_or_pass(row):
    from harness.tasks.data import gsm8k_row_problem, mmlu_row_problem

    for check in (gsm8k_row_problem, mmlu_row_problem):
        problem = check(row)
        assert problem is None or (problem[0] in row and problem[1])


# Good rows, and one field of a good row spoiled: each check must name exactly the spoiled field (the test
# above alone also passes for a check that flags nothing).
TEXT = st.text(min_size=1, max_size=20).filter(str.strip)
NOT_TEXT = st.none() | st.integers() | st.floats() | st.booleans() | st.lists(TEXT, max_size=2) | st.just({})
BLANK = st.text(alphabet=" \t\n", max_size=3)
GSM8K_ROWS = st.fixed_dictionaries(
    {
        "question": TEXT,
        "answer": st.tuples(
            st.text(max_size=20).filter(lambda t: "####" not in t),
            st.integers(-(10**6), 10**6) | st.decimals(-1000, 1000, places=2, allow_nan=False),
        ).map(lambda wt: f"{wt[0]}\n#### {wt[1]}"),
    }
)
MMLU_ROWS = st.fixed_dictionaries(
    {
        "question": st.text(
            max_size=20
        ),  # MMLU has questions that are all in the choices: an empty one is fine
        "choices": st.lists(TEXT, min_size=4, max_size=4),
        "answer": st.integers(0, 3) | st.integers(0, 3).map(float),
    }
)
GSM8K_SPOILED = st.sampled_from(
    [
        ("question", NOT_TEXT | BLANK),
        ("answer", NOT_TEXT | st.text(max_size=20).filter(lambda t: "####" not in t)),
        (
            "answer",
            st.text(alphabet="abcxyz ?!", max_size=8).map(lambda t: f"work\n#### {t}"),
        ),  # no number after ####
    ]
)
MMLU_SPOILED = st.sampled_from(
    [
        ("question", NOT_TEXT),
        (
            "choices",
            NOT_TEXT.filter(lambda v: not isinstance(v, list))
            | st.lists(TEXT, max_size=8).filter(lambda c: len(c) != 4)
            | st.tuples(st.lists(TEXT, min_size=3, max_size=3), BLANK | NOT_TEXT, st.integers(0, 3)).map(
                lambda t: t[0][: t[2]] + [t[1]] + t[0][t[2] :]
            ),
        ),  # one of four choices empty or not text
        (
            "answer",
            st.none()
            | st.booleans()
            | TEXT
            | st.integers(4, 10**6)
            | st.integers(-(10**6), -1)
            | st.floats(0.01, 3.99).filter(lambda f: not f.is_integer())
            | st.just(float("nan")),
        ),
    ]
)


@given(data=st.data())
@SETTINGS
def test_row_checks_flag_the_spoiled_field_and_pass_good_rows(data):
    from harness.tasks.data import gsm8k_row_problem, mmlu_row_problem

    for check, rows, spoiled in (
        (gsm8k_row_problem, GSM8K_ROWS, GSM8K_SPOILED),
        (mmlu_row_problem, MMLU_ROWS, MMLU_SPOILED),
    ):
        row = data.draw(rows)
        assert check(row) is None, row
        field_name, bad_values = data.draw(spoiled)
        bad = dict(row, **{field_name: data.draw(bad_values)})
        problem = check(bad)
        assert problem is not None and problem[0] == field_name and problem[1], (bad, problem)


def _mirror_with(tmp_path, mirror, repo_file: str, edit) -> Path:
    """A copy of the data mirror (symlinks) in which one parquet file is replaced by an edited copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "data"
    for src in mirror.rglob("*.parquet"):
        dst = root / src.relative_to(mirror)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)
    target = root / repo_file
    rows = pq.read_table(target.resolve()).to_pylist()
    edit(rows)
    target.unlink()
    pq.write_table(pa.Table.from_pylist(rows), target)
    return root


@pytest.mark.parametrize("value", [7, None, -1])
def test_bad_mmlu_label_is_named_before_the_model_loads(tmp_path, mirror, value):
    data = _mirror_with(
        tmp_path,
        mirror,
        "cais/mmlu/anatomy/test-00000-of-00001.parquet",
        lambda rows: rows[3].update(answer=value),
    )
    res = harness(
        "bench",
        "-t",
        "mmlu_loglik",
        "--limit",
        "57",
        "--data-dir",
        str(data),
        "--results-dir",
        str(tmp_path / "results"),
    )
    assert res.returncode == 2
    assert (
        "anatomy/test-00000-of-00001.parquet row 3, field 'answer'" in res.stderr
        and "--skip-bad-rows" in res.stderr
    )
    assert not (tmp_path / "results" / ".journal").exists() or not any(
        (tmp_path / "results" / ".journal").iterdir()
    )


def test_bad_gsm8k_row_is_skipped_and_counted_with_the_flag(tmp_path, mirror):
    from harness.models.catalogue import resolve
    from harness.tasks.settings import plan_task

    data = _mirror_with(
        tmp_path,
        mirror,
        "openai/gsm8k/main/test-00000-of-00001.parquet",
        lambda rows: rows[5].update(answer="no final answer here"),
    )
    entry = resolve("smollm2-135m")
    with pytest.raises(HarnessError, match="row 5, field 'answer'"):
        plan_task("gsm8k", entry, full=True, data_dir=data)
    plan = plan_task("gsm8k", entry, full=True, data_dir=data, skip_bad_rows=True)
    assert plan.n_samples == 1318 and 5 not in plan.samples["gsm8k_cot_llama"]
    assert [(r["row"], r["field"]) for r in plan.skipped_rows] == [(5, "answer")]
    clean = plan_task("gsm8k", entry, full=True, data_dir=mirror)
    assert plan.config_hash() != clean.config_hash()  # never merged with a run on the intact data


def test_config_hash_covers_the_data_bytes(tmp_path, mirror):
    from harness.models.catalogue import resolve
    from harness.tasks.settings import plan_task

    data = _mirror_with(
        tmp_path,
        mirror,
        "openai/gsm8k/main/test-00000-of-00001.parquet",
        lambda rows: rows[1000].update(question=rows[1000]["question"] + " "),
    )
    entry = resolve("smollm2-135m")
    a = plan_task("gsm8k", entry, limit=10, data_dir=mirror)
    b = plan_task(
        "gsm8k", entry, limit=10, data_dir=data, allow_modified_data=True
    )  # same ids, row 1000 unsampled
    assert a.samples == b.samples and a.config_hash() != b.config_hash()


# ---------------------------------------------------------------- 7. every option validated, one message each
@pytest.mark.parametrize(
    "args,match",
    [
        (["--tasks", ""], "--tasks names no task"),
        (["--tasks", " , "], "--tasks names no task"),
        (["--tasks", "gsm8k,gsm8k"], "--tasks lists gsm8k more than once"),
        (["--tasks", "gsm8k,hellaswag"], "unknown task(s) hellaswag"),
        (["--max-branches", "0"], "--max-branches"),
        (["--threads", "-1"], "--threads"),
        (["--threads", "100000"], "--threads"),
        (["--gpu-layers", "-5"], "--gpu-layers"),
        (["--parallel", "0"], "--parallel"),
        (["--limit", "0"], "--limit"),
        (["--request-timeout", "0"], "--request-timeout"),
        (["--retry-for", "-1"], "--retry-for"),
        (["--concurrency", "0"], "--concurrency"),
        (["-m", "/tmp"], "a folder"),
        (["-m", "/nonexistent/model.bin"], "no such file"),
        (["-m", "missing.gguf"], "'missing.gguf': the GGUF file was not found"),  # was "unknown model"
        (["--base-url", "ftp://host/v1"], "not an http(s) URL"),
        (["--base-url", "http://host:notaport/v1"], "not a valid URL"),
    ],
)
def test_bad_options_are_one_message_before_any_work(tmp_path, args, match):
    res = harness("bench", *args, "--results-dir", str(tmp_path), timeout=120)
    assert res.returncode == 2, res.stderr
    assert match in res.stderr, res.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started


# ---------------------------------------------------------------- 7. a full disk while journaling (real tmpfs)
@pytest.fixture()
def tiny_disk(tmpfs):
    return tmpfs("16k")


def test_disk_full_while_journaling_keeps_every_acknowledged_result(tiny_disk):
    from harness.records.journal import Journal

    filler = tiny_disk / "other-files"
    filler.write_bytes(b"x" * 8192)  # something else took half the disk
    ident = {"x": 1}
    j = Journal(tiny_disk / "j.jsonl", ident)
    acknowledged = {}
    with pytest.raises(HarnessError) as err:
        for i in range(10_000):
            j.add(f"k{i}", "y" * 200)
            acknowledged[f"k{i}"] = "y" * 200
    assert "free disk space, then rerun the same command" in err.value.format_message()
    j.close()  # never raises, though the disk is still full
    with pytest.raises(OSError) as full:
        (tiny_disk / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC  # the disk really was full
    (tiny_disk / "probe").unlink(missing_ok=True)
    with pytest.raises(HarnessError) as still:  # still full: the rerun says so, no traceback
        Journal(tiny_disk / "j.jsonl", ident)
    assert (
        "No space left" in still.value.format_message() and "free disk space" in still.value.format_message()
    )
    filler.unlink()  # the user frees space and reruns
    again = Journal(tiny_disk / "j.jsonl", ident)
    assert len(acknowledged) > 10 and all(again.get(k) == v for k, v in acknowledged.items())  # nothing lost
    again.add("after", 1)
    again.close()
