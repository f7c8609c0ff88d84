"""The event history: target transitions, drains, undrains, expiries and reloads, in order.

Every event gets the next integer ``id`` (1 at start) and the wall-clock
time it happened.  The ring keeps the last ``EVENTS_KEPT``; a reader pages
with a cursor (``after(id)``, the last id it saw) and learns when events it
never saw have already left the ring (``missed``).  An id newer than the
newest (a client that watched a previous run of the server) reads from the
start of the ring, since ids restart with the process.

Listeners (the live streams, the webhooks) are called synchronously by
:meth:`EventLog.emit` and must not block: each puts the event in a queue of
its own, bounded, and deals with a full one itself.

Pure: no I/O; the clock is injected (``now``), as ``state.Store``'s.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from dnsfail.logs import iso

log = logging.getLogger(__name__)

#: Events kept for ``GET /v1/events``: ~300 octets each, so ~1.5 MiB at most.  Enough for a
#: 1,000-target site flapping through a few rounds, or a month of drains and reloads.
EVENTS_KEPT = 5000

#: Most events one ``GET /v1/events`` returns (page on with ``?after=``).
PAGE_LIMIT = 1000

#: The kinds of event, as ``kind`` says them.
KINDS = ("transition", "drain", "undrain", "expired", "reload")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    #: Wall clock, seconds since the epoch.
    at: float
    kind: str
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": round(self.at, 3), "at_iso": iso(self.at),
                "kind": self.kind, **self.data}


Listener = Callable[[Event], None]


class Sink(Protocol):
    """What forwards events elsewhere (``events.webhook.Webhooks``), as status lists it."""

    def describe(self) -> list[dict[str, Any]]: ...


class EventLog:
    """The ring of recent events and who listens to new ones."""

    def __init__(self, kept: int = EVENTS_KEPT, *, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.ring: collections.deque[Event] = collections.deque(maxlen=kept)
        self.last_id = 0
        self.listeners: list[Listener] = []
        #: Who forwards events (the webhooks), for ``/v1/status``.
        self.sinks: list[Sink] = []

    def emit(self, kind: str, **data: Any) -> Event:
        """Record an event and hand it to every listener (which must not block)."""
        self.last_id += 1
        event = Event(self.last_id, self.now(), kind, data)
        self.ring.append(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # one broken listener must not lose the event for the others
                log.exception("event listener failed")
        return event

    def after(self, cursor: int, limit: int = PAGE_LIMIT) -> tuple[list[Event], bool]:
        """Events with an id above ``cursor``, oldest first, at most ``limit``; and whether
        some the reader has not seen are gone from the ring (``missed``)."""
        if cursor > self.last_id:  # a cursor from a previous run of the server
            cursor = 0
        oldest = self.ring[0].id if self.ring else self.last_id + 1
        missed = cursor + 1 < oldest and cursor < self.last_id
        # Ids are consecutive in the ring: the first wanted one sits at a known offset.
        start = max(0, cursor + 1 - oldest)
        out = [self.ring[i] for i in range(start, min(len(self.ring), start + limit))]
        return out, missed
