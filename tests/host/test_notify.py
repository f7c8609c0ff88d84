"""sd_notify: the datagram format (pure), a real Unix datagram socket as the manager, and a
real ``dnsfail serve`` that says READY=1 exactly when /readyz turns ready."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsfail.host.notify import (
    MAX_DATAGRAM,
    MAX_STATUS,
    Notifier,
    message,
    parse_address,
    watchdog_interval,
)
from tests.conftest import DnsfailProcess, free_port


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/123", b"\0/org/freedesktop/systemd1/notify/123"),
        ("@x", b"\0x"),
        ("@", None),
        ("", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_addresses(text: str, want: str | bytes | None) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize(
    ("env", "pid", "want"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 7, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7, None),  # someone else's
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, 7, None),
        ({"WATCHDOG_USEC": "0"}, 7, None),
        ({"WATCHDOG_USEC": "-5"}, 7, None),
        ({"WATCHDOG_USEC": "soon"}, 7, None),
        ({}, 7, None),
    ],
)
def test_watchdog_interval_is_half_the_managers(env: dict[str, str], pid: int,
                                                want: float | None) -> None:
    assert watchdog_interval(env, pid) == want


def test_messages_are_lines_that_no_value_can_forge() -> None:
    assert message(READY="1", STATUS="serving") == b"READY=1\nSTATUS=serving"
    assert message(STATUS="a\nREADY=1\r\nb") == b"STATUS=a READY=1 b"
    long = message(STATUS="x" * 10_000)
    assert len(long) == len("STATUS=") + MAX_STATUS
    assert long.endswith(b"...")
    assert len(message(X="y" * 10_000)) == MAX_DATAGRAM


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A Unix datagram socket standing in for systemd, and its $NOTIFY_SOCKET text."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        text = str(tmp_path / "notify")
        sock.bind(text)
    else:
        text = f"@dnsfail-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + text[1:].encode())
    sock.settimeout(5)
    yield text, sock
    sock.close()


def test_a_notifier_reaches_the_manager(manager: tuple[str, socket.socket]) -> None:
    text, sock = manager
    env = {"NOTIFY_SOCKET": text, "WATCHDOG_USEC": "1000000", "OTHER": "kept"}
    notify = Notifier.from_env(env)
    try:
        assert env == {"OTHER": "kept"}  # no child process will speak for the service
        assert notify.watchdog == 0.5
        notify.ready("2 zone(s)")
        assert sock.recv(MAX_DATAGRAM) == b"READY=1\nSTATUS=2 zone(s)"
        notify.status("2 zone(s)")  # unchanged: not sent again
        notify.status("3 zone(s)")
        assert sock.recv(MAX_DATAGRAM) == b"STATUS=3 zone(s)"
        notify.stopping()
        assert sock.recv(MAX_DATAGRAM) == b"STOPPING=1\nSTATUS=stopping"
    finally:
        notify.close()


def test_a_manager_that_is_gone_is_a_warning_not_a_crash(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notify = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    try:
        assert notify.send(READY="1") is False
        assert notify.send(READY="1") is False
    finally:
        notify.close()
    assert caplog.text.count("cannot notify the service manager") == 1


def test_without_notify_socket_nothing_is_sent() -> None:
    notify = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notify.enabled
    assert notify.watchdog is None
    assert notify.send(READY="1") is False


ZONE = """\
'':
  type: NS
  value: ns1.notify.test.
api:
  dynamic:
    pools:
      one: {{values: [{{value: 127.0.0.1}}]}}
    rules:
    - pool: one
  octodns:
    dnsfail:
      healthcheck: {{interval: 2, timeout: 1.5}}
    healthcheck: {{port: {port}, protocol: HTTP, path: /health}}
  ttl: 30
  type: A
  values: [192.0.2.99]
ns1:
  type: A
  value: 192.0.2.1
"""


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # the control API is not up yet


def _receive(sock: socket.socket, deadline: float) -> dict[str, str]:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    data = sock.recv(MAX_DATAGRAM).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_serve_is_ready_when_readyz_is(manager: tuple[str, socket.socket],
                                       tmp_path: Path) -> None:
    """READY=1 comes after the first probe round (here a site that accepts and never
    answers, so the round lasts its 1.5 s timeout), when /readyz is 200 and not before;
    then WATCHDOG=1 pings, and STOPPING=1 on SIGTERM."""
    text, sock = manager
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "notify.test.yaml").write_text(ZONE.format(port=silent.getsockname()[1]))
    control = free_port()
    server = DnsfailProcess([str(zones), "--control", f"127.0.0.1:{control}"],
                            env={"NOTIFY_SOCKET": text, "WATCHDOG_USEC": "400000"})
    try:
        deadline = time.monotonic() + 20
        first = _receive(sock, deadline)
        assert "READY" not in first
        assert first["STATUS"].startswith("starting")
        polled = []
        while True:  # until READY=1: /readyz must not be 200 before it
            sock.settimeout(0.05)
            try:
                data = sock.recv(MAX_DATAGRAM)
                break
            except TimeoutError:
                code = _readyz(control)
            if code == 200:
                # The daemon turns ready and sends READY=1 with no await in between, so an
                # HTTP answer of 200 means the datagram is already waiting.
                sock.settimeout(0)
                try:
                    data = sock.recv(MAX_DATAGRAM)
                except BlockingIOError:
                    pytest.fail("/readyz answered 200 before READY=1 was sent")
                break
            polled.append(code)
            assert time.monotonic() < deadline, server.log
            assert server.proc.poll() is None, server.log
        ready = dict(line.split("=", 1) for line in data.decode().split("\n"))
        assert 503 in polled  # the control API was up, and said "not ready"
        assert ready["READY"] == "1"
        assert _readyz(control) == 200
        assert "1 zone(s)" in ready["STATUS"], ready
        assert "1 down" in ready["STATUS"], ready
        pings = 0
        while pings < 3:  # every 0.2 s (half of WATCHDOG_USEC)
            pings += _receive(sock, deadline).get("WATCHDOG") == "1"
        server.signal(signal.SIGTERM)
        while (got := _receive(sock, deadline)).get("STOPPING") != "1":
            assert "READY" not in got
        assert server.proc.wait(timeout=10) == 0
        assert "Traceback" not in server.log
    finally:
        server.stop()
        silent.close()


@pytest.mark.parametrize("manager", ["path"], indirect=True)  # the address is not the point
def test_workers_do_not_inherit_the_socket(manager: tuple[str, socket.socket],
                                           tmp_path: Path) -> None:
    """With --workers 2, exactly one READY=1 arrives: the worker process is not told where
    the manager listens (NotifyAccess=main would drop its messages anyway)."""
    text, sock = manager
    server = DnsfailProcess([str(Path(__file__).parents[1] / "data" / "zones"),
                             "--control", "off", "--workers", "2"],
                            env={"NOTIFY_SOCKET": text})
    try:
        deadline = time.monotonic() + 30
        while "READY" not in _receive(sock, deadline):
            pass
        server.wait_ready()
        pid = int(server.proc.pid)
        assert os.path.exists(f"/proc/{pid}")
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            assert not [v for v in environ if v.startswith(b"NOTIFY_SOCKET=")]
    finally:
        server.stop()
