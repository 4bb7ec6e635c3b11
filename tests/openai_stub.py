"""A small OpenAI-compatible server on 127.0.0.1 for fault tests: deterministic answers, injected faults.

The completion of a prompt is computed from the prompt (its last word, reversed, plus its length), so a
test can tell answers apart and check which prompts reached the server. ``echo_logprobs`` makes it
answer ``echo`` the way vLLM does (legacy ``logprobs`` with the prompt's tokens: one token per word,
log-prob -len(word)/10); otherwise it answers like llama-server, which ignores ``echo``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def answer(prompt: str) -> str:
    words = prompt.split()
    return f" {words[-1][::-1] if words else ''} {len(prompt)}. STOP and more"


def word_tokens(text: str) -> list[tuple[str, int]]:
    """(token, offset): each word with its leading spaces is one token."""
    return [(m.group(0), m.start()) for m in re.finditer(r"\s*\S+", text)]


class StubServer:
    def __init__(self, port: int = 0, echo_logprobs: bool = False):
        self.echo_logprobs = echo_logprobs
        self.fail_next: list[int] = []  # status codes for the next completion requests
        self.stall_next = 0  # the next N completion requests stall for stall_seconds first
        self.stall_seconds = 2.0
        self.dead_after: int | None = None  # completions answered before the server "dies" (503 forever)
        self.prompts: list[str] = []  # prompts answered successfully
        self.api_key: str | None = None  # when set, requests must carry "Authorization: Bearer <key>"
        self.queries: list[dict] = []  # query parameters of every completion request
        self.auth: list[tuple[str, str]] = []  # HTTP basic-auth (user, password) of every completion request
        self.mangle_logprobs = None  # a function rewriting an echo's `logprobs` object (fault tests)
        self.cut_next: list[str] = []  # the next completions end mid-body: "length" (short of Content-Length)
        #                                or "chunked" (a chunked stream without its last chunk)
        self.retry_after: str | None = None  # Retry-After header sent with injected 429/503 faults
        self.connections: set[int] = set()  # client ports seen: one per TCP connection
        self.count_tokens = None  # usage.prompt_tokens of a prompt (default: its words)
        self.adds_bos = False  # report one prompt token more, as a server that puts BOS before every prompt
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as uvicorn and llama-server answer: http.server writes headers and body separately,
            # and with Nagle on, a kept-alive connection (one requests.Session per client thread) waits for
            # the client's delayed ACK, ~40 ms per answer.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _json(self, code: int, obj: dict, cut: str | None = None) -> None:
                body = json.dumps(obj).encode()
                with stub.lock:
                    stub.connections.add(self.client_address[1])
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                if code in (429, 503) and stub.retry_after:
                    self.send_header("Retry-After", stub.retry_after)
                if cut == "chunked":  # one chunk of half the body, then the connection closes: no final chunk
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = body[: len(body) // 2]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut == "length":  # half the body promised by Content-Length, then the connection closes
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(body)
                except BrokenPipeError:  # the client gave up (timeout test)
                    pass

            def _authorised(self) -> bool:
                if stub.api_key and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    self._json(401, {"error": {"message": "invalid api key"}})
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
                    return
                path = urlsplit(self.path).path
                if path == "/v1/models":
                    self._json(
                        200, {"object": "list", "data": [{"id": "stub-model", "root": "/models/stub"}]}
                    )
                elif path == "/version":
                    self._json(200, {"version": "0.0-stub"})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self._authorised():
                    return
                url = urlsplit(self.path)
                basic = self.headers.get("Authorization", "")
                with stub.lock:
                    stub.queries.append(parse_qs(url.query))
                    if basic.startswith("Basic "):
                        stub.auth.append(tuple(base64.b64decode(basic[6:]).decode().split(":", 1)))
                if url.path != "/v1/completions":
                    self._json(404, {"error": {"message": "not found"}})
                    return
                with stub.lock:
                    fail = stub.fail_next.pop(0) if stub.fail_next else None
                    stall = stub.stall_next > 0 and not fail
                    stub.stall_next -= 1 if stall else 0
                    cut = stub.cut_next.pop(0) if stub.cut_next and not fail else None
                    dead = stub.dead_after is not None and len(stub.prompts) >= stub.dead_after
                if stall:
                    time.sleep(stub.stall_seconds)
                if fail or dead:
                    self._json(fail or 503, {"error": {"message": "injected fault"}})
                    return
                prompt = body["prompt"]
                if body.get("echo") and stub.echo_logprobs:
                    # vLLM echoes the prompt's tokens and then the generated one (max_tokens >= 1).
                    toks = word_tokens(prompt) + [(" x", len(prompt))]
                    choice = {
                        "text": prompt + " x",
                        "logprobs": {
                            "tokens": [t for t, _ in toks],
                            "token_logprobs": [None] + [-len(t.strip()) / 10 for t, _ in toks[1:]],
                            "text_offset": [o for _, o in toks],
                            "top_logprobs": [None] + [{t: -len(t.strip()) / 10} for t, _ in toks[1:]],
                        },
                    }
                    if stub.mangle_logprobs is not None:
                        choice["logprobs"] = stub.mangle_logprobs(choice["logprobs"])
                else:
                    text = answer(prompt)
                    for s in body.get("stop") or []:
                        text = text.split(s)[0]
                    choice = {"text": text, "finish_reason": "stop"}
                if not cut:
                    with stub.lock:
                        stub.prompts.append(prompt)
                n = stub.count_tokens(prompt) if stub.count_tokens else len(prompt.split())
                self._json(
                    200,
                    {
                        "choices": [choice],
                        "usage": {"prompt_tokens": n + stub.adds_bos, "completion_tokens": 3},
                    },
                    cut,
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
