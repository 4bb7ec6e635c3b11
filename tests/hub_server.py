"""A tiny stand-in for the Hugging Face Hub on 127.0.0.1: the endpoints huggingface-hub calls.

Serves ``paths-info`` (sizes and LFS sha256), ``resolve`` (HEAD/GET with Range ``bytes=a-`` or ``a-b``, for
resume and header reads), and can
require a token (401), cut a transfer half-way once, or lie about a sha256. Requests are logged so
tests can check what was (re)fetched.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self):
        self.files: dict[tuple[str, str], bytes] = {}
        self.gated: set[str] = set()
        self.cut_once: set[str] = set()  # paths whose first GET stops half-way
        self.bad_sha: set[str] = set()  # paths whose advertised sha256 is wrong
        self.fake_size: dict[str, int] = {}  # paths whose size paths-info understates (defeats the preflight)
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.fail_next: list[int] = []  # status codes answered to the next requests, one each
        self.forbidden: set[str] = set()  # repos that answer 403 even with a token
        self.slow_next = 0  # the next N file requests (HEAD/GET) stall longer than the client's timeout
        self.stall_seconds = 3.0
        self.answered: list[int] = []  # status codes of the injected faults, in order
        self.served_bytes = 0
        self.served: list[tuple[str, int, int]] = []  # (file, first byte, end) of every body sent
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _auth_ok(self, repo):
                return repo not in hub.gated or self.headers.get("Authorization") == "Bearer hf_test_token"

            def _fault(self, repo) -> bool:
                """Answer an injected fault (5xx, 403) instead of the request; True when one was sent."""
                if repo in hub.forbidden:
                    hub.answered.append(403)
                    self._send(403, b'{"error":"forbidden"}', {"Content-Type": "application/json"})
                    return True
                if hub.fail_next:
                    code = hub.fail_next.pop(0)
                    hub.answered.append(code)
                    self._send(code, b'{"error":"injected"}', {"Content-Type": "application/json"})
                    return True
                return False

            def _send(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _deny(self):
                self._send(
                    401,
                    b'{"error":"Access to model is restricted"}',
                    {
                        "X-Error-Code": "GatedRepo",
                        "X-Error-Message": "gated",
                        "Content-Type": "application/json",
                    },
                )

            def do_POST(self):
                parts = urllib.parse.urlparse(self.path).path.split("/")
                # /api/models/{owner}/{name}/paths-info/{revision}
                repo = "/".join(parts[3:5])
                hub.log.append(("POST", self.path, None))
                length = int(self.headers.get("Content-Length") or 0)
                if self._fault(repo):
                    self.rfile.read(length)
                    return
                if not self._auth_ok(repo):
                    return self._deny()
                raw = self.rfile.read(length).decode()
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    paths = json.loads(raw).get("paths", [])
                else:
                    paths = urllib.parse.parse_qs(raw).get("paths", [])
                out = []
                for p in paths:
                    data = hub.files.get((repo, p))
                    if data is None:
                        continue
                    sha = hashlib.sha256(data).hexdigest()
                    if p in hub.bad_sha:
                        sha = "0" * 64
                    size = hub.fake_size.get(p, len(data))
                    out.append(
                        {
                            "type": "file",
                            "path": p,
                            "size": size,
                            "oid": hashlib.sha1(data).hexdigest(),
                            "lfs": {"oid": sha, "size": size, "pointerSize": 134},
                        }
                    )
                self._send(200, json.dumps(out).encode(), {"Content-Type": "application/json"})

            def do_HEAD(self):
                self._resolve()

            def do_GET(self):
                self._resolve()

            def _resolve(self):
                path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
                hub.log.append((self.command, path, self.headers.get("Range")))
                # /{owner}/{name}/resolve/{revision}/{file...}
                parts = path.strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"})
                repo, fname = "/".join(parts[:2]), "/".join(parts[4:])
                if hub.slow_next > 0:
                    hub.slow_next -= 1
                    hub.answered.append(0)  # 0: a stalled answer (client timeout)
                    time.sleep(hub.stall_seconds)
                if self._fault(repo):
                    return
                if not self._auth_ok(repo):
                    return self._deny()
                data = hub.files.get((repo, fname))
                if data is None:
                    return self._send(
                        404,
                        b"not found",
                        {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"},
                    )
                sha = hashlib.sha256(data).hexdigest()
                headers = {
                    "X-Repo-Commit": COMMIT,
                    "ETag": f'"{sha}"',
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "Accept-Ranges": "bytes",
                    "Content-Type": "application/octet-stream",
                }
                start, stop = 0, len(data)
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    start = int(first or 0)
                    stop = min(len(data), int(last) + 1) if last else len(data)
                    if start >= len(data):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                body = data[start:stop]
                code = 206 if rng else 200
                if rng:
                    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
                if self.command == "HEAD":
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return
                if fname in hub.cut_once:
                    hub.cut_once.discard(fname)
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    half = body[: len(body) // 2]
                    self.wfile.write(half)
                    self.wfile.flush()
                    hub.served_bytes += len(half)
                    hub.served.append((fname, start, start + len(half)))
                    self.close_connection = True
                    return
                hub.served_bytes += len(body)
                hub.served.append((fname, start, start + len(body)))
                self._send(code, body, headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
