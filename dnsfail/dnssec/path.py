"""The signed answer path: what ``dns.handler.Handler`` calls for queries of signed zones.

``SignedPath`` answers a query when its zone has keys and it sets DO (RFC 3225),
or asks for DNSKEY/CDS/CDNSKEY at the apex, or for the NXNAME meta-type
(FORMERR, RFC 9824 section 3.3); anything else returns None and takes the
handler's usual paths, which are therefore byte for byte what they were for
queries without DO and for unsigned zones.  The handler's caches never see a
signed reply: they are kept here, per snapshot and validity window, by the
handler's cache key plus the CO flag, so that a new window (``sign.WINDOW_STEP``)
or a new snapshot starts afresh without touching the reply cache's policy.
Replies that depend on chance or on the client are not kept (their RRsets'
signatures still are, in ``sign.Signer``).

Part of the signer's pure side: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from dnsfail.dns import wire
from dnsfail.dns.handler import Handler
from dnsfail.dns.query import HEADER_LEN, TCP_LIMIT, Query, parse_query, question_end
from dnsfail.dns.replycache import key_edns
from dnsfail.dns.resolver import find_zone
from dnsfail.dnssec.answer import KEY_TYPES, SignedZone, key_answer, signed_answer
from dnsfail.errors import WireError
from dnsfail.model import Message, Rcode, RRClass, RRType
from dnsfail.state import Snapshot

#: Signed replies kept per generation (two generations, as ``dns.replycache``), for the
#: current snapshot and window only.
SIGNED_REPLY_LIMIT = 50_000
#: Types this path answers with or without DO.
_ALWAYS = frozenset(KEY_TYPES | {RRType.NXNAME})


class SignedPath:
    """The signed zones by origin, and the signed replies of the current snapshot."""

    def __init__(self, zones: Mapping[str, SignedZone]) -> None:
        self.zones = dict(zones)
        self._for: tuple[Snapshot, tuple[int, int]] | None = None
        self._replies: dict[bytes, tuple[bytes, int]] = {}
        self._previous: dict[bytes, tuple[bytes, int]] = {}

    def __call__(self, handler: Handler, data: bytes, tcp: bool, snap: Snapshot,
                 scanned: tuple[bytes, int] | None, client: str) -> bytes | None:
        if scanned is not None:
            key, qend = scanned
            qtype = data[qend - 4] << 8 | data[qend - 3]
            if not key_edns(key, qend - HEADER_LEN + 1)[2] and qtype not in _ALWAYS:
                return None
        try:
            query = parse_query(data)
        except WireError:
            return None
        edns = query.edns
        do = edns is not None and edns.do
        if (not do and query.qtype not in _ALWAYS) or query.qclass != RRClass.IN:
            return None
        zone = find_zone(snap.zones, query.qname)
        signed = self.zones.get(zone.origin) if zone is not None else None
        if zone is None or signed is None:
            return None
        window = signed.signer.window()
        co = edns is not None and edns.do and edns.co
        cache_key = None
        if scanned is not None:
            cache_key = scanned[0] + (b"O" if co else b"-")
            if self._for is None or self._for[0] is not snap or self._for[1] != window:
                self._for, self._replies, self._previous = (snap, window), {}, {}
            hit = self._replies.get(cache_key) or self._previous.get(cache_key)
            if hit is not None:
                handler.stats.counts[hit[1]] += 1
                handler.slot = hit[1]
                return wire.personalize(hit[0], data, scanned[1])
        message = self.message(handler, snap, query, client, signed, do, co, window)
        slot = handler.stats.slot(zone.origin, query.qtype, message.rcode)
        handler.stats.counts[slot] += 1
        handler.slot = slot
        reply = wire.render((query.qname, query.qtype, query.qclass), message, edns=edns,
                            limit=TCP_LIMIT if tcp else query.udp_limit(),
                            ecs_scope=message.scope, nsid=handler.identity.encode()[:512],
                            compact=co)
        if cache_key is not None and message.cacheable and not message.client_dependent:
            if len(self._replies) >= SIGNED_REPLY_LIMIT:
                self._previous, self._replies = self._replies, {}
            self._replies[cache_key] = (reply, slot)
        return finish(reply, data)

    @staticmethod
    def message(handler: Handler, snap: Snapshot, query: Query, client: str,
                signed: SignedZone, do: bool, co: bool, window: tuple[int, int]) -> Message:
        """The signed decision: keys at the apex, FORMERR for NXNAME, else the resolver's
        answer signed."""
        if query.qtype == RRType.NXNAME:
            return Message(Rcode.FORMERR, False)
        if query.qtype in KEY_TYPES and query.qname == signed.origin:
            return key_answer(signed, query.qtype, do, window)
        message = handler.answer(snap, query, client)
        zone = snap.zones[signed.origin]
        if not do:
            return message
        return signed_answer(signed, zone, query.qname, query.qtype, message, co, window)


def finish(reply: bytes, data: bytes) -> bytes:
    """The query's ID, RD/CD and letter case on a rendered reply (``Handler._finish``)."""
    qend = question_end(data)
    if qend is not None and reply[4:6] == b"\x00\x01" \
            and reply[12:qend].lower() == data[12:qend].lower():
        return wire.personalize(reply, data, qend)
    return wire.with_id(reply, data[0] << 8 | data[1], data[2:4])
