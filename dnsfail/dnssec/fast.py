"""Signed negative and wildcard answers without a parse: compact denial from a template.

A DO query that misses the signed path's caches and whose question
``dns.shape.classify`` calls NXDOMAIN or NODATA gets, from ``SignedTemplates``,
the reply the full signed path (parse, resolve, ``answer.signed_answer``,
render) would give, byte for byte but for the ECDSA signature's random octets:

* the header, the query's own question, then a ``dns.template.Template`` of the
  zone's SOA and its RRSIG (rendered once per zone, snapshot, window and rcode,
  so the SOA is signed once; its compression pointers move with the question's
  length as the unsigned templates' do);
* the compact NSEC at the question's name, ``qname -> \\000.qname`` (RFC 9824
  section 3), its owner a pointer to the question (offset 12, where ``render``
  writes the name first), its RDATA built from the question's lower-case wire
  name: types RRSIG NSEC NXNAME for a name that does not exist, the name's
  truthful types (``answer.types_at``) for NODATA;
* that NSEC's RRSIG, one per key: the only signature a new name costs
  (``sign.Signer.sign``, whose bounded cache is keyed by the lower-cased owner,
  the RDATA and the window, so a repeated name costs none);
* the OPT record: DO, CO when the query set it (RFC 9824 section 5, rcode
  NXDOMAIN for a name that does not exist), NSID if asked.

A WILDCARD question gets the source's RRset and RRSIG (signed once per
wildcard, Labels of the source) from a template made at the source's own name,
then the RFC 4470 NSEC covering the next closer name (``answer.covering_nsec``:
its owner's first label, a pointer to the closest encloser in the question)
and its RRSIG, whose owner points back at the NSEC's: one new signature per
next closer name, as for a negative answer.

In flood denial (``flood``: past the budget of new names a second) the NXDOMAIN
carries the zone's NSEC chain's proof instead (RFC 4035 section 3.1.3.2), and a
wildcard answer the chain NSEC covering its next closer name
(``chained``): no new signature.

Questions it is not sure of return None and take the full path: anything
``classify`` does not call NXDOMAIN/NODATA/WILDCARD (data, CNAMEs,
delegations, names the SOA mentions), wildcard answers with additional data or
at the root, the DNSSEC and key types (answered or
refused specially), ECS queries, names whose text needs escapes or whose first
label is ``*``, and replies too big for the client (the full path truncates).
The caller (``path.SignedPath``) starts a new ``SignedTemplates`` for each
snapshot and window, so nothing here outlives the data or the window it was
made from.

Part of the signer's pure side: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from dnsfail.dns.query import HEADER_LEN, NAME_LIMIT, TCP_LIMIT, UDP_PAYLOAD
from dnsfail.dns.resolver import soa_authority
from dnsfail.dns.shape import NODATA, NXDOMAIN, WILDCARD, ZoneIndex, locate
from dnsfail.dns.stats import QueryStats
from dnsfail.dns.template import _UNMADE, Template, qname_text
from dnsfail.dns.template import _message as wildcard_message
from dnsfail.dnssec.answer import (
    KEY_TYPES,
    NXNAME_TYPES,
    SignedZone,
    _predecessor_label,
    after_subtree,
    types_at,
)
from dnsfail.dnssec.chained import (
    ChainPlan,
    Tails,
    chained_nodata,
    chained_nxdomain,
    chained_wildcard,
)
from dnsfail.dnssec.flood import Flood
from dnsfail.dnssec.records import label_count, name_wire, nsec, type_bitmap
from dnsfail.dnssec.sign import Window
from dnsfail.model import Message, Rcode, RRType, Zone

#: Templates kept per snapshot and window: two per signed zone (NOERROR and NXDOMAIN),
#: so the bound only caps a server of very many signed zones; past it, the full path.
SIGNED_TEMPLATE_LIMIT = 4096
#: NSEC type bitmaps kept per snapshot and window, by the set of types at a name (a
#: number the zones' type combinations fix, not the traffic).
BITMAP_LIMIT = 1024
#: Types the full path answers specially: NSEC (the proof in the answer section), RRSIG
#: (the static data's signatures), NXNAME (FORMERR) and the apex key types.
_SPECIAL = frozenset({RRType.NSEC, RRType.RRSIG, RRType.NXNAME, *KEY_TYPES})
_IN = b"\x00\x01"
_RR = struct.Struct("!HHIH")
_NEXT = b"\x01\x00"  # the \000 label that starts the compact NSEC's next name
#: Longest qname (wire octets) whose compact next name ``\000.qname`` fits in NAME_LIMIT.
COMPACT_LIMIT = NAME_LIMIT - len(_NEXT)
_NXNAME_BITMAP = type_bitmap(NXNAME_TYPES)
#: The types of the covering NSEC of a wildcard answer (``answer.covering_nsec``).
_EXISTING = frozenset({RRType.RRSIG, RRType.NSEC})
#: Names past this offset are not compression targets (``wire._put_name``).
_POINTER_LIMIT = 0x4000


class SignedTemplates:
    """One snapshot's and window's negative-answer templates, for the signed zones."""

    __slots__ = ("bitmaps", "chained", "flood", "forms", "indexes", "nsid", "opts", "plans",
                 "tails", "wildcards", "zones")

    def __init__(self, zones: Mapping[str, SignedZone], nsid: bytes,
                 flood: Flood | None = None) -> None:
        self.zones = zones
        self.nsid = nsid
        #: Flood denial's meters and chains (``flood``), None when it is off.
        self.flood = flood
        #: Whether the last reply ``answer`` gave came from a zone's NSEC chain.
        self.chained = False
        #: ``chained.ChainPlan``s by the scanned key after its first label and CO marker.
        self.plans: dict[bytes, ChainPlan] = {}
        self.indexes: dict[str, ZoneIndex] = {}
        self.forms: dict[tuple[str, int, Window], Template] = {}
        #: Wildcard answers by (source, qtype, window); None for one the full path makes.
        self.wildcards: dict[tuple[str, int, Window], Template | None] = {}
        self.bitmaps: dict[frozenset[int], bytes] = {}
        nsid_option = b"\x00\x03" + len(nsid).to_bytes(2, "big") + nsid
        #: Our OPT record by CO | NSID << 1 (DO always set: only DO queries come here).
        self.opts = tuple(
            b"\x00\x00\x29" + UDP_PAYLOAD.to_bytes(2, "big") + b"\x00\x00"
            + (b"\xc0\x00" if i & 1 else b"\x80\x00")
            + ((len(nsid_option).to_bytes(2, "big") + nsid_option) if i >> 1 and nsid
               else b"\x00\x00")
            for i in range(4))
        #: Chain replies' records after the question (``chained.Tails``).
        self.tails = Tails(self.opts)

    def answer(self, data: bytes, key: bytes, qend: int, zones: Mapping[str, Zone], tcp: bool,
               facts: tuple[bool, int, bool, bool, bytes],
               co: bool, stats: QueryStats) -> tuple[bytes, int] | None:
        """The signed reply to a scanned DO query (``key``, ``qend``: ``question_key``;
        ``facts``: ``key_edns``) with its ``stats`` slot, or None for the full path."""
        qlen = qend - HEADER_LEN - 4
        # Past COMPACT_LIMIT octets \000.qname would not fit in 255: the full path's
        # after_subtree (RFC 4471 section 3.1.2) answers those few names.
        if key[qlen + 2 : qlen + 4] != _IN or qlen > COMPACT_LIMIT or facts[4]:
            return None
        qtype = key[qlen] << 8 | key[qlen + 1]
        wire_name = key[:qlen]
        if qtype in _SPECIAL or wire_name[:2] == b"\x01*":
            return None
        qname = qname_text(wire_name)
        if qname is None:
            return None
        zone, shape = locate(zones, self.indexes, qname, qtype)
        if zone is None or shape is None or shape[0] not in (NXDOMAIN, NODATA, WILDCARD):
            return None
        signed = self.zones.get(zone.origin)
        if signed is None:
            return None
        window = signed.signer.window()
        if shape[0] == WILDCARD:
            return self._wildcard(data, qname, qlen, qend, zones, zone, signed, shape[1],
                                  qtype, window, tcp, facts, co, stats)
        if shape[0] == NXDOMAIN:
            chain = self.flood.new_name(zone) if self.flood is not None else None
            template = self._template(zone, signed, Rcode.NXDOMAIN, window) if chain else None
            if chain is not None and template is not None:
                limit, opt = TCP_LIMIT if tcp else facts[1], co | facts[3] << 1
                chained = chained_nxdomain(self.tails, template, data, qname, qend, zone,
                                           signed, chain, qtype, window, limit, opt, stats)
                if chained is not None:
                    self.chained = True
                    ChainPlan.remember(self.plans, key, co, self.tails, self.flood, zone,
                                       signed, chain, template, qname, window, limit, opt,
                                       chained[1], self.indexes[zone.origin].stops)
                    return chained
            bitmap = _NXNAME_BITMAP
            rcode = Rcode.NXDOMAIN if co else Rcode.NOERROR
        else:
            if self.flood is not None and qname not in zone.names:  # a wildcard's NODATA
                chained = self._chain_nodata(data, qname, qend, zone, signed, qtype, window,
                                             tcp, facts, co, stats)
                if chained is not None:
                    return chained
            bitmap = self._bitmap(types_at(zone, qname))
            rcode = Rcode.NOERROR
        template = self._template(zone, signed, rcode, window)
        if template is None:
            return None
        ttl = zone.negative_ttl
        rdata = _NEXT + wire_name + bitmap
        nsec = b"\xc0\x0c" + _RR.pack(RRType.NSEC, 1, ttl, len(rdata)) + rdata
        sigs = signed.signer.sign_wire(wire_name, qname.count("."), RRType.NSEC, ttl, rdata,
                                       window)
        parts = [data[:2], template.heads[(data[2] & 1) | (data[3] & 0x10) >> 3
                                          | (1 + len(sigs)) << 2],
                 data[HEADER_LEN:qend], template.body(qlen), nsec]
        for sig in sigs:
            parts += (b"\xc0\x0c" + _RR.pack(RRType.RRSIG, 1, ttl, len(sig)), sig)
        parts.append(self.opts[co | facts[3] << 1])
        reply = b"".join(parts)
        if len(reply) > (TCP_LIMIT if tcp else facts[1]):
            return None  # truncation: the full path decides what is dropped
        slot = template.slots.get(qtype)
        if slot is None:
            slot = stats.slot(zone.origin, qtype, rcode)
            template.slots[qtype] = slot
        return reply, slot

    def _wildcard(self, data: bytes, qname: str, qlen: int, qend: int,
                  zones: Mapping[str, Zone], zone: Zone, signed: SignedZone, source: str,
                  qtype: int, window: Window, tcp: bool,
                  facts: tuple[bool, int, bool, bool, bytes], co: bool, stats: QueryStats
                  ) -> tuple[bytes, int] | None:
        """A wildcard expansion (RFC 4592 3.3.1): the source's RRset and its RRSIG (Labels
        of the source, one signature per wildcard, RFC 4034 3.1.3) under the question's
        name from a template, then the RFC 4470 NSEC covering the next closer name
        (``answer.covering_nsec``, signed: the one new signature) after it."""
        encloser = source[2:]
        if encloser in (".", ""):
            return None
        form_key = (source, qtype, window)
        template = self.wildcards.get(form_key, _UNMADE)
        if template is _UNMADE:
            if len(self.wildcards) >= SIGNED_TEMPLATE_LIMIT:
                return None
            template = self.wildcards[form_key] = _wildcard_template(
                zones, zone, signed, source, qtype, window)
        if not isinstance(template, Template):
            return None
        # The next closer name: the question's label just below the closest encloser.
        first = qname[: len(qname) - len(encloser) - 1]
        first = first[first.rfind(".") + 1 :]
        closer = f"{first}.{encloser}"
        chain = self.flood.new_name(zone) if self.flood is not None else None
        if chain is not None:
            chained = chained_wildcard(self.tails, template, data, closer, qend, zone, signed,
                                       chain, source, qtype, window,
                                       TCP_LIMIT if tcp else facts[1], co | facts[3] << 1,
                                       stats)
            if chained is not None:
                self.chained = True
                return chained
        before = _predecessor_label(first, len(name_wire(closer)) < 255)
        owner, ttl = f"{before}.{encloser}", zone.negative_ttl
        rdata = nsec(after_subtree(closer), _EXISTING)
        owner_wire = name_wire(owner)
        label = owner_wire[: owner_wire[0] + 1]
        at = qend - 4 - len(owner_wire) + len(label)  # the encloser inside the question
        body = template.body(qlen)
        here = qend + len(body)
        sigs = signed.signer.sign_wire(owner_wire, label_count(owner), RRType.NSEC, ttl,
                                       rdata, window)
        parts = [data[:2], template.heads[(data[2] & 1) | (data[3] & 0x10) >> 3
                                          | len(sigs) << 2],
                 data[HEADER_LEN:qend], body, label, (0xC000 | at).to_bytes(2, "big"),
                 _RR.pack(RRType.NSEC, 1, ttl, len(rdata)), rdata]
        back = (0xC000 | here).to_bytes(2, "big")
        for sig in sigs:
            parts += (back, _RR.pack(RRType.RRSIG, 1, ttl, len(sig)), sig)
        parts.append(self.opts[co | facts[3] << 1])
        reply = b"".join(parts)
        if len(reply) > (TCP_LIMIT if tcp else facts[1]) or here >= _POINTER_LIMIT:
            return None
        slot = template.slots.get(qtype)
        if slot is None:
            slot = template.slots[qtype] = stats.slot(zone.origin, qtype, Rcode.NOERROR)
        return reply, slot

    def _chain_nodata(self, data: bytes, qname: str, qend: int, zone: Zone,
                      signed: SignedZone, qtype: int, window: Window, tcp: bool,
                      facts: tuple[bool, int, bool, bool, bytes], co: bool, stats: QueryStats
                      ) -> tuple[bytes, int] | None:
        """A new name a wildcard covers without the type asked: counted as flood demand
        and, in flood denial, its NODATA from the chain (``chained.chained_nodata``)."""
        assert self.flood is not None
        chain = self.flood.new_name(zone)
        template = self._template(zone, signed, Rcode.NOERROR, window) if chain else None
        if chain is None or template is None:
            return None
        chained = chained_nodata(self.tails, template, data, qname, qend, zone, signed,
                                 chain, qtype, window, TCP_LIMIT if tcp else facts[1],
                                 co | facts[3] << 1, stats)
        self.chained = chained is not None
        return chained

    def _bitmap(self, types: frozenset[int]) -> bytes:
        found = self.bitmaps.get(types)
        if found is None:
            found = type_bitmap(types)
            if len(self.bitmaps) < BITMAP_LIMIT:
                self.bitmaps[types] = found
        return found

    def _template(self, zone: Zone, signed: SignedZone, rcode: Rcode, window: Window
                  ) -> Template | None:
        """The SOA and its RRSIG after a model question, with header variants for the
        records after them added to the authority count: ``heads[RD | CD >> 3 | n << 2]``
        for n records, up to two NSECs with their RRSIGs (a chain's NXDOMAIN proof)."""
        form_key = (zone.origin, int(rcode), window)
        template = self.forms.get(form_key)
        if template is None:
            if len(self.forms) >= SIGNED_TEMPLATE_LIMIT:
                return None
            (soa,) = soa_authority(zone)
            message = Message(rcode, True, authority=(soa, signed.signer.sign(soa, window)))
            template = Template(message, zone.origin, RRType.SOA, 0)
            # heads[RD | CD >> 3 | EDNS << 2] holds the unsigned counts; ours are indexed
            # by RD | CD >> 3 | records << 2, all with EDNS (one OPT record)
            nscount = template.heads[4][6] << 8 | template.heads[4][7]
            keys = len(signed.signer.keys)
            template.heads = tuple(
                head[:6] + (nscount + (i >> 2)).to_bytes(2, "big") + head[8:]
                for i in range(4 * (2 * (keys + 1) + 1))
                for head in (template.heads[4 | (i & 3)],))
            self.forms[form_key] = template
        return template


def _wildcard_template(zones: Mapping[str, Zone], zone: Zone, signed: SignedZone, source: str,
                       qtype: int, window: Window) -> Template | None:
    """The signed answer at the wildcard's own name, header counts with the covering NSEC
    and its RRSIGs, or None where the unsigned template would be None or the answer has
    additional data (its signatures: the full path)."""
    made = wildcard_message(zones, zone, WILDCARD, source, qtype)
    if made is None or made[0].additional or len(made[0].answer) != 1:
        return None
    (rrset,) = made[0].answer
    answer = (rrset, signed.signer.sign(rrset, window, source))
    template = Template(Message(Rcode.NOERROR, True, answer), source, qtype, 2)
    template.heads = tuple(
        head[:6] + (1 + (i >> 2)).to_bytes(2, "big") + head[8:]
        for i in range(4 * (len(signed.signer.keys) + 1))
        for head in (template.heads[4 | (i & 3)],))
    return template
