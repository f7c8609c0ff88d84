"""The SOA: synthesized from the apex, overridable from the file, and its serial.

Owns the SOA fields and their defaults, the ``octodns.dnsfail.soa``
override, and the serial rule (explicit, else kept for unchanged content,
else growing by RFC 1982 arithmetic), and publishing the SOA at the apex.

Imports ``model``, ``located``, ``names``, ``packed`` and ``records``.  It must not import
``rules``, ``dynamic``, ``load`` or a reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from dnsfail.model import NS, SOA, RRset, RRType, Zone
from dnsfail.zonefile.located import Problems, Scope, YMap, YNode, YScalar
from dnsfail.zonefile.names import target_name
from dnsfail.zonefile.packed import ZoneNodes
from dnsfail.zonefile.records import MAX_TTL, NO_OPTIONS, Options, Record

#: SOA serials are unsigned 32-bit, compared by RFC 1982 serial arithmetic.
MAX_SERIAL = 2**32 - 1


_SOA_KEYS = frozenset({"mname", "rname", "serial", "refresh", "retry", "expire", "minimum", "ttl"})


@dataclass(frozen=True, slots=True)
class SoaFields:
    """The synthesized SOA: dnsfail's defaults, each overridable from the file."""

    mname: str
    rname: str
    refresh: int = 3600
    retry: int = 600
    expire: int = 604800
    #: Negative-caching TTL (RFC 2308 section 4); short, so a name added after a miss appears soon.
    minimum: int = 60
    ttl: int = 3600
    serial: int | None = None


def _soa_name(scope: Scope, node: YNode, what: str) -> str | None:
    """SOA names; an ``rname`` may be written as a mail address (RFC 1035 section 8)."""
    text = scope.string(node, what)
    if text is not None and what == "rname" and "@" in text:
        local, _, domain = text.partition("@")
        if "." not in local:
            text = f"{local}.{domain.rstrip('.')}."
    if text is None:
        return None
    return target_name(scope, YScalar(node.line, text, text), what)


def soa_fields(
    problems: Problems,
    index: dict[str, dict[str, Record]],
    origin: str,
    options: Mapping[tuple[str, str], Options],
) -> SoaFields:
    apex = index.get(origin, {})
    ns = apex.get("NS")
    first = ns.rdatas[0] if ns is not None and ns.rdatas else None
    fields = SoaFields(
        mname=first.target if isinstance(first, NS) else origin, rname=f"hostmaster.{origin}"
    )
    if len(fields.rname) + 1 > 255:  # the default, from a long origin
        line = min((record.line for record in apex.values()), default=1)
        problems.add(line, "@ SOA", f"the default SOA rname {fields.rname!r} is longer than "
                     "255 octets: set octodns.dnsfail.soa.rname")
    seen: Record | None = None
    for record in apex.values():
        node = options.get((record.name, record.rtype), NO_OPTIONS).dnsfail_node("soa")
        if node is None:
            continue
        scope = Scope(problems, record.label)
        if seen is not None:
            scope.error(node.line, f"SOA override already given on '{seen.label}'")
            continue
        seen = record
        soa = scope.mapping(node, "soa", _SOA_KEYS)
        if soa is not None:
            fields = _soa_override(scope, soa, fields)
    return fields


def _soa_override(scope: Scope, soa: YMap, fields: SoaFields) -> SoaFields:
    names: dict[str, str] = {}
    for key in ("mname", "rname"):
        if (node := soa.get(key)) is not None and (name := _soa_name(scope, node, key)):
            names[key] = name
    numbers: dict[str, int] = {}
    for key in ("serial", "refresh", "retry", "expire", "minimum", "ttl"):
        high = MAX_SERIAL if key == "serial" else MAX_TTL
        node = soa.get(key)
        number = scope.integer(node, key, 0, high) if node is not None else None
        if number is not None:
            numbers[key] = number
    return SoaFields(
        mname=names.get("mname", fields.mname),
        rname=names.get("rname", fields.rname),
        refresh=numbers.get("refresh", fields.refresh),
        retry=numbers.get("retry", fields.retry),
        expire=numbers.get("expire", fields.expire),
        minimum=numbers.get("minimum", fields.minimum),
        ttl=numbers.get("ttl", fields.ttl),
        serial=numbers.get("serial", fields.serial),
    )


def soa_rrset(origin: str, fields: SoaFields, serial: int) -> RRset:
    rdata = SOA(
        fields.mname, fields.rname, serial, fields.refresh, fields.retry, fields.expire,
        fields.minimum,
    )  # fmt: skip
    return RRset(origin, RRType.SOA, fields.ttl, (rdata,))


def _same_content(old: Zone, new: Zone) -> bool:
    """Whether two zones serve the same data but for the SOA serial (which may differ).

    Compared in place, node by node, rather than by building serial-free
    copies of both zones: a reload of a big zone should not double its memory
    just to find out whether the serial moves.
    """
    old_soa, new_soa = old.soa.rdatas[0], new.soa.rdatas[0]
    assert isinstance(old_soa, SOA)
    assert isinstance(new_soa, SOA)
    if (old.alias, old.dynamic, old.cuts, old.soa.ttl, replace(old_soa, serial=0)) != (
        new.alias, new.dynamic, new.cuts, new.soa.ttl, replace(new_soa, serial=0)
    ):
        return False
    old_nodes, new_nodes = old.nodes, new.nodes
    if isinstance(old_nodes, ZoneNodes) and isinstance(new_nodes, ZoneNodes):
        # The packed records compare as stored; the rest node by node, as below.
        if not new_nodes.packed.same_content(old_nodes.packed):
            return False
        old_nodes, new_nodes = old_nodes.rest, new_nodes.rest
    if old_nodes.keys() != new_nodes.keys():
        return False
    for name, by_type in new_nodes.items():
        before = old_nodes[name]
        if by_type != before and _without_soa(by_type) != _without_soa(before):
            return False
    return True


def _without_soa(by_type: Mapping[RRType, RRset]) -> dict[RRType, RRset]:
    return {rtype: rrset for rtype, rrset in by_type.items() if rtype != RRType.SOA}


def _serial(zone: Zone, fields: SoaFields, serial: int, previous: Zone | None) -> int:
    """The zone's serial: explicit, else unchanged content keeps it, else it grows.

    Secondaries and caches compare serials with RFC 1982 arithmetic, so a
    serial never goes backwards for changed content: ``max(previous + 1,
    serial)``, wrapped to 32 bits.
    """
    if fields.serial is not None:
        return fields.serial
    if previous is None:
        return serial
    if _same_content(previous, zone):
        return previous.serial
    return max(previous.serial + 1, serial) & MAX_SERIAL


def _with_soa(zone: Zone, soa: RRset) -> Zone:
    """Publish the SOA both as ``Zone.soa`` and as ordinary apex data.

    The resolver then answers ``SOA`` queries like any other RRset
    (RFC 1035 section 3.3.13) instead of special-casing it.
    """
    apex = dict(zone.nodes.get(zone.origin, {}))
    apex[RRType.SOA] = soa
    if isinstance(zone.nodes, ZoneNodes):
        return replace(zone, soa=soa, nodes=zone.nodes.with_node(zone.origin,
                                                                 MappingProxyType(apex)))
    nodes = dict(zone.nodes)
    nodes[zone.origin] = MappingProxyType(apex)
    return replace(zone, soa=soa, nodes=MappingProxyType(nodes))


def publish_soa(zone: Zone, fields: SoaFields, serial: int, previous: Zone | None) -> Zone:
    """``zone`` (built with serial 0) with its SOA and serial: see ``_serial``."""
    soa = soa_rrset(zone.origin, fields, _serial(zone, fields, serial, previous))
    return _with_soa(zone, soa)
