"""Reloading zones under load: SIGHUP and ``--watch``, all-or-nothing, no dropped query."""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from ..conftest import DATA, DnsfailProcess, free_port
from .conftest import API_ADDRESSES
from .ctl_server import Ctl, scrape

ADDED = "added:\n  type: A\n  value: 192.0.2.99\n"
FIXED = "fixed:\n  type: A\n  value: 192.0.2.100\n"
BAD_ADDRESS = "broken:\n  type: A\n  value: 192.0.2.300\n"
BAD_YAML = "broken:\n  type: A\n  value: [192.0.2.7\n"


class Hammer:
    """Queries api.gw.test A over UDP in a thread and keeps every failure."""

    def __init__(self, server: DnsfailProcess) -> None:
        self.server = server
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            query = dns.message.make_query("api.gw.test.", "A")
            self.sent += 1
            try:
                reply = dns.query.udp(query, self.server.host, port=self.server.port, timeout=1.0)
            except Exception as exc:
                self.failures.append(f"query {self.sent}: {exc!r}")
                continue
            got = {rd.to_text() for rrset in reply.answer for rd in rrset}
            if reply.rcode() != dns.rcode.NOERROR or got != API_ADDRESSES:
                self.failures.append(f"query {self.sent}: {dns.rcode.to_text(reply.rcode())} {got}")
            time.sleep(0.002)

    def finish(self, at_least: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def zone_dir(tmp_path: Path) -> Path:
    shutil.copy(DATA / "zones" / "gw.test.yaml", tmp_path / "gw.test.yaml")
    return tmp_path


@pytest.fixture
def hammer() -> Iterator[Callable[[DnsfailProcess], Hammer]]:
    started: list[Hammer] = []

    def start(server: DnsfailProcess) -> Hammer:
        h = Hammer(server)
        started.append(h)
        h.thread.start()
        return h

    yield start
    for h in started:
        h.stop.set()
        h.thread.join(timeout=5)


def serial(server: DnsfailProcess) -> int:
    """The zone's serial, from the SOA of a negative answer."""
    reply = server.query("nope.gw.test.", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    return int(reply.authority[0][0].serial)


def addresses(server: DnsfailProcess, qname: str) -> tuple[int, set[str]]:
    reply = server.query(qname, "A")
    return reply.rcode(), {rd.to_text() for rrset in reply.answer for rd in rrset}


def sighup_and_wait(server: DnsfailProcess, text: str) -> str:
    mark = len(server.lines)
    server.signal(signal.SIGHUP)
    return server.wait_for_log(text, timeout=10, start=mark)


def test_sighup_reload_under_load(spawn: Callable[..., DnsfailProcess], zone_dir: Path,
                                  hammer: Callable[[DnsfailProcess], Hammer]) -> None:
    path = zone_dir / "gw.test.yaml"
    text = path.read_text()
    assert "value: 192.0.2.25\n" in text
    original = text.replace("value: 192.0.2.25\n", "value: 192.0.2.26\n")  # mx's address
    server = spawn([str(zone_dir)]).wait_ready()
    load = hammer(server)
    first = serial(server)
    for _ in range(2):  # the second answer of each comes from the reply cache
        assert addresses(server, "added.gw.test.")[0] == dns.rcode.NXDOMAIN
        assert addresses(server, "mx.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.25"})

    # (a) A new record and a changed one are served after SIGHUP, with a larger serial.
    path.write_text(original + ADDED)
    line = sighup_and_wait(server, "zone gw.test.: reloaded")
    assert addresses(server, "added.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.99"})
    assert addresses(server, "mx.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.26"})
    second = serial(server)
    assert second > first
    assert f"serial {second}" in line

    # (b) Broken versions are rejected whole, naming file:line; the old data stays.
    for broken, value_line in ((BAD_ADDRESS, "value: 192.0.2.300"),
                               (BAD_YAML, "value: [192.0.2.7")):
        text = original + ADDED + broken
        path.write_text(text)
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.wait_for_log("still serving the previous zones", timeout=10, start=mark)
        rejected = [m for m in (re.search(r"reload rejected: (.+):(\d+): (.+)$", x)
                                for x in server.lines[mark:]) if m]
        assert rejected, server.log
        assert Path(rejected[0][1]).resolve() == path.resolve()
        expected_line = text.splitlines().index(f"  {value_line}") + 1
        assert abs(int(rejected[0][2]) - expected_line) <= 1, (rejected[0][0], expected_line)
        assert addresses(server, "added.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.99"})
        assert addresses(server, "broken.gw.test.")[0] == dns.rcode.NXDOMAIN
        assert serial(server) == second

    # (c) Fixed again: served.
    path.write_text(original + ADDED + FIXED)
    sighup_and_wait(server, "zone gw.test.: reloaded")
    assert addresses(server, "fixed.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.100"})
    assert addresses(server, "added.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.99"})
    assert serial(server) > second

    load.finish(at_least=300)
    assert load.sent >= 300
    assert load.failures == []
    assert server.proc.poll() is None


def test_removed_zone_is_no_longer_served(spawn: Callable[..., DnsfailProcess],
                                          zone_dir: Path) -> None:
    other = zone_dir / "other.test.yaml"
    other.write_text("'':\n  type: NS\n  value: ns1.other.test.\nns1:\n  type: A\n"
                     "  value: 192.0.2.200\n")
    server = spawn([str(zone_dir)]).wait_ready()
    assert addresses(server, "ns1.other.test.") == (dns.rcode.NOERROR, {"192.0.2.200"})
    other.unlink()  # no directory entry at all: removed on purpose
    line = sighup_and_wait(server, "zone other.test. removed (file gone)")
    assert " WARNING " in line
    assert server.query("ns1.other.test.", "A").rcode() == dns.rcode.REFUSED
    assert addresses(server, "api.gw.test.") == (dns.rcode.NOERROR, API_ADDRESSES)


def test_watch_reloads_without_a_signal(spawn: Callable[..., DnsfailProcess], zone_dir: Path,
                                        hammer: Callable[[DnsfailProcess], Hammer]) -> None:
    path = zone_dir / "gw.test.yaml"
    server = spawn([str(zone_dir), "--watch"]).wait_ready()
    load = hammer(server)
    first = serial(server)
    mtime = path.stat().st_mtime
    path.write_text(path.read_text() + ADDED)
    os.utime(path, (mtime + 5, mtime + 5))  # a different mtime whatever the clock resolution
    start = time.monotonic()
    while addresses(server, "added.gw.test.")[0] != dns.rcode.NOERROR:
        assert time.monotonic() - start < 5.0, f"--watch did not reload:\n{server.log}"
        time.sleep(0.05)
    assert addresses(server, "added.gw.test.") == (dns.rcode.NOERROR, {"192.0.2.99"})
    assert serial(server) > first
    assert "zone or key files changed; reloading" in server.log
    load.finish(at_least=100)
    assert load.failures == []


# --- reloads of hostile files (issue 11, items 6 and 7) -------------------------------------

HOSTILE_APEX = "'':\n  type: NS\n  value: ns1.gw.test.\n"


def _write(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def _replace(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def replace(path: Path) -> None:
        path.unlink()
        make(path)
    return replace


HOSTILE_RELOADS = [
    # (id, what is done to gw.test.yaml, the one problem expected ({path} is the file))
    ("deep-nesting", _write(HOSTILE_APEX + "a: " + "[" * 200_000 + "]" * 200_000 + "\n"),
     "{path}:4: (yaml): collections nested deeper than 64 levels"),
    ("huge-ttl", _write(HOSTILE_APEX + "a:\n  ttl: " + "9" * 5000 + "\n  type: A\n"
                        "  value: 192.0.2.1\n"),
     "{path}:5: a A: ttl has more than 10 digits"),
    ("txt-100000", _write(HOSTILE_APEX + "a:\n  type: TXT\n  value: " + "a" * 100_000 + "\n"),
     "{path}:6: a TXT: TXT value is 100393 octets on the wire, more than the 65535 RDLENGTH "
     "allows (RFC 1035 section 3.2.1)"),
    ("dangling-symlink", _replace(lambda p: p.symlink_to(p.parent / "gone.yaml")),
     "{path}:1: (zone): dangling symlink to '{dir}/gone.yaml'"),
    ("symlink-loop", _replace(lambda p: p.symlink_to(p.name)), "{path}:1: (zone): symlink loop"),
    ("fifo", _replace(os.mkfifo), "{path}:1: (zone): not a regular file (a FIFO)"),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "expected"),
                         [pytest.param(d, e, id=i) for i, d, e in HOSTILE_RELOADS])
def test_hostile_reload_is_rejected_and_reported(
    spawn: Callable[..., DnsfailProcess], zone_dir: Path, damage: Callable[[Path], None],
    expected: str,
) -> None:
    """SIGHUP and POST /v1/reload with a hostile zone file: the old zone keeps answering,
    each problem is logged at once (no traceback), status and the reload metric show the
    failure, and POST answers 422 with the problems."""
    port = free_port()
    server = spawn([str(zone_dir), "--control", f"127.0.0.1:{port}", "--state-file", ""])
    ctl = Ctl(server.wait_ready(), port)
    path = zone_dir / "gw.test.yaml"
    problem = expected.format(path=path, dir=zone_dir)
    damage(path)

    mark = len(server.lines)
    server.signal(signal.SIGHUP)
    server.wait_for_log("still serving the previous zones", timeout=20, start=mark)
    logged = [line.split(" ", 2)[2] for line in server.lines[mark:]]  # without the time
    assert logged[:2] == [f"ERROR dnsfail.serve.reload: reload rejected: {problem}",
                          "ERROR dnsfail.serve.reload: reload rejected: 1 problem(s); "
                          "still serving the "
                          "previous zones"], server.log
    assert addresses(server, "api.gw.test.") == (dns.rcode.NOERROR, API_ADDRESSES)
    code, status = ctl.get("/v1/status")
    assert code == 200
    assert status["reload"]["ok"] is False
    assert status["reload"]["problems"] == [problem]
    assert scrape(ctl)[("dnsfail_reloads_total", frozenset({("result", "error")}))] == 1

    code, body = ctl.post("/v1/reload")
    assert code == 422
    assert body["ok"] is False
    assert body["problems"] == [problem]
    assert scrape(ctl)[("dnsfail_reloads_total", frozenset({("result", "error")}))] == 2
    assert addresses(server, "api.gw.test.") == (dns.rcode.NOERROR, API_ADDRESSES)
    assert server.proc.poll() is None
    assert "Traceback" not in server.log
