"""``python -m dnsfail check`` and ``serve`` as processes: exit codes, messages, signals."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from ..conftest import DATA, ROOT, DnsfailProcess, free_port
from .conftest import API_ADDRESSES, assert_answers_api

PROBLEM = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<record>[^:]+): (?P<reason>.+)$")
STARTUP = re.compile(r"zone (?P<zone>\S+): (?P<count>\d+) records, serial (?P<serial>\d+)")
CHECK_OK = re.compile(
    r"^(?P<path>.+): zone (?P<zone>\S+) OK: (?P<count>\d+) records, serial (?P<serial>\d+)$"
)

BAD_ZONE = """\
'':
  type: NS
  values:
  - ns1.bad.test.
ns1:
  type: A
  value: 192.0.2.1
badaddr:
  type: A
  value: 300.1.2.3
both:
- type: A
  value: 192.0.2.5
- type: CNAME
  value: ns1.bad.test.
weird:
  type: FROB
  value: x
"""
#: Each problem of BAD_ZONE: the owner, the lines of its block, a word its reason must name.
BAD_PROBLEMS = [("badaddr", range(8, 11), "300.1.2.3"), ("both", range(11, 16), "CNAME"),
                ("weird", range(16, 19), "FROB")]

OTHER_ZONE = """\
'':
  type: NS
  value: ns1.other.test.
ns1:
  type: A
  value: 192.0.2.200
"""


def dnsfail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsfail", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)


def check_ok(paths: list[str]) -> dict[str, dict[str, str]]:
    done = dnsfail("check", *paths)
    assert done.returncode == 0, done.stdout + done.stderr
    found = {}
    for line in done.stdout.splitlines():
        match = CHECK_OK.match(line)
        assert match, f"unexpected check output line {line!r}"
        found[match["zone"]] = match.groupdict()
    return found


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    (tmp_path / "bad.test.yaml").write_text(BAD_ZONE)
    return tmp_path


@pytest.fixture
def two_zones(tmp_path: Path) -> Path:
    shutil.copy(DATA / "zones" / "gw.test.yaml", tmp_path / "gw.test.yaml")
    (tmp_path / "other.test.yaml").write_text(OTHER_ZONE)
    return tmp_path


def test_check_good_zones() -> None:
    found = check_ok(["tests/data/zones"])
    assert set(found) == {"gw.test."}
    assert found["gw.test."]["path"].endswith("gw.test.yaml")
    assert int(found["gw.test."]["count"]) > 30
    assert int(found["gw.test."]["serial"]) > 0


def test_check_reports_every_problem(bad_dir: Path) -> None:
    done = dnsfail("check", str(bad_dir))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines, done.stderr
    matches = []
    for line in lines:
        match = PROBLEM.match(line)
        assert match, f"{line!r} is not <path>:<line>: <record>: <reason>"
        assert Path(match["path"]).resolve() == (bad_dir / "bad.test.yaml").resolve()
        matches.append(match)
    for owner, block, word in BAD_PROBLEMS:
        mine = [m for m in matches if m["record"].split()[0] == owner]
        assert len(mine) == 1, (owner, lines)
        assert int(mine[0]["line"]) in block, (owner, mine[0]["line"])
        assert word in mine[0]["reason"]
    assert len(matches) == len(BAD_PROBLEMS), lines
    assert f"{len(BAD_PROBLEMS)} problem(s)" in done.stderr


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("'':\n  type: NS\n  values: [ns1.x.test.\n", "yaml"),  # unclosed flow sequence
        ("- just\n- a list\n", "mapping"),
        ("ns1:\n  type: A\n  value: 192.0.2.1\n", "NS"),  # no NS at the apex
    ],
    ids=["bad-yaml", "not-a-mapping", "no-apex-ns"],
)
def test_check_rejects_broken_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "x.test.yaml"
    path.write_text(text)
    done = dnsfail("check", str(path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines
    for line in lines:
        match = PROBLEM.match(line)
        assert match, line
        assert match["path"] == str(path)
        assert 1 <= int(match["line"]) <= text.count("\n") + 1
    assert any(reason.lower() in line.lower() for line in lines), lines


def test_check_missing_path(tmp_path: Path) -> None:
    done = dnsfail("check", str(tmp_path / "absent"))
    assert done.returncode == 1
    assert PROBLEM.match(done.stdout.splitlines()[0])


def test_serve_refuses_bad_zones(spawn: Callable[..., DnsfailProcess], bad_dir: Path) -> None:
    server = spawn([str(bad_dir)])
    assert server.proc.wait(timeout=15) != 0
    server.stop()  # joins the log reader
    expected = dnsfail("check", str(bad_dir)).stdout.splitlines()
    assert len(expected) == len(BAD_PROBLEMS)
    for problem in expected:
        assert problem in server.log
    assert f"not starting: {len(BAD_PROBLEMS)} problem(s)" in server.log
    assert "listening on" not in server.log


def test_serve_logs_each_zone_at_startup(spawn: Callable[..., DnsfailProcess],
                                         two_zones: Path) -> None:
    checked = check_ok([str(two_zones)])
    assert set(checked) == {"gw.test.", "other.test."}
    assert checked["other.test."]["count"] == "2"
    server = spawn([str(two_zones)]).wait_ready()
    startup = [STARTUP.search(line) for line in server.lines]
    logged = [m for m in startup if m]
    assert sorted(m["zone"] for m in logged) == ["gw.test.", "other.test."]  # one line each
    for match in logged:
        assert match["count"] == checked[match["zone"]]["count"]
        assert match["serial"] == checked[match["zone"]]["serial"]
    # The serial logged is the one served (in a negative answer's SOA).
    for zone in ("gw.test.", "other.test."):
        reply = server.query(f"nope.{zone}", "A")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert str(reply.authority[0][0].serial) == checked[zone]["serial"]
    reply = server.query("ns1.other.test.", "A")
    assert [rd.to_text() for rd in reply.answer[0]] == ["192.0.2.200"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(spawn: Callable[..., DnsfailProcess], signum: int) -> None:
    server = spawn([str(DATA / "zones")]).wait_ready()
    assert_answers_api(server)
    start = time.monotonic()
    server.signal(signum)
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - start < 3.0
    server.stop()
    assert f"signal {signal.Signals(signum).name}: shutting down" in server.log
    assert "Traceback" not in server.log
    # The port is released.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((server.host, server.port))


def test_serve_fails_when_the_port_is_taken(spawn: Callable[..., DnsfailProcess]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        server = spawn([str(DATA / "zones")], port=port)
        assert server.proc.wait(timeout=15) == 1
    server.stop()
    assert "not starting:" in server.log
    assert "Traceback" not in server.log


def test_serve_listens_on_every_address(spawn: Callable[..., DnsfailProcess]) -> None:
    second_port = free_port()
    server = spawn([str(DATA / "zones")], extra_listen=[f"127.0.0.1:{second_port}"]).wait_ready()
    server.wait_for_log(f"listening on 127.0.0.1 port {second_port}")
    assert_answers_api(server)
    query = dns.message.make_query("api.gw.test.", "A")
    reply = dns.query.udp(query, "127.0.0.1", port=second_port, timeout=2)
    assert {rd.to_text() for rd in reply.answer[0]} == API_ADDRESSES


def test_version_flag() -> None:
    done = dnsfail("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"dnsfail \S+\n", done.stdout)


HOSTILE_APEX = "'':\n  type: NS\n  value: ns1.x.test.\n"


def _deep_flow(levels: int) -> str:
    return HOSTILE_APEX + "a: " + "[" * levels + "]" * levels + "\n"


def _huge_ttl() -> str:
    return HOSTILE_APEX + "a:\n  ttl: " + "9" * 5000 + "\n  type: A\n  value: 192.0.2.1\n"


def _oversize(path: Path) -> None:
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)  # sparse


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # libyaml composes by recursion in C: 200,000 levels (400 KB) overflowed its stack.
        pytest.param(lambda p: p.write_text(_deep_flow(200_000)),
                     "{path}:4: (yaml): collections nested deeper than 64 levels", id="deep-200k"),
        pytest.param(lambda p: p.write_text(_deep_flow(600)),
                     "{path}:4: (yaml): collections nested deeper than 64 levels", id="deep-600"),
        pytest.param(lambda p: p.write_text(_huge_ttl()),
                     "{path}:5: a A: ttl has more than 10 digits", id="ttl-5000-digits"),
        pytest.param(_oversize, "{path}:1: (zone): file is 67108865 octets, more than the limit "
                                "of 64 MiB", id="oversize"),
        pytest.param(lambda p: p.write_bytes(HOSTILE_APEX.encode() + b"a: \xff\n"),
                     "{path}:4: (zone): invalid UTF-8 (byte 0xff at column 4)", id="not-utf8"),
    ],
)  # fmt: skip
def test_check_reports_hostile_files_without_a_traceback(
    tmp_path: Path, make: Callable[[Path], None], expected: str
) -> None:
    path = tmp_path / "x.test.yaml"
    make(path)
    done = dnsfail("check", str(tmp_path))
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.splitlines() == [expected.format(path=path)]
    assert done.stderr == "1 problem(s)\n"
