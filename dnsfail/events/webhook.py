"""Webhook delivery: each ``--webhook`` URL gets the events it wants, in order, off the loop's
answer path.

Built with the event log (:func:`telling`), the webhooks register as its
listeners.  A listener only appends to its URL's queue (a deque of at most
``WEBHOOK_QUEUE`` events; when full the oldest is dropped, counted, and
logged at most once per ``DROP_LOG_EVERY`` seconds).  One delivery task,
started by the first event and kept in the owner's task list (the daemon's,
cancelled at shutdown; it closes its HTTP session on the way out), posts
each URL's events in order, one at a time: each request has
``WEBHOOK_TIMEOUT`` seconds; a failure
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dnsfail.events.log import Event, EventLog
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
    #: Starts the delivery task if it is not running (set by Webhooks).
    kick: Callable[[], None] = lambda: None
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
        self.kick()

    def describe(self) -> dict[str, Any]:
        return {"url": self.target.shown, "format": self.target.format,
                "events": sorted(self.kinds), "queued": len(self.queue), "sent": self.sent,
                "failed": self.failed, "dropped": self.dropped, "last_error": self.last_error,
                "last_ok": self.last_ok}


class Webhooks:
    """Every ``--webhook``, fed by ``events``; one delivery task, kept in ``tasks``."""

    def __init__(self, targets: Iterable[Target], events: EventLog, identity: str, *,
                 tasks: list[asyncio.Task[None]] | None = None,
                 rng: random.Random | None = None) -> None:
        self.hooks = [Hook(t, t.kinds) for t in targets]
        self.events = events
        self.identity = identity
        self.rng = rng or random.Random()
        #: The owner's tasks: whoever cancels them ends the delivery (and its session).
        self.tasks = tasks if tasks is not None else []
        self.task: asyncio.Task[None] | None = None
        self.session: aiohttp.ClientSession | None = None
        for hook in self.hooks:
            hook.kick = self._kick
            events.listeners.append(hook.offer)
        events.sinks.append(self)

    def _kick(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="webhooks")
            self.tasks.append(self.task)

    async def start(self) -> None:
        """Start delivering now (else the first event starts it)."""
        if self.hooks:
            self._kick()

    async def _run(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "dnsfail-webhook"})
        try:
            await asyncio.gather(*(self._deliver_forever(hook) for hook in self.hooks))
        finally:
            for hook in self.hooks:
                if hook.queue:
                    log.info("webhook %s: %d event(s) not delivered at shutdown",
                             hook.target.shown, len(hook.queue))
            await self.session.close()
            self.session = None

    async def stop(self) -> None:
        """Stop listening and end the delivery task (the daemon cancels its tasks instead)."""
        for hook in self.hooks:
            if hook.offer in self.events.listeners:
                self.events.listeners.remove(hook.offer)
        if self.task is not None:
            await cancel_all([self.task])
            if self.task in self.tasks:
                self.tasks.remove(self.task)
            self.task = None

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
            # The status is the answer: the body is never read (an endless one would grow
            # memory until the timeout); leaving it unread closes the connection.
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


def telling(targets: Iterable[Target], identity: str,
            tasks: list[asyncio.Task[None]]) -> EventLog:
    """A new event log with ``targets`` listening (their delivery task goes into ``tasks``)."""
    events = EventLog()
    Webhooks(targets, events, identity, tasks=tasks)
    return events
