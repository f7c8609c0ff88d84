"""``dnsfail site``'s health status changed while it runs (``--set``, ``POST /_status``):
a drill of "HTTP 503" needs no restart (issue 17).  Real site and server processes."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dnsfail.drill.site import parse_status

from ..conftest import ROOT, DnsfailProcess, free_port
from .ctl_server import wait_for

SITES = ("127.0.0.81", "127.0.0.82")


def dnsfail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsfail", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def health(host: str, port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def post(host: str, port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://{host}:{port}/_status", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def sites() -> Iterator[int]:
    port = free_port(SITES[0])
    procs = [subprocess.Popen([sys.executable, "-m", "dnsfail", "site", f"{h}:{port}",
                               "--name", f"s{i}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i, h in enumerate(SITES)]
    try:
        for host in SITES:
            wait_for(lambda h=host: _answers(h, port), 15, f"site {host}")
        yield port
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def _answers(host: str, port: int) -> bool:
    try:
        return health(host, port) == 200
    except OSError:
        return False


@pytest.mark.parametrize(("body", "want"), [
    (b"503", 503), (b'{"status": 200}', 200), (b" 418\n", 418),
])
def test_parse_status(body: bytes, want: int) -> None:
    assert parse_status(body) == want


@pytest.mark.parametrize("body", [b"", b"abc", b"99", b"600", b"true", b'{"status": "503"}',
                                  b"\xff\xfe", b"[503]", b"5e2", b'{"nope": 1}'])
def test_parse_status_refuses(body: bytes) -> None:
    with pytest.raises(ValueError, match="status"):
        parse_status(body)


def test_set_changes_a_running_site(sites: int) -> None:
    host = SITES[0]
    done = dnsfail("site", f"{host}:{sites}", "--set", "503")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"site s0 at {host}:{sites}: /health now answers 503"
    assert health(host, sites) == 503
    assert health(SITES[1], sites) == 200  # only that site
    assert post(host, sites, b"nonsense") == 400
    assert post(host, sites, b"9" * 2000) == 413  # past MAX_STATUS_BODY
    assert health(host, sites) == 503  # a refused change changes nothing
    assert dnsfail("site", f"{host}:{sites}", "--set", "200").returncode == 0
    assert health(host, sites) == 200


def test_set_without_a_site_says_so() -> None:
    port = free_port("127.0.0.83")
    done = dnsfail("site", f"127.0.0.83:{port}", "--set", "503")
    assert done.returncode == 1
    assert f"no site at 127.0.0.83:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_503_drill_without_restart(sites: int, tmp_path: Path,
                                     spawn: Callable[..., DnsfailProcess]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "site.test.yaml").write_text(f"""\
'':
  type: NS
  value: ns1.site.test.
api:
  dynamic:
    pools:
      one: {{fallback: two, values: [{{value: {SITES[0]}}}]}}
      two: {{values: [{{value: {SITES[1]}}}]}}
    rules:
    - pool: one
  octodns:
    dnsfail:
      healthcheck: {{fall: 2, interval: 0.5, rise: 1, timeout: 0.4}}
    healthcheck: {{path: /health, port: {sites}, protocol: HTTP}}
  ttl: 30
  type: A
  values: [192.0.2.99]
ns1:
  type: A
  value: 192.0.2.1
""")
    server = spawn([str(zones), "--state-file", ""]).wait_ready()

    def answer() -> list[str]:
        reply = server.query("api.site.test.", "A")
        return sorted(rd.address for rrset in reply.answer for rd in rrset)

    assert answer() == [SITES[0]]
    assert dnsfail("site", f"{SITES[0]}:{sites}", "--set", "503").returncode == 0
    wait_for(lambda: answer() == [SITES[1]], 10, "the 503 site withdrawn")
    assert dnsfail("site", f"{SITES[0]}:{sites}", "--set", "200").returncode == 0
    wait_for(lambda: answer() == [SITES[0]], 10, "the site back")


def test_parse_status_refuses_deep_nesting() -> None:
    """Within MAX_STATUS_BODY, 1,000 brackets are a RecursionError in json: a 500 before."""
    with pytest.raises(ValueError, match="status"):
        parse_status(b"[" * 1000)


@pytest.mark.parametrize("reply", [b"[]", b'{"site": "x"}', b"endless"])
def test_set_against_something_that_is_not_a_site_says_so(reply: bytes) -> None:
    """``--set`` aimed at another server: a 200 whose JSON is not a site's answer was a
    KeyError/TypeError traceback, and an endless body was read without bound."""
    import http.server
    import threading

    from dnsfail.drill.site import set_remote_status

    class Other(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.end_headers()
            if reply != b"endless":
                self.wfile.write(reply)
                return
            chunk = b" " * 65536
            for _ in range(2000):  # 128 MiB, far past any bound, unless the client hangs up
                try:
                    self.wfile.write(chunk)
                except OSError:
                    return

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError, match="not a dnsfail site"):
            set_remote_status("127.0.0.1", server.server_address[1], 503)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
