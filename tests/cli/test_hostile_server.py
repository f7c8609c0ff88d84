"""The client commands against a server whose answers are not dnsfail's (a proxy, another
program, another version, or hostile): one line on stderr and a non-zero exit, never a
traceback; nothing it sends reaches the terminal as a control sequence."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from ..conftest import ROOT

BODIES = {
    "wrong-types": b'{"targets": 5, "overrides": "x", "zones": null}',
    "a-list": b"[]",
    "nested": b"[" * 100_000,
    "escapes": b'{"error": "\\u001b[2J\\u001b]0;pwned\\u0007", "text": "\\u001b[31mred"}',
    "far-future": b'{"overrides": [{"selector": "a", "expires": 1e300, "created": "x"}]}',
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[str, dict[str, bytes]]]:
    answer = {"body": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer["body"])))
            self.end_headers()
            self.wfile.write(answer["body"])

        do_GET = do_POST = _send

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", answer
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("command", [["status"], ["drain", "192.0.2.1", "--for", "1m",
                                                  "--reason", "x"], ["reload"],
                                     ["explain", "api.example.com"]])
def test_a_client_command_fails_in_one_line(hostile: tuple[str, dict[str, bytes]], body: str,
                                           command: list[str]) -> None:
    control, answer = hostile
    answer["body"] = BODIES[body]
    env = {**os.environ, "DNSFAIL_CONTROL": "", "DNSFAIL_TOKEN": ""}
    run = subprocess.run([sys.executable, "-m", "dnsfail", *command, "--control", control],
                         cwd=ROOT, capture_output=True, timeout=30, env=env)
    out = run.stdout + run.stderr
    assert b"Traceback" not in out, out.decode(errors="replace")
    assert b"\x1b" not in out
    assert b"\x07" not in out
    assert len(run.stderr.splitlines()) <= 1
