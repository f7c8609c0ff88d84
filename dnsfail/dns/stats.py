"""Query counters of the answer path: plain ints, cheap enough for every message.

This module owns :class:`QueryStats` (the handler's counters by ``(zone,
qtype, rcode)`` and its sampled latency histogram), :class:`Totals` (the
same as plain data a worker process sends) and their label values.  A
cached reply carries the index of its counter, so a hit costs one list
increment; latency is timed on one message in :data:`SAMPLE_EVERY`.

Part of the core: it imports no prometheus-client (``control.metrics``
exports these at scrape time), no I/O and nothing outside ``model``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from dnsfail.model import Rcode, RRType

#: One query in this many is timed for the latency histogram.
SAMPLE_EVERY = 16
#: Upper bounds (seconds) of the answer latency buckets: a cache hit is ~2-4 us, a full
#: answer ~50-200 us, anything near a millisecond is worth seeing.
LATENCY_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)

#: Query types with their own label value; anything else counts as "other", so that a
#: client sending random types cannot create unbounded series.
_QTYPES = {int(t): t.name for t in RRType} | {
    35: "NAPTR", 48: "DNSKEY", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF",
}
_RCODES = {int(r): r.name for r in Rcode}

Key = tuple[str, str, str]

#: How a reply was found after the exact-bytes cache missed: the ``path`` label of
#: ``dnsfail_answers_by_path_total`` (``exact`` is the rest).  ``keyed``: the cache by
#: question key (a new ID, letter case or client of a known question); ``splice``: a new
#: ECS network of a known address block; ``template``: a miss of a common shape (a new
#: nonexistent name, NODATA, a new wildcard name, a name in no zone); ``plan``: a new
#: first label under a parent whose query bytes repeat (``dns.template.Plan``, no scan);
#: ``fold``: a known question in a new letter case or ECS network (``replycache.Fold``, no
#: scan); ``full``: parse, decide and render (messages dropped unanswered included);
#: ``signed``: the DNSSEC path; ``chain``: the DNSSEC path's NXDOMAIN from a zone's NSEC
#: chain (flood denial, ``dnssec.flood``).
PATHS = ("keyed", "splice", "template", "plan", "fold", "full", "signed", "chain")
KEYED, SPLICE, TEMPLATE, PLAN, FOLD, FULL, SIGNED, CHAIN = range(len(PATHS))


def qtype_label(qtype: int) -> str:
    return _QTYPES.get(qtype, "other")


def rcode_label(rcode: int) -> str:
    return _RCODES.get(rcode, str(rcode))


class QueryStats:
    """Query counters by (zone, qtype, rcode) and a sampled latency histogram.

    ``slot()`` is called once per distinct key on the slow path; the fast
    path does ``counts[slot] += 1``.  Only the event loop thread writes.
    """

    def __init__(self) -> None:
        self.slots: dict[Key, int] = {}
        self.keys: list[Key] = []
        self.counts: list[int] = []
        #: Per-bucket (not cumulative) sample counts; the last is +Inf.
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        #: Messages dropped without a reply (too short, or a response).
        self.dropped = 0
        #: Messages answered SERVFAIL because answering raised: each one is a bug.
        self.internal_errors = 0
        #: Replies response-rate limiting acted on, by "action:class" (``dnsfail.rrl``).
        self.limited: dict[str, int] = {}
        #: Messages by how their reply was found after an exact-bytes miss, by ``PATHS``
        #: index: counted where that path already does microseconds of work, never on an
        #: exact hit (``by_path`` derives those from ``counts``).
        self.paths = [0] * len(PATHS)

    def slot(self, zone: str, qtype: int, rcode: int) -> int:
        key = (zone, qtype_label(qtype), rcode_label(rcode))
        index = self.slots.get(key)
        if index is None:
            index = self.slots[key] = len(self.counts)
            self.keys.append(key)
            self.counts.append(0)
        return index

    def time(self, seconds: float) -> None:
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def by_path(self) -> dict[str, int]:
        """Replies by how they were found, ``exact`` first: every message counted in
        ``counts`` that no other path counted (a dropped message counts as ``full`` and in
        no slot, so ``dropped`` is given back)."""
        exact = sum(self.counts) - sum(self.paths) + self.dropped
        return {"exact": max(exact, 0), **dict(zip(PATHS, self.paths, strict=True))}

    def totals(self) -> Totals:
        """Everything counted so far, as plain data a worker process can send."""
        return Totals(dict(zip(self.keys, self.counts, strict=True)), list(self.latency),
                      self.latency_sum, self.dropped, internal_errors=self.internal_errors,
                      limited=dict(self.limited), paths=list(self.paths))

    def merged(self, others: Iterable[Totals]) -> QueryStats:
        """A new QueryStats holding this one's counts plus ``others`` (for the scrape)."""
        out = QueryStats()
        for part in (self.totals(), *others):
            out.add(part)
        return out

    def add(self, part: Totals) -> None:
        for (zone, qtype, rcode), count in part.counts.items():
            index = self.slots.get((zone, qtype, rcode))
            if index is None:
                index = self.slots[(zone, qtype, rcode)] = len(self.counts)
                self.keys.append((zone, qtype, rcode))
                self.counts.append(0)
            self.counts[index] += count
        for i, count in enumerate(part.latency):
            self.latency[i] += count
        self.latency_sum += part.latency_sum
        self.dropped += part.dropped
        self.internal_errors += part.internal_errors
        for key, count in part.limited.items():
            self.limited[key] = self.limited.get(key, 0) + count
        for i, count in enumerate(part.paths[: len(PATHS)]):
            self.paths[i] += count


@dataclass
class Totals:
    """A QueryStats' counts as plain data: what a worker reports to the main process.

    Counts are cumulative since the worker started, so a lost report loses
    nothing; ``udp_dropped_sends``, ``tcp_open`` and ``tcp_closed`` come from
    the worker's listeners.
    """

    counts: dict[Key, int] = field(default_factory=dict)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    dropped: int = 0
    udp_dropped_sends: int = 0
    tcp_open: int = 0
    #: TCP connections the server ended, by reason (server.CLOSE_REASONS).
    tcp_closed: dict[str, int] = field(default_factory=dict)
    internal_errors: int = 0
    #: The cookie stage's counters (cookies.stage.COUNTERS): queries by cookie state,
    #: BADCOOKIE replies, replies truncated by the size cap.
    cookies: dict[str, int] = field(default_factory=dict)
    #: Replies response-rate limiting acted on, by "action:class" (QueryStats.limited).
    limited: dict[str, int] = field(default_factory=dict)
    #: Messages by how their reply was found after an exact-bytes miss (QueryStats.paths).
    paths: list[int] = field(default_factory=lambda: [0] * len(PATHS))

    def add(self, other: Totals) -> None:
        """Fold ``other`` in (a worker that exited: its counts must not vanish)."""
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]
        self.latency_sum += other.latency_sum
        self.dropped += other.dropped
        self.udp_dropped_sends += other.udp_dropped_sends
        self.internal_errors += other.internal_errors
        for reason, count in other.tcp_closed.items():
            self.tcp_closed[reason] = self.tcp_closed.get(reason, 0) + count
        for name, count in other.cookies.items():
            self.cookies[name] = self.cookies.get(name, 0) + count
        for action, count in other.limited.items():
            self.limited[action] = self.limited.get(action, 0) + count
        self.paths = [a + b for a, b in zip(self.paths, other.paths, strict=True)]
