"""The signed answer path: what ``dns.handler.Handler`` calls for queries of signed zones.

``SignedPath`` answers a query when its zone has keys and it sets DO (RFC 3225),
or asks for DNSKEY/CDS/CDNSKEY at the apex, or for the NXNAME meta-type
(FORMERR, RFC 9824 section 3.3); anything else returns None and takes the
handler's usual paths, which are therefore byte for byte what they were for
queries without DO and for unsigned zones.  The handler's caches never see a
signed reply: they are kept here, per snapshot and validity window, by the
handler's cache key plus the CO flag (and by a UDP query's exact bytes, as the
handler's first cache), looked up before any parse; a new window
(``sign.WINDOW_STEP``) or a new snapshot starts them afresh without touching the
reply cache's policy.  The exact-bytes dict is emptied when full (a flood of
repeated distinct queries costs a re-render, not memory).
Replies that depend on chance or on the client are not kept (their RRsets'
signatures still are, in ``sign.Signer``).  A miss of both whose question
``dns.shape`` calls NXDOMAIN, NODATA or a wildcard answer is made from
``fast.SignedTemplates`` (the SOA or the wildcard's RRset signed once per window,
one signature per new name), kept like the full path's replies; everything else
takes the full signed path (parse, resolve, ``answer.signed_answer``, render).
With ``flood_budget`` set, both paths count a zone's new nonexistent names and,
past the budget, deny them from the zone's NSEC chain (``flood``, ``chained``):
then a new first label under a parent already denied so is answered by a
``chained.ChainPlan`` right after the cache lookups, and counted under the
``chain`` path of ``dns.stats.PATHS``.

Part of the signer's pure side: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from dnsfail.dns import wire
from dnsfail.dns.handler import Handler
from dnsfail.dns.query import HEADER_LEN, TCP_LIMIT, Query, parse_query, question_end
from dnsfail.dns.replycache import EXACT_QUERY_LIMIT, key_edns
from dnsfail.dns.resolver import zone_for
from dnsfail.dns.stats import CHAIN, SIGNED
from dnsfail.dnssec.answer import KEY_TYPES, Denial, SignedZone, key_answer, signed_answer
from dnsfail.dnssec.fast import SignedTemplates
from dnsfail.dnssec.flood import Flood
from dnsfail.dnssec.sign import window_at
from dnsfail.errors import WireError
from dnsfail.model import Message, Rcode, RRClass, RRset, RRType
from dnsfail.state import Snapshot

#: Signed replies kept per generation (two generations, as ``dns.replycache``), for the
#: current snapshot and window only.
SIGNED_REPLY_LIMIT = 50_000
#: Types this path answers with or without DO.
_ALWAYS = frozenset(KEY_TYPES | {RRType.NXNAME})


class SignedPath:
    """The signed zones by origin, and the signed replies of the current snapshot."""

    def __init__(self, zones: Mapping[str, SignedZone],
                 clock: Callable[[], float] = time.time, *, fast: bool = True,
                 flood_budget: int | None = None) -> None:
        self.zones = dict(zones)
        self.clock = clock
        #: Whether negative answers come from ``fast.SignedTemplates`` (False: the full
        #: path only, what the tests and the bench compare it with).
        self.fast = fast
        #: Flood denial (``flood``): new nonexistent names per second per zone past which
        #: they are denied from the zone's NSEC chain; None: compact denial always.
        self.flood = Flood(flood_budget, clock) if flood_budget is not None else None
        #: The ``dns.stats.PATHS`` index of the last reply given (``chain``: from a chain).
        self.path = SIGNED
        self._templates = SignedTemplates(self.zones, b"", self.flood)
        self._snap: Snapshot | None = None
        self._window = (0, 0)
        #: A UDP query's bytes after its ID -> its finished reply but for the ID, as the
        #: handler's exact cache; and the handler's key plus CO -> a reply to personalize.
        self._exact: dict[bytes, tuple[bytes, int]] = {}
        self._replies: dict[bytes, tuple[bytes, int]] = {}
        self._previous: dict[bytes, tuple[bytes, int]] = {}

    def replace(self, zones: Mapping[str, SignedZone]) -> None:
        """Sign with ``zones`` from the next query on (a reload re-read the keys): the
        signed replies and templates of the old keys are dropped with the snapshot mark."""
        self.zones = dict(zones)
        self._snap = None
        self._exact, self._replies, self._previous = {}, {}, {}
        if self.flood is not None:
            self.flood.reset()
        self._templates = SignedTemplates(self.zones, b"", self.flood)

    def __call__(self, handler: Handler, data: bytes, tcp: bool, snap: Snapshot,
                 scanned: tuple[bytes, int] | None, client: str) -> bytes | None:
        cache_key = None
        self.path = SIGNED
        if scanned is not None:
            key, qend = scanned
            qtype = data[qend - 4] << 8 | data[qend - 3]
            facts = key_edns(key, qend - HEADER_LEN + 1)
            if not facts[2] and qtype not in _ALWAYS:
                return None
            window = window_at(self.clock())
            if self._snap is not snap or self._window != window:
                self._snap, self._window = snap, window
                self._exact, self._replies, self._previous = {}, {}, {}
                self._templates = SignedTemplates(self.zones, handler.identity.encode()[:512],
                                                  self.flood)
            if not tcp:
                exact = self._exact.get(data[2:])
                if exact is not None:
                    handler.stats.counts[exact[1]] += 1
                    handler.slot = exact[1]
                    return data[:2] + exact[0]
            # CO is the flag after DO in the OPT record, which follows the question here
            cache_key = key + (b"O" if len(data) > qend + 7 and data[qend + 7] & 0x40 else b"-")
            hit = self._replies.get(cache_key) or self._previous.get(cache_key)
            if hit is not None:
                handler.stats.counts[hit[1]] += 1
                handler.slot = hit[1]
                reply = wire.personalize(hit[0], data, qend)
                self._remember_exact(data, reply, hit[1], tcp)
                return reply
            plans = self._templates.plans
            if plans:
                plan = plans.get(cache_key[key[0] + 1 :])
                planned = plan.answer(data, key, qend) if plan is not None else None
                if planned is not None and plan is not None:
                    handler.stats.counts[plan.slot] += 1
                    handler.slot = plan.slot
                    self.path = CHAIN
                    return planned
            if self.fast and facts[2]:
                shaped = self._shaped(handler, data, tcp, snap, key, qend, facts, cache_key)
                if shaped is not None:
                    return shaped
        try:
            query = parse_query(data)
        except WireError:
            return None
        edns = query.edns
        do = edns is not None and edns.do
        if (not do and query.qtype not in _ALWAYS) or query.qclass != RRClass.IN:
            return None
        zone = zone_for(snap.zones, query.qname, query.qtype)
        signed = self.zones.get(zone.origin) if zone is not None else None
        if zone is None or signed is None:
            return None
        window = signed.signer.window()
        co = edns is not None and edns.do and edns.co
        flood = self.flood
        denial = None
        if flood is not None:
            def denial(name: str) -> tuple[RRset, ...] | None:
                chain = flood.new_name(zone)
                return chain.proof_rrsets(name, signed.signer, window) if chain else None
        message = self.message(handler, snap, query, client, signed, do, co, window, denial)
        slot = handler.stats.slot(zone.origin, query.qtype, message.rcode)
        handler.stats.counts[slot] += 1
        handler.slot = slot
        reply = wire.render((query.qname, query.qtype, query.qclass), message, edns=edns,
                            limit=TCP_LIMIT if tcp else query.udp_limit(),
                            ecs_scope=message.scope, nsid=handler.identity.encode()[:512],
                            compact=co)
        finished = finish(reply, data)
        if cache_key is not None and message.cacheable and not message.client_dependent:
            if len(self._replies) >= SIGNED_REPLY_LIMIT:
                self._previous, self._replies = self._replies, {}
            self._replies[cache_key] = (reply, slot)
            self._remember_exact(data, finished, slot, tcp)
        return finished

    def _shaped(self, handler: Handler, data: bytes, tcp: bool, snap: Snapshot, key: bytes,
                  qend: int, facts: tuple[bool, int, bool, bool, bytes], cache_key: bytes
                  ) -> bytes | None:
        """A signed NXDOMAIN, NODATA or wildcard answer from the templates (``fast``),
        counted and kept as the full path keeps its replies (a repeated name, or a
        wildcard name asked again, is then one lookup; both caches are bounded)."""
        templates = self._templates
        nsid = handler.identity.encode()[:512]
        if templates.nsid != nsid:
            templates = self._templates = SignedTemplates(self.zones, nsid, self.flood)
        templates.chained = False
        shaped = templates.answer(data, key, qend, snap.zones, tcp, facts,
                                  cache_key[-1] == 0x4F, handler.stats)  # "O": CO set
        if shaped is None:
            return None
        self.path = CHAIN if templates.chained else SIGNED
        reply, slot = shaped
        handler.stats.counts[slot] += 1
        handler.slot = slot
        if len(self._replies) >= SIGNED_REPLY_LIMIT:
            self._previous, self._replies = self._replies, {}
        self._replies[cache_key] = shaped
        self._remember_exact(data, reply, slot, tcp)
        return reply

    def _remember_exact(self, data: bytes, reply: bytes, slot: int, tcp: bool) -> None:
        if tcp or len(data) > EXACT_QUERY_LIMIT:
            return
        if len(self._exact) >= SIGNED_REPLY_LIMIT:
            self._exact = {}
        self._exact[data[2:]] = (reply[2:], slot)

    @staticmethod
    def message(handler: Handler, snap: Snapshot, query: Query, client: str,
                signed: SignedZone, do: bool, co: bool, window: tuple[int, int],
                denial: Denial | None = None) -> Message:
        """The signed decision: keys at the apex, FORMERR for NXNAME, the signatures of a
        name's static RRsets for RRSIG, else the resolver's answer signed."""
        if query.qtype == RRType.NXNAME:
            return Message(Rcode.FORMERR, False)
        if query.qtype in KEY_TYPES and query.qname == signed.origin:
            return key_answer(signed, query.qtype, do, window)
        zone = snap.zones[signed.origin]
        node = zone.nodes.get(query.qname) if query.qtype == RRType.RRSIG and do else None
        if node:  # RFC 4035 3.1.5 leaves RRSIG queries open: the signatures of the static data
            return Message(Rcode.NOERROR, True, tuple(
                signed.signer.sign(rrset, window) for rrset in node.values()
                if (query.qname, rrset.rtype) not in zone.dynamic))
        message = handler.answer(snap, query, client)
        if not do:
            return message
        return signed_answer(signed, zone, query.qname, query.qtype, message, co, window,
                             denial)


def finish(reply: bytes, data: bytes) -> bytes:
    """The query's ID, RD/CD and letter case on a rendered reply (``Handler._finish``)."""
    qend = question_end(data)
    if qend is not None and reply[4:6] == b"\x00\x01" \
            and reply[12:qend].lower() == data[12:qend].lower():
        return wire.personalize(reply, data, qend)
    return wire.with_id(reply, data[0] << 8 | data[1], data[2:4])
