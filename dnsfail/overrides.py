"""Operator overrides: time-boxed drains that force sites, targets or pools down (or up).

An override is just an operator ``status`` with an expiry: :func:`apply`
returns zones whose matching :class:`~dnsfail.model.PoolValue` carry
``status=DOWN`` (or ``UP``), so answer selection (selection.py) needs no
change and a drained value is treated exactly like ``status: down`` in the
zone file, including by the all-down policy (a drained site stays out).
The store keeps the configured zones and publishes ``apply(...)`` of them,
and probes go on underneath: the real state stays known (gdnsd's
``admin_state`` FORCED bit over the tracked state, but with an expiry and a
reason, which gdnsd's file lacks; PRIOR_ART.md gap 9).

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
import ipaddress
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dnsfail.errors import DnsfailError
from dnsfail.model import AAAA, A, DynamicRecord, Pool, PoolValue, RRType, Status, Zone, pool_values

#: Version of the state file's layout; a file with another version is refused.
STATE_VERSION = 1
#: Longest override accepted: a drain nobody remembers must still end.
MAX_DURATION = 30 * 86400.0
#: Longest reason kept (it goes into logs and the state file).
MAX_REASON = 500


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


def _canonical_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def parse_selector(text: str) -> Selector:
    """``text`` as a :class:`Selector`; :class:`OverrideError` with the reason otherwise."""
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
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
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
        seconds = float(value)
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
            created, expires = float(data["created"]), float(data["expires"])
            reason, by = str(data["reason"]), str(data.get("by", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise OverrideError(f"override {data!r}: {exc}") from None
        return cls(selector, state, reason, created, expires, by)


@dataclass(frozen=True, slots=True)
class Match:
    """One pool value a selector matched, and where."""

    zone: str
    record: DynamicRecord
    pool: str
    value: PoolValue


def matches(zones: Mapping[str, Zone], selector: Selector) -> list[Match]:
    """Every dynamic pool value ``selector`` matches in ``zones`` (configured order)."""
    return [
        Match(origin, record, pool.name, value)
        for origin, record, pool, value in pool_values(zones)
        if selector.matches(record, pool, value)
    ]


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
        for owner, node in zone.nodes.items():
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


def apply(zones: Mapping[str, Zone], overrides: Sequence[Override], now: float) -> dict[str, Zone]:
    """``zones`` with the status of every value matched by an active override replaced.

    Zones, records and pools that no override touches are returned as the
    same objects, so applying nothing costs nothing and keeps identity.
    """
    rules = [(parse_selector(o.selector), o.state) for o in active(overrides, now)]
    if not rules:
        return dict(zones)
    out: dict[str, Zone] = {}
    for origin, zone in zones.items():
        dynamic: dict[tuple[str, RRType], DynamicRecord] = {}
        zone_changed = False
        for key, record in zone.dynamic.items():
            pools: dict[str, Pool] = {}
            record_changed = False
            for name, pool in record.pools.items():
                values: list[PoolValue] = []
                pool_changed = False
                for value in pool.values:
                    status = value.status
                    for selector, state in rules:
                        if selector.matches(record, pool, value):
                            status = state
                    if status is not value.status:
                        value = replace(value, status=status)
                        pool_changed = True
                    values.append(value)
                pools[name] = replace(pool, values=tuple(values)) if pool_changed else pool
                record_changed |= pool_changed
            dynamic[key] = replace(record, pools=pools) if record_changed else record
            zone_changed |= record_changed
        out[origin] = replace(zone, dynamic=dynamic) if zone_changed else zone
    return out


def next_expiry(overrides: Iterable[Override]) -> float | None:
    """When the next override runs out (wall clock), or None if none is set."""
    return min((o.expires for o in overrides), default=None)


# --- persistence -----------------------------------------------------------------------


def dumps(overrides: Iterable[Override]) -> str:
    body = {"version": STATE_VERSION, "overrides": [o.to_json() for o in overrides]}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def loads(text: str, now: float) -> list[Override]:
    """Parse a state file's text; expired overrides are dropped.  All or nothing."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OverrideError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise OverrideError(f"not a version {STATE_VERSION} dnsfail state file")
    items = data.get("overrides")
    if not isinstance(items, list):
        raise OverrideError("'overrides' is not a list")
    return active((Override.from_json(item) for item in items), now)


def load(path: Path, now: float) -> list[Override]:
    """The overrides saved at ``path`` that are still active; none if the file is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OverrideError(f"{path}: {exc.strerror or exc}") from None
    try:
        return loads(text, now)
    except OverrideError as exc:
        raise OverrideError(f"{path}: {exc}") from None


def save(path: Path, overrides: Iterable[Override]) -> None:
    """Write ``overrides`` to ``path`` atomically and durably (see the module docstring)."""
    text = dumps(overrides)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
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
