"""Probes against real aiohttp servers on loopback addresses (127.0.0.2x, port 0)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from dnsfail.model import ProbeProtocol, ProbeSpec
from dnsfail.serve.probe import Prober, check, new_session
from tests.pki import write_pki

pytestmark = pytest.mark.asyncio

HOST = "127.0.0.21"
TLS_HOST = "127.0.0.22"


@dataclass
class Site:
    """A running test endpoint and what it has seen."""

    runner: web.AppRunner
    address: str
    port: int
    requests: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self) -> None:
        self.release.set()
        await self.runner.cleanup()


async def start_site(address: str, tls: ssl.SSLContext | None = None) -> Site:
    app = web.Application()
    site: Site

    async def ok(request: web.Request) -> web.Response:
        site.requests.append(request)
        return web.Response(text="status: all systems go")

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    async def slow(request: web.Request) -> web.Response:
        async with asyncio.timeout(5):
            await site.release.wait()
        return web.Response(text="late")

    app.router.add_get("/health", ok)
    app.router.add_get("/down", unavailable)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, address, 0, ssl_context=tls).start()
    site = Site(runner, address, runner.addresses[0][1])
    return site


@pytest_asyncio.fixture
async def sites() -> AsyncIterator[Callable[..., Awaitable[Site]]]:
    """Start sites on demand; every one is stopped at the end, even on failure."""
    started: list[Site] = []

    async def make(address: str = HOST, tls: ssl.SSLContext | None = None) -> Site:
        site = await start_site(address, tls)
        started.append(site)
        return site

    yield make
    for site in started:
        await site.stop()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s


def http(site: Site, path: str = "/health", **kw: Any) -> ProbeSpec:
    return ProbeSpec(ProbeProtocol.HTTP, site.address, site.port, path=path, **kw)


# --- HTTP --------------------------------------------------------------------------


async def test_healthy_200(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession
) -> None:
    site = await sites()
    result = await check(http(site), session)
    assert (result.ok, result.detail) == (True, "HTTP 200")
    assert 0 < result.latency < 1


async def test_503_is_down(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession
) -> None:
    site = await sites()
    result = await check(http(site, "/down"), session)
    assert (result.ok, result.detail) == (False, "HTTP 503")


async def test_expected_status_codes(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession
) -> None:
    site = await sites()
    result = await check(http(site, "/down", expect_status=(200, 503)), session)
    assert (result.ok, result.detail) == (True, "HTTP 503")
    result = await check(http(site, "/missing", expect_status=(200,)), session)
    assert (result.ok, result.detail) == (False, "HTTP 404")


async def test_slow_response_times_out(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession
) -> None:
    site = await sites()
    result = await check(http(site, "/slow", timeout=0.2), session)
    assert (result.ok, result.detail) == (False, "response timeout after 0.2s")
    assert 0.2 <= result.latency < 1


@pytest.mark.parametrize(
    ("needle", "ok", "detail"),
    [("all systems go", True, "HTTP 200"), ("ALL SYSTEMS GO", False, "body did not match")],
)
async def test_body_match(
    sites: Callable[..., Awaitable[Site]],
    session: aiohttp.ClientSession,
    needle: str,
    ok: bool,
    detail: str,
) -> None:
    site = await sites()
    result = await check(http(site, body_match=needle), session)
    assert (result.ok, result.detail) == (ok, detail)


async def test_host_and_custom_headers_reach_the_server(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession
) -> None:
    site = await sites()
    spec = http(site, host="api.gw.example.com", headers=(("X-Probe", "dnsfail"),))
    assert (await check(spec, session)).ok
    seen = site.requests[-1].headers
    assert seen["Host"] == "api.gw.example.com"
    assert seen["X-Probe"] == "dnsfail"


def closed_port(address: str) -> int:
    """A port that was just free on ``address``: connecting to it is refused."""
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
    return port


async def test_http_connection_refused(session: aiohttp.ClientSession) -> None:
    spec = ProbeSpec(ProbeProtocol.HTTP, HOST, closed_port(HOST))
    result = await check(spec, session)
    assert (result.ok, result.detail) == (False, "connection refused")


# --- TCP ---------------------------------------------------------------------------


async def test_tcp_open_port(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession
) -> None:
    site = await sites()
    result = await check(ProbeSpec(ProbeProtocol.TCP, site.address, site.port), session)
    assert (result.ok, result.detail) == (True, "connected")


async def test_tcp_closed_port(session: aiohttp.ClientSession) -> None:
    result = await check(ProbeSpec(ProbeProtocol.TCP, HOST, closed_port(HOST)), session)
    assert (result.ok, result.detail) == (False, "connection refused")


# --- HTTPS -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: str
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA and a leaf for site.test / 127.0.0.22, made fresh for the test run."""
    files = write_pki(tmp_path_factory.mktemp("pki"), TLS_HOST)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.cert, files.key)
    return Pki(str(files.ca), server)


def https(site: Site, **kw: Any) -> ProbeSpec:
    return ProbeSpec(
        ProbeProtocol.HTTPS, site.address, site.port, host="site.test", path="/health", **kw
    )


async def test_https_unknown_ca_fails_verification(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession, pki: Pki
) -> None:
    site = await sites(TLS_HOST, pki.server)
    result = await check(https(site), session)
    assert not result.ok
    assert result.detail.startswith("TLS: certificate verify failed"), result.detail


async def test_https_with_ca_file_passes_and_sends_sni(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession, pki: Pki
) -> None:
    site = await sites(TLS_HOST, pki.server)
    result = await check(https(site, ca_file=pki.ca_file), session)
    assert (result.ok, result.detail) == (True, "HTTP 200")
    assert site.requests[-1].headers["Host"] == "site.test"


async def test_https_checks_the_name_not_just_the_chain(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession, pki: Pki
) -> None:
    site = await sites(TLS_HOST, pki.server)
    spec = ProbeSpec(
        ProbeProtocol.HTTPS, site.address, site.port, host="other.test", ca_file=pki.ca_file
    )
    result = await check(spec, session)
    assert not result.ok
    assert result.detail.startswith("TLS: certificate verify failed"), result.detail


async def test_tls_handshake_that_never_completes_is_a_connect_timeout(
    session: aiohttp.ClientSession,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection open, say nothing, until the client leaves
        writer.close()

    server = await asyncio.start_server(silent, TLS_HOST, 0)
    try:
        port = server.sockets[0].getsockname()[1]
        spec = ProbeSpec(ProbeProtocol.HTTPS, TLS_HOST, port, host="site.test", timeout=0.2)
        result = await check(spec, session)
        assert (result.ok, result.detail) == (False, "connect timeout after 0.2s")
        tcp = await check(ProbeSpec(ProbeProtocol.TCP, TLS_HOST, port, timeout=0.2), session)
        assert (tcp.ok, tcp.detail) == (True, "connected")
    finally:
        server.close()
        await server.wait_closed()


async def test_session_without_tracing_still_reports_a_timeout(
    sites: Callable[..., Awaitable[Site]],
) -> None:
    site = await sites()
    async with aiohttp.ClientSession() as plain:
        result = await check(http(site, "/slow", timeout=0.2), plain)
    assert (result.ok, result.detail) == (False, "timeout after 0.2s")


async def test_https_without_verification_passes(
    sites: Callable[..., Awaitable[Site]], session: aiohttp.ClientSession, pki: Pki
) -> None:
    site = await sites(TLS_HOST, pki.server)
    result = await check(https(site, verify_tls=False), session)
    assert (result.ok, result.detail) == (True, "HTTP 200")


# --- Prober ------------------------------------------------------------------------


Seen = list[tuple[ProbeSpec, bool, str, float]]


class Recorder:
    """An ``on_result`` callback that keeps (spec, ok, detail, at) and can be waited on."""

    def __init__(self, fail: bool = False) -> None:
        self.seen: Seen = []
        self.fail = fail
        self._changed = asyncio.Event()

    def __call__(self, spec: ProbeSpec, ok: bool, detail: str, latency: float, at: float) -> None:
        self.seen.append((spec, ok, detail, at))
        self._changed.set()
        if self.fail:
            raise RuntimeError("callback bug")

    async def until(self, cond: Callable[[Seen], bool], within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while not cond(self.seen):
                self._changed.clear()
                await self._changed.wait()


def probe_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("probe ")]


async def test_prober_reports_failure_when_an_endpoint_stops(
    sites: Callable[..., Awaitable[Site]],
) -> None:
    a, b = await sites("127.0.0.23"), await sites("127.0.0.24")
    sa, sb = (http(s, interval=0.05, timeout=0.5) for s in (a, b))
    rec = Recorder()
    seen = rec.seen
    ticks = iter(range(1_000_000))
    prober = Prober([sa, sb], rec, now=lambda: float(next(ticks)), startup_spread=0.05)
    await prober.start()
    try:
        assert await prober.first_round(2.0)
        assert {(s, ok) for s, ok, _, _ in seen} == {(sa, True), (sb, True)}
        await b.stop()
        await rec.until(lambda seen: any(s == sb and not ok for s, ok, _, _ in seen))
        await rec.until(lambda seen: [ok for s, ok, _, _ in seen if s == sa].count(True) >= 3)
    finally:
        await prober.stop()
    assert all(ok for s, ok, _, _ in seen if s == sa)
    assert next(d for s, ok, d, _ in seen if s == sb and not ok) == "connection refused"
    # `at` comes from the injected clock, in order.
    ats = [at for *_, at in seen]
    assert ats == sorted(ats)
    assert ats[0] == 0.0
    assert probe_tasks() == []


async def test_prober_dedupes_equal_specs(sites: Callable[..., Awaitable[Site]]) -> None:
    site = await sites("127.0.0.25")
    spec = http(site, interval=10.0)  # one probe each in the first 50 ms, then a 10 s wait
    rec = Recorder()
    seen = rec.seen
    prober = Prober([spec, http(site, interval=10.0)], rec, startup_spread=0.05)
    await prober.start()
    try:
        assert prober.specs == frozenset({spec})
        assert await prober.first_round(2.0)
        await asyncio.sleep(0.1)  # past the startup spread: a second stream would have fired
        assert len(site.requests) == 1
        assert len(seen) == 1
        assert len(probe_tasks()) == 1
    finally:
        await prober.stop()
    assert probe_tasks() == []


async def test_prober_update_keeps_unchanged_tasks(sites: Callable[..., Awaitable[Site]]) -> None:
    a, b = await sites("127.0.0.26"), await sites("127.0.0.27")
    sa, sb = http(a, interval=10.0), http(b, interval=10.0)
    rec = Recorder()
    seen = rec.seen
    prober = Prober([sa], rec, startup_spread=0.01)
    await prober.start()
    try:
        assert await prober.first_round(2.0)
        kept = probe_tasks()
        await prober.update([sa, sb])
        assert set(kept) <= set(probe_tasks())
        assert len(probe_tasks()) == 2
        assert await prober.first_round(2.0)  # waits for the new target's first result
        assert {s for s, *_ in seen} == {sa, sb}
        await prober.update([sb])
        assert all(t.done() for t in kept)
        assert len(probe_tasks()) == 1
        assert len(a.requests) == 1  # sa was not restarted by the first update
    finally:
        await prober.stop()
    assert probe_tasks() == []


async def test_first_round_times_out_and_callback_errors_do_not_kill_the_loop(
    sites: Callable[..., Awaitable[Site]], caplog: pytest.LogCaptureFixture
) -> None:
    site = await sites("127.0.0.28")
    broken = Recorder(fail=True)
    slow = http(site, "/slow", interval=0.05, timeout=0.3)
    fast = http(site, interval=0.05)
    prober = Prober([slow, fast], broken, startup_spread=0.01)
    await prober.start()
    try:
        assert not await prober.first_round(0.1)  # the slow one has no result yet
        await broken.until(lambda seen: sum(s == fast for s, *_ in seen) >= 3)
    finally:
        await prober.stop()
    assert probe_tasks() == []
    assert f"on_result failed for target {fast.label}" in caplog.text


async def test_semaphore_bounds_probes_in_flight(sites: Callable[..., Awaitable[Site]]) -> None:
    site = await sites("127.0.0.29")
    specs = [http(site, f"/slow?n={i}", interval=10.0, timeout=0.2) for i in range(4)]
    rec = Recorder()
    seen = rec.seen
    prober = Prober(specs, rec, max_in_flight=1, startup_spread=0.01)
    await prober.start()
    try:
        # One at a time, each timing out after 0.2 s: four results need about 0.8 s.
        assert not await prober.first_round(0.5)
        assert await prober.first_round(1.5)
    finally:
        await prober.stop()
    assert len(seen) == 4
