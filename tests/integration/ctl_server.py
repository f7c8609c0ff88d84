"""A ``dnsfail serve`` with a control API, and a urllib client of it (test_control, test_workers).

The zone's three "sites" are plain listening TCP sockets on 127.0.0.61-63
(a TCP probe only needs the handshake, which the kernel completes from the
listen backlog), so the targets are up without any HTTP server.  The
fixtures that start these live in conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ROOT, DnsfailProcess

SITES = ("127.0.0.61", "127.0.0.62", "127.0.0.63")
EU = ["127.0.0.61", "127.0.0.62"]
QNAME = "api.ctl.test."
TOKEN = "s3cret-token-for-tests"


def zone_text(port: int) -> str:
    return f"""\
'':
  type: NS
  value: ns1.ctl.test.
api:
  dynamic:
    pools:
      eu: {{fallback: us, values: [{{value: {SITES[0]}}}, {{value: {SITES[1]}}}]}}
      us: {{values: [{{value: {SITES[2]}}}]}}
    rules:
    - pool: eu
  octodns:
    dnsfail:
      healthcheck: {{fall: 2, interval: 1, rise: 1, timeout: 0.5}}
    healthcheck: {{port: {port}, protocol: TCP}}
  ttl: 30
  type: A
  values: [192.0.2.99]
edge:
  ttl: 300
  type: CNAME
  value: api.ctl.test.
ns1:
  type: A
  value: 192.0.2.1
"""


class Ctl:
    """A dnsfail server and a urllib client of its control API."""

    def __init__(self, server: DnsfailProcess, port: int, token: str | None = None) -> None:
        self.server = server
        self.port = port
        self.token = token
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, body: object = None, *, raw: bytes | None = None,
             token: str | None = "default") -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        token = self.token if token == "default" else token
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, self._decode(resp.read(), resp.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            return exc.code, self._decode(exc.read(), exc.headers.get_content_type())

    @staticmethod
    def _decode(raw: bytes, ctype: str) -> Any:
        return json.loads(raw) if ctype == "application/json" else raw.decode()

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: object = None, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body, **kw)

    def answer(self, qname: str = QNAME) -> list[str]:
        reply = self.server.query(qname, "A")
        return sorted(rd.address for rrset in reply.answer for rd in rrset
                      if rrset.rdtype == 1)

    def cli(self, *args: str, token_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "dnsfail", *args, "--control", f"127.0.0.1:{self.port}"]
        if token_file is not None:
            cmd += ["--token-file", str(token_file)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DNSFAIL_")}
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30,
                              env=env)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def scrape(ctl: Ctl) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    code, text = ctl.get("/metrics")
    assert code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
