"""``GET /v1/events`` (the history, paged by cursor) and ``GET /v1/events/stream`` (live, SSE).

The stream is server-sent events (the WHATWG HTML standard, section 9.2):
``text/event-stream``, one ``id:``/``event:``/``data:`` block per event,
where ``event`` is the event's kind and ``data`` its JSON.  A client resumes
where it left off with the ``Last-Event-ID`` header (browsers send it by
themselves on reconnecting) or ``?after=ID``; what it missed is replayed
from the ring (``events.log``), and an ``event: missed`` block says when
some of it had already left the ring.  A comment line every
``HEARTBEAT`` seconds keeps proxies and the client's idea of the connection
alive.

Bounded: at most ``MAX_STREAMS`` streams at once (more get 503), each with
a queue of ``STREAM_BUFFER`` events filled by the event log's listener
without waiting.  A reader that falls that far behind, or whose socket takes
longer than ``WRITE_TIMEOUT`` to accept a block, is told ``event: reconnect``
(when possible) and dropped: it reconnects and resumes from the ring.  At
shutdown every stream gets the same.  The
event loop never waits for a reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from dnsfail.events.log import EVENTS_KEPT, PAGE_LIMIT, Event, EventLog

log = logging.getLogger(__name__)

#: Live streams open at once: a browser tab holds one; more is someone looping.
MAX_STREAMS = 16
#: Events queued for one stream; a reader this far behind is dropped (and resumes).
STREAM_BUFFER = 256
#: Seconds between heartbeat comments on an idle stream.
HEARTBEAT = 15.0
#: Seconds a stream's socket has to take one block before the stream is dropped.
WRITE_TIMEOUT = 10.0
#: What the browser waits before reconnecting (the SSE ``retry:`` field), milliseconds.
RETRY_MS = 2000


class Streams:
    """The open streams, each a bounded queue the event log's listener fills."""

    def __init__(self, events: EventLog, limit: int = MAX_STREAMS,
                 buffer: int = STREAM_BUFFER) -> None:
        self.events = events
        self.limit = limit
        self.buffer = buffer
        self.queues: set[asyncio.Queue[Event | None]] = set()
        #: Streams dropped for falling behind (for status).
        self.dropped = 0
        events.listeners.append(self._fan_out)

    def open(self) -> asyncio.Queue[Event | None] | None:
        if len(self.queues) >= self.limit:
            return None
        q: asyncio.Queue[Event | None] = asyncio.Queue(self.buffer + 1)
        self.queues.add(q)
        return q

    def close(self, q: asyncio.Queue[Event | None]) -> None:
        self.queues.discard(q)

    def _fan_out(self, event: Event) -> None:
        for q in list(self.queues):
            if q.qsize() >= self.buffer:
                self._end(q)
                self.queues.discard(q)  # it gets nothing more: the end marker is last
                self.dropped += 1
                log.warning("event stream dropped: more than %d events behind", self.buffer)
            else:
                q.put_nowait(event)

    @staticmethod
    def _end(q: asyncio.Queue[Event | None]) -> None:
        """Replace what is queued by the end marker (there is always room for it)."""
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                q.get_nowait()
        q.put_nowait(None)

    def close_all(self) -> None:
        """Shutdown: every stream ends at once."""
        for q in list(self.queues):
            self._end(q)
        self.queues.clear()
        with contextlib.suppress(ValueError):
            self.events.listeners.remove(self._fan_out)


STREAMS: web.AppKey[Streams] = web.AppKey("streams")


def _cursor(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after", "0")
    raw = raw.strip() or "0"
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() is true
        raise web.HTTPBadRequest(text=json.dumps({"error": f"event id {raw[:40]!r} is not a "
                                                  "number"}) + "\n",
                                 content_type="application/json")
    return int(raw)


async def get_events(request: web.Request) -> web.Response:
    """The history after ``?after=ID`` (0: from the oldest kept), at most ``?limit=``."""
    events = request.app[STREAMS].events
    cursor = _cursor(request)
    raw = request.query.get("limit", str(PAGE_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= PAGE_LIMIT:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"limit must be 1-{PAGE_LIMIT}"})
                                 + "\n", content_type="application/json")
    page, missed = events.after(cursor, int(raw))
    body: dict[str, Any] = {
        "events": [e.to_json() for e in page], "missed": missed, "last_id": events.last_id,
        "next": page[-1].id if page else min(cursor, events.last_id), "kept": EVENTS_KEPT,
    }
    return web.Response(text=json.dumps(body, default=str) + "\n",
                        content_type="application/json")


def _block(event: Event) -> bytes:
    data = json.dumps(event.to_json(), default=str)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the missed ones from the ring, then each new one as it happens."""
    streams = request.app[STREAMS]
    cursor = _cursor(request)
    q = streams.open()
    if q is None:
        return web.Response(status=503, text=json.dumps(
            {"error": f"too many event streams open (at most {streams.limit})"}) + "\n",
            content_type="application/json", headers={"Retry-After": "10"})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        await resp.prepare(request)
        await _write(resp, f"retry: {RETRY_MS}\n: dnsfail events\n\n".encode())
        # Registered before the replay: an event emitted meanwhile is queued, then skipped
        # below by its id if the replay already sent it.
        page, missed = streams.events.after(cursor, EVENTS_KEPT)
        if missed:
            await _write(resp, b"event: missed\ndata: {}\n\n")
        last = cursor if not page else page[-1].id
        for event in page:
            await _write(resp, _block(event))
        await _follow(resp, q, last)
    except (ConnectionError, TimeoutError):
        pass  # the reader went away, or stopped reading: it resumes from the ring
    finally:
        streams.close(q)
    return resp


async def _follow(resp: web.StreamResponse, q: asyncio.Queue[Event | None], last: int) -> None:
    while True:
        try:
            async with asyncio.timeout(HEARTBEAT):
                item = await q.get()
        except TimeoutError:
            await _write(resp, b": heartbeat\n\n")
            continue
        if item is None:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await _write(resp, b"event: reconnect\ndata: {}\n\n")
            return
        if item.id > last:
            last = item.id
            await _write(resp, _block(item))


async def _write(resp: web.StreamResponse, data: bytes) -> None:
    async with asyncio.timeout(WRITE_TIMEOUT):
        await resp.write(data)


def add_routes(app: web.Application, events: EventLog) -> None:
    app[STREAMS] = Streams(events)
    app.router.add_get("/v1/events", get_events)
    app.router.add_get("/v1/events/stream", stream_events)
