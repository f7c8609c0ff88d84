"""The probing adapter: run health checks and report raw results, nothing more.

This is the only module that talks to probed targets.  It decides nothing:
each result goes to the ``on_result`` callback, and health.py's machine turns
results into UP/DOWN.  :func:`check` performs one probe and never raises
(short of cancellation); :class:`Prober` owns one task per distinct
:class:`~dnsfail.model.ProbeSpec`, so a target shared by many records is
probed once, as gdnsd monitors each (service type, address) pair once however many
resources name it (gdnsd.config(5), ``service_types``).

HTTPS is verified by default, unlike Route 53, PowerDNS and polaris: a site
whose certificate broke is down for its clients, so it is down for us.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
from yarl import URL

from dnsfail.model import ProbeProtocol, ProbeSpec
from dnsfail.tasks import cancel_all

log = logging.getLogger(__name__)

#: How much of a body ``body_match`` searches (Route 53 reads 5120 B; gateways say more).
BODY_LIMIT = 64 * 1024

OnResult = Callable[[ProbeSpec, bool, str, float, float], None]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str
    #: Seconds from start of the probe to its verdict.
    latency: float


@functools.lru_cache(maxsize=64)
def _tls_context(ca_file: str) -> ssl.SSLContext:
    """System trust plus ``ca_file``; cached because loading trust stores is slow."""
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


@dataclass(slots=True)
class _Progress:
    """How far a probe got, so a timeout can say where it hit."""

    phase: str = ""


def _phase_setter(phase: str) -> Callable[[object, SimpleNamespace, object], Awaitable[None]]:
    async def hook(_session: object, ctx: SimpleNamespace, _params: object) -> None:
        if isinstance(ctx.trace_request_ctx, _Progress):
            ctx.trace_request_ctx.phase = phase

    return hook


def new_session() -> aiohttp.ClientSession:
    """The session :func:`check` expects: no pooling, no cookies, no own timeout.

    ``force_close`` gives every probe a fresh connection, so a site refusing
    new connections cannot hide behind a kept-alive one; the tracing hook
    lets a timeout say whether it hit while connecting or waiting.
    """
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_phase_setter("connect"))
    trace.on_connection_create_end.append(_phase_setter("response"))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=[trace],
    )


async def check(spec: ProbeSpec, session: aiohttp.ClientSession) -> ProbeResult:
    """Probe ``spec`` once, within ``spec.timeout``; report failures as results."""
    started = time.perf_counter()
    # Without new_session()'s tracing an HTTP timeout cannot be placed; it says just "timeout".
    state = _Progress("connect" if spec.protocol is ProbeProtocol.TCP else "")
    try:
        async with asyncio.timeout(spec.timeout):
            if spec.protocol is ProbeProtocol.TCP:
                _, writer = await asyncio.open_connection(spec.address, spec.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                ok, detail = True, "connected"
            else:
                ok, detail = await _http(spec, session, state)
    except TimeoutError:
        phase = f"{state.phase} " if state.phase else ""
        ok, detail = False, f"{phase}timeout after {spec.timeout}s"
    except aiohttp.ClientConnectorCertificateError as e:
        reason = getattr(e.certificate_error, "verify_message", "") or str(e.certificate_error)
        ok, detail = False, f"TLS: certificate verify failed: {reason}"
    except aiohttp.ClientConnectorSSLError as e:
        ok, detail = False, f"TLS: {getattr(e.os_error, 'reason', None) or e.os_error}"
    except aiohttp.ClientConnectorError as e:
        ok, detail = False, _os_detail(e.os_error, "connect failed")
    except OSError as e:  # the TCP probe's connect, or a reset mid-response (ClientOSError)
        where = "connect failed" if spec.protocol is ProbeProtocol.TCP else "connection error"
        ok, detail = False, _os_detail(e, where)
    except aiohttp.ServerDisconnectedError:
        ok, detail = False, "server disconnected"
    except aiohttp.ClientError as e:
        ok, detail = False, f"HTTP error: {type(e).__name__}: {e}"
    except Exception as e:  # a probe must turn any failure into a result, not kill its loop
        ok, detail = False, f"probe error: {type(e).__name__}: {e}"
    return ProbeResult(ok, detail, time.perf_counter() - started)


def _os_detail(err: OSError, what: str) -> str:
    if err.errno == errno.ECONNREFUSED:
        return "connection refused"
    return f"{what}: {err.strerror or err}"


async def _http(
    spec: ProbeSpec, session: aiohttp.ClientSession, state: _Progress
) -> tuple[bool, str]:
    """GET the URL at ``spec.address`` with ``spec.host`` as Host and SNI."""
    scheme = "https" if spec.protocol is ProbeProtocol.HTTPS else "http"
    host = f"[{spec.address}]" if ":" in spec.address else spec.address
    path = spec.path if spec.path.startswith("/") else f"/{spec.path}"
    url = URL(f"{scheme}://{host}:{spec.port}{path}", encoded=True)
    headers = dict(spec.headers)
    if spec.host and not any(name.lower() == "host" for name in headers):
        headers["Host"] = spec.host
    tls: ssl.SSLContext | bool = True
    if scheme == "https" and not spec.verify_tls:
        tls = False
    elif scheme == "https" and spec.ca_file:
        tls = _tls_context(spec.ca_file)
    async with session.get(
        url,
        headers=headers,
        allow_redirects=False,
        ssl=tls,
        server_hostname=(spec.host or None) if scheme == "https" else None,
        trace_request_ctx=state,
    ) as resp:
        if resp.status not in spec.expect_status:
            return False, f"HTTP {resp.status}"
        if spec.body_match:
            state.phase = "body"
            body = b""
            while len(body) < BODY_LIMIT and (chunk := await resp.content.read(BODY_LIMIT)):
                body += chunk
            if spec.body_match.encode() not in body[:BODY_LIMIT]:
                return False, "body did not match"
        return True, f"HTTP {resp.status}"


class Prober:
    """Probe every distinct spec forever, bounded and jittered; report each result.

    One task per spec, owned here: :meth:`update` and :meth:`stop` cancel and
    await them.  Results go to ``on_result(spec, ok, detail, latency, at)``,
    called in the event loop with ``at`` from the injected clock ``now``.
    """

    def __init__(
        self,
        specs: Iterable[ProbeSpec],
        on_result: OnResult,
        *,
        now: Callable[[], float] = time.monotonic,
        max_in_flight: int = 64,
        startup_spread: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self._specs = frozenset(specs)
        self._on_result = on_result
        self._now = now
        self._limit = max_in_flight
        self._spread = startup_spread
        self._rng = rng or random.Random()
        self._tasks: dict[ProbeSpec, asyncio.Task[None]] = {}
        self._waiting: set[ProbeSpec] = set(self._specs)
        self._sem: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self._all_seen: asyncio.Event | None = None

    @property
    def specs(self) -> frozenset[ProbeSpec]:
        """The distinct specs being probed."""
        return self._specs

    async def start(self) -> None:
        """Create the session and one task per spec; the first probes spread over a second."""
        self._sem = asyncio.Semaphore(self._limit)
        self._session = new_session()
        self._all_seen = asyncio.Event()
        await self.update(self._specs)

    async def update(self, specs: Iterable[ProbeSpec]) -> None:
        """Probe exactly ``specs`` from now on; unchanged specs keep their task and rhythm."""
        new = frozenset(specs)
        if self._session is None:  # not started: start() will launch them
            self._specs, self._waiting = new, set(new)
            return
        _tls_context.cache_clear()  # a reload re-reads CA files that may have been renewed
        await cancel_all([self._tasks.pop(s) for s in self._tasks.keys() - new])
        self._waiting = {s for s in self._waiting if s in new} | (new - self._specs)
        self._specs = new
        for spec in new - self._tasks.keys():
            self._tasks[spec] = asyncio.create_task(self._run(spec), name=f"probe {spec.label}")
        self._check_all_seen()

    async def stop(self) -> None:
        """Cancel and await every probe task, then close the session."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_all(tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def first_round(self, timeout: float) -> bool:  # noqa: ASYNC109 (returns, not raises)
        """Wait until every spec has at least one result; False if ``timeout`` ran out."""
        if self._all_seen is None:
            raise RuntimeError("Prober.first_round() before start()")
        try:
            async with asyncio.timeout(timeout):
                await self._all_seen.wait()
        except TimeoutError:
            return False
        return True

    def _check_all_seen(self) -> None:
        if self._all_seen is not None:
            if self._waiting:
                self._all_seen.clear()
            else:
                self._all_seen.set()

    async def _run(self, spec: ProbeSpec) -> None:
        assert self._sem is not None
        assert self._session is not None
        await asyncio.sleep(self._rng.uniform(0, min(spec.interval, self._spread)))
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            async with self._sem:
                result = await check(spec, self._session)
            try:
                self._on_result(spec, result.ok, result.detail, result.latency, self._now())
            except Exception:
                log.exception("on_result failed for target %s", spec.label)
            # Only after the callback: first_round() promises the store has seen the result.
            self._waiting.discard(spec)
            self._check_all_seen()
            # +-10 % jitter keeps targets that started together from probing in lockstep.
            delay = spec.interval * self._rng.uniform(0.9, 1.1) - (loop.time() - started)
            await asyncio.sleep(max(delay, 0.0))


