"""Bytes in, bytes out: one DNS message to its reply.  Never raises.

The fast path answers a repeated plain question from the snapshot's cache of
prepared replies: scan the question (no dnslib), look the key up, patch in the
ID, RD/CD and the question's letter case.  Faster still, a UDP query whose
bytes after the ID were seen before (every repeat of one client's question)
is answered from ``Snapshot.exact``: the finished reply but for its ID.
Everything else takes the full path (parse, resolve, render),
whose reply is cached when the answer does not depend on chance.  Because
``wire.render`` output is independent of ID, flags and case, both paths give
the same bytes.

Metrics cost the fast path one list increment: each cached reply is stored
with the index of its ``(zone, qtype, rcode)`` counter (dns.stats.QueryStats),
and one message in ``SAMPLE_EVERY`` is timed.

An exception while answering is a bug, and no packet may turn it into a log
flood: it is answered SERVFAIL, counted, and logged as one line per kind
(``logs.ErrorLog``), the traceback only at DEBUG.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable

from dnsfail.dns import wire
from dnsfail.dns.resolver import chaos, find_zone, resolve
from dnsfail.dns.stats import SAMPLE_EVERY, QueryStats
from dnsfail.logs import ErrorLog
from dnsfail.model import Message, Rcode, RRClass
from dnsfail.state import CACHE_LIMIT, Address, ClientBlocks, Entry, Snapshot, Steering, Step
from dnsfail.steering.geo import Locator, NoLocator

log = logging.getLogger(__name__)

#: Largest query whose exact bytes are remembered (``Snapshot.exact``): real queries are
#: a few hundred octets, and a key of up to 64 KiB each would let unique padded queries
#: hold gigabytes in a cache of ``CACHE_LIMIT`` entries.
EXACT_QUERY_LIMIT = 512


@functools.lru_cache(maxsize=65536)
def client_address(client: str) -> Address | None:
    """The packet source as geo.decide sees it (an IPv4-mapped IPv6 address is IPv4).

    Memoised: a resolver asks again and again, and parsing an address costs
    more than the rest of a cached per-client answer.
    """
    address: Address | None
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address


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
    ) -> None:
        self.snapshot = snapshot
        self.identity = identity
        self.version = version
        self.locator: Locator = locator or NoLocator()
        self.stats = stats or QueryStats()
        self._counts = self.stats.counts
        self._countdown = SAMPLE_EVERY
        self.errors = ErrorLog(log)

    def handle(self, data: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        """The reply to ``data`` from ``client`` (an IP address), or None (RFC 1035 4.1.1)."""
        self._countdown -= 1
        if not self._countdown:
            return self._timed(data, tcp, client)
        snap = self.snapshot()
        if not tcp:
            ready = snap.exact.get(data[2:])
            if ready is not None:
                self._counts[ready[1]] += 1
                return data[:2] + ready[0]
        scanned = wire.scan_question(data, tcp)
        if scanned is not None:
            found = snap.cache.get(scanned[0])
            hit: Entry | None
            if isinstance(found, ClientBlocks):
                address = client_address(client)
                hit = found.find(address) if address is not None else None
            else:
                hit = found
            if hit is not None:
                self._counts[hit[1]] += 1
                reply = wire.personalize(hit[0], data, scanned[1])
                if not (tcp or found is not hit):
                    self._remember_exact(snap, data, reply, hit[1])
                return reply
        try:
            return self._full(data, tcp, snap, scanned, client)
        except Exception as exc:
            self.stats.internal_errors += 1
            self.errors.report(exc, f"answering a {len(data)}-byte message")
            self._counts[self.stats.slot("", 0, Rcode.SERVFAIL)] += 1
            return self._servfail(data)

    def _timed(self, data: bytes, tcp: bool, client: str) -> bytes | None:
        """``handle`` with a stopwatch: the latency histogram's one-in-N sample."""
        self._countdown = SAMPLE_EVERY
        started = time.perf_counter()
        reply = self.handle(data, tcp, client)
        self.stats.time(time.perf_counter() - started)
        return reply

    def _full(
        self,
        data: bytes,
        tcp: bool,
        snap: Snapshot,
        scanned: tuple[bytes, int] | None,
        client: str,
    ) -> bytes | None:
        try:
            query = wire.parse_query(data)
        except wire.Drop:
            self.stats.dropped += 1
            return None
        except wire.Refuse as refusal:
            qtype = refusal.question[1] if refusal.question is not None else 0
            self._counts[self.stats.slot("", qtype, refusal.rcode)] += 1
            return self._finish(wire.render_refusal(refusal), data)
        ecs_block = self._ecs_block(query, scanned)
        if ecs_block is not None:
            found = snap.cache.get(ecs_block[0])
            hit = found.find(ecs_block[1]) if isinstance(found, ClientBlocks) else None
            if hit is not None and scanned is not None:
                self._counts[hit[1]] += 1
                rendered = self._echo(hit[0], query, ecs_block[2])
                self._remember_entry(snap, scanned[0], (rendered, hit[1]))
                reply = self._finish(rendered, data)
                if not tcp:
                    self._remember_exact(snap, data, reply, hit[1])
                return reply
        message = self.answer(snap, query, client)
        zone = find_zone(snap.zones, query.qname) if query.qclass != RRClass.CH else None
        slot = self.stats.slot(zone.origin if zone is not None else "", query.qtype,
                               message.rcode)
        self._counts[slot] += 1
        limit = wire.TCP_LIMIT if tcp else query.udp_limit()
        reply = wire.render(
            (query.qname, query.qtype, query.qclass),
            message,
            edns=query.edns,
            limit=limit,
            ecs_scope=message.scope,
            nsid=self.identity.encode()[:512],
        )
        if scanned is None or not message.cacheable:
            return self._finish(reply, data)
        if ecs_block is not None and self._echo_start(reply, query, ecs_block[2]) is not None:
            self._remember_block(snap, ecs_block[0], ecs_block[1], message.scope, (reply, slot))
        per_client = self._remember(snap, scanned[0], query, message, client, (reply, slot))
        reply = self._finish(reply, data)
        if not (tcp or per_client):
            self._remember_exact(snap, data, reply, slot)
        return reply

    def _ecs_block(
        self, query: wire.Query, scanned: tuple[bytes, int] | None
    ) -> tuple[bytes, Address, bytes] | None:
        """For a query with ECS: (key of its ClientBlocks, ECS address, option bytes echoed).

        A reply to an ECS query echoes the option (RFC 7871 section 7.2.1), so
        its bytes differ per client network; but the decision, and the scope,
        are the same for every network inside the block the scope names (see
        geo.decide).  Replies are therefore also kept by block, per family and
        SOURCE PREFIX-LENGTH (which fix the option's length), and a new network
        in a known block costs a parse and a splice of its address, not a
        decision and a render.
        """
        ecs = query.edns.ecs if query.edns is not None else None
        if scanned is None or ecs is None or not ecs.source_prefix:
            return None
        address = ecs.network.network_address
        echoed = address.packed[: (ecs.source_prefix + 7) // 8]
        option = b"C" + bytes((0, ecs.family, ecs.source_prefix, 0)) + echoed
        if not scanned[0].endswith(option):
            return None
        key = scanned[0][: -len(option)] + b"c" + bytes((ecs.family, ecs.source_prefix))
        return key, address, echoed

    def _echo_start(self, reply: bytes, query: wire.Query, echoed: bytes) -> int | None:
        """Where the echoed ECS address starts in ``reply``; None if it is not where expected.

        The option is the OPT record's first, and only NSID may follow it
        (wire.render), so the address ends where the NSID option begins; the
        option's code, length, family and source prefix must precede it.
        """
        edns = query.edns
        if edns is None or edns.ecs is None:
            return None
        nsid = self.identity.encode()[:512]
        tail = 4 + len(nsid) if edns.nsid and nsid else 0
        start = len(reply) - tail - len(echoed)
        head = (wire.OPTION_ECS.to_bytes(2, "big") + (4 + len(echoed)).to_bytes(2, "big")
                + bytes((0, edns.ecs.family, edns.ecs.source_prefix)))
        return start if reply[start - 8 : start - 1] == head else None

    def _echo(self, reply: bytes, query: wire.Query, echoed: bytes) -> bytes:
        """``reply`` (kept for another network of the same block) echoing this query's ECS
        address; the same length, so nothing else in the message moves."""
        start = self._echo_start(reply, query, echoed)
        assert start is not None, "only replies with the option in place are kept by block"
        return reply[:start] + echoed + reply[start + len(echoed) :]

    @staticmethod
    def _remember_entry(snap: Snapshot, key: bytes, entry: Entry) -> None:
        cache = snap.cache
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = entry

    @staticmethod
    def _remember_block(
        snap: Snapshot, key: bytes, address: Address, scope: int, entry: Entry
    ) -> None:
        """Keep ``entry`` for every client in ``address``/``scope`` (see ClientBlocks)."""
        cache = snap.cache
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        blocks = cache.get(key)
        if not isinstance(blocks, ClientBlocks) or len(blocks) >= CACHE_LIMIT:
            blocks = cache[key] = ClientBlocks()
        blocks.add(address, scope, entry)

    @staticmethod
    def _remember_exact(snap: Snapshot, data: bytes, reply: bytes, slot: int) -> None:
        """Keep ``reply`` for this exact query (ID aside): it already carries the query's
        flags and letter case, so the next identical query needs only its ID."""
        if len(data) > EXACT_QUERY_LIMIT:
            return
        exact = snap.exact
        if len(exact) >= CACHE_LIMIT:
            exact.clear()
        exact[data[2:]] = (reply[2:], slot)

    @staticmethod
    def _remember(
        snap: Snapshot, key: bytes, query: wire.Query, message: Message, client: str,
        entry: Entry,
    ) -> bool:
        """Cache a reply under what it depends on; True if it is kept per client block.

        An answer that does not depend on the client is the same for all.
        One that does was decided by the ECS option when the query had one,
        and the option's bytes are already in the key; otherwise by the
        packet's source address, through the block of addresses that all
        get the same decision (``message.scope``, computed by geo.decide for
        the client's own address family), so it is kept in the question's
        ClientBlocks under that block.  (Not by ``scope == 0`` alone: the
        scope is per address family, so an IPv6 client can get scope 0 from
        rules that steer IPv4 clients.)
        """
        has_ecs = query.edns is not None and query.edns.ecs is not None
        if not message.client_dependent or has_ecs:
            Handler._remember_entry(snap, key, entry)
            return False
        address = client_address(client)
        if address is not None:
            Handler._remember_block(snap, key, address, message.scope, entry)
        return True

    def answer(
        self, snap: Snapshot, query: wire.Query, client: str, steps: list[Step] | None = None
    ) -> Message:
        """The decision for a parsed query; ``explain`` calls this too, with ``steps``."""
        if query.qclass == RRClass.CH:
            return chaos(query.qname, query.qtype, self.identity, self.version)
        steering = self.steering(snap, query, client)
        steering.steps = steps
        return resolve(snap.zones, query.qname, query.qtype, query.qclass, steering)

    def steering(self, snap: Snapshot, query: wire.Query, client: str) -> Steering:
        """Where the client is: its ECS subnet when sent (RFC 7871 section 7.1.1), else its
        packet source address."""
        ecs = query.edns.ecs if query.edns is not None else None
        if ecs is not None:
            if ecs.source_prefix == 0:
                return Steering(snap, None, 0, self.locator)
            return Steering(snap, ecs.network.network_address, ecs.source_prefix, self.locator)
        return Steering(snap, client_address(client), None, self.locator)

    @staticmethod
    def _finish(reply: bytes, data: bytes) -> bytes:
        qend = wire.question_end(data)
        if (
            qend is not None
            and reply[4:6] == b"\x00\x01"
            and reply[12:qend].lower() == data[12:qend].lower()
        ):
            return wire.personalize(reply, data, qend)
        return wire.with_id(reply, data[0] << 8 | data[1], data[2:4])

    def _servfail(self, data: bytes) -> bytes | None:
        if len(data) < wire.HEADER_LEN or data[2] & 0x80:
            return None
        refusal = wire.Refuse(Rcode.SERVFAIL, "internal error", query_id=data[0] << 8 | data[1])
        try:
            return wire.with_id(wire.render_refusal(refusal), refusal.query_id, data[2:4])
        except Exception as exc:
            self.errors.report(exc, "rendering SERVFAIL")
            return None
