"""serve.pacing: when a UDP reader waits before reading again; and the listener that obeys it.

The rule is pure and tested on a made-up clock; the listener is tested on a real
loopback socket with the real Handler: what it does while waiting (the reader off
the loop, a timer that drains), that nothing is lost, and that ``stop`` ends it.
"""

from __future__ import annotations

import asyncio
import socket
import time

import dns.message
import pytest

from dnsfail.dns.handler import Handler
from dnsfail.serve.app import Settings
from dnsfail.serve.pacing import DEFAULT_DELAY, ENTER_RATE, LEAVE_RATE, SMALL, WINDOW, Pacer
from dnsfail.serve.server import UdpListener, bind_udp
from dnsfail.serve.workers import WorkerSettings
from dnsfail.state import Store
from dnsfail.zonefile import load_zones
from tests.conftest import DATA

STORE = Store(load_zones([str(DATA / "zones")]))
HANDLER = Handler(lambda: STORE.snapshot, identity="unit")
QUERY = dns.message.make_query("www.example.com.", "A").to_wire()


def run(pacer: Pacer, rate: float, batch: int, seconds: float, start: float = 0.0) -> list[bool]:
    """Drains of ``batch`` datagrams at ``rate`` datagrams a second: the pacer's answers."""
    step = batch / rate
    return [pacer.after(batch, start + step * (i + 1)) for i in range(int(seconds / step))]


@pytest.mark.parametrize(("rate", "batch", "waits"), [
    (1_000, 1, False),                  # below ENTER_RATE: read on readiness, no latency added
    (ENTER_RATE * 0.9, 2, False),
    (ENTER_RATE * 2, 1, True),          # a steady rate, a datagram a wake-up: wait
    (ENTER_RATE * 10, SMALL - 1, True),
    (ENTER_RATE * 10, SMALL, False),    # batches already large: never wait (full load)
    (ENTER_RATE * 50, 256, False),
])  # fmt: skip
def test_waits_only_at_a_steady_rate_with_small_drains(rate: float, batch: int,
                                                       waits: bool) -> None:
    pacer = Pacer(0.001, 0.0)
    answers = run(pacer, rate, batch, 0.5)
    # The mode is decided per window: the first window reads on readiness whatever comes.
    settled = [a for i, a in enumerate(answers) if (i + 1) * batch / rate > 2 * WINDOW]
    assert settled
    assert set(settled) == {waits}, (rate, batch)


def test_the_mode_has_hysteresis_and_follows_the_rate_down() -> None:
    pacer = Pacer(0.001, 0.0)
    assert any(run(pacer, ENTER_RATE * 2, 1, 0.2))
    # Between LEAVE_RATE and ENTER_RATE: once waiting, it keeps waiting ...
    middle = (LEAVE_RATE + ENTER_RATE) / 2
    assert all(run(pacer, middle, 1, 0.3, start=0.2)[-10:])
    # ... and under LEAVE_RATE it reads on readiness again,
    assert not any(run(pacer, LEAVE_RATE * 0.5, 1, 0.3, start=0.5)[-10:])
    # while a fresh pacer at that middle rate never starts to wait.
    assert not any(run(Pacer(0.001, 0.0), middle, 1, 0.5))


def test_a_zero_delay_never_waits() -> None:
    pacer = Pacer(0.0, 0.0)
    assert not any(run(pacer, ENTER_RATE * 10, 1, 0.5))
    assert pacer.waiting, "the rate is still tracked; only the wait is off"


def test_a_wait_that_gathered_nothing_ends_the_waiting_mode() -> None:
    """The end of a burst: the next query must not wait for a rate that is gone."""
    pacer = Pacer(0.001, 0.0)
    assert any(run(pacer, ENTER_RATE * 4, 1, 0.2))
    assert pacer.waiting
    assert not pacer.after(0, 0.201)
    assert not pacer.waiting
    # Reading on readiness again, at a low rate it stays so; a new steady rate waits again.
    assert not any(run(pacer, LEAVE_RATE * 0.5, 1, 0.2, start=0.201))
    assert any(run(pacer, ENTER_RATE * 4, 1, 0.2, start=0.401))


# --- the listener, on a real socket ---------------------------------------------------------


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


async def replies(sock: socket.socket, count: int, within: float = 5.0) -> int:
    got, deadline = 0, time.monotonic() + within
    while got < count and time.monotonic() < deadline:
        try:
            sock.recv(4096)
            got += 1
        except BlockingIOError:
            await asyncio.sleep(0.001)
    return got


async def test_a_waiting_listener_is_off_the_loop_and_its_timer_answers_what_queued() -> None:
    loop = asyncio.get_running_loop()
    server = bind_udp("127.0.0.1", 0)
    listener = UdpListener(server, HANDLER.handle, delay=0.005)
    listener.start(loop)
    listener.pacer.waiting = True  # as after a window at a steady rate
    peer = client()
    try:
        peer.sendto(QUERY, server.getsockname())
        assert await replies(peer, 1) == 1
        # The drain found one datagram: the reader left the loop and a timer drains next.
        assert not listener._reading
        assert listener._timer is not None
        for _ in range(40):  # queued in the socket meanwhile, none lost
            peer.sendto(QUERY, server.getsockname())
        assert await replies(peer, 40) == 40
        # A drain of SMALL or more reads on readiness again.
        assert listener._reading or listener._timer is not None
    finally:
        listener.stop(loop)
        peer.close()
    assert listener._timer is None, "stop cancels the pending timer"
    assert server.fileno() == -1


async def test_without_a_steady_rate_the_listener_reads_every_datagram_as_it_comes() -> None:
    loop = asyncio.get_running_loop()
    server = bind_udp("127.0.0.1", 0)
    listener = UdpListener(server, HANDLER.handle)
    listener.start(loop)
    peer = client()
    try:
        for _ in range(20):
            peer.sendto(QUERY, server.getsockname())
            assert await replies(peer, 1) == 1
            await asyncio.sleep(0.01)  # 100 queries a second
            assert listener._reading
            assert listener._timer is None
    finally:
        listener.stop(loop)
        peer.close()


async def test_stop_while_waiting_leaves_no_timer_to_fire() -> None:
    loop = asyncio.get_running_loop()
    server = bind_udp("127.0.0.1", 0)
    listener = UdpListener(server, HANDLER.handle, delay=0.05)
    listener.start(loop)
    listener.pacer.waiting = True
    peer = client()
    peer.sendto(QUERY, server.getsockname())
    assert await replies(peer, 1) == 1
    assert listener._timer is not None
    listener.stop(loop)
    peer.close()
    await asyncio.sleep(0.1)  # past the delay: a timer left behind would drain a closed socket
    assert listener._timer is None
    assert server.fileno() == -1


@pytest.mark.parametrize(("argv", "seconds"), [([], DEFAULT_DELAY), (["--udp-coalesce", "0"], 0.0),
                                               (["--udp-coalesce", "2.5"], 0.0025)])
def test_the_option_reaches_the_settings_in_seconds(argv: list[str], seconds: float) -> None:
    """``serve --udp-coalesce`` is in milliseconds, spelt as a literal in the CLI (which
    imports nothing of ``serve`` for its help); its default is ``DEFAULT_DELAY``."""
    from dnsfail.cli.main import build_parser

    args = build_parser().parse_args(["serve", *argv])
    assert args.udp_coalesce / 1000 == pytest.approx(seconds)
    assert Settings().udp_coalesce == DEFAULT_DELAY == WorkerSettings(
        "x", None, None, 10.0, 1, "info", "text").udp_coalesce


@pytest.mark.parametrize("text", ["-1", "21", "nan", "inf", "1ms", ""])
def test_a_wait_out_of_range_is_refused(text: str) -> None:
    from dnsfail.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--udp-coalesce", text])
