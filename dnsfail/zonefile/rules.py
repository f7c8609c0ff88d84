"""Zone-wide rules: the records of one zone checked together.

Owns the owner -> type index (one record per type and name), CNAME and
ALIAS placement (RFC 1034 section 3.6.2, RFC 2181 section 10.1), NS on
wildcards, delegations and the data they occlude (RFC 1034 section 4.2.1),
empty non-terminals (RFC 4592 section 2.2.2), the ALIAS target and the apex NS.

Imports ``model``, ``located``, ``names`` and ``records``.  It must not import
``soa``, ``dynamic``, ``load`` or a reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from dnsfail.model import CNAME, parent_names
from dnsfail.zonefile.located import Problems
from dnsfail.zonefile.names import within
from dnsfail.zonefile.records import Record


def index_records(problems: Problems, records: list[Record]) -> dict[str, dict[str, Record]]:
    """Owner -> type -> record; a second record of one type at one name is a problem."""
    index: dict[str, dict[str, Record]] = {}
    for record in records:
        at_name = index.setdefault(record.name, {})
        first = at_name.get(record.rtype)
        if first is not None:
            problems.add(
                record.line,
                record.label,
                f"duplicate {record.rtype} record (first at line {first.line})",
            )
            continue
        at_name[record.rtype] = record
    return index


def check_exclusive(
    problems: Problems, index: dict[str, dict[str, Record]], origin: str
) -> None:
    """CNAME and ALIAS placement (RFC 1034 section 3.6.2, RFC 2181 section 10.1)."""
    for name, by_type in index.items():
        cname = by_type.get("CNAME")
        if cname is not None and name == origin:
            problems.add(cname.line, cname.label, "CNAME is not allowed at the apex (use ALIAS)")
        elif cname is not None and len(by_type) > 1:
            others = ", ".join(sorted(t for t in by_type if t != "CNAME"))
            problems.add(
                cname.line, cname.label, f"CNAME cannot coexist with other records ({others})"
            )
        alias = by_type.get("ALIAS")
        if alias is not None and name != origin:
            problems.add(alias.line, alias.label, "ALIAS is only allowed at the apex")
        elif alias is not None and ("A" in by_type or "AAAA" in by_type):
            problems.add(alias.line, alias.label, "ALIAS cannot coexist with A or AAAA records")
        ns = by_type.get("NS")
        if ns is not None and name.startswith("*."):
            problems.add(
                ns.line, ns.label, "NS is not allowed on a wildcard (RFC 4592 section 4.2)"
            )


def delegations(
    problems: Problems, index: dict[str, dict[str, Record]], origin: str
) -> set[str]:
    """Delegation points, and problems for the data they hide (RFC 1034 section 4.2.1).

    Below a cut only address records may remain, as glue for the child's
    name servers; at the cut itself NS, glue and the DS RRset, the parent's record of
    the child's keys (RFC 4035 section 2.4); DS anywhere else is a problem.  Anything
    else would never be answered authoritatively.
    """
    cuts = {name for name, by_type in index.items() if name != origin and "NS" in by_type}
    for name, by_type in index.items():
        ds = by_type.get("DS")
        if ds is not None and name not in cuts:  # RFC 4034 section 5, RFC 4035 section 2.4
            problems.add(ds.line, ds.label, "DS is only allowed at a delegation point (a name "
                         "with NS below the apex): it is the parent's record of a child zone")
    if not cuts:
        return cuts
    for name, by_type in index.items():
        # Ancestors, not every cut: linear in the zone's size however many delegations it has.
        above = [parent for parent in parent_names(name) if parent in cuts]
        allowed = {"A", "AAAA"} if above else {"A", "AAAA", "NS", "DS"}
        at = above or ([name] if name in cuts else [])
        if not at:
            continue
        cut = min(at, key=len)
        for rtype, record in by_type.items():
            if rtype not in allowed or record.is_dynamic:
                problems.add(record.line, record.label, f"occluded by delegation at {cut}")
    return {c for c in cuts if not any(parent in cuts for parent in parent_names(c))}


def zone_names(owners: Sequence[str], origin: str) -> frozenset[str]:
    """Every owner and every empty non-terminal between it and the apex (RFC 4592 section 2.2.2)."""
    names = {origin, *owners}
    suffix = "." + origin
    for owner in owners:
        # Only an owner two or more labels below the apex has empty non-terminals above it.
        rel = owner[: -len(suffix)] if owner.endswith(suffix) else ""
        while "." in rel:
            rel = rel.split(".", 1)[1]
            names.add(rel + suffix)
    return frozenset(names)


def check_alias_target(
    problems: Problems, alias: Record, origin: str, names: AbstractSet[str]
) -> None:
    """ALIAS is answered from in-zone data, so its target must exist in this zone."""
    if not alias.rdatas:
        return
    rdata = alias.rdatas[0]
    assert isinstance(rdata, CNAME)
    target = rdata.target
    if target == origin or not within(target, origin):
        problems.add(
            alias.line, alias.label, f"ALIAS target {target!r} must be a name inside the zone"
        )
    elif target not in names and not any(
        "*." + parent in names for parent in parent_names(target) if within(parent, origin)
    ):
        problems.add(alias.line, alias.label, f"ALIAS target {target!r} does not exist in the zone")


def check_apex_ns(problems: Problems, index: dict[str, dict[str, Record]], origin: str) -> None:
    """An authoritative zone names its servers at the apex (RFC 1034 section 4.2.1)."""
    apex = index.get(origin, {})
    if "NS" not in apex:
        line = min((record.line for record in apex.values()), default=1)
        problems.add(line, "@ NS", "the apex has no NS record")
