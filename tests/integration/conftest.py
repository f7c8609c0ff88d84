"""Helpers shared by the integration tests: raw sockets, TCP framing, extra servers."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from ..conftest import DnsfailProcess, free_port
from .ctl_server import SITES, Ctl, zone_text

#: ``tcp`` parameters: the same case over UDP and over TCP.
TRANSPORTS = [pytest.param(False, id="udp"), pytest.param(True, id="tcp")]

#: What api.gw.test A answers in tests/data/zones/gw.test.yaml.
API_ADDRESSES = {"192.0.2.10", "192.0.2.11"}


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def udp_exchange(server: DnsfailProcess, data: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one datagram; the reply's bytes, or None when nothing came back in time."""
    with socket.socket(family_of(server.host), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, (server.host, server.port))
        try:
            reply, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
        return reply


def tcp_connect(server: DnsfailProcess, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def frame(data: bytes) -> bytes:
    """RFC 1035 section 4.2.2 / RFC 7766 section 8: a two-octet length, then the message."""
    return len(data).to_bytes(2, "big") + data


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"connection closed after {len(out)} of {n} octets")
        out += chunk
    return out


def recv_framed(sock: socket.socket) -> bytes:
    length = int.from_bytes(recv_exact(sock, 2), "big")
    return recv_exact(sock, length)


def closed_after(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the peer closes (EOF or reset), or None if still open after ``timeout``."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                break
    except TimeoutError:
        return None
    except (ConnectionResetError, BrokenPipeError):
        pass
    return time.monotonic() - start


def assert_answers_api(server: DnsfailProcess, *, tcp: bool = False) -> None:
    """The server is alive and still answers api.gw.test A correctly."""
    reply = server.query("api.gw.test.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert {rd.to_text() for rrset in reply.answer for rd in rrset} == API_ADDRESSES


def query_wire(qname: str, qtype: str = "A", **kwargs: object) -> tuple[dns.message.Message, bytes]:
    message = dns.message.make_query(qname, qtype, **kwargs)  # type: ignore[arg-type]
    return message, message.to_wire()


@pytest.fixture
def spawn() -> Iterator[Callable[..., DnsfailProcess]]:
    """Start extra ``dnsfail serve`` processes; every one is stopped at teardown."""
    started: list[DnsfailProcess] = []

    def start(args: list[str], **kwargs: object) -> DnsfailProcess:
        process = DnsfailProcess(args, **kwargs)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


# --- a server with a control API (test_control, test_workers) ------------------------------


@pytest.fixture(scope="module")
def site_port() -> Iterator[int]:
    """Three listening sockets on one common port: the sites, all up."""
    for _ in range(20):
        port = free_port(SITES[0])
        socks: list[socket.socket] = []
        try:
            for host in SITES:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                socks.append(s)
                s.bind((host, port))
                s.listen(128)
        except OSError:
            for s in socks:
                s.close()
            continue
        yield port
        for s in socks:
            s.close()
        return
    raise RuntimeError("no common free port for the sites")


@pytest.fixture(scope="module")
def zone_dir(tmp_path_factory: pytest.TempPathFactory, site_port: int) -> Path:
    path = tmp_path_factory.mktemp("ctl-zones")
    (path / "ctl.test.yaml").write_text(zone_text(site_port))
    return path


@pytest.fixture
def start(zone_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Ctl]]:
    """Start ``dnsfail serve`` with a control port; stopped at teardown."""
    started: list[DnsfailProcess] = []

    def run(*extra: str, state: Path | None = None, token: str | None = None,
            zones: Path = zone_dir, wait: bool = True) -> Ctl:
        port = free_port()
        args = [str(zones), "--control", f"127.0.0.1:{port}",
                "--state-file", str(state or tmp_path / "state.json"), *extra]
        if token is not None:
            token_file = tmp_path / "token"
            token_file.write_text(token + "\n")
            args += ["--control-token-file", str(token_file)]
        server = DnsfailProcess(args)
        started.append(server)
        if wait:
            server.wait_ready()
        return Ctl(server, port, token)

    yield run
    for server in started:
        server.stop()


def connection_holders(pids: list[int], port: int) -> dict[int, int]:
    """Which of ``pids`` holds each accepted connection to local ``port``, by the client's port.

    Read from /proc/net/tcp{,6} (the accepted socket's inode: 0 while it waits in the
    accept queue; listening sockets, state 0A, left out) and /proc/PID/fd: exact and
    immediate, where the workers' reported ``tcp_open`` lags by a second.  Linux only.
    """
    by_inode: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and inode != "0" and state != "0A":
                by_inode[inode] = int(remote.rsplit(":", 1)[1], 16)
    out: dict[int, int] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if link.startswith("socket:[") and link[8:-1] in by_inode:
                out[by_inode[link[8:-1]]] = pid
    return out
