"""Failure drills, end to end: real health endpoints, a real ``dnsfail serve``, real DNS.

Every test writes a ``drill.test`` zone whose dynamic record ``api`` has the
pools ``eu`` (127.0.0.41, 127.0.0.42, falling back to ``us``) and ``us``
(127.0.0.43), all probed on one common port.  The endpoints are controllable
(:class:`Endpoint`): they run on their own event loop in a background thread,
so the synchronous test code, the endpoints and the dnsfail child process are
independent, and a stopped endpoint really closes its listening socket, so
probes see "connection refused".  Time is measured against deadlines derived
from the health settings; nothing sleeps blindly.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.rcode
import dns.rdatatype
import pytest
import yaml
from aiohttp import web

from dnsfail.steering.health import Health, Result, TargetHealth, describe_change

from ..conftest import DnsfailProcess
from ..pki import PkiFiles, write_pki

T = TypeVar("T")

S41, S42, S43 = "127.0.0.41", "127.0.0.42", "127.0.0.43"
SITES = (S41, S42, S43)
#: The HTTPS site: its certificate names DNS:site.test and IP:127.0.0.44.
TLS_SITE = "127.0.0.44"
BACKUP = "192.0.2.99"
STATIC = "192.0.2.80"
QNAME = "api.drill.test."
HC_HOST = "api.drill.test"
#: What ``api`` answers while every site is healthy.
EU = frozenset({S41, S42})
#: Slack for process scheduling, probe jitter and the 50 ms polling.
MARGIN = 1.0
POLL = 0.05


# --- endpoints -------------------------------------------------------------------------------


class LoopThread:
    """An event loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="endpoints", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class Endpoint:
    """A stand-in gateway health endpoint on ``host:port``.

    ``kind`` is ``http``, ``https`` (needs ``tls``) or ``tcp`` (accept and
    close).  ``stop()``/``start()`` close and reopen the listening socket;
    ``set_status`` changes the answer of HTTP(S) requests; ``flapping``
    alternates 503, 200, 503, ... per request; ``hang`` accepts requests and
    never answers them (probes time out).  ``requests`` keeps (Host, path) of
    every request, or ("", "") per accepted TCP connection.
    """

    def __init__(
        self,
        loop: LoopThread,
        host: str,
        port: int,
        kind: str = "http",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.loop, self.host, self.port, self.kind, self.tls = loop, host, port, kind, tls
        self.requests: list[tuple[str, str]] = []
        self.served: list[int] = []
        self.status = 200
        self.flapping = False
        self.hang = False
        self.running = False
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._tcp: asyncio.Server | None = None
        self.loop.run(self._setup())
        self.start()

    async def _setup(self) -> None:
        self._release = asyncio.Event()
        if self.kind != "tcp":
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("Host", ""), request.path))
        status = self.status
        if self.hang:
            assert self._release is not None
            await self._release.wait()
            status = 503  # a request of the outage does not count as a success when released
        if self.flapping:
            status = 503 if len(self.served) % 2 == 0 else 200
        self.served.append(status)
        return web.Response(status=status, text=f"{self.host} {status}\n")

    async def _on_tcp(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(("", ""))
        writer.close()

    async def _start(self) -> None:
        if self.kind == "tcp":
            self._tcp = await asyncio.start_server(self._on_tcp, self.host, self.port)
        else:
            assert self._runner is not None
            self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
            await self._site.start()

    async def _stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        if self._site is not None:
            await self._site.stop()
            self._site = None

    def start(self) -> None:
        if not self.running:
            self.loop.run(self._start())
            self.running = True

    def stop(self) -> None:
        """Close the listening socket: from now on, connecting is refused."""
        if self.running:
            self.loop.run(self._stop())
            self.running = False

    def set_status(self, status: int) -> None:
        self.status = status

    def set_hang(self, hang: bool) -> None:
        self.hang = hang
        if not hang:
            assert self._release is not None
            self.loop.loop.call_soon_threadsafe(self._release.set)
            self.loop.run(self._rearm())

    async def _rearm(self) -> None:
        await asyncio.sleep(0)
        self._release = asyncio.Event()

    @property
    def count(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.hang = False
        if self._release is not None:
            self.loop.loop.call_soon_threadsafe(self._release.set)
        self.stop()
        if self._runner is not None:
            self.loop.run(self._runner.cleanup())


def common_port(hosts: Iterable[str]) -> int:
    """A TCP port free on every one of ``hosts`` (all values of a record share one port)."""
    hosts = list(hosts)
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {hosts}")


class Sites:
    """Endpoints created by one test, all on one port; closed at teardown."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.all: list[Endpoint] = []

    def make(
        self, hosts: Iterable[str] = SITES, kind: str = "http", tls: ssl.SSLContext | None = None
    ) -> tuple[int, dict[str, Endpoint]]:
        hosts = list(hosts)
        port = common_port(hosts)
        made = {h: Endpoint(self.loop, h, port, kind, tls) for h in hosts}
        self.all.extend(made.values())
        return port, made

    def close(self) -> None:
        for endpoint in self.all:
            endpoint.close()


@pytest.fixture(scope="module")
def endpoint_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def sites(endpoint_loop: LoopThread) -> Iterator[Sites]:
    made = Sites(endpoint_loop)
    try:
        yield made
    finally:
        made.close()


# --- zones and the server ------------------------------------------------------------------


def dynamic(
    port: int,
    *,
    protocol: str = "HTTP",
    host: str = HC_HOST,
    ttl: int = 30,
    all_down: str | None = None,
    ttl_floor: int | None = None,
    pools: dict[str, Any] | None = None,
    status: dict[str, str] | None = None,
    **knobs: Any,
) -> dict[str, Any]:
    """A dynamic ``A`` record in octoDNS form; ``knobs`` go to ``octodns.dnsfail.healthcheck``."""
    status = status or {}

    def values(addresses: Iterable[str]) -> list[dict[str, str]]:
        return [{"value": a, **({"status": status[a]} if a in status else {})} for a in addresses]

    if pools is None:
        pools = {
            "eu": {"fallback": "us", "values": values([S41, S42])},
            "us": {"values": values([S43])},
        }
    options: dict[str, Any] = {
        "healthcheck": {"interval": 0.5, "timeout": 0.3, "rise": 2, "fall": 3, **knobs}
    }
    if all_down is not None:
        options["all_down"] = all_down
    if ttl_floor is not None:
        options["ttl_floor"] = ttl_floor
    return {
        "octodns": {
            "healthcheck": {"host": host, "path": "/health", "port": port, "protocol": protocol},
            "dnsfail": options,
        },
        "ttl": ttl,
        "type": "A",
        "values": [BACKUP],
        "dynamic": {"pools": pools, "rules": [{"pool": next(iter(pools))}]},
    }


def zone(records: dict[str, Any]) -> dict[str, Any]:
    return {
        "": {"type": "NS", "values": ["ns1.drill.test."]},
        "ns1": {"type": "A", "value": "192.0.2.1"},
        "www": {"type": "A", "ttl": 300, "value": STATIC},
        **records,
    }


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., DnsfailProcess]]:
    """Write ``drill.test.yaml`` and start ``dnsfail serve`` on it; stopped at teardown.

    The zone file of the server started last is ``zone_file`` (for reload drills).
    """
    started: list[DnsfailProcess] = []

    def start(records: dict[str, Any], *, ready: bool = True) -> DnsfailProcess:
        directory = tmp_path / f"zones{len(started)}"
        directory.mkdir()
        write_zone(directory / "drill.test.yaml", records)
        server = DnsfailProcess([str(directory)])
        server.zone_file = directory / "drill.test.yaml"  # type: ignore[attr-defined]
        started.append(server)
        return server.wait_ready() if ready else server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def write_zone(path: Path, records: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(zone(records), sort_keys=False))


@dataclass(frozen=True)
class Answer:
    rcode: int
    addresses: frozenset[str]
    ttl: int | None

    def __str__(self) -> str:
        rcode = dns.rcode.to_text(dns.rcode.Rcode(self.rcode))
        return f"{rcode} {sorted(self.addresses)} ttl={self.ttl}"


def ask(server: DnsfailProcess, qname: str = QNAME, *, tcp: bool = False) -> Answer:
    reply = server.query(qname, "A", tcp=tcp)
    rrsets = [r for r in reply.answer if r.rdtype == dns.rdatatype.A]
    addresses = frozenset(rd.address for r in rrsets for rd in r)
    return Answer(reply.rcode(), addresses, rrsets[0].ttl if rrsets else None)


def wait_answer(
    server: DnsfailProcess,
    ok: Callable[[Answer], bool],
    timeout: float,
    qname: str = QNAME,
    seen: list[tuple[float, Answer]] | None = None,
) -> Answer:
    """Query every 50 ms until ``ok(answer)``; every answer goes to ``seen`` if given."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask(server, qname)
        if seen is not None:
            seen.append((time.monotonic(), answer))
        if ok(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{qname}: still {answer} after {timeout:.1f}s; log:\n{server.log}"
            )
        time.sleep(POLL)


def is_(*addresses: str) -> Callable[[Answer], bool]:
    want = frozenset(addresses)
    return lambda a: a.rcode == dns.rcode.NOERROR and a.addresses == want


def poll_for(server: DnsfailProcess, seconds: float, qname: str = QNAME) -> list[Answer]:
    """Every answer over ``seconds``, one query per 50 ms."""
    out: list[Answer] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(ask(server, qname))
        time.sleep(POLL)
    return out


def wait_count(endpoint: Endpoint, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while endpoint.count < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{endpoint.host}: {endpoint.count} requests, wanted {n}")
        time.sleep(0.005)


def transitions(server: DnsfailProcess, label: str, change: str) -> list[str]:
    """Log messages of ``target LABEL ... CHANGE`` (e.g. ``UP -> DOWN``), logger prefix cut."""
    return [
        line.split("dnsfail.state: ", 1)[-1]
        for line in server.lines
        if f"target {label} " in line and f" {change} " in line
    ]


def wait_transition(server: DnsfailProcess, label: str, change: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not (found := transitions(server, label, change)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{label} {change} not logged in {timeout:.1f}s:\n{server.log}")
        time.sleep(0.01)
    return found[0]


def expected_line(
    label: str, context: str, before: Health, after: Health, count: int, detail: str
) -> str:
    """The change line as health.describe_change renders it."""
    ok = after is Health.UP
    h0 = TargetHealth(state=before)
    h1 = TargetHealth(
        state=after,
        successes=count if ok else 0,
        failures=0 if ok else count,
        last=Result(ok, detail, 0.0, 0.0),
    )
    line = describe_change(h0, h1, label, context)
    assert line is not None
    return line


# --- 1 and 10: withdraw and restore, for each way a site can fail --------------------------

# (kind, how the site fails, how it recovers, failure detail, success detail)
FAILURES = [
    pytest.param("http", "refused", "connection refused", "HTTP 200", id="http-refused"),
    pytest.param("http", "503", "HTTP 503", "HTTP 200", id="http-503"),
    pytest.param("http", "hang", "response timeout after 0.3s", "HTTP 200", id="http-timeout"),
    pytest.param("tcp", "refused", "connection refused", "connected", id="tcp-refused"),
]


def fail(endpoint: Endpoint, how: str) -> None:
    actions: dict[str, Callable[[], None]] = {
        "refused": endpoint.stop,
        "503": lambda: endpoint.set_status(503),
        "hang": lambda: endpoint.set_hang(True),
    }
    actions[how]()


def recover(endpoint: Endpoint, how: str) -> None:
    actions: dict[str, Callable[[], None]] = {
        "refused": endpoint.start,
        "503": lambda: endpoint.set_status(200),
        "hang": lambda: endpoint.set_hang(False),
    }
    actions[how]()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "how", "down_detail", "up_detail"), FAILURES)
def test_withdraw_and_restore(
    sites: Sites,
    serve: Callable[..., DnsfailProcess],
    kind: str,
    how: str,
    down_detail: str,
    up_detail: str,
) -> None:
    interval, timeout, rise, fall = 0.5, 0.3, 3, 3
    port, ep = sites.make(kind=kind)
    server = serve(
        {
            "api": dynamic(
                port,
                protocol=kind.upper(),
                interval=interval,
                timeout=timeout,
                rise=rise,
                fall=fall,
            )
        }
    )
    assert ask(server) == Answer(dns.rcode.NOERROR, EU, 5)
    assert ask(server, tcp=True).addresses == EU
    label, context = f"{S41}:{port}", "api.drill.test pool eu"

    # Down: not before fall-1 intervals (one failure never withdraws), well within fall.
    fail(ep[S41], how)
    stopped = time.monotonic()
    seen: list[tuple[float, Answer]] = []
    wait_answer(server, is_(S42), fall * interval * 1.1 + timeout + MARGIN, seen=seen)
    took = seen[-1][0] - stopped
    assert took >= (fall - 1) * interval * 0.9, f"withdrawn after {took:.2f}s"
    assert all(a.addresses in (EU, {S42}) for _, a in seen), seen
    down = expected_line(label, context, Health.UP, Health.DOWN, fall, down_detail)
    assert down == (
        f"target {S41}:{port} (api.drill.test pool eu) UP -> DOWN "
        f"({fall} failures; last: {down_detail})"
    )
    server.wait_for_log(down)
    assert transitions(server, label, "UP -> DOWN") == [down]

    # Up: only after `rise` consecutive successes, not after the first or second.
    base = ep[S41].count
    recover(ep[S41], how)
    restored = time.monotonic()
    for n in range(1, rise):
        wait_count(ep[S41], base + n, interval * 1.1 + timeout + MARGIN)
        assert S41 not in ask(server).addresses, f"back after {n} success(es)"
        assert S41 not in ask(server, tcp=True).addresses, f"back after {n} success(es) (TCP)"
    wait_answer(server, is_(S41, S42), rise * interval * 1.1 + timeout + MARGIN)
    assert ep[S41].count - base >= rise
    assert time.monotonic() - restored >= (rise - 1) * interval * 0.9
    up = expected_line(label, context, Health.DOWN, Health.UP, rise, up_detail)
    server.wait_for_log(up)
    assert transitions(server, label, "DOWN -> UP") == [up]
    assert transitions(server, label, "UP -> DOWN") == [down]
    for other in (S42, S43):
        assert transitions(server, f"{other}:{port}", "->") == []


# --- 2: fallback ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dead", "expected"),
    [
        pytest.param({S41, S42}, {S43}, id="eu-down-falls-back-to-us"),
        pytest.param({S43}, EU, id="fallback-pool-down-changes-nothing"),
    ],
)
def test_fallback(
    sites: Sites, serve: Callable[..., DnsfailProcess], dead: set[str], expected: set[str]
) -> None:
    interval, fall = 0.5, 2
    port, ep = sites.make()
    server = serve({"api": dynamic(port, interval=interval, fall=fall)})
    assert ask(server).addresses == EU
    for site in dead:
        ep[site].stop()
    for site in dead:
        wait_transition(server, f"{site}:{port}", "UP -> DOWN", fall * interval * 1.1 + MARGIN)
    wait_answer(server, is_(*expected), timeout=MARGIN)
    answers = poll_for(server, interval)
    assert {a.addresses for a in answers} == {frozenset(expected)}


# --- 3: all down, per policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "ttl_floor", "status", "rcode", "expected", "ttl"),
    [
        pytest.param("backup", None, {}, dns.rcode.NOERROR, {BACKUP}, 5, id="backup-default-floor"),
        pytest.param("all", 2, {}, dns.rcode.NOERROR, {S41, S42, S43}, 2, id="all"),
        pytest.param(
            "all",
            3,
            {S42: "down"},
            dns.rcode.NOERROR,
            {S41, S43},
            3,
            id="all-keeps-drained-site-out",
        ),
        pytest.param("servfail", None, {}, dns.rcode.SERVFAIL, set(), None, id="servfail"),
    ],
)
def test_all_down(
    sites: Sites,
    serve: Callable[..., DnsfailProcess],
    policy: str,
    ttl_floor: int | None,
    status: dict[str, str],
    rcode: int,
    expected: set[str],
    ttl: int | None,
) -> None:
    interval, fall = 0.5, 2
    port, ep = sites.make()
    server = serve(
        {
            "api": dynamic(
                port,
                all_down=policy,
                ttl_floor=ttl_floor,
                status=status,
                interval=interval,
                fall=fall,
            )
        }
    )
    assert ask(server).addresses == EU - set(status)
    for endpoint in ep.values():
        endpoint.stop()
    want = Answer(rcode, frozenset(expected), ttl)
    wait_answer(server, lambda a: a == want, fall * interval * 1.1 + 0.3 + MARGIN)
    for tcp in (False, True):
        assert ask(server, tcp=tcp) == want
    # Recovery: one site back is served again after `rise` successes.
    ep[S43].start()
    wait_answer(server, is_(S43), 2 * interval * 1.1 + 0.3 + MARGIN)


# --- 4: flapping ---------------------------------------------------------------------------


@pytest.mark.slow
def test_flapping_site_is_never_withdrawn(
    sites: Sites, serve: Callable[..., DnsfailProcess]
) -> None:
    interval, fall = 0.5, 3
    port, ep = sites.make()
    server = serve({"api": dynamic(port, interval=interval, fall=fall)})
    assert ask(server).addresses == EU
    before = len(ep[S41].served)
    ep[S41].flapping = True
    answers = poll_for(server, 3.5)
    served = ep[S41].served[before:]
    assert len(served) >= 6, served
    assert {200, 503} <= set(served), served
    assert all(a.addresses == EU for a in answers), {str(a) for a in answers}
    assert transitions(server, f"{S41}:{port}", "UP -> DOWN") == []


# --- 5: status overrides -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "dead", "expected"),
    [
        pytest.param({S41: "down"}, set(), {S42}, id="down-on-a-healthy-site"),
        pytest.param({S42: "up"}, {S42}, EU, id="up-on-a-dead-site"),
        pytest.param({S41: "down", S42: "down"}, set(), {S43}, id="eu-drained-falls-back"),
        pytest.param({S43: "up"}, {S41, S42, S43}, {S43}, id="up-on-a-dead-fallback"),
    ],
)
def test_status_overrides(
    sites: Sites,
    serve: Callable[..., DnsfailProcess],
    status: dict[str, str],
    dead: set[str],
    expected: set[str],
) -> None:
    interval, fall = 0.5, 2
    port, ep = sites.make()
    for site in dead:
        ep[site].stop()
    server = serve({"api": dynamic(port, status=status, interval=interval, fall=fall)})
    for site in dead:  # probed all the same, and known to be down
        assert f"target {site}:{port} (api.drill.test pool" in server.wait_for_log(
            f"target {site}:{port} "
        )
        assert "first result: DOWN" in server.wait_for_log(f"target {site}:{port} ")
    answers = poll_for(server, fall * interval * 1.1 + 0.3)
    assert {a.addresses for a in answers} == {frozenset(expected)}


# --- 6: cold start -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dead", "expected"),
    [
        pytest.param({S42}, {S41}, id="one-site-dead"),
        pytest.param({S41, S42}, {S43}, id="eu-dead"),
    ],
)
def test_cold_start_waits_for_the_first_probe_round(
    sites: Sites, serve: Callable[..., DnsfailProcess], dead: set[str], expected: set[str]
) -> None:
    port, ep = sites.make()
    for site in dead:
        ep[site].stop()
    # rise 5 at interval 1: a wrong first answer could not have healed in the meantime.
    server = serve({"api": dynamic(port, interval=1, timeout=0.5, rise=5)}, ready=False)
    server.wait_ready()
    first = ask(server)
    assert first.addresses == expected, f"first answer {first}"
    assert ask(server, tcp=True).addresses == expected
    log = server.lines
    done = next(
        i for i, line in enumerate(log) if "first probe round complete: 3 target(s)" in line
    )
    listening = next(i for i, line in enumerate(log) if "listening on" in line)
    assert done < listening, server.log
    for site in dead:
        assert any(
            f"target {site}:{port} (api.drill.test pool " in line
            and "first result: DOWN (1 failure; last: connection refused)" in line
            for line in log[:done]
        ), server.log
    assert "serving them as up" not in server.log


# --- 7: probe load and dedupe --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("api2_host", "per_target"),
    [
        pytest.param(HC_HOST, 1, id="same-check-probed-once"),
        pytest.param("api2.drill.test", 2, id="different-host-probed-twice"),
    ],
)
def test_probe_load_and_dedupe(
    sites: Sites, serve: Callable[..., DnsfailProcess], api2_host: str, per_target: int
) -> None:
    interval = 0.5
    port, ep = sites.make()
    server = serve(
        {
            "api": dynamic(port, interval=interval),
            "api2": dynamic(port, host=api2_host, interval=interval),
        }
    )
    assert ask(server).addresses == EU
    assert ask(server, "api2.drill.test.").addresses == EU
    server.wait_for_log(f"first probe round complete: {3 * per_target} target(s)")
    window = 2.5
    start = {site: ep[site].count for site in SITES}
    time.sleep(window)
    expected = window / interval * per_target
    for site in SITES:
        got = ep[site].count - start[site]
        # +-10 % jitter per probe, plus one probe either side of the window per check.
        assert expected * 0.85 - per_target <= got <= expected * 1.15 + per_target, (site, got)
        hosts = {host for host, _ in ep[site].requests}
        assert hosts == {HC_HOST, api2_host}
        assert {path for _, path in ep[site].requests} == {"/health"}
    if per_target == 1:
        line = server.wait_for_log(f"target {S41}:{port} ")
        assert "(api.drill.test pool eu, api2.drill.test pool eu)" in line


# --- 8: TTL clamp --------------------------------------------------------------------------

# (record ttl, ttl_floor, answered TTL while every site is healthy) at interval 1, fall 3:
# TTL = max(min(floor, ttl), floor(min(ttl, interval x failures still needed)))
TTL_CASES = [
    (300, None, 5),  # 3 s to the next possible change, raised to the default floor 5
    (300, 1, 3),  # interval 1 x fall 3
    (300, 4, 4),
    (2, None, 2),  # the record TTL is lower than anything else
    (2, 1, 2),
    (3, 3, 3),
]


def test_ttl_clamp_when_healthy(sites: Sites, serve: Callable[..., DnsfailProcess]) -> None:
    port, _ = sites.make()
    records = {
        f"t{i}": dynamic(port, ttl=ttl, ttl_floor=floor, interval=1, timeout=0.5, fall=3)
        for i, (ttl, floor, _) in enumerate(TTL_CASES)
    }
    server = serve(records)
    server.wait_for_log("first probe round complete: 3 target(s)")  # deduped across records
    for i, (ttl, floor, want) in enumerate(TTL_CASES):
        for tcp in (False, True):
            got = ask(server, f"t{i}.drill.test.", tcp=tcp)
            assert got == Answer(dns.rcode.NOERROR, EU, want), (ttl, floor, str(got))


@pytest.mark.slow
def test_ttl_shrinks_while_failures_accumulate(
    sites: Sites, serve: Callable[..., DnsfailProcess]
) -> None:
    interval, fall, rise = 1, 3, 2
    port, ep = sites.make()
    server = serve(
        {
            "api": dynamic(
                port, ttl=300, ttl_floor=1, interval=interval, timeout=0.5, fall=fall, rise=rise
            )
        }
    )
    assert ask(server) == Answer(dns.rcode.NOERROR, EU, 3)
    ep[S41].stop()
    seen: list[tuple[float, Answer]] = []
    wait_answer(server, is_(S42), fall * interval * 1.1 + 0.5 + MARGIN, seen=seen)
    before = [a.ttl or 0 for _, a in seen if S41 in a.addresses]
    # 3 failures still needed, then 2, then 1: the TTL follows and never goes back up.
    assert set(before) == {3, 2, 1}, before
    assert before == sorted(before, reverse=True), before
    # Withdrawn: .41 could be back after `rise` successes, .42 could go after `fall` failures.
    assert seen[-1][1].ttl == min(rise, fall) * interval


# --- 9: a health change takes effect on the very next query --------------------------------


@pytest.mark.slow
def test_health_change_reaches_the_very_next_query(
    sites: Sites, serve: Callable[..., DnsfailProcess]
) -> None:
    interval, fall, rise = 0.5, 2, 2
    port, ep = sites.make()
    server = serve({"api": dynamic(port, interval=interval, fall=fall, rise=rise)})
    label = f"{S41}:{port}"
    for change, act, want in [
        ("UP -> DOWN", ep[S41].stop, {S42}),
        ("DOWN -> UP", ep[S41].start, set(EU)),
    ]:
        act()
        deadline = time.monotonic() + max(fall, rise) * interval * 1.1 + 0.3 + MARGIN
        # Keep both transports' prepared replies warm until the change is logged.
        while not transitions(server, label, change):
            assert time.monotonic() < deadline, f"{change} not logged:\n{server.log}"
            ask(server)
            ask(server, tcp=True)
        assert ask(server).addresses == want, f"UDP answer stale after {change}"
        assert ask(server, tcp=True).addresses == want, f"TCP answer stale after {change}"


# --- reload: what is known about a dead site survives a reload -------------------------------


def add_static(records: dict[str, Any]) -> None:
    records["added"] = {"type": "A", "value": "192.0.2.5"}


def change_fall(records: dict[str, Any]) -> None:
    add_static(records)
    records["api"]["octodns"]["dnsfail"]["healthcheck"]["fall"] = 4


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(add_static, id="unrelated-record-added"),
        pytest.param(
            change_fall,
            id="fall-changed",
        ),
    ],
)
def test_reload_keeps_a_dead_site_withdrawn(
    sites: Sites, serve: Callable[..., DnsfailProcess], edit: Callable[[dict[str, Any]], None]
) -> None:
    interval = 1.0
    port, ep = sites.make()
    ep[S41].stop()
    records = {"api": dynamic(port, interval=interval, timeout=0.5)}
    server = serve(records)
    assert ask(server).addresses == {S42}
    edit(records)
    write_zone(server.zone_file, records)  # type: ignore[attr-defined]
    mark = len(server.lines)
    server.signal(signal.SIGHUP)
    server.wait_for_log("zone drill.test.: reloaded", start=mark)
    assert ask(server, "added.drill.test.").addresses == {"192.0.2.5"}
    # A re-probe from scratch would log a second first result within one interval (+10 %).
    answers = poll_for(server, interval * 1.1 + 0.5)
    again = [
        line
        for line in server.lines[mark:]
        if f"target {S41}:{port} " in line and "first result" in line
    ]
    assert again == [], "health of 127.0.0.41 was forgotten by the reload"
    assert all(S41 not in a.addresses for a in answers), [str(a) for a in answers]


# --- 11: HTTPS end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    """A private CA and a leaf for DNS:site.test and IP:127.0.0.44."""
    return write_pki(tmp_path_factory.mktemp("pki"), TLS_SITE)


@pytest.mark.parametrize(
    ("host", "knobs", "up", "detail"),
    [
        pytest.param("site.test", {}, False, "TLS: certificate verify failed", id="no-ca-is-down"),
        pytest.param("site.test", {"ca_file": "CA"}, True, "HTTP 200", id="ca-file-is-up"),
        pytest.param(
            "other.test",
            {"ca_file": "CA"},
            False,
            "TLS: certificate verify failed",
            id="name-not-in-cert-is-down",
        ),
        pytest.param("site.test", {"verify_tls": False}, True, "HTTP 200", id="verify-off-is-up"),
    ],
)
def test_https_end_to_end(
    sites: Sites,
    serve: Callable[..., DnsfailProcess],
    pki: PkiFiles,
    host: str,
    knobs: dict[str, Any],
    up: bool,
    detail: str,
) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert, pki.key)
    port, ep = sites.make([TLS_SITE], kind="https", tls=tls)
    knobs = {k: str(pki.ca) if v == "CA" else v for k, v in knobs.items()}
    pools = {"main": {"values": [{"value": TLS_SITE}]}}
    server = serve({"api": dynamic(port, protocol="HTTPS", host=host, pools=pools, **knobs)})
    assert ask(server) == Answer(dns.rcode.NOERROR, frozenset({TLS_SITE if up else BACKUP}), 5)
    line = server.wait_for_log(f"target {TLS_SITE}:{port} ")
    assert f"first result: {'UP' if up else 'DOWN'} " in line, line
    assert f"last: {detail}" in line, line
    if up:
        assert ep[TLS_SITE].requests[0] == (host, "/health")
    else:  # verification failed in the handshake: no request ever reached the site
        assert ep[TLS_SITE].count == 0
    assert re.search(r"first probe round complete: 1 target", server.log)
