"""TCP limits against real ``dnsfail serve`` processes (issues 13 and 14): the cap per source,
the oldest idle connection evicted at the limit, one client's 1,000 idle connections against
everyone else, and connections spread over ``--workers`` processes."""

from __future__ import annotations

import array
import collections
import fcntl
import socket
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..conftest import DATA, DnsfailProcess
from .conftest import API_ADDRESSES, closed_after, connection_holders, tcp_connect
from .ctl_server import wait_for
from .test_tcp import answer_addresses, ask, flood, flood_zones, reset

__all__ = ["flood_zones"]  # a fixture, used by name


def connect_from(server: DnsfailProcess, source: str, timeout: float = 2.0) -> socket.socket:
    """A connection from ``source`` (any 127.0.0.0/8 address is ours on loopback)."""
    sock = socket.create_connection((server.host, server.port), timeout=timeout,
                                    source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@contextmanager
def holding(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def unread(sock: socket.socket) -> int:
    """Octets waiting in ``sock``'s receive queue (FIONREAD)."""
    out = array.array("i", [0])
    fcntl.ioctl(sock, termios.FIONREAD, out)
    return out[0]


def answered_promptly(server: DnsfailProcess, source: str, within: float = 0.5) -> None:
    started = time.monotonic()
    with connect_from(server, source, timeout=within) as sock:
        assert answer_addresses(ask(sock)) == API_ADDRESSES
    elapsed = time.monotonic() - started
    assert elapsed < within, f"a client from {source} waited {elapsed:.2f} s"


def test_connections_per_source_are_capped(spawn: Callable[..., DnsfailProcess]) -> None:
    server = spawn([str(DATA / "zones"), "--tcp-max-per-source", "2"]).wait_ready()
    with holding([connect_from(server, "127.0.0.1") for _ in range(2)]) as held:
        for sock in held:
            assert answer_addresses(ask(sock)) == API_ADDRESSES
        with connect_from(server, "127.0.0.1") as third:
            elapsed = closed_after(third, timeout=2.0)
            assert elapsed is not None, "a 3rd connection from one source was kept"
            assert elapsed < 1.0
        server.wait_for_log("tcp per-source limit 2 reached by 127.0.0.1")
        answered_promptly(server, "127.0.0.2")  # another source is not affected
        for sock in held:  # nor are the ones already held
            assert answer_addresses(ask(sock)) == API_ADDRESSES
    assert "Traceback" not in server.log


def test_at_the_limit_the_oldest_idle_connection_is_evicted(
    spawn: Callable[..., DnsfailProcess],
) -> None:
    """Not the oldest connection: the one idle the longest (its last answered query)."""
    server = spawn([str(DATA / "zones"), "--tcp-max-connections", "3"]).wait_ready()
    with holding([tcp_connect(server) for _ in range(3)]) as (a, b, c):
        for sock in (a, b, c, a):  # a asks again: b is now idle the longest
            assert answer_addresses(ask(sock)) == API_ADDRESSES
        with tcp_connect(server) as d:
            assert answer_addresses(ask(d)) == API_ADDRESSES  # the new client is served
            elapsed = closed_after(b, timeout=2.0)
            assert elapsed is not None, "the connection idle the longest was not closed"
            for sock in (a, c, d):
                assert answer_addresses(ask(sock)) == API_ADDRESSES
        server.wait_for_log("tcp connection limit 3 reached; closing the longest idle")
    assert "Traceback" not in server.log


def test_a_connection_mid_answer_is_never_evicted(
    spawn: Callable[..., DnsfailProcess], flood_zones: Path
) -> None:
    """Clients whose replies are backed up unread are skipped; with only those, the new one
    is refused instead."""
    server = spawn([str(flood_zones), "--tcp-max-connections", "3"]).wait_ready()
    first = flood(server)  # the oldest, and busy: its replies back up
    with holding([first]) as socks:
        idle = tcp_connect(server)
        socks.append(idle)
        assert answer_addresses(ask(idle)) == API_ADDRESSES
        socks.append(flood(server))
        wait_for(lambda: unread(first) > 60_000 and unread(socks[2]) > 60_000, 3.0,
                 "the flooders' replies to back up")
        with tcp_connect(server) as new:
            assert answer_addresses(ask(new)) == API_ADDRESSES
            assert closed_after(idle, timeout=2.0) is not None, "the idle one was kept"
            assert not reset(first)
            assert not reset(socks[2])
        # The new one closed itself; a third flooder fills the table with busy ones only.
        wait_for(lambda: "closing the longest idle" in server.log, 3.0, "the eviction log")
        third = flood(server)
        socks.append(third)
        wait_for(lambda: unread(third) > 60_000, 3.0, "the third flooder's replies")
        with tcp_connect(server) as refused:
            elapsed = closed_after(refused, timeout=2.0)
            assert elapsed is not None, "a 4th connection was kept with 3 busy ones open"
        server.wait_for_log("tcp connection limit 3 reached and none idle")
        assert not any(reset(sock) for sock in (first, socks[2], third))
    assert "Traceback" not in server.log


@pytest.mark.parametrize("per_source", [None, "0"], ids=["default-cap", "no-cap"])
def test_a_thousand_idle_connections_do_not_lock_others_out(
    spawn: Callable[..., DnsfailProcess], per_source: str | None
) -> None:
    """Issue 14: one client holding 1,000 idle connections locked every other TCP client out
    for 10 s.  With the default per-source cap it gets 64 of them; with no cap it fills
    the table (1,000), and the next client evicts its oldest idle one."""
    args = [str(DATA / "zones")]
    if per_source is not None:
        args += ["--tcp-max-per-source", per_source]
    server = spawn(args).wait_ready()
    with holding([connect_from(server, "127.0.0.1", timeout=5.0) for _ in range(1000)]) as hog:
        if per_source is None:  # the hog's 65th and later are closed at accept
            server.wait_for_log("tcp per-source limit 64 reached by 127.0.0.1")
        else:
            assert answer_addresses(ask(hog[-1])) == API_ADDRESSES  # all 1,000 accepted
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
            answered_promptly(server, source)
        if per_source is not None:
            server.wait_for_log("tcp connection limit 1000 reached; closing the longest idle")
            assert closed_after(hog[0], timeout=2.0) is not None  # the oldest idle went first
    assert "Traceback" not in server.log


def processes(server: DnsfailProcess) -> list[int]:
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def test_connections_spread_over_two_processes(spawn: Callable[..., DnsfailProcess]) -> None:
    """Issue 13: a client's 4 connections often all landed on one of two processes.

    Measured on this 2-core machine at load 6-7 (tests/bench/tcp_spread.py): before, 4:0 in
    12 to 24 of 30-40 rounds and 2:2 in 3 to 5; after, 2:2 in 60 of 60.  A process holding
    more than a sibling leaves the connection to it for up to ACCEPT_DEFER, so a round is
    uneven only when that sibling got no CPU for so long (seen once in 30 rounds at load
    7): 6 such rounds of 40 are allowed.  With the 57% of 2:2 rounds measured before the
    fix on an idle machine, 34 of 40 would happen about once in 3,000 runs.
    """
    server = spawn([str(DATA / "zones"), "--workers", "2", "--control", "off"]).wait_ready()
    pids = processes(server)
    assert len(pids) == 2
    rounds = collections.Counter[tuple[int, int]]()
    for _ in range(40):
        with holding([tcp_connect(server) for _ in range(4)]) as socks:
            for sock in socks:
                assert answer_addresses(ask(sock)) == API_ADDRESSES
            holders = connection_holders(pids, server.port)
            counts = collections.Counter(holders[s.getsockname()[1]] for s in socks)
            rounds[max(counts.values()), 4 - max(counts.values())] += 1
        wait_for(lambda: not connection_holders(pids, server.port), 5.0, "the closes")
    assert rounds[2, 2] >= 34, f"only {rounds[2, 2]} of 40 rounds split 2:2: {rounds}"
