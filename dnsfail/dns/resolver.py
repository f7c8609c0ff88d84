"""The authoritative answer algorithm: (zones, question) -> Message.  Pure.

This is RFC 1034 section 4.3.2's algorithm for an authoritative-only server,
with the refinements that came after it: negative answers carry the SOA
(RFC 2308), wildcards synthesize only below a closest encloser that exists
(RFC 4592), the rcode of a CNAME chain is that of its last name (RFC 6604),
ANY gets a minimal answer (RFC 8482) and referrals carry the glue they need
(RFC 9471).  No sockets, no clocks, no dnslib: dynamic (health-checked)
records are answered through the ``DynamicAnswers`` seam.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from dnsfail.model import (
    CNAME,
    HINFO,
    MX,
    NS,
    SRV,
    TXT,
    DynamicRecord,
    Message,
    Rcode,
    RRClass,
    RRset,
    RRType,
    Zone,
    parent_names,
)

#: Longest CNAME chain followed inside a zone before giving up (loops end here too).
MAX_CHAIN = 8
#: TTL of the synthesized RFC 8482 HINFO answer to ANY.
ANY_TTL = 3600
#: Meta-query types we do not implement (RFC 6895 section 3.1): TKEY, TSIG, MAILB, MAILA.
NOTIMP_QTYPES = frozenset({249, 250, 253, 254})
ADDRESS_TYPES = (RRType.A, RRType.AAAA)


class DynamicAnswers(Protocol):
    """How the resolver asks for a health-checked record's current answer."""

    def answer(self, record: DynamicRecord, owner: str) -> DynamicResult: ...


class DynamicResult:
    """What a dynamic record answers: an RRset, or None for SERVFAIL."""

    __slots__ = ("cacheable", "client_dependent", "rrset", "scope")

    def __init__(
        self,
        rrset: RRset | None,
        *,
        cacheable: bool = True,
        scope: int = 0,
        client_dependent: bool = False,
    ) -> None:
        self.rrset = rrset
        self.cacheable = cacheable
        self.scope = scope
        self.client_dependent = client_dependent


def find_zone(zones: Mapping[str, Zone], qname: str) -> Zone | None:
    """The closest enclosing zone we serve (longest suffix match), or None."""
    name = qname
    while True:  # parent_names without the list: every miss of the caches comes here
        zone = zones.get(name)
        if zone is not None or name == ".":
            return zone
        name = name[name.find(".") + 1 :] or "."


def zone_for(zones: Mapping[str, Zone], qname: str, qtype: int) -> Zone | None:
    """The zone that answers ``qname``/``qtype``: ``find_zone``'s, but for a DS question at
    the apex of a zone whose parent zone we also serve with a delegation there, the parent
    (DS is the parent side's record, RFC 4035 section 3.1.4.1: a server authoritative for
    both answers it from the parent)."""
    zone = find_zone(zones, qname)
    if qtype == RRType.DS and zone is not None and zone.origin == qname and qname != ".":
        parent = find_zone(zones, qname[qname.find(".") + 1 :] or ".")
        if parent is not None and qname in parent.cuts:
            return parent
    return zone


def soa_authority(zone: Zone) -> tuple[RRset, ...]:
    """The authority section of a negative answer: the SOA, TTL min(SOA TTL, MINIMUM)
    (RFC 2308 section 3).  ``dns.template`` renders its negative templates from it."""
    return (zone.soa.with_ttl(zone.negative_ttl),)


def chaos(qname: str, qtype: int, identity: str, version: str | None,
          epoch: Callable[[], str] | None = None) -> Message:
    """CHAOS-class identity queries (the BIND convention; RFC 4892 section 2.3).

    ``id.server.``/``hostname.bind.`` name this instance so that operators can
    tell which member of the NS set answered; ``version.bind.`` is refused
    unless a version string is configured, since it mostly helps attackers.
    ``epoch.dnsfail.`` is the agreement hash (``cluster.epoch``): equal on the
    members of an NS set that answer alike.
    """
    text = {"id.server.": identity, "hostname.bind.": identity}.get(qname)
    if qname == "epoch.dnsfail." and epoch is not None:
        text = epoch()
    if qname in ("version.bind.", "version.server.") and version is not None:
        text = version
    if text is None:
        return Message(Rcode.REFUSED, False)
    if qtype not in (RRType.TXT, RRType.ANY):
        return Message(Rcode.NOERROR, True)
    return Message(Rcode.NOERROR, True,
                   answer=(RRset(qname, RRType.TXT, 0, (TXT((text.encode()[:255],)),)),))


def resolve(
    zones: Mapping[str, Zone], qname: str, qtype: int, qclass: int, dynamic: DynamicAnswers
) -> Message:
    """Answer one question from the zones we serve.

    A name outside every zone gets REFUSED without AA (we are not a
    resolver, RFC 1034 section 4.3.1); zone transfers are refused, since
    dnsfail instances each read the zone files and need no transfers.
    """
    if qclass != RRClass.IN:
        return Message(Rcode.REFUSED, False)
    zone = zone_for(zones, qname, qtype)
    if zone is None:
        return Message(Rcode.REFUSED, False)
    if qtype in (RRType.AXFR, RRType.IXFR):
        return Message(Rcode.REFUSED, False)
    if qtype == RRType.OPT:
        return Message(Rcode.FORMERR, False)
    if qtype in NOTIMP_QTYPES:
        return Message(Rcode.NOTIMP, False)
    return _ZoneWalk(zone, qtype, dynamic).run(qname)


class _ZoneWalk:
    """One walk through one zone; collects the chain, the rcode and what is cacheable."""

    def __init__(self, zone: Zone, qtype: int, dynamic: DynamicAnswers) -> None:
        self.zone = zone
        self.qtype = qtype
        self.dynamic = dynamic
        self.answer: list[RRset] = []
        self.cacheable = True
        self.scope = 0
        self.client_dependent = False

    def done(
        self,
        rcode: Rcode = Rcode.NOERROR,
        *,
        authority: tuple[RRset, ...] = (),
        additional: tuple[RRset, ...] = (),
        aa: bool = True,
        glue_required: bool = False,
    ) -> Message:
        return Message(rcode, aa, tuple(self.answer), authority, additional,
                       glue_required, self.cacheable, self.scope, self.client_dependent)

    def negative(self, rcode: Rcode) -> Message:
        """NXDOMAIN or NODATA with the SOA, TTL min(SOA TTL, MINIMUM) (RFC 2308 section 3)."""
        return self.done(rcode, authority=soa_authority(self.zone))

    def in_zone(self, name: str) -> bool:
        origin = self.zone.origin
        return name == origin or origin == "." or name.endswith("." + origin)

    def find_cut(self, name: str) -> str | None:
        """The highest delegation point at or above ``name`` (RFC 1034 4.3.2 step 3b)."""
        cuts = self.zone.cuts
        if not cuts:
            return None
        found = None
        for candidate in [name, *parent_names(name)]:
            if candidate == self.zone.origin:
                break
            if candidate in cuts:
                found = candidate
        return found

    def run(self, qname: str) -> Message:
        name = qname
        for _ in range(MAX_CHAIN + 1):
            cut = self.find_cut(name)
            if cut is not None and not (cut == name and self.qtype == RRType.DS):
                return self.referral(cut)
            owner, node = self.find_node(name)
            if node is None:
                if name in self.zone.names:  # an empty non-terminal, RFC 4592 section 2.2.2
                    return self.negative(Rcode.NOERROR)
                return self.negative(Rcode.NXDOMAIN)
            cname = node.get(RRType.CNAME)
            if cname is not None and self.qtype != RRType.CNAME:
                self.answer.append(cname.renamed(name))
                target = cname.rdatas[0]
                assert isinstance(target, CNAME)
                if not self.in_zone(target.target) or self.qtype == RRType.ANY:
                    return self.done()
                name = target.target
                continue
            return self.answer_node(name, owner, node)
        return self.done(Rcode.SERVFAIL, aa=False)  # a CNAME loop in our own data

    def find_node(self, name: str) -> tuple[str, Mapping[RRType, RRset] | None]:
        """The node for ``name`` or the wildcard that covers it (RFC 4592 section 3.3.1)."""
        zone = self.zone
        node = zone.nodes.get(name)
        if node is not None or name in zone.names:
            return name, node
        for encloser in parent_names(name):
            if encloser in zone.names:
                source = "*." + encloser if encloser != "." else "*."
                return source, zone.nodes.get(source)
        return name, None

    def rrset(self, owner: str, node: Mapping[RRType, RRset], rtype: RRType) -> RRset | None:
        """The RRset of ``rtype`` at ``owner``: dynamic records first, then static data."""
        record = self.zone.dynamic.get((owner, rtype))
        if record is not None:
            result = self.dynamic.answer(record, owner)
            self.cacheable = self.cacheable and result.cacheable
            self.scope = max(self.scope, result.scope)
            self.client_dependent = self.client_dependent or result.client_dependent
            if result.rrset is None:
                raise _ServFail
            return result.rrset
        return node.get(rtype)

    def answer_node(self, name: str, owner: str, node: Mapping[RRType, RRset]) -> Message:
        qtype = self.qtype
        try:
            if qtype == RRType.ANY:
                self.answer.append(RRset(name, RRType.HINFO, ANY_TTL,
                                         (HINFO(b"RFC8482", b""),)))
                return self.done()
            if owner == self.zone.origin and qtype in ADDRESS_TYPES and self.zone.alias:
                return self.answer_alias(name, RRType(qtype))
            rrset = self.rrset(owner, node, RRType(qtype)) if qtype in RRType._value2member_map_ \
                else None
        except _ServFail:
            return self.done(Rcode.SERVFAIL, aa=False)
        if rrset is None:
            return self.negative(Rcode.NOERROR)
        self.answer.append(rrset.renamed(name) if owner != name else rrset)
        return self.done(additional=self.additional_for((rrset,)))

    def answer_alias(self, name: str, qtype: RRType) -> Message:
        """ALIAS at the apex: the target's in-zone A/AAAA under the apex's name."""
        alias = self.zone.alias
        assert alias is not None
        target = alias.rdatas[0]
        assert isinstance(target, CNAME)
        found = _ZoneWalk(self.zone, qtype, self.dynamic)
        reply = found.run(target.target)
        self.cacheable = self.cacheable and reply.cacheable
        self.scope = max(self.scope, reply.scope)
        self.client_dependent = self.client_dependent or reply.client_dependent
        if reply.rcode == Rcode.SERVFAIL:
            return self.done(Rcode.SERVFAIL, aa=False)
        data = [r for r in reply.answer if r.rtype == qtype]
        if not data:
            return self.negative(Rcode.NOERROR)
        rdatas = tuple(rd for r in data for rd in r.rdatas)
        ttl = min([alias.ttl] + [r.ttl for r in data])
        self.answer.append(RRset(name, qtype, ttl, rdatas))
        return self.done()

    def referral(self, cut: str) -> Message:
        """A delegation: NS in authority, AA clear, glue in additional (RFC 1034 4.3.2 3b)."""
        ns = self.zone.nodes[cut][RRType.NS]
        glue = self.addresses_of(ns)
        required = any(
            t == cut or t.endswith("." + cut) for t in self.targets(ns)
        )
        return self.done(authority=(ns,), additional=glue, aa=bool(self.answer),
                         glue_required=required and bool(glue))

    @staticmethod
    def targets(rrset: RRset) -> list[str]:
        out = []
        for rd in rrset.rdatas:
            if isinstance(rd, NS):
                out.append(rd.target)
            elif isinstance(rd, MX):
                out.append(rd.exchange)
            elif isinstance(rd, SRV):
                out.append(rd.target)
        return out

    def addresses_of(self, rrset: RRset) -> tuple[RRset, ...]:
        """In-zone A/AAAA for NS, MX and SRV targets (RFC 1035 section 3.3.9 etc.)."""
        out: list[RRset] = []
        seen: set[str] = set()
        for target in self.targets(rrset):
            if target in seen or not self.in_zone(target):
                continue
            seen.add(target)
            node = self.zone.nodes.get(target)
            if node is None:
                continue
            for rtype in ADDRESS_TYPES:
                found = node.get(rtype)
                if found is not None:
                    out.append(found)
        return tuple(out)

    def additional_for(self, rrsets: tuple[RRset, ...]) -> tuple[RRset, ...]:
        out: list[RRset] = []
        for rrset in rrsets:
            if rrset.rtype in (RRType.NS, RRType.MX, RRType.SRV):
                out.extend(self.addresses_of(rrset))
        return tuple(out)


class _ServFail(Exception):
    """A dynamic record's policy asked for SERVFAIL."""
