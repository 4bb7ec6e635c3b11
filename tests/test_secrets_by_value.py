"""Issue #26 item 1: secrets masked by value, at every sink.

The value layer of harness.redact is fed secrets of arbitrary characters (quotes, ``<``, ``%``, ``@``,
``#``, ``/``, unicode) and must mask each in every spelling an output can give it (raw, percent-encoded,
HTML-escaped both ways, JSON-escaped). The end-to-end property runs the installed ``harness`` against a
stub server on 127.0.0.1 with a secret in every place one can enter (URL user and password, a query
value, the ``--api-key-env`` variable, ``HF_TOKEN``), a server whose completions echo all of them and a
server whose 401 and 500 error bodies echo the key; then it reads every output: stdout, stderr, every
file under the results folder (records, lm-eval's JSON, journals, ``console.log``) and what ``harness
publish`` makes of the records (README, CSV, report.html).
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness import redact
from harness.atomic import atomic_write_text, write_json

HARNESS = Path(sys.executable).parent / "harness"
SPECIALS = "'\"<>&%@#/?:;=+ |\\\u00e9\u2603\U0001f600"
# Any character but surrogates and control characters (argv and the environment cannot carry NUL; a
# terminal line cannot hold a newline as one value), with the characters that broke shape-based redaction
# drawn often.
CHARS = st.one_of(st.sampled_from(SPECIALS), st.characters(blacklist_categories=("Cs", "Cc")))
MARK = "Sx9"  # every secret starts with it: a drawn "000000" must not be "found" in a timestamp


def secrets_(min_size: int = 3, alphabet=CHARS):
    return st.text(alphabet=alphabet, min_size=min_size, max_size=14).map(lambda s: MARK + s)


def spellings(secret: str) -> set[str]:
    """Every form in which an output could show ``secret``."""
    esc = html.escape(secret, quote=True)
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        esc,
        esc.replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    } - {""}


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [f for s in secrets for f in spellings(s) if f in text]


@pytest.fixture(autouse=True)
def _forget():
    redact.clear_secrets()
    yield
    redact.clear_secrets()


# ------------------------------------------------------------------------------- the filter itself
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=secrets_(), before=st.text(max_size=20), after=st.text(max_size=20))
@example(secret="Sx9<'\"&", before="", after="")
def test_a_registered_secret_is_masked_in_every_spelling(secret, before, after):
    redact.clear_secrets()
    redact.add_secret(secret)
    for form in spellings(secret):
        out = redact.redact_text(before + form + after)
        assert not leaks(out, [secret]), (form, out)
        assert not leaks(json.dumps(redact.redact_value({"k": [before + form + after]})), [secret])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=secrets_(), password=secrets_(), token=secrets_())
@example(user="Sx9bob", password="Sx9p<a'ss\"", token="Sx9t&k")
def test_url_user_password_and_query_are_collected_in_any_spelling(user, password, token, tmp_path):
    """A URL as typed (parts percent-encoded, or raw where the URL still parses): each part is masked."""
    redact.clear_secrets()
    url = f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:9/v1?token={quote(token, safe='')}"
    raw = f"http://{user}:{password}@127.0.0.1:9/v1"  # what a user may type: '<' and quotes unencoded
    redact.collect_secrets(["bench", "--base-url", url, f"--other={raw}"], environ={})
    secrets = [user, password, token]
    text = f"error at {url} ({raw}): {user} {password} {token}"
    assert not leaks(redact.redact_text(text), secrets)
    atomic_write_text(tmp_path / "r.html", html.escape(text))  # report.html escapes what it shows
    write_json(tmp_path / "r.json", {"command": text, "samples": [{"response": password}]})
    for p in ("r.html", "r.json"):
        assert not leaks((tmp_path / p).read_text(), secrets)


def test_files_follow_the_umask(tmp_path):
    """mkstemp makes 0600; a record or a published table is written 0666 less the umask (here 0644)."""
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        atomic_write_text(tmp_path / "b.md", "x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "b.md").stat().st_mode & 0o777) == oct(0o644)


def test_json_files_are_strict():
    """No NaN or Infinity in a file the harness writes: a bug is refused, never written as invalid JSON."""
    with pytest.raises(ValueError):
        write_json(Path("/nonexistent/never-written.json"), {"x": float("nan")})


# ------------------------------------------------------------- end to end, through the installed harness
class _EchoKey(BaseHTTPRequestHandler):
    """A server that refuses every request and echoes the key (and all it was sent) in its error body."""

    protocol_version = "HTTP/1.1"
    status = 401

    def log_message(self, *args):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(n).decode(errors="replace") if n else ""
        body = json.dumps(
            {"error": {"message": f"bad key {self.headers.get('Authorization')} for {self.path} {sent}"}}
        ).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


def _echo_server(status: int):
    handler = type("H", (_EchoKey,), {"status": status})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def _harness(args: list[str], env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [str(HARNESS), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **env),
        errors="replace",
    )
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    return res


ASCII_KEY = st.text(
    alphabet=st.sampled_from("'\"<>&%@#/?:;=+|\\") | st.characters(min_codepoint=33, max_codepoint=126),
    min_size=3,
    max_size=14,
).map(lambda s: MARK + s)  # an HTTP header carries visible ASCII


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(user=secrets_(), password=secrets_(), query=secrets_(), key=ASCII_KEY, hf=secrets_())
@example(user="Sx9al'ice", password='Sx9p<w"d#/@%', query="Sx9t&o<k", key="Sx9k'\"<>&", hf="Sx9hf\u2603")
def test_no_secret_reaches_any_output(user, password, query, key, hf, tmp_path_factory, mirror, smollm2_path):
    import openai_stub

    results = tmp_path_factory.mktemp("results")
    secrets = [user, password, query, key, hf]
    env = {"SECRET_KEY_VAR": key, "HF_TOKEN": hf, "HF_HUB_OFFLINE": "1"}
    outputs: list[str] = []
    stub = openai_stub.StubServer()
    stub.api_key = key
    from harness.backends.llamacpp.vocab import LocalVocab

    stub.count_tokens = LocalVocab(smollm2_path).count  # true counts: the first prompt's BOS check passes
    real_answer = openai_stub.answer
    # The completions echo every secret: a model (or a proxy) can repeat what it was sent.
    openai_stub.answer = lambda prompt: f" {user} {password} {query} {key} {hf} {real_answer(prompt)}"
    try:
        base = stub.url.replace("http://", f"http://{quote(user, safe='')}:{quote(password, safe='')}@")
        url = f"{base}?token={quote(query, safe='')}"
        common = [
            "--backend",
            "server",
            "-t",
            "gsm8k",
            "--limit",
            "2",
            "--data-dir",
            str(mirror),
            "--results-dir",
            str(results),
            "--api-key-env",
            "SECRET_KEY_VAR",
        ]
        res = _harness(["bench", "--base-url", url, *common], env)
        assert res.returncode == 0, res.stderr[-2000:]
        outputs += [res.stdout, res.stderr]
    finally:
        openai_stub.answer = real_answer
        stub.close()
    for status in (401, 500):  # a server echoing the key in its error body
        httpd = _echo_server(status)
        try:
            res = _harness(
                [
                    "bench",
                    "--base-url",
                    f"http://127.0.0.1:{httpd.server_address[1]}/v1",
                    *common,
                    "--retry-for",
                    "1",
                ],
                env,
            )
        finally:
            httpd.shutdown()
            httpd.server_close()
        assert res.returncode == 2, res.stderr[-2000:]
        outputs += [res.stdout, res.stderr]
    pub = _harness(
        ["publish", "--results-dir", str(results)], {}
    )  # knows no secret: the records must be clean
    assert pub.returncode == 0, pub.stderr
    outputs += [pub.stdout, pub.stderr]
    files = [p for p in results.rglob("*") if p.is_file() and p.suffix != ".png"]
    assert any(p.name == "console.log" for p in files) and any(p.name == "README.md" for p in files)
    for p in files:
        assert not leaks(p.read_text(errors="replace"), secrets), p
    for text in outputs:
        assert not leaks(text, secrets), text[-2000:]


def test_a_key_an_http_header_cannot_carry_is_one_message(tmp_path):
    """Before: UnicodeEncodeError deep in the HTTP client, an internal error (exit 70)."""
    res = _harness(
        [
            "bench",
            "--backend",
            "server",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "-t",
            "gsm8k",
            "--results-dir",
            str(tmp_path),
            "--api-key-env",
            "SECRET_KEY_VAR",
        ],
        {"SECRET_KEY_VAR": "Sx9\u2603key-value"},
    )
    assert res.returncode == 2 and "holds a character an HTTP header cannot carry" in res.stderr, res.stderr
    assert "key-value" not in res.stderr + res.stdout
