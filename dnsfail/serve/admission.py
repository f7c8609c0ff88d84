"""Who gets a DNS TCP slot: a cap per source, and the oldest idle connection evicted at the limit.

RFC 7766 section 10 asks servers for "total number of TCP connections" and
"maximum TCP connections per source IP address or subnet" limits.  A total
alone lets one client lock every other out (issue 14: 1,000 idle
connections from one address, every other TCP client refused for 10 s), so:

* a source holding ``max_per_source`` connections is refused more (as
  Unbound's ``tcp-connection-limit``): one client cannot fill the table;
* at ``max_connections`` the connection idle the longest is closed to make
  room (RFC 1035 section 4.2.2: a server may close a dormant connection to
  reclaim resources), never one with a reply on its way, so a new client
  is served however many idle connections others hold.  Only when none of
  the ``EVICT_SCAN`` least recently active is idle is the new one refused.

Pure bookkeeping over opaque connection objects: no sockets, no event loop
(``serve.server`` applies the verdicts).  Connections are kept in order of
last activity (connect, or the last complete message answered): the front
is the one idle the longest.  Everything is per process: see ``server``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

#: The least recently active connections looked at for one eviction.  The busy ones among
#: them (a reply unsent) are moved to the back, as active now, so the next scan starts
#: past them; the bound keeps a table of 1,000 clients that never read from costing a
#: full scan per new connection.
EVICT_SCAN = 64
#: Why a connection is refused at accept (the labels of ``dnsfail_tcp_closed_total``):
#: ``per_source_limit``: its source already holds ``max_per_source``;
#: ``connection_limit``: ``max_connections`` open and none of them idle.
PER_SOURCE_LIMIT = "per_source_limit"
CONNECTION_LIMIT = "connection_limit"
#: Why an open connection is closed to make room for a new one.
EVICTED = "evicted"

C = TypeVar("C")


class Admission(Generic[C]):
    """The open connections of one process, by source and in order of last activity.

    ``idle(connection)`` says whether closing it now loses nothing: no reply
    unsent, nothing read and unanswered.  ``max_per_source`` 0: no cap per
    source.
    """

    def __init__(self, max_connections: int, max_per_source: int,
                 idle: Callable[[C], bool]) -> None:
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        self.idle = idle
        #: Connection -> its source, least recently active first (dicts keep insertion order).
        self.order: dict[C, str] = {}
        self.per_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.order)

    def admit(self, source: str) -> tuple[str | None, C | None]:
        """For a new connection from ``source``: (why it is refused, or None; whom to evict).

        The victim, if any, is already forgotten here: the caller closes it.
        """
        if self.max_per_source and self.per_source.get(source, 0) >= self.max_per_source:
            return PER_SOURCE_LIMIT, None
        if len(self.order) < self.max_connections:
            return None, None
        victim = self._oldest_idle()
        if victim is None:
            return CONNECTION_LIMIT, None
        self.remove(victim)
        return None, victim

    def add(self, connection: C, source: str) -> None:
        self.order[connection] = source
        self.per_source[source] = self.per_source.get(source, 0) + 1

    def touch(self, connection: C) -> None:
        """``connection`` was just active: it becomes the last to be evicted."""
        order = self.order
        source = order.pop(connection, None)
        if source is not None:
            order[connection] = source

    def remove(self, connection: C) -> bool:
        """Forget ``connection`` (closed); False if it was not here (already evicted)."""
        source = self.order.pop(connection, None)
        if source is None:
            return False
        left = self.per_source[source] - 1
        if left:
            self.per_source[source] = left
        else:
            del self.per_source[source]
        return True

    def _oldest_idle(self) -> C | None:
        order = self.order
        for connection in list(itertools.islice(order, EVICT_SCAN)):
            if self.idle(connection):
                return connection
            order[connection] = order.pop(connection)  # busy now: to the back
        return None
