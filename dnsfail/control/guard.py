"""The control API's connection guard: a cap on open connections and a request-head deadline.

aiohttp's ``RequestHandler`` has neither (issue 11: a slowloris client, or
many idle ones, would hold descriptors the probes need), so the control
listener (``control.api.ControlServer``) is created with :class:`Guard` as
its protocol: it forwards every call to aiohttp's handler and aborts the
transport when the cap is full or the deadline passes.  The
:func:`deadline` middleware tells the guard when a request head has arrived
(the first point aiohttp hands us a request) and when its reply is handed on.

It imports nothing from ``serve``, and no other control module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

log = logging.getLogger(__name__)

#: At most one log line per this many seconds about connections closed by the limits.
LIMIT_LOG_EVERY = 10.0

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Limits:
    """The open connections of one listener, its cap and head deadline, and what they closed."""

    def __init__(self, max_connections: int, head_timeout: float) -> None:
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        #: Open connections, by their aiohttp handler (what a request names as its protocol).
        self.guards: dict[object, Guard] = {}
        #: Connections closed by each limit, for metrics: over_cap, head_timeout.
        self.closed: dict[str, int] = {"over_cap": 0, "head_timeout": 0}
        self._logged = 0.0

    def note(self, why: str, text: str) -> None:
        """Count a connection closed by a limit; one info line per LIMIT_LOG_EVERY at most."""
        self.closed[why] += 1
        now = time.monotonic()
        if now - self._logged >= LIMIT_LOG_EVERY:
            self._logged = now
            log.info("control API: closing connections: %s (so far: %d over the cap, %d "
                     "timed out)", text, self.closed["over_cap"], self.closed["head_timeout"],
                     extra={"fields": {"event": "control_limit", **self.closed}})

    def abort_idle(self) -> None:
        """Close every connection still waiting for a request head: nothing to finish."""
        for guard in list(self.guards.values()):
            if guard.transport is not None and guard.timer is not None:
                guard.transport.abort()


GUARDS: web.AppKey[Limits] = web.AppKey("guards")


class Guard(asyncio.Protocol):
    """One control connection: aiohttp's protocol inside the connection cap and head deadline.

    ``factory`` makes aiohttp's protocol for the connection (the runner's server).
    """

    def __init__(self, limits: Limits, factory: Callable[[], asyncio.Protocol]) -> None:
        self.limits = limits
        self.factory = factory
        self.transport: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self.limits
        self.transport = cast(asyncio.Transport, transport)
        if len(limits.guards) >= limits.max_connections:
            limits.note("over_cap", f"over the cap of {limits.max_connections} connections")
            self.transport.abort()
            return
        self.inner = inner = self.factory()
        limits.guards[inner] = self
        self.arm()
        inner.connection_made(transport)

    def arm(self) -> None:
        self.disarm()
        if self.transport is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.limits.head_timeout, self._expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.limits.note("head_timeout",
                             f"no complete request within {self.limits.head_timeout:g}s")
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.transport = None
        if self.inner is not None:
            self.limits.guards.pop(self.inner, None)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


@web.middleware
async def deadline(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    """A request head arrived: stop its connection's head timer until the reply is handed on."""
    guard = request.app[GUARDS].guards.get(request.protocol)
    if guard is not None:
        guard.disarm()
    try:
        return await handler(request)
    finally:
        if guard is not None:
            guard.arm()
