"""Immutable values that describe zones, records and health-checked records.

This module owns the vocabulary every other module speaks: record types,
rdata, RRsets, zones and the dynamic (health-checked) records of octoDNS's
``dynamic`` form.  It imports nothing but the standard library, and nothing
here changes after construction: a new configuration or a new health view is
a new object, swapped in whole (see ``state.py``).

Names are always absolute, lower case and end with a dot
(``"api.gw.example.com."``): DNS names compare case-insensitively
(RFC 4343), so folding once at load time keeps every lookup a plain dict hit.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field


class RRType(enum.IntEnum):
    """Resource record TYPE values (RFC 1035 section 3.2.2 and successors)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    HINFO = 13
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    DS = 43
    IXFR = 251
    AXFR = 252
    ANY = 255
    CAA = 257


class RRClass(enum.IntEnum):
    """CLASS values (RFC 1035 section 3.2.4); CH serves the server's identity."""

    IN = 1
    CH = 3
    ANY = 255


class Rcode(enum.IntEnum):
    """Response codes (RFC 1035 section 4.1.1, RFC 6891 for BADVERS)."""

    #: No error condition.
    NOERROR = 0
    #: The server was unable to interpret the query.
    FORMERR = 1
    #: The server could not answer because of a problem of its own.
    SERVFAIL = 2
    #: The name does not exist (RFC 2308: an authoritative "no").
    NXDOMAIN = 3
    #: The kind of query is not implemented.
    NOTIMP = 4
    #: The server refuses to answer, e.g. a name it is not authoritative for.
    REFUSED = 5
    #: EDNS version not supported (12-bit extended rcode 16, RFC 6891 section 6.1.3).
    BADVERS = 16


# --- rdata -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class A:
    address: str


@dataclass(frozen=True, slots=True)
class AAAA:
    address: str


@dataclass(frozen=True, slots=True)
class NS:
    target: str


@dataclass(frozen=True, slots=True)
class CNAME:
    target: str


@dataclass(frozen=True, slots=True)
class PTR:
    target: str


@dataclass(frozen=True, slots=True)
class MX:
    preference: int
    exchange: str


@dataclass(frozen=True, slots=True)
class TXT:
    #: Character-strings of at most 255 octets each (RFC 1035 section 3.3.14).
    strings: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SRV:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class CAA:
    flags: int
    tag: str
    value: str


@dataclass(frozen=True, slots=True)
class SOA:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True, slots=True)
class HINFO:
    cpu: bytes
    os: bytes


Rdata = A | AAAA | NS | CNAME | PTR | MX | TXT | SRV | CAA | SOA | HINFO


@dataclass(frozen=True, slots=True)
class RRset:
    """All records of one owner name and type, sharing one TTL (RFC 2181 section 5.2)."""

    name: str
    rtype: RRType
    ttl: int
    rdatas: tuple[Rdata, ...]

    def renamed(self, name: str) -> RRset:
        """The same data under another owner (wildcard synthesis, ALIAS)."""
        return RRset(name, self.rtype, self.ttl, self.rdatas)

    def with_ttl(self, ttl: int) -> RRset:
        return RRset(self.name, self.rtype, ttl, self.rdatas)


@dataclass(frozen=True, slots=True)
class Message:
    """A reply before packing: its header bits that vary and its sections of RRsets.

    ``cacheable`` is False when the answer came from a random choice, and
    ``scope`` is the ECS SCOPE PREFIX-LENGTH the answer is valid for
    (RFC 7871 section 7.2.1): 0 when it does not depend on the client's
    address within its family.
    """

    rcode: Rcode
    aa: bool
    answer: tuple[RRset, ...] = ()
    authority: tuple[RRset, ...] = ()
    additional: tuple[RRset, ...] = ()
    #: Additional records that must fit or the reply is truncated (referral glue, RFC 9471).
    glue_required: bool = False
    cacheable: bool = True
    scope: int = 0
    #: The answer may differ between clients (geo or subnet rules, nearest mode).  Not the
    #: same as ``scope > 0``: the scope is per address family.
    client_dependent: bool = False


# --- health-checked (dynamic) records -------------------------------------------


class Status(enum.Enum):
    """octoDNS's per-value administrative status: force up, force down, or obey health."""

    UP = "up"
    DOWN = "down"
    OBEY = "obey"


class ProbeProtocol(enum.Enum):
    """How a target is probed: an HTTP(S) GET or a TCP connect (octoDNS's healthcheck protocol)."""

    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TCP = "TCP"


class Quorum(enum.Enum):
    """How several instances' votes on one target combine (``dnsfail.cluster.quorum``).

    NS1's monitor policies: MAJORITY is "Quorum", ANY is "One", ALL is "All".
    """

    MAJORITY = "majority"
    ANY = "any"
    ALL = "all"


class AllDown(enum.Enum):
    """What a dynamic record answers when no pool has a healthy value.

    BACKUP serves the record's plain ``values`` (octoDNS's meaning of them);
    ALL serves every configured pool value (fail open, as Route 53 does);
    SERVFAIL tells resolvers to try elsewhere.
    """

    BACKUP = "backup"
    ALL = "all"
    SERVFAIL = "servfail"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One thing to probe.  Equal specs are probed once, however many records share them."""

    protocol: ProbeProtocol
    address: str
    port: int
    host: str = ""
    path: str = "/"
    interval: float = 5.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3
    expect_status: tuple[int, ...] = (200,)
    body_match: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    verify_tls: bool = True
    ca_file: str = ""
    #: How the instances of an NS set combine their votes on this target (one instance: moot).
    quorum: Quorum = Quorum.MAJORITY

    @property
    def label(self) -> str:
        """How logs and the control API name this target: ``192.0.2.10:443``."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class PoolValue:
    value: str
    weight: int = 1
    status: Status = Status.OBEY
    #: What to probe for this value; None when the record has no health check.
    probe: ProbeSpec | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    values: tuple[PoolValue, ...]
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """A dynamic rule: which clients it matches and the ordered pools it tries."""

    pools: tuple[str, ...]
    geos: tuple[str, ...] = ()
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: Try the pools nearest to the client first (gdnsd auto_dc_coords, PowerDNS pickclosest).
    nearest: bool = False

    @property
    def is_catch_all(self) -> bool:
        return not self.geos and not self.subnets


@dataclass(frozen=True, slots=True)
class DynamicRecord:
    """An A or AAAA record whose answer depends on health (and later, the client)."""

    name: str
    rtype: RRType
    ttl: int
    pools: Mapping[str, Pool]
    rules: tuple[Rule, ...]
    #: The record's plain ``values``: octoDNS's unmonitored last resort.
    backup: tuple[str, ...]
    all_down: AllDown = AllDown.BACKUP
    #: Lowest TTL ever answered, however soon the answer could change.
    ttl_floor: int = 5
    #: (latitude, longitude) of pools, for rules in nearest mode.
    coordinates: Mapping[str, tuple[float, float]] = field(default_factory=dict)


# --- zones ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone's data, indexed for the resolver.

    ``nodes`` maps owner name to its RRsets by type.  ``names`` holds every
    name that exists, including empty non-terminals (RFC 4592 section 2.2.2),
    so that NODATA and NXDOMAIN can be told apart with one set lookup.
    ``cuts`` are the delegation points below the apex.  A loaded zone's
    ``nodes`` and ``names`` are ``zonefile.packed.ZoneNodes``/``ZoneNames``:
    a dict plus a packed store of its plain address records.
    """

    origin: str
    soa: RRset
    nodes: Mapping[str, Mapping[RRType, RRset]]
    names: Set[str]
    cuts: frozenset[str]
    #: ALIAS target at the apex, answered as A/AAAA from in-zone data.
    alias: RRset | None = None
    dynamic: Mapping[tuple[str, RRType], DynamicRecord] = field(default_factory=dict)
    source: str = ""
    #: Number of records (rdatas) in the file, for the startup log line.
    record_count: int = 0

    @property
    def serial(self) -> int:
        soa = self.soa.rdatas[0]
        assert isinstance(soa, SOA)
        return soa.serial

    @property
    def negative_ttl(self) -> int:
        """TTL of the SOA in negative answers: min(SOA TTL, SOA MINIMUM), RFC 2308 section 3."""
        soa = self.soa.rdatas[0]
        assert isinstance(soa, SOA)
        return min(self.soa.ttl, soa.minimum)


def pool_values(
    zones: Mapping[str, Zone],
) -> Iterator[tuple[str, DynamicRecord, Pool, PoolValue]]:
    """Every value of every dynamic pool, with where it lives: (origin, record, pool, value).

    In configuration order, so that anything built from it (log contexts,
    drain matches, metrics) lists things as the operator wrote them.
    """
    for origin, zone in zones.items():
        for record in zone.dynamic.values():
            for pool in record.pools.values():
                for value in pool.values:
                    yield origin, record, pool, value


def parent_names(name: str) -> list[str]:
    """Every ancestor of ``name``, nearest first, ending with the root ``"."``."""
    out: list[str] = []
    rest = name
    while rest != ".":
        rest = rest.split(".", 1)[1] or "."
        out.append(rest)
    return out
