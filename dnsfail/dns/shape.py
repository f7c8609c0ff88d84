"""Which prepared shape answers a question, decided before anything is rendered.  Pure.

Most questions that miss the reply caches are answered with one of a few
replies that differ from each other only in the question: a name that does
not exist (NXDOMAIN with the SOA, RFC 2308 section 3), a name that exists
without the asked type (NODATA, the same SOA, rcode NOERROR; empty
non-terminals are such names, RFC 4592 section 2.2.2), a name synthesized
from a wildcard (RFC 4592 section 3.3.1: the wildcard's RRset under the
question's name), and a name in no zone we serve (REFUSED, RFC 1034 section
4.3.1).  ``classify`` tells which, from an index built once per ``Zone``
object (``ZoneIndex``), with dict and set lookups over the question's
ancestors only; ``dns.template`` renders.

It answers only what it is sure of, mirroring ``resolver.resolve`` step by
step, and returns None for every other question, which then takes the full
path: names at or below a delegation (a referral, RFC 1034 section 4.3.2
step 3b), CNAMEs, ANY, ALIAS at the apex, dynamic (health-checked, geo)
records, wildcards whose own data names something below them, types the
resolver refuses, and questions whose reply would compress a name against
a part of the question that a template cannot know (``ZoneIndex.mentioned``).
A property test holds every shape's reply byte-identical to the full path's.

Part of the core: it reads ``model`` and ``resolver`` only; no I/O, no wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from dnsfail.dns.resolver import NOTIMP_QTYPES, find_zone
from dnsfail.model import CNAME, MX, NS, PTR, SOA, SRV, RRset, RRType, Zone
from dnsfail.zonefile.packed import PackedStore, ZoneNames, ZoneNodes

#: Shape kinds.  A ``Shape`` is ``(kind, owner)``: ``owner`` is the wildcard's owner
#: (``*.<closest encloser>``) for WILDCARD, the zone's origin otherwise ("" for REFUSED).
NXDOMAIN, NODATA, WILDCARD, REFUSED = 0, 1, 2, 3
Shape = tuple[int, str]
#: Question types no shape answers: ``resolve`` refuses, rejects or synthesizes them, or
#: (DS) answers a zone's apex from its parent zone (``resolver.zone_for``).
SPECIAL = frozenset({RRType.ANY, RRType.AXFR, RRType.IXFR, RRType.OPT, RRType.DS,
                     *NOTIMP_QTYPES})
_SPECIAL = SPECIAL
_CNAME = RRType.CNAME


def rdata_names(rrset: RRset) -> list[str]:
    """The names an RRset's rdata writes on the wire (compressed or not)."""
    out: list[str] = []
    for rd in rrset.rdatas:
        if isinstance(rd, (NS, CNAME, PTR, SRV)):
            out.append(rd.target)
        elif isinstance(rd, MX):
            out.append(rd.exchange)
        elif isinstance(rd, SOA):
            out += (rd.mname, rd.rname)
    return out


class ZoneIndex:
    """What ``classify`` needs of one ``Zone`` beyond its ``names``, ``nodes`` and ``cuts``.

    ``wildcards`` holds the closest enclosers that have a wildcard child.
    ``mentioned`` holds every name strictly below the origin that the SOA
    writes (and its in-zone ancestors): a question at or above such a name
    gets a reply whose SOA compresses against the question itself, which a
    template made for another question cannot reproduce, so it takes the full
    path.  Built once per zone object, in time linear in its names that are not
    packed (``zonefile.packed`` never packs a wildcard owner, so a zone of a million
    packed addresses indexes in the time of its few other names).
    """

    __slots__ = ("mentioned", "packed", "rest", "stops", "wildcards", "zone")

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        nodes = zone.nodes
        general = nodes.rest if isinstance(nodes, ZoneNodes) else nodes
        self.wildcards = frozenset(name[2:] or "." for name in general if name[:2] == "*.")
        self.mentioned = frozenset(below(zone.origin, rdata_names(zone.soa)))
        #: ``walk_child``'s two sets as one: a name at which every walk stops.
        self.stops = zone.cuts | self.mentioned
        #: ``zone.names`` in its two parts, for ``Templates.answer``'s inline ``walk_child``:
        #: the names in a set, and the packed store (None when it holds none) whose keys
        #: are the names' text below the origin (``PackedStore.exists`` without its checks,
        #: which find no name of a root zone: its suffix would be "..").
        names = zone.names
        packed = names.packed if isinstance(names, ZoneNames) else None
        self.rest: AbstractSet[str] = names.rest if isinstance(names, ZoneNames) else names
        self.packed: PackedStore | None = (packed if packed is not None
                       and packed.owners + packed.empty_non_terminals
                                                     and zone.origin != "." else None)


def below(origin: str, names: list[str]) -> set[str]:
    """Every name of ``names`` and each of its ancestors strictly below ``origin``."""
    out: set[str] = set()
    for name in names:
        while name != origin and (name.endswith("." + origin) or origin == "."):
            if len(name) <= len(origin):
                break
            out.add(name)
            name = name[name.index(".") + 1 :] or "."
    return out


def classify(index: ZoneIndex, qname: str, qtype: int) -> Shape | None:
    """The shape of the answer to ``qname``/``qtype`` (class IN) in ``index``'s zone, or None.

    ``qname`` is lower case, absolute and inside the zone (``find_zone``).  The
    walk visits ``qname`` and each ancestor below the origin once: a
    delegation on the way (a referral) or a name the SOA mentions sends the
    question to the full path; the first name that exists is the closest
    encloser (RFC 4592 section 3.3.1).
    """
    if qtype in _SPECIAL:
        return None
    encloser = walk(index, qname)
    return None if encloser is None else settle(index, qname, qtype, encloser)


def walk(index: ZoneIndex, name: str) -> str | None:
    """The closest encloser of ``name`` found on the walk from it down to (not including)
    the origin, or the origin; None if the walk meets a cut or a name the SOA mentions."""
    zone = index.zone
    origin = zone.origin
    names, cuts, mentioned = zone.names, zone.cuts, index.mentioned
    encloser = origin
    found = False
    depth = len(origin)
    while len(name) > depth:
        if name in cuts or name in mentioned:
            return None
        if not found and name in names:
            encloser, found = name, True
        name = name[name.index(".") + 1 :]
    return encloser


def walk_child(index: ZoneIndex, qname: str, parent: str) -> str | None:
    """``walk`` of ``qname`` given ``parent``, the ``walk`` of its parent name (one label
    shorter, at or below the origin, and not None): the one new name is ``qname``."""
    zone = index.zone
    if qname in zone.cuts or qname in index.mentioned:
        return None
    return qname if qname in zone.names else parent


def settle(index: ZoneIndex, qname: str, qtype: int, encloser: str) -> Shape | None:
    """``classify``'s answer once the walk found ``encloser`` (``walk``), ``qtype`` not in
    ``_SPECIAL``."""
    zone = index.zone
    origin = zone.origin
    nodes = zone.nodes
    if encloser == qname:
        node = nodes.get(qname)
        if node is None:
            return NODATA, origin  # an empty non-terminal
        if (_CNAME in node or (qname, qtype) in zone.dynamic or qtype in node
                or (qname == origin and zone.alias is not None
                    and qtype in (RRType.A, RRType.AAAA))):
            return None  # data, a CNAME or a decision: the full path and its caches
        return NODATA, origin
    if encloser not in index.wildcards:
        return NXDOMAIN, origin
    source = "*." + encloser if encloser != "." else "*."
    node = nodes[source]
    if _CNAME in node or (source, qtype) in zone.dynamic:
        return None
    if qtype in node:
        return WILDCARD, source
    return NODATA, origin


def locate(zones: Mapping[str, Zone], indexes: dict[str, ZoneIndex], qname: str, qtype: int
           ) -> tuple[Zone | None, Shape | None]:
    """The zone of ``qname`` (class IN) and its shape; REFUSED when no zone is ours.

    ``indexes`` is the caller's memo of ``ZoneIndex`` by origin, rebuilt for a
    zone whose object changed (a reload or an override).
    """
    zone = find_zone(zones, qname)
    if zone is None:
        return None, (REFUSED, "")
    index = indexes.get(zone.origin)
    if index is None or index.zone is not zone:
        index = indexes[zone.origin] = ZoneIndex(zone)
    return zone, classify(index, qname, qtype)
