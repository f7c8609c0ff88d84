"""Bytes in, bytes out: one DNS message to its reply.  Never raises.

The fast path answers a repeated plain question from the snapshot's
``dns.replycache.ReplyCache``: a UDP query whose bytes after the ID were
seen before (every repeat of one client's question) costs one lookup and the
ID; else the question's key (``replycache.question_key``, no parser) finds a
prepared reply, patched with the ID, RD/CD and the question's letter case.
A miss of both needs no parse in two common cases (``_quick``): an ECS query
from a new network of a known address block is its block's reply with the
address spliced in, and a question of one of ``dns.shape``'s shapes (a new
nonexistent name, NODATA, a new name under a wildcard, a name in no zone of
ours) is a ``dns.template`` reply with the question copied in; neither adds
a cache entry.  Everything else takes the full path (parse, resolve, render),
whose reply is cached when the answer does not depend on chance; what is
kept under which key, and for how long, is the cache's policy.  Because ``wire.render`` output is
independent of ID, flags and case, both paths give the same bytes.

Metrics cost the fast path one list increment: each cached reply is stored
with the index of its ``(zone, qtype, rcode)`` counter (dns.stats.QueryStats),
and one message in ``SAMPLE_EVERY`` is timed.

An exception while answering is a bug, and no packet may turn it into a log
flood: it is answered SERVFAIL, counted, and logged as one line per kind
(``logs.ErrorLog``), the traceback only at DEBUG.

The stages after the lookup (``dns.stages.After``: DNS Cookies, the UDP
size cap, response-rate limiting) see every reply, cache hits and misses
alike, and change only what leaves: caches hold replies before any stage.
Without stages ``handle`` *is* ``lookup`` (an instance attribute), so a
server that turns none on pays nothing for them.

Part of the core: no I/O, no prometheus-client, no dnslib; nothing from
serve, control or cli (they wire a Handler in).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from dnsfail.cluster.epoch import epoch
from dnsfail.dns import wire
from dnsfail.dns.query import HEADER_LEN, TCP_LIMIT, Drop, Query, Refuse, parse_query, question_end
from dnsfail.dns.replycache import (
    ClientBlocks,
    Entry,
    client_address,
    echo,
    echo_start,
    key_edns,
    question_key,
)
from dnsfail.dns.resolver import chaos, resolve, zone_for
from dnsfail.dns.stages import After, Key
from dnsfail.dns.stats import (
    FOLD,
    FULL,
    KEYED,
    PLAN,
    SAMPLE_EVERY,
    SPLICE,
    TEMPLATE,
    QueryStats,
)
from dnsfail.dns.template import Templates
from dnsfail.logs import ErrorLog
from dnsfail.model import Message, Rcode, RRClass
from dnsfail.state import Snapshot
from dnsfail.steering.answers import Steering, Step
from dnsfail.steering.geo import Locator, NoLocator

log = logging.getLogger(__name__)
#: ``key_edns`` of a key without EDNS.
_NO_EDNS = key_edns(b"", 0)


#: What a compiled drain needs to answer an exact-bytes hit itself: the snapshot, the
#: counters it adds to (``QueryStats.counts``), the latency sampler (``QueryStats.time``).
#: Where the stages let a reply through unchanged when the query holds no COOKIE option
#: (no ``00 0a`` past the header): the counters and slot they count it in (the cookie
#: stage's ``NO_COOKIE``; ``cookies.stage.CookieStage.plain_pass``).
PlainPass = tuple[list[int], int]
ExactSource = tuple[Callable[[], Snapshot], list[int], Callable[[float], None], PlainPass | None]


class Respond(Protocol):
    """What the listeners call: one message from ``client`` to its reply, or None."""

    def __call__(self, data: bytes, tcp: bool = False, client: str = "") -> bytes | None: ...


class SignedPath(Protocol):
    """The DNSSEC path (``dnsfail.dnssec.path``): the reply to a query of a signed zone
    that needs it (DO set, a key type), or None to take the usual paths; ``path`` is the
    ``dns.stats.PATHS`` index the last reply is counted under."""

    path: int

    def __call__(self, handler: Handler, data: bytes, tcp: bool, snap: Snapshot,
                 scanned: tuple[bytes, int] | None, client: str) -> bytes | None: ...


class Handler:
    """Answers messages from the current snapshot.

    ``snapshot`` is a callable so that each message reads the store's
    snapshot exactly once, at its start.  ``locator`` places clients for geo
    rules; it may be replaced at run time (a reloaded GeoIP database).
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        identity: str = "dnsfail",
        version: str | None = None,
        locator: Locator | None = None,
        stats: QueryStats | None = None,
        after: After | None = None,
        signed: SignedPath | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.signed = signed
        self.identity = identity
        self.version = version
        self.locator: Locator = locator or NoLocator()
        self.stats = stats or QueryStats()
        self._counts = self.stats.counts
        self._paths = self.stats.paths
        self._countdown = SAMPLE_EVERY
        self.errors = ErrorLog(log)
        #: The ``QueryStats`` slot of the last reply ``lookup`` gave (what the stages classify).
        self.slot = 0
        #: What the last ``lookup`` found its reply by (``dns.stages.Key``), for the stages.
        self.key: Key = None
        self.after = after
        #: The entry point: ``lookup`` itself, or ``lookup`` then the stages.
        self.handle: Respond = self.lookup if after is None else self._staged
        self._templates = Templates(identity.encode()[:512], identity)

    def _staged(self, data: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        reply = self.lookup(data, tcp, client)
        if reply is None or self.after is None:
            return reply
        try:
            return self.after(data, reply, tcp, client, self.slot, self.key)
        except Exception as exc:
            self.stats.internal_errors += 1
            self.errors.report(exc, f"the stages after the lookup of a {len(data)}-byte message")
            return _servfail(self, data)

    def lookup(self, data: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        """The reply to ``data`` from ``client`` (an IP address), or None (RFC 1035 4.1.1),
        before any stage; ``slot`` is left at the reply's counter, ``key`` at what it was
        found by."""
        self._countdown -= 1
        if not self._countdown:
            return _timed(self, data, tcp, client)
        snap = self.snapshot()
        replies = snap.replies
        tail: bytes | None = None
        if not tcp:
            tail = data[2:]
            ready = replies.get(tail)
            if ready is None and replies.previous and tail in replies.previous:
                ready = replies.recall_exact(tail)
            if ready is not None:
                self._counts[ready[1]] += 1
                self.slot = ready[1]
                self.key = tail
                return data[:2] + ready[0]
            templates = self._templates  # no scan: a new label's Plan, a new case's Fold
            plans = templates.plans  # the call only for a plan found (the mix's folds: none)
            fast = (templates.sibling(data, snap.zones, self.identity, plan)
                    if plans and self.signed is None and len(data) > HEADER_LEN
                    and (plan := plans.get(data[HEADER_LEN + 1 + data[HEADER_LEN] :]))
                    else None)
            path = PLAN
            if fast is None and replies.folds.folded:
                fast, path = replies.folds.fold(data), FOLD
            if fast is None and templates.cased.plans and self.signed is None:
                fast, path = templates.cased.answer(data, snap.zones, self.identity), PLAN
            if fast is not None:
                reply, slot, found_by = fast
                self._paths[path] += 1
                self._counts[slot] += 1
                self.slot = slot
                self.key = found_by or tail
                replies.remember_exact(data, reply, slot, tail)
                return reply
        scanned = self.key = question_key(data, tcp)
        if scanned is not None:
            found = replies.keyed.get(scanned[0])
            if found is None and replies.keyed_previous and scanned[0] in replies.keyed_previous:
                found = replies.recall(scanned[0])
            hit: Entry | None
            if isinstance(found, ClientBlocks):
                address = client_address(client)
                hit = found.find(address) if address is not None else None
            else:
                hit = found
            if hit is not None:
                self._counts[hit[1]] += 1
                self._paths[KEYED] += 1
                self.slot = hit[1]
                reply = wire.personalize(hit[0], data, scanned[1])
                if not (tcp or found is not hit):
                    replies.remember_exact(data, reply, hit[1], tail)
                    replies.remember_fold(data, scanned, hit)
                return reply
        try:
            if self.signed is not None:
                signed = self.signed(self, data, tcp, snap, scanned, client)
                if signed is not None:
                    self._paths[self.signed.path] += 1
                    return signed
            if scanned is not None:
                quick = self._quick(data, tcp, snap, scanned, tail)
                if quick is not None:
                    return quick
            self._paths[FULL] += 1
            return self._full(data, tcp, snap, scanned, client)
        except Exception as exc:
            self.stats.internal_errors += 1
            self.errors.report(exc, f"answering a {len(data)}-byte message")
            self.slot = self.stats.slot("", 0, Rcode.SERVFAIL)
            self._counts[self.slot] += 1
            return _servfail(self, data)

    def _quick(self, data: bytes, tcp: bool, snap: Snapshot, scanned: tuple[bytes, int],
               tail: bytes | None = None) -> bytes | None:
        """The misses that need no parse: a new ECS network of a known block (spliced), the
        shapes of ``dns.shape`` (``dns.template``).  Neither adds an entry on first sight;
        a query's bytes seen twice are kept (the doorkeeper): a repeat costs one lookup."""
        key, qend = scanned
        at = qend - HEADER_LEN + 1
        if len(key) == at:
            facts = _NO_EDNS
        else:  # ``key_edns`` inline: this runs for every new name
            nsid = key[at + 3 : at + 4] == b"N"
            facts = (True, key[at] << 8 | key[at + 1], key[at + 2] == 0x44, nsid,
                     key[at + 4 + nsid :])
        templates = self._templates
        if templates.identity != self.identity:
            templates = self._templates = Templates(self.identity.encode()[:512], self.identity)
        if facts[4]:
            echoed = templates.nsid if facts[3] else b""
            spliced = snap.replies.splice(key, facts[4], echoed, data, qend)
            if spliced is not None:
                self._counts[spliced[1]] += 1
                self._paths[SPLICE] += 1
                self.slot = spliced[1]
                reply = spliced[0]
                if not tcp:
                    snap.replies.remember_exact(data, reply, spliced[1], tail)
                    if self.signed is None:  # the signed path: none of its queries here
                        snap.replies.remember_fold(data, scanned, None, echoed)
                return reply
        shaped = templates.answer(data, key, qend, snap.zones, tcp, facts, self.stats)
        if shaped is None:
            return None
        self.slot = shaped[1]
        if templates.wildcard is not None:  # what rate limiting counts it under
            self.key = (key, qend, templates.wildcard)
        self._counts[shaped[1]] += 1
        self._paths[TEMPLATE] += 1
        if not tcp:  # a repeated NXDOMAIN is a repeat: kept on its second sight only
            snap.replies.remember_exact(data, shaped[0], shaped[1], tail)
        return shaped[0]

    def _full(
        self,
        data: bytes,
        tcp: bool,
        snap: Snapshot,
        scanned: tuple[bytes, int] | None,
        client: str,
    ) -> bytes | None:
        try:
            query = parse_query(data)
        except Drop:
            self.stats.dropped += 1
            return None
        except Refuse as refusal:
            qtype = refusal.question[1] if refusal.question is not None else 0
            self.slot = self.stats.slot("", qtype, refusal.rcode)
            self._counts[self.slot] += 1
            return _finish(wire.render_refusal(refusal), data)
        replies = snap.replies
        nsid = self.identity.encode()[:512]
        ecs_block = replies.ecs_block(query, scanned)
        if ecs_block is not None:
            found = replies.keyed.get(ecs_block[0])
            hit = found.find(ecs_block[1]) if isinstance(found, ClientBlocks) else None
            if hit is not None and scanned is not None:
                self._counts[hit[1]] += 1
                self.slot = hit[1]
                rendered = echo(hit[0], query, ecs_block[2], nsid)
                reply = _finish(rendered, data)
                if not tcp:
                    replies.remember_exact(data, reply, hit[1])
                return reply
        message = self.answer(snap, query, client)
        zone = (None if query.qclass == RRClass.CH
                else zone_for(snap.zones, query.qname, query.qtype))
        slot = self.stats.slot(zone.origin if zone is not None else "", query.qtype, message.rcode)
        self._counts[slot] += 1
        self.slot = slot
        limit = TCP_LIMIT if tcp else query.udp_limit()
        reply = wire.render(
            (query.qname, query.qtype, query.qclass),
            message,
            edns=query.edns,
            limit=limit,
            ecs_scope=message.scope,
            nsid=nsid,
        )
        if scanned is None or not message.cacheable:
            return _finish(reply, data)
        if (ecs_block is not None
                and echo_start(reply, query, ecs_block[2], nsid) is not None):
            replies.remember_block(ecs_block[0], ecs_block[1], message.scope, (reply, slot))
        per_client = replies.remember(scanned[0], query, message, client, (reply, slot))
        reply = _finish(reply, data)
        if not (tcp or per_client):
            replies.remember_exact(data, reply, slot)
        return reply

    def answer(
        self, snap: Snapshot, query: Query, client: str, steps: list[Step] | None = None
    ) -> Message:
        """The decision for a parsed query; ``explain`` calls this too, with ``steps``."""
        if query.qclass == RRClass.CH:
            return chaos(query.qname, query.qtype, self.identity, self.version,
                         lambda: epoch(snap))
        steering = self.steering(snap, query, client)
        steering.steps = steps
        return resolve(snap.zones, query.qname, query.qtype, query.qclass, steering)

    def steering(self, snap: Snapshot, query: Query, client: str) -> Steering:
        """Where the client is: its ECS subnet when sent (RFC 7871 section 7.1.1), else its
        packet source address."""
        ecs = query.edns.ecs if query.edns is not None else None
        if ecs is not None:
            if ecs.source_prefix == 0:
                return Steering(snap, None, 0, self.locator)
            return Steering(snap, ecs.network.network_address, ecs.source_prefix, self.locator)
        return Steering(snap, client_address(client), None, self.locator)


def _servfail(handler: Handler, data: bytes) -> bytes | None:
    """SERVFAIL for ``data`` (an exception while answering it), or None for no reply."""
    if len(data) < HEADER_LEN or data[2] & 0x80:
        return None
    refusal = Refuse(Rcode.SERVFAIL, "internal error", query_id=data[0] << 8 | data[1])
    try:
        return wire.with_id(wire.render_refusal(refusal), refusal.query_id, data[2:4])
    except Exception as exc:
        handler.errors.report(exc, "rendering SERVFAIL")
        return None


def _finish(reply: bytes, data: bytes) -> bytes:
    """A rendered reply given the query's ID, RD/CD and, when it can be, letter case."""
    qend = question_end(data)
    if (
        qend is not None
        and reply[4:6] == b"\x00\x01"
        and reply[12:qend].lower() == data[12:qend].lower()
    ):
        return wire.personalize(reply, data, qend)
    return wire.with_id(reply, data[0] << 8 | data[1], data[2:4])


def _timed(handler: Handler, data: bytes, tcp: bool, client: str) -> bytes | None:
    """``Handler.lookup`` with a stopwatch: the latency histogram's one-in-N sample."""
    handler._countdown = SAMPLE_EVERY + 1  # the call below counts itself
    started = time.perf_counter()
    reply = handler.lookup(data, tcp, client)
    handler.stats.time(time.perf_counter() - started)
    return reply


def exact_source(handler: Handler, plain: PlainPass | None = None) -> ExactSource | None:
    """What a compiled UDP drain needs to answer exact-bytes hits as ``handler.handle``
    would, or None when its stages may change such a reply.  ``plain``: how the stages pass
    a query without a COOKIE option where they pass its reply unchanged
    (``serve.wiring.plain_pass``)."""
    if handler.after is not None and plain is None:
        return None
    return handler.snapshot, handler.stats.counts, handler.stats.time, plain
