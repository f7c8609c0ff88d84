"""Webhook delivery: each ``--webhook`` URL gets the events it wants, in order, off the loop's
answer path.

The event log's listener only appends to the URL's queue (a deque of at
most ``WEBHOOK_QUEUE`` events; when full the oldest is dropped, counted, and
logged at most once per ``DROP_LOG_EVERY`` seconds).  One task per URL,
owned by :class:`Webhooks` and cancelled by :meth:`Webhooks.stop`, posts
them one at a time: each request has ``WEBHOOK_TIMEOUT`` seconds; a failure
(no connection, a timeout, HTTP 5xx, 408 or 429) is retried up to
``WEBHOOK_ATTEMPTS`` attempts in all, waiting ``BACKOFF_FIRST`` seconds,
then twice as long each time, at most ``BACKOFF_CAP`` (with +-20 % jitter);
another 4xx is the receiver refusing the body and is not retried.  A URL is
shown and logged only redacted (``events.payload.redact``): no path, query
or user part, where tokens live.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dnsfail.events.log import KINDS, Event, EventLog
from dnsfail.events.payload import Target, body
from dnsfail.tasks import cancel_all

log = logging.getLogger(__name__)

#: Events waiting per URL; past it the oldest is dropped (a receiver down for hours must
#: not grow memory: ~1 KiB each).
WEBHOOK_QUEUE = 256
#: Seconds one POST may take, connecting included.
WEBHOOK_TIMEOUT = 5.0
#: Attempts per event, the first included.
WEBHOOK_ATTEMPTS = 5
#: Seconds before the first retry; doubled each time, up to BACKOFF_CAP.
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0
#: At most one log line per this many seconds about dropped events, per URL.
DROP_LOG_EVERY = 60.0


class Refused(Exception):
    """The receiver answered 4xx (not 408/429): retrying the same body will not help."""


@dataclass(eq=False)
class Hook:
    """One URL: its queue and what became of its events."""

    target: Target
    kinds: frozenset[str]
    queue: collections.deque[Event] = field(
        default_factory=lambda: collections.deque(maxlen=WEBHOOK_QUEUE))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_ok: float | None = None
    _logged: float = -DROP_LOG_EVERY

    def offer(self, event: Event) -> None:
        """The listener: queue ``event`` if wanted; never waits."""
        if event.kind not in self.kinds:
            return
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
            now = time.monotonic()
            if now - self._logged >= DROP_LOG_EVERY:
                self._logged = now
                log.warning("webhook %s: queue full (%d events), dropping the oldest; %d "
                            "dropped so far", self.target.shown, WEBHOOK_QUEUE, self.dropped,
                            extra={"fields": {"event": "webhook_dropped",
                                              "url": self.target.shown,
                                              "dropped": self.dropped}})
        self.queue.append(event)
        self.wake.set()

    def describe(self) -> dict[str, Any]:
        return {"url": self.target.shown, "format": self.target.format,
                "events": sorted(self.kinds), "queued": len(self.queue), "sent": self.sent,
                "failed": self.failed, "dropped": self.dropped, "last_error": self.last_error,
                "last_ok": self.last_ok}


class Webhooks:
    """Every ``--webhook``, fed by ``events``; :meth:`start` and :meth:`stop` own the tasks."""

    def __init__(self, targets: Iterable[Target], events: EventLog, identity: str,
                 kinds: Iterable[str] = KINDS, *, rng: random.Random | None = None) -> None:
        self.hooks = [Hook(t, frozenset(kinds)) for t in targets]
        self.events = events
        self.identity = identity
        self.rng = rng or random.Random()
        self.tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if not self.hooks:
            return
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "dnsfail-webhook"})
        for hook in self.hooks:
            self.events.listeners.append(hook.offer)
            self.tasks.append(asyncio.create_task(self._deliver_forever(hook),
                                                  name=f"webhook {hook.target.shown}"))

    async def stop(self) -> None:
        for hook in self.hooks:
            if hook.offer in self.events.listeners:
                self.events.listeners.remove(hook.offer)
            if hook.queue:
                log.info("webhook %s: %d event(s) not delivered at shutdown",
                         hook.target.shown, len(hook.queue))
        await cancel_all(self.tasks)
        self.tasks = []
        if self.session is not None:
            await self.session.close()
            self.session = None

    def describe(self) -> list[dict[str, Any]]:
        return [hook.describe() for hook in self.hooks]

    async def _deliver_forever(self, hook: Hook) -> None:
        while True:
            await hook.wake.wait()
            hook.wake.clear()
            while hook.queue:
                event = hook.queue.popleft()
                await self._deliver(hook, event)

    async def _deliver(self, hook: Hook, event: Event) -> None:
        """POST one event, retrying with backoff; count and log the outcome."""
        payload = body(hook.target, event, self.identity)
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                await self._post(hook.target.url, payload)
            except Refused as exc:
                hook.last_error = str(exc)
                break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                hook.last_error = _why(exc)
                if attempt < WEBHOOK_ATTEMPTS:
                    delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (attempt - 1))
                    await asyncio.sleep(delay * self.rng.uniform(0.8, 1.2))
                continue
            hook.sent += 1
            hook.last_ok = time.time()
            return
        hook.failed += 1
        log.warning("webhook %s: event %d (%s) not delivered after %d attempt(s): %s",
                    hook.target.shown, event.id, event.kind, attempt, hook.last_error,
                    extra={"fields": {"event": "webhook_failed", "url": hook.target.shown,
                                      "event_id": event.id, "error": hook.last_error}})

    async def _post(self, url: str, payload: dict[str, Any]) -> None:
        assert self.session is not None
        async with self.session.post(url, json=payload, allow_redirects=False) as resp:
            await resp.read()
            if resp.status < 300:
                return
            if 400 <= resp.status < 500 and resp.status not in (408, 429):
                raise Refused(f"HTTP {resp.status} (not retried)")
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)


def _why(exc: BaseException) -> str:
    """The failure without the URL (aiohttp puts it in some messages; it may hold a token)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return f"timeout after {WEBHOOK_TIMEOUT:g}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect failed: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection error: {exc.strerror}"
    return type(exc).__name__
