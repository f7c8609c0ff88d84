"""Operator overrides: time-boxed drains that force sites, targets or pools down (or up).

An override is just an operator ``status`` with an expiry: :func:`apply`
returns zones whose matching :class:`~dnsfail.model.PoolValue` carry
``status=DOWN`` (or ``UP``), so answer selection (selection.py) needs no
change and a drained value is treated exactly like ``status: down`` in the
zone file, including by the all-down policy (a drained site stays out).
The store keeps the configured zones and publishes ``apply(...)`` of them,
and probes go on underneath: the real state stays known (gdnsd's
``admin_state`` FORCED bit over the tracked state, but with an expiry and a
reason, which gdnsd's ``admin_state`` file lacks; see the gdnsd manual, gdnsd(8)).

Selectors, checked by :func:`parse_selector`:

=========================  =================================================
``192.0.2.10``             a whole site: every pool value with that address
``192.0.2.10:443``         one probe target (``ProbeSpec.label``)
``api.gw.example.com/eu``  pool ``eu`` of the record(s) at that name
``pool:eu``                the pool named ``eu`` in every record
=========================  =================================================

When several active overrides match one value, the most recently created
wins (gdnsd: "later lines override earlier").

Pure except :func:`load` and :func:`save`, which persist the overrides as
JSON written atomically (temporary file in the same directory, fsync,
``os.replace``, fsync of the directory): a crash leaves the old file or the
new one, never a torn one.  Times are wall-clock seconds since the epoch,
because they must mean the same thing after a restart.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import ipaddress
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dnsfail.errors import DnsfailError
from dnsfail.model import (
    AAAA,
    A,
    DynamicRecord,
    Pool,
    PoolValue,
    ProbeSpec,
    RRType,
    Status,
    Zone,
)
from dnsfail.zonefile.packed import ZoneNodes

#: Version of the state file's layout; a file with another version is refused.
STATE_VERSION = 1
#: Longest override accepted: a drain nobody remembers must still end.
MAX_DURATION = 30 * 86400.0
#: Longest reason kept (it goes into logs and the state file).
MAX_REASON = 500
#: Longest author kept from a state file or a peer.
MAX_BY = 200
#: Latest instant a saved override may name (9999-12-31T23:59:59Z): past it, formatting the
#: time for the log is an OverflowError, and no drain lasts that long anyway.
MAX_TIMESTAMP = 253402300799.0
#: Largest state file read (a 10,000-drain file is ~2.5 MB); a larger one is refused as
#: damaged (moved aside) instead of read into memory.
MAX_STATE_FILE = 32 * 1024 * 1024
#: Unicode categories replaced in reasons and authors read back from a file or a peer: they
#: go into logs and terminals, where a newline or a direction override forges text.
UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, each unprintable one (UNPRINTABLE) as U+FFFD."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join("\ufffd" if unicodedata.category(c) in UNPRINTABLE else c for c in text)


def timestamp(value: object, what: str) -> float:
    """A wall-clock time from a file or a peer: finite, 0 to MAX_TIMESTAMP; else ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a time")
    number = float(value)  # type: ignore[arg-type]  # TypeError/ValueError say why
    if not 0.0 <= number <= MAX_TIMESTAMP:  # NaN compares false too
        raise ValueError(f"{what} {str(value)[:40]} is not a time between 1970 and 9999")
    return number


class OverrideError(DnsfailError, ValueError):
    """A selector, duration or state file that cannot be used; the message says why."""


class Kind(enum.Enum):
    #: Every value with this address, in any record.
    SITE = "site"
    #: Every value probed at this address and port.
    TARGET = "target"
    #: One pool of the record(s) at one name.
    RECORD_POOL = "record pool"
    #: The pool of this name in every record.
    POOL = "pool"


SELECTOR_HELP = (
    "use ADDRESS (a site), ADDRESS:PORT (a probe target), NAME/POOL (a record's pool) "
    "or pool:NAME (that pool in every record)"
)
_POOL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector; ``text`` is its canonical spelling (the override's key)."""

    kind: Kind
    text: str
    address: str = ""
    port: int = 0
    #: Absolute lower-case record name, for RECORD_POOL.
    record: str = ""
    pool: str = ""

    def matches(self, record: DynamicRecord, pool: Pool, value: PoolValue) -> bool:
        if self.kind is Kind.SITE:
            return _canonical_ip(value.value) == self.address
        if self.kind is Kind.TARGET:
            probe = value.probe
            return probe is not None and probe.port == self.port and (
                _canonical_ip(probe.address) == self.address
            )
        if self.kind is Kind.RECORD_POOL:
            return record.name == self.record and pool.name == self.pool
        return pool.name == self.pool

    @property
    def key(self) -> SelectorKey:
        """What this selector names, as :class:`ValueIndex` files every value under it."""
        if self.kind is Kind.SITE:
            return (Kind.SITE, self.address)
        if self.kind is Kind.TARGET:
            return (Kind.TARGET, self.address, self.port)
        if self.kind is Kind.RECORD_POOL:
            return (Kind.RECORD_POOL, self.record, self.pool)
        return (Kind.POOL, self.pool)


#: A selector's identity: its kind and what it names (see ``Selector.key``).
SelectorKey = tuple[Kind, str] | tuple[Kind, str, int] | tuple[Kind, str, str]


def _canonical_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


#: Selectors parsed once and remembered (the store re-parses every override on each change:
#: 10,000 replicated drains cost 0.7 s of the event loop per change without it).
SELECTOR_CACHE = 16384
#: Longest selector text remembered: a site or target is at most ~50 characters, a record
#: pool ~300; a longer one (a typo, or hostile) is parsed each time, so the cache stays small.
SELECTOR_CACHE_TEXT = 320


def parse_selector(text: str) -> Selector:
    """``text`` as a :class:`Selector`; :class:`OverrideError` with the reason otherwise."""
    if len(text) <= SELECTOR_CACHE_TEXT:
        return _parse_cached(text)
    return _parse_selector(text)


@functools.lru_cache(maxsize=SELECTOR_CACHE)
def _parse_cached(text: str) -> Selector:
    return _parse_selector(text)


def _parse_selector(text: str) -> Selector:
    raw = text.strip()
    if not raw:
        raise OverrideError(f"empty selector: {SELECTOR_HELP}")
    if raw.startswith("pool:"):
        name = raw[5:]
        if not _POOL_NAME.match(name):
            raise OverrideError(f"{raw!r}: pool name {name!r} is not a pool name")
        return Selector(Kind.POOL, f"pool:{name}", pool=name)
    if "/" in raw:
        name, _, pool = raw.rpartition("/")
        name = name.lower().rstrip(".")
        if not name or not pool or not _POOL_NAME.match(pool) or " " in name:
            raise OverrideError(f"{raw!r} is not NAME/POOL: {SELECTOR_HELP}")
        return Selector(Kind.RECORD_POOL, f"{name}/{pool}", record=name + ".", pool=pool)
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        pass
    else:
        return Selector(Kind.SITE, str(address), address=str(address))
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
    else:
        host, sep, port = raw.rpartition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise OverrideError(f"{raw!r} is not a selector: {SELECTOR_HELP}") from None
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise OverrideError(f"{raw!r}: port {port!r} is not 1-65535")
    label = f"[{address}]:{int(port)}" if address.version == 6 else f"{address}:{int(port)}"
    return Selector(Kind.TARGET, label, address=str(address), port=int(port))


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"30m"``, ``"1h30m"`` or ``"2d"``.

    Bounded to (0, 30 days]: an override always ends, and a typo such as
    ``30000m`` is an error rather than a three-week outage of a site.
    """
    if isinstance(value, bool):
        raise OverrideError(f"duration {value!r} is not a number of seconds or like 30m")
    if isinstance(value, int | float):
        seconds = float(value) if not isinstance(value, int) or abs(value) < 10**18 \
            else math.inf  # an int beyond a float would be an OverflowError
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise OverrideError(
                    f"duration {value!r} is not seconds or like 90s, 30m, 1h30m, 2d"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise OverrideError(f"duration {value!r} is not a number of seconds or like 30m")
    if not math.isfinite(seconds) or seconds <= 0:
        raise OverrideError(f"duration {value!r} must be more than 0 seconds")
    if seconds > MAX_DURATION:
        raise OverrideError(f"duration {value!r} is longer than the 30-day limit")
    return seconds


@dataclass(frozen=True, slots=True)
class Override:
    """One operator decision: force what ``selector`` matches to ``state`` until ``expires``."""

    selector: str
    state: Status
    reason: str
    #: Wall-clock seconds since the epoch.
    created: float
    expires: float
    #: Who asked (user@host as the client reports it); for the audit trail only.
    by: str = ""

    def active(self, now: float) -> bool:
        return now < self.expires

    def to_json(self) -> dict[str, object]:
        return {
            "selector": self.selector, "state": self.state.value, "reason": self.reason,
            "created": self.created, "expires": self.expires, "by": self.by,
        }

    @classmethod
    def from_json(cls, data: object) -> Override:
        if not isinstance(data, dict):
            raise OverrideError(f"override {data!r} is not an object")
        try:
            selector = parse_selector(str(data["selector"])).text
            state = Status(data["state"])
            if state is Status.OBEY:
                raise ValueError("state must be up or down")
            created = timestamp(data["created"], "created")
            expires = timestamp(data["expires"], "expires")
            reason = printable(str(data["reason"]), MAX_REASON)
            by = printable(str(data.get("by", "")), MAX_BY)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise OverrideError(f"override {str(data)[:200]}: {str(exc)[:200]}") from None
        return cls(selector, state, reason, created, expires, by)


@dataclass(frozen=True, slots=True)
class Match:
    """One pool value a selector matched, and where."""

    zone: str
    record: DynamicRecord
    pool: str
    value: PoolValue
    #: The value's place in ``pool.values`` (two equal values in one pool are two matches).
    position: int = 0


@dataclass(frozen=True, slots=True)
class ValueIndex:
    """Every dynamic pool value of a zone set, filed under each selector key that names it.

    Built in one pass over the values; a selector's matches are then one
    lookup instead of a scan of every value.  Scanning cost O(values) per
    selector, and the status view scanned once per target and override:
    300 targets with 30 drains held the event loop for 13.7 s (issue 11).
    Each list keeps configuration order (``model.pool_values``).
    """

    by_key: Mapping[SelectorKey, tuple[Match, ...]]

    @classmethod
    def build(cls, zones: Mapping[str, Zone]) -> ValueIndex:
        out: dict[SelectorKey, list[Match]] = {}
        canonical: dict[str, str] = {}  # the same sites recur across records
        for origin, zone in zones.items():
            for record in zone.dynamic.values():
                for pool in record.pools.values():
                    for i, value in enumerate(pool.values):
                        m = Match(origin, record, pool.name, value, i)
                        site = canonical.get(value.value)
                        if site is None:
                            site = canonical[value.value] = _canonical_ip(value.value)
                        keys: list[SelectorKey] = [(Kind.SITE, site),
                                                   (Kind.RECORD_POOL, record.name, pool.name),
                                                   (Kind.POOL, pool.name)]
                        probe = value.probe
                        if probe is not None:
                            address = canonical.get(probe.address)
                            if address is None:
                                address = canonical[probe.address] = _canonical_ip(probe.address)
                            keys.append((Kind.TARGET, address, probe.port))
                        for key in keys:
                            out.setdefault(key, []).append(m)
        return cls({key: tuple(found) for key, found in out.items()})

    def lookup(self, selector: Selector) -> tuple[Match, ...]:
        """Every value ``selector`` matches, in configuration order."""
        return self.by_key.get(selector.key, ())


def matches(zones: Mapping[str, Zone], selector: Selector) -> list[Match]:
    """Every dynamic pool value ``selector`` matches in ``zones`` (configured order)."""
    return list(ValueIndex.build(zones).lookup(selector))


@dataclass(frozen=True, slots=True)
class OverrideIndex:
    """Which values each override matches, and which overrides touch each probe target.

    Computed once per change of zones or overrides (the store does it), so
    that status and metrics cost one lookup per thing they show.
    """

    #: By the override's selector text: the values it matches, configured order.
    matched: Mapping[str, tuple[Match, ...]]
    #: By probe target: the overrides matching any value probed through it, in the
    #: order of the overrides given (oldest first, as ``active`` sorts them).
    by_target: Mapping[ProbeSpec, tuple[Override, ...]]

    @classmethod
    def build(cls, values: ValueIndex, overrides: Iterable[Override]) -> OverrideIndex:
        matched: dict[str, tuple[Match, ...]] = {}
        by_target: dict[ProbeSpec, list[Override]] = {}
        for o in overrides:
            found = matched.get(o.selector)
            if found is None:
                found = matched[o.selector] = values.lookup(parse_selector(o.selector))
            for spec in dict.fromkeys(m.value.probe for m in found if m.value.probe):
                assert spec is not None
                by_target.setdefault(spec, []).append(o)
        return cls(matched, {spec: tuple(os) for spec, os in by_target.items()})


def drain_ttl(found: Iterable[Match]) -> int:
    """The longest TTL an answer containing any matched value can have carried.

    Every answer of a dynamic record has a TTL of at most the record's TTL
    (selection clamps it down, never up), and a CNAME to it does not extend
    the A/AAAA record's own TTL; so once this many seconds have passed since
    the override took effect, no cache that obeys TTLs still holds an answer
    with the matched values.
    """
    return max((m.record.ttl for m in found), default=0)


def not_covered(zones: Mapping[str, Zone], selector: Selector) -> list[str]:
    """Where a site's address is still answered despite a drain: static and backup data.

    A drain changes pool values only.  The same address in a plain A/AAAA
    record or in a dynamic record's backup ``values`` keeps being served, and
    an operator draining a site should be told so.
    """
    if selector.kind is not Kind.SITE:
        return []
    out: list[str] = []
    for zone in zones.values():
        for record in zone.dynamic.values():
            if any(_canonical_ip(b) == selector.address for b in record.backup):
                out.append(f"{record.name} {record.rtype.name}: backup values (all-down policy)")
        nodes = zone.nodes
        # A big zone's plain records are packed: only those that may hold it are decoded.
        owners = nodes.holding(selector.address) if isinstance(nodes, ZoneNodes) else nodes.items()
        for owner, node in owners:
            for rtype in (RRType.A, RRType.AAAA):
                rrset = node.get(rtype)
                if rrset is None or (owner, rtype) in zone.dynamic:
                    continue
                for rdata in rrset.rdatas:
                    if isinstance(rdata, A | AAAA) and _canonical_ip(rdata.address) == (
                        selector.address
                    ):
                        out.append(f"{owner} {rtype.name}: static record")
    return out


def active(overrides: Iterable[Override], now: float) -> list[Override]:
    """The overrides still in force at ``now``, oldest first (so the newest wins in apply)."""
    return sorted((o for o in overrides if o.active(now)), key=lambda o: o.created)


def apply(
    zones: Mapping[str, Zone], overrides: Sequence[Override], now: float,
    values: ValueIndex | None = None,
) -> dict[str, Zone]:
    """``zones`` with the status of every value matched by an active override replaced.

    Zones, records and pools that no override touches are returned as the
    same objects, so applying nothing costs nothing and keeps identity.
    ``values`` is ``ValueIndex.build(zones)`` if the caller has it: the cost
    is then the values matched, not values times overrides.
    """
    rules = active(overrides, now)
    if not rules:
        return dict(zones)
    if values is None:
        values = ValueIndex.build(zones)
    # Oldest first, so the newest override of a value is the one left standing.  Records
    # are told apart by identity: the index was built from these zones' own objects.
    forced: dict[str, dict[int, dict[str, dict[int, Status]]]] = {}
    for o in rules:
        for m in values.lookup(parse_selector(o.selector)):
            by_pool = forced.setdefault(m.zone, {}).setdefault(id(m.record), {})
            by_pool.setdefault(m.pool, {})[m.position] = o.state
    out = dict(zones)
    for origin, by_record in forced.items():
        zone = zones[origin]
        dynamic = dict(zone.dynamic)
        for key, record in zone.dynamic.items():
            states = by_record.get(id(record))
            if states is not None:
                dynamic[key] = _forced(record, states)
        if any(dynamic[key] is not record for key, record in zone.dynamic.items()):
            out[origin] = replace(zone, dynamic=dynamic)
    return out


def _forced(record: DynamicRecord, states: Mapping[str, Mapping[int, Status]]) -> DynamicRecord:
    """``record`` with the values at ``states[pool][position]`` set to that status."""
    pools = dict(record.pools)
    for name, by_position in states.items():
        pool = record.pools[name]
        values = list(pool.values)
        for i, status in by_position.items():
            if values[i].status is not status:
                values[i] = replace(values[i], status=status)
        if any(new is not old for new, old in zip(values, pool.values, strict=True)):
            pools[name] = replace(pool, values=tuple(values))
    if all(pools[name] is pool for name, pool in record.pools.items()):
        return record
    return replace(record, pools=pools)


def next_expiry(overrides: Iterable[Override]) -> float | None:
    """When the next override runs out (wall clock), or None if none is set."""
    return min((o.expires for o in overrides), default=None)


# --- persistence -----------------------------------------------------------------------


def dumps(overrides: Iterable[Override]) -> str:
    body = {"version": STATE_VERSION, "overrides": [o.to_json() for o in overrides]}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def loads(text: str | bytes, now: float) -> list[Override]:
    """Parse a state file's text; expired overrides are dropped.  All or nothing."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise OverrideError("not JSON: nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, an integer of over 4,300 digits
        raise OverrideError(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise OverrideError(f"not a version {STATE_VERSION} dnsfail state file")
    items = data.get("overrides")
    if not isinstance(items, list):
        raise OverrideError("'overrides' is not a list")
    return active((Override.from_json(item) for item in items), now)


def load(path: Path, now: float) -> list[Override]:
    """The overrides saved at ``path`` that are still active; none if the file is missing.

    First removes temporary files a killed :func:`save` left next to it: they are
    never read, and a crash loop would otherwise fill the directory.
    """
    remove_stale_temporaries(path)
    try:
        with path.open("rb") as f:
            text = f.read(MAX_STATE_FILE + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OverrideError(f"{path}: {exc.strerror or exc}") from None
    if len(text) > MAX_STATE_FILE:
        raise OverrideError(f"{path}: larger than {MAX_STATE_FILE} octets")
    try:
        return loads(text, now)
    except OverrideError as exc:
        raise OverrideError(f"{path}: {exc}") from None


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete ``.{name}.*.tmp`` beside ``path`` (what :func:`save` writes before its rename).

    Only this process writes its state file, and this runs at load, before
    any save: every such file is the remains of a write that was killed.
    """
    directory = path.parent if str(path.parent) else Path(".")
    removed = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            name = entry.name
            if name.startswith(_temporary_prefix(path)) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def save(path: Path, overrides: Iterable[Override]) -> None:
    """Write ``overrides`` to ``path`` atomically and durably (see the module docstring)."""
    write_durably(path, dumps(overrides))


def write_durably(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, fsync, rename) and
    durably (the directory fsynced): a crash leaves the old or the new file, never a torn
    one, and :func:`remove_stale_temporaries` finds what a crash left."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. a platform that cannot open directories; the rename is done
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
