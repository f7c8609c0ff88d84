"""Zone files in octoDNS's YamlProvider format -> validated, immutable ``model.Zone`` objects.

Owns ``parse_zone`` and ``load_zones`` (the entry points: ``dnsfail check``,
startup and reload all run ``load_zones``, so what ``check`` accepts is
exactly what the server will serve), the choice of reader (``strict``, else
``libyaml``), the order of the checks, the pause of the cyclic garbage
collector while a zone is built, and the assembly of the ``Zone``.  The
package docstring tells how a file is read.

Imports ``files``, the two readers and the module of each check, never ``yaml``
itself, and does no I/O beyond ``files.ZoneFile``'s reads.  No module of
``zonefile`` but the package's ``__init__`` may import it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType

from dnsfail.errors import ConfigError, Problem
from dnsfail.model import DynamicRecord, RRset, RRType, Zone
from dnsfail.zonefile.dynamic import dynamic_records
from dnsfail.zonefile.files import ZoneFile, discover, open_zone_file
from dnsfail.zonefile.libyaml import read_libyaml
from dnsfail.zonefile.located import Entry, Problems, clip
from dnsfail.zonefile.names import name_problem
from dnsfail.zonefile.packed import EMPTY_STORE, PackedBuilder, PackedStore, ZoneNames, ZoneNodes
from dnsfail.zonefile.records import Record, parse_records, read_options
from dnsfail.zonefile.rules import (
    check_alias_target,
    check_apex_ns,
    check_exclusive,
    delegations,
    index_records,
    zone_names,
)
from dnsfail.zonefile.soa import SoaFields, publish_soa, soa_fields, soa_rrset
from dnsfail.zonefile.strict import StrictReader, read_strict


def _nodes(
    index: Mapping[str, Mapping[str, Record]],
) -> tuple[Mapping[str, Mapping[RRType, RRset]], int]:
    """Owner -> type -> RRset for every record except ALIAS (which is ``Zone.alias``),
    and how many rdatas they hold.

    A dynamic record's backup ``values`` are here too, so type existence
    (NODATA, CNAME exclusivity, ANY) is uniform; ``Zone.dynamic`` decides the answer.
    """
    nodes: dict[str, Mapping[RRType, RRset]] = {}
    count = 0
    for name, by_type in index.items():
        rrsets: dict[RRType, RRset] = {}
        for rtype, record in by_type.items():
            if rtype != "ALIAS":
                qtype = _RRTYPES[rtype]
                rrsets[qtype] = RRset(name, qtype, record.ttl, record.rdatas)
                count += len(record.rdatas)
        if rrsets:
            nodes[name] = MappingProxyType(rrsets)
    return MappingProxyType(nodes), count


#: ``RRType[name]`` without the enum machinery's per-call cost.
_RRTYPES: Mapping[str, RRType] = {rtype.name: rtype for rtype in RRType}


def _build(
    origin: str, index: dict[str, dict[str, Record]], cuts: set[str], names: frozenset[str],
    dynamic: dict[tuple[str, RRType], DynamicRecord], fields: SoaFields, source: str,
    packed: PackedStore,
) -> Zone:  # fmt: skip
    nodes, count = _nodes(index)
    alias_record = index.get(origin, {}).get("ALIAS")
    alias = None
    if alias_record is not None:
        alias = RRset(origin, RRType.CNAME, alias_record.ttl, alias_record.rdatas)
    return Zone(
        origin=origin,
        soa=soa_rrset(origin, fields, 0),
        nodes=ZoneNodes(nodes, packed),
        names=ZoneNames(names, packed),
        cuts=frozenset(cuts),
        alias=alias,
        dynamic=MappingProxyType(dynamic),
        source=source,
        record_count=count + (1 if alias else 0) + packed.records,
    )


def parse_zone(
    text: str,
    source: str,
    origin: str,
    *,
    serial: int,
    previous: Zone | None = None,
    geoip: bool = True,
) -> Zone:
    """Parse and validate one zone file's text into a ``Zone``.

    ``origin`` is the zone's absolute name (``gw.example.com.``).  ``serial``
    is used when the file sets none and there is no ``previous`` zone (the
    one being replaced on reload) to compare with: see ``soa._serial``.  ``geoip``
    says whether a GeoIP database is configured; without one, ``geos`` rules
    could never match and are problems.  Raises ``ConfigError`` carrying every
    problem in the file.
    """
    with collector_paused():
        return parse_zone_with(text, source, origin, serial, previous, geoip, read_entries)


#: How a zone file's text becomes its top-level entries: ``read_entries`` or ``read_libyaml``.
Reader = Callable[[str, Problems], list[Entry]]


def parse_zone_with(
    text: str, source: str, origin: str, serial: int, previous: Zone | None, geoip: bool,
    read: Reader,
) -> Zone:  # fmt: skip
    """``parse_zone`` with the YAML reader given: tests compare ``read_entries`` with
    ``read_libyaml``.

    With ``read_entries``, the plain address records are packed as the strict
    reader meets them (``packed``): the builder takes only records that have no
    problem of their own, and none of the zone-wide rules can object to them but
    a shared owner (a duplicate, or a CNAME beside them).  So the rest of the
    file is judged as before, and if it shares an owner with them, or the reader
    gives up, the whole file is read again the general way: every problem is found
    and worded as it always was (tests/zonefile/test_packed.py compares both).
    """
    origin = _absolute(origin)
    if read is read_entries:
        # ``type: `` once per record at most: enough index for the file, never regrown.
        builder = PackedBuilder(origin, text.count("type: "))
        entries = read_strict(text, sink=builder)
        if entries is not None:
            zone = _parse(source, origin, serial, previous, geoip, entries, builder)
            if zone is not None:
                return zone
        del builder, entries
    return _parse_general(text, source, origin, serial, previous, geoip, read)


def _absolute(origin: str) -> str:
    return origin.lower() if origin.endswith(".") else origin.lower() + "."


def _parse_general(
    text: str, source: str, origin: str, serial: int, previous: Zone | None, geoip: bool,
    read: Reader,
) -> Zone:  # fmt: skip
    """The zone of ``text`` read by ``read``, nothing packed: every problem found and worded."""
    problems = Problems(source)
    zone = _parse(source, origin, serial, previous, geoip, read(text, problems), None, problems)
    assert zone is not None
    return zone


def parse_zone_file(
    opened: ZoneFile, origin: str, *, previous: Zone | None = None, geoip: bool = True
) -> Zone:
    """``parse_zone`` of an open zone file (its mtime the default serial), streamed.

    The file is read in pieces of about ``files.PIECE_BYTES`` by the strict
    reader, its plain address records packed as they come: so a big zone is
    never held as text (nor as bytes), and a reload of one needs little more
    than the new zone beside the one still being served.  Where the stream
    cannot be read that way (outside the strict subset, a packed owner shared,
    not ASCII...), the file is read whole and parsed as ``parse_zone`` does,
    which finds and words every problem; the two give the same zone
    (tests/zonefile/test_stream.py).
    """
    origin = _absolute(origin)
    with collector_paused():
        zone = _parse_stream(opened, origin, previous, geoip)
        if zone is not None:
            return zone
        read = opened.text()
        if isinstance(read, Problem):
            raise ConfigError([read])
        return _parse_general(read.text, opened.path, origin, read.mtime, previous, geoip,
                              read_entries)


def _parse_stream(
    opened: ZoneFile, origin: str, previous: Zone | None, geoip: bool
) -> Zone | None:
    """The zone, read piece by piece with its plain records packed; None where the file
    must be read whole (see ``parse_zone_file``)."""
    expected = opened.count(b"type: ")  # the index's size, as ``parse_zone_with`` finds it
    if expected < 0:
        return None
    builder = PackedBuilder(origin, expected)
    reader = StrictReader(sink=builder)
    for piece in opened.pieces():
        if piece is None or not reader.feed(piece):
            return None
    entries = reader.entries()
    if entries is None:
        return None
    return _parse(opened.path, origin, opened.mtime, previous, geoip, entries, builder)


def _parse(
    source: str, origin: str, serial: int, previous: Zone | None, geoip: bool,
    entries: list[Entry], builder: PackedBuilder | None, problems: Problems | None = None,
) -> Zone | None:  # fmt: skip
    """The zone of ``entries`` and ``builder``'s packed records, or ``ConfigError``;
    None where an owner of ``entries`` is packed too (the general path must judge)."""
    if problems is None:
        problems = Problems(source)
    index = index_records(problems, parse_records(problems, entries, origin))
    if builder is not None and (builder.failed
                                or any(builder.has_owner(name) for name in index)):
        return None
    check_apex_ns(problems, index, origin)
    check_exclusive(problems, index, origin)
    cuts = delegations(problems, index, origin)
    names = zone_names(list(index), origin)
    packed = builder.store() if builder is not None else EMPTY_STORE
    alias = index.get(origin, {}).get("ALIAS")
    if alias is not None:
        # Its target may be a packed owner, or an empty non-terminal above one.
        check_alias_target(problems, alias, origin, ZoneNames(names, packed))
    options = {
        (record.name, rtype): read_options(problems, record, origin)
        for by_type in index.values()
        for rtype, record in by_type.items()
        if record.octodns is not None
    }
    dynamic = dynamic_records(problems, index, options, geoip)
    fields = soa_fields(problems, index, origin, options)
    problems.raise_if_any()
    zone = _build(origin, index, cuts, names, dynamic, fields, source, packed)
    return publish_soa(zone, fields, serial, previous)


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a zone is built.

    A zone is several objects per record and none of them is in a cycle, yet
    every few thousand new objects make the collector walk all those alive,
    the zone being replaced included: a third of a 100,000-record load.
    Counted, so that loads in several threads at once (``load_zones`` runs in
    a worker thread) turn it back on only when the last one ends, and only if
    it was on.
    """
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


def read_entries(text: str, problems: Problems) -> list[Entry]:
    """The top-level entries of a zone file: by the strict reader if it can, else libyaml.

    Raises ``ConfigError`` if the text is not YAML or not a mapping.
    """
    entries = read_strict(text)
    return entries if entries is not None else read_libyaml(text, problems)


def _origin_of(path: str) -> tuple[str | None, str | None]:
    """``zones/gw.example.com.yaml`` -> ``gw.example.com.`` (octoDNS's one file per zone)."""
    base = os.path.basename(path)
    stem, dot, ext = base.rpartition(".")
    if not dot or ext not in ("yaml", "yml") or not stem:
        return None, f"zone file {base!r} must be named <zone>.yaml"
    origin = stem.lower().rstrip(".") + "."
    reason = name_problem(origin)
    if reason is not None or origin == ".":
        return None, f"file name {base!r} is not a zone name: {reason or 'root zone'}"
    return origin, None


def load_zones(
    paths: Sequence[str], previous: Mapping[str, Zone] | None = None, *, geoip: bool = True
) -> dict[str, Zone]:
    """Load every zone file under ``paths`` (files, or directories read non-recursively).

    Returns origin -> Zone.  Raises one ``ConfigError`` listing every problem
    in every file, so ``dnsfail check``, startup and reload agree, and a
    reload either takes the whole new configuration or none of it.
    ``previous`` (the zones being served) lets unchanged zones keep their serial.
    """
    zones: dict[str, Zone] = {}
    defined_in: dict[str, str] = {}
    files, problems = discover(paths)
    if not files and not problems:
        # A server with no zones would refuse every query; say why instead.
        where = ", ".join(paths) or "(no paths)"
        problems.append(Problem(where, 1, "(zone)", "no zone files (*.yaml, *.yml) found"))
    for path in files:
        origin, reason = _origin_of(path)
        if origin is None:
            problems.append(Problem(path, 1, "(zone)", reason or "bad file name"))
            continue
        if origin in defined_in:
            problems.append(
                Problem(path, 1, "(zone)", f"zone {origin} is also defined in {defined_in[origin]}")
            )
            continue
        defined_in[origin] = path
        opened = open_zone_file(path)
        if opened is None:
            continue  # unlinked since it was listed: removed on purpose (zonefiles.py)
        if isinstance(opened, Problem):
            problems.append(opened)
            continue
        last = previous.get(origin) if previous is not None else None
        try:
            with opened:
                zones[origin] = parse_zone_file(opened, origin, previous=last, geoip=geoip)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except Exception as exc:  # the outermost loader boundary: a located problem, no trace
            problems.append(Problem(path, 1, "(zone)", f"cannot load: internal error "
                                    f"{type(exc).__name__}: {clip(str(exc))}"))
    if problems:
        raise ConfigError(problems)
    return zones
