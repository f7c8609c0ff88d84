"""Records: each record mapping of a file checked on its own and built into a ``Record``.

Owns record bodies (one mapping or a list under a key), type, TTL and
values, the fast path for a clean ``located.Simple``, and a record's
``octodns`` options (``read_options``: the ``healthcheck`` and ``dnsfail``
parts, and which knobs a record may carry); both ``soa`` and ``dynamic``
read those options, so they live with the record rather than with either.

Imports ``model``, ``located``, ``names`` and ``rdata``.  It must not import
``rules``, ``soa``, ``dynamic``, ``load`` or a reader: they read its ``Record``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from dnsfail.model import Rdata
from dnsfail.zonefile.located import (
    Entry,
    Problems,
    Scope,
    Simple,
    SimpleList,
    YMap,
    YNode,
    YSeq,
    show,
)
from dnsfail.zonefile.names import owner_name, relative
from dnsfail.zonefile.rdata import PARSERS, TEXT_PARSERS, rrset_problem, show_rdata

#: octoDNS's default record TTL (``Record.__init__``: ``data.get('ttl', 3600)``).
DEFAULT_TTL = 3600
#: TTLs are 0..2**31-1; larger values are treated as zero (RFC 2181 section 8).
MAX_TTL = 2**31 - 1


_RECORD_KEYS = frozenset({"type", "ttl", "value", "values", "octodns", "dynamic"})
#: Types whose record holds exactly one ``value`` (octoDNS ``ValueMixin``).
_SINGLE_VALUE = frozenset({"ALIAS", "CNAME"})
#: ``octodns.dnsfail`` knobs that only make sense on a dynamic record.
_DYNAMIC_ONLY_KEYS = ("all_down", "ttl_floor", "healthcheck", "rules", "ipv6", "coordinates")
_DNSFAIL_KEYS = frozenset({"soa", *_DYNAMIC_ONLY_KEYS})


class Record(NamedTuple):
    """One record mapping of the file, checked on its own.

    A NamedTuple rather than a dataclass: a big zone makes one per record,
    and only the zone-wide checks read it before it is dropped.
    """

    name: str
    rel: str
    rtype: str
    ttl: int
    rdatas: tuple[Rdata, ...]
    line: int
    #: The values of the record's ``octodns`` and ``dynamic`` keys, None when absent.
    octodns: YNode | None = None
    dynamic: YNode | None = None

    @property
    def label(self) -> str:
        return f"{self.rel} {self.rtype}"

    @property
    def is_dynamic(self) -> bool:
        return self.dynamic is not None


def _record_bodies(scope: Scope, key_line: int, node: YNode) -> list[tuple[int, YMap]]:
    """A key holds one record mapping or a list of them; each with the line it starts on."""
    if isinstance(node, YMap):
        return [(key_line, node)]
    if isinstance(node, YSeq):
        if not node.items:
            scope.error(key_line, "empty list of records")
        bodies: list[tuple[int, YMap]] = []
        for item in node.items:
            body = scope.mapping(item, "record")
            if body is not None:
                bodies.append((item.line, body))
        return bodies
    scope.error(key_line, f"expected a record mapping or a list of them, not {show(node)}")
    return []


def _value_nodes(scope: Scope, rtype: str, line: int, body: YMap) -> tuple[YNode, ...]:
    """The ``value`` or ``values`` of a record, as a tuple of nodes."""
    value, values = body.get("value"), body.get("values")
    if value is not None and values is not None:
        scope.error(line, "give 'value' or 'values', not both")
        return ()
    if value is None and values is None:
        if "dynamic" in body.entries:
            scope.error(line, "missing 'values' (a dynamic record's backup answer)")
        else:
            scope.error(line, "missing 'value' or 'values'")
        return ()
    if value is not None:
        return (value,)
    assert values is not None
    if rtype in _SINGLE_VALUE:
        scope.error(body.key_line("values"), f"{rtype} takes a single 'value', not 'values'")
        return ()
    return scope.sequence(values, "values") or ()


def _parse_rdatas(scope: Scope, rtype: str, nodes: tuple[YNode, ...]) -> tuple[Rdata, ...]:
    """Each value parsed, in file order; bad and duplicate values reported and left out."""
    parser = PARSERS[rtype]
    rdatas: list[Rdata] = []
    for node in nodes:
        rdata = parser(scope, node)
        if rdata is not None and rdata in rdatas:
            scope.error(node.line, f"duplicate value {show_rdata(rdata)}")
        elif rdata is not None:
            rdatas.append(rdata)
    return tuple(rdatas)


def _parse_record(
    problems: Problems, name: str, rel: str, line: int, body: YMap
) -> Record | None:
    """One record mapping: type, TTL and values.  None if it cannot be typed at all."""
    type_node = body.get("type")
    if type_node is None:
        problems.add(line, rel, "missing 'type'")
        return None
    rtype = Scope(problems, rel).string(type_node, "type")
    if rtype is None:
        return None
    scope = Scope(problems, f"{rel} {rtype}")
    if rtype not in PARSERS:
        scope.error(type_node.line, f"unknown record type {rtype!r}")
        return None
    for key, entry in body.entries.items():
        if key not in _RECORD_KEYS:
            scope.error(entry.key_line, f"unknown key {key!r} in record")
    ttl_node = body.get("ttl")
    # RFC 2181 section 8: a TTL is 0..2**31-1.
    ttl = scope.integer(ttl_node, "ttl", 0, MAX_TTL) if ttl_node else DEFAULT_TTL
    rdatas = _parse_rdatas(scope, rtype, _value_nodes(scope, rtype, line, body))
    if (too_big := rrset_problem(rtype, rdatas)) is not None:
        scope.error(line, too_big)
    if rtype == "SRV" and not re.match(r"^(\*|_[^.]+)\.[^.]+", "" if rel == "@" else rel):
        scope.error(line, "SRV owner must look like _service._proto (RFC 2782)")
    if "dynamic" in body.entries and rtype not in ("A", "AAAA"):
        scope.error(body.key_line("dynamic"), "dynamic is only supported on A and AAAA records")
    return Record(
        name, rel, rtype, ttl if ttl is not None else DEFAULT_TTL, rdatas, line,
        body.get("octodns"), body.get("dynamic"),
    )  # fmt: skip


def simple_record(name: str, rel: str, line: int, simple: Simple) -> Record | None:
    """The record ``_parse_record`` would make of ``simple``, or None if it might object.

    Only the clean case is decided here: a known string-valued type, a TTL
    in range, every value valid and distinct.  Anything else goes to
    ``_parse_record`` with located nodes, so each problem is found and
    worded in one place.
    """
    parse = TEXT_PARSERS.get(simple.rtype)
    ttl = DEFAULT_TTL if simple.ttl is None else simple.ttl
    if parse is None or ttl > MAX_TTL or (simple.listed and simple.rtype in _SINGLE_VALUE):
        return None
    if len(simple.values) == 1:
        rdata = parse(simple.values[0])
        if isinstance(rdata, str) or (simple.rtype == "TXT" and rrset_problem("TXT", (rdata,))):
            return None
        return Record(name, rel, simple.rtype, ttl, (rdata,), line)
    rdatas: list[Rdata] = []
    for text in simple.values:
        rdata = parse(text)
        if isinstance(rdata, str) or rdata in rdatas:
            return None
        rdatas.append(rdata)
    if rrset_problem(simple.rtype, rdatas) is not None:
        return None
    return Record(name, rel, simple.rtype, ttl, tuple(rdatas), line)


def parse_records(problems: Problems, entries: Iterable[Entry], origin: str) -> list[Record]:
    records: list[Record] = []
    for key, key_line, value in entries:
        name, reason = owner_name(key, origin)
        if name is None:
            problems.add(key_line, key or "@", reason or "invalid name")
            continue
        rel = relative(name, origin)
        if isinstance(value, Simple):
            record = simple_record(name, rel, key_line, value)
            if record is None:
                record = _parse_record(problems, name, rel, key_line, value.node())
            if record is not None:
                records.append(record)
            continue
        if isinstance(value, SimpleList):
            for simple in value.records:
                record = simple_record(name, rel, simple.line, simple)
                if record is None:
                    record = _parse_record(problems, name, rel, simple.line, simple.node())
                if record is not None:
                    records.append(record)
            continue
        for line, body in _record_bodies(Scope(problems, rel), key_line, value):
            record = _parse_record(problems, name, rel, line, body)
            if record is not None:
                records.append(record)
    return records


@dataclass(frozen=True, slots=True)
class Options:
    """A record's ``octodns`` mapping, split into the parts dnsfail reads."""

    healthcheck: YMap | None = None
    dnsfail: YMap | None = None

    def dnsfail_node(self, key: str) -> YNode | None:
        return self.dnsfail.get(key) if self.dnsfail is not None else None


NO_OPTIONS = Options()


def read_options(problems: Problems, record: Record, origin: str) -> Options:
    node = record.octodns
    if node is None:
        return NO_OPTIONS
    scope = Scope(problems, record.label)
    octodns = scope.mapping(node, "octodns")
    if octodns is None:
        return Options()
    health = octodns.get("healthcheck")
    health_map = scope.mapping(health, "octodns.healthcheck") if health is not None else None
    knobs = octodns.get("dnsfail")
    dnsfail = scope.mapping(knobs, "octodns.dnsfail", _DNSFAIL_KEYS) if knobs is not None else None
    if dnsfail is not None:
        if not record.is_dynamic:
            for key in _DYNAMIC_ONLY_KEYS:
                if key in dnsfail.entries:
                    scope.error(dnsfail.key_line(key), f"{key!r} only applies to dynamic records")
        if "soa" in dnsfail.entries and record.name != origin:
            scope.error(dnsfail.key_line("soa"), "'soa' is only allowed on apex records")
    return Options(health_map, dnsfail)
