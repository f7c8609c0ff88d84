"""Where a client is, and which rule of a dynamic record it gets: geo and subnet steering.

This module owns client placement (a GeoIP lookup, or a static table) and
rule matching with its honest ECS scope.  It is the only module that imports
``geoip2``; it never imports asyncio or sockets, and nothing here reads the
clock.  The query path calls :func:`decide` on a reply-cache miss;
:meth:`MaxMindLocator.refresh` is the only thing that touches the disk after
start-up.

Rule semantics follow octoDNS's ``dynamic`` records (``docs/dynamic_records.rst``
and ``octodns/record/dynamic.py``): rules are tried in order and the first
match wins; a rule with neither ``geos`` nor ``subnets`` is the catch-all.
A rule with *both* matches when the client is in any of its subnets **or**
in any of its geos: octoDNS leaves this to providers, and every provider that
implements combined rules does it that way (octodns-ns1 puts the subnet
filter before the geo filters, octodns/octodns#993; octodns-powerdns emits
``netmask(...) or country(...)``, octodns/octodns-powerdns#108).

The scope that goes back in the ECS option matters as much as the match:
resolvers cache the answer for every client in ``address/scope``
(RFC 7871 section 7.3.1), so :func:`decide` only claims a prefix inside
which every address would have matched the same rule.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Protocol

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb

from dnsfail.errors import DnsfailError
from dnsfail.model import DynamicRecord, Rule

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: Lookups remembered per open database (address -> result), least recently used out first.
CACHE_LIMIT = 65_536

#: Mean Earth radius in km (IUGG), for great-circle distances.
EARTH_RADIUS_KM = 6371.0088


class GeoError(DnsfailError):
    """A GeoIP database cannot be used: missing, unreadable, corrupt or of the wrong kind."""


# --- placement -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a locator puts a client, and the network that placement holds for.

    ``network`` is the block the database answered from: every address in it
    gets this same placement, which is what bounds the ECS scope of a geo
    answer (RFC 7871 section 7.2.1).
    """

    continent: str | None
    country: str | None
    #: ISO code of the first (largest) subdivision, e.g. a US state; City databases only.
    subdivision: str | None
    latitude: float | None
    longitude: float | None
    network: IPNetwork

    def codes(self) -> tuple[str, ...]:
        """octoDNS geo codes from most to least specific: ``('NA-US-CA', 'NA-US', 'NA')``."""
        out: list[str] = []
        if self.continent and self.country:
            if self.subdivision:
                out.append(f"{self.continent}-{self.country}-{self.subdivision}")
            out.append(f"{self.continent}-{self.country}")
        if self.continent:
            out.append(self.continent)
        return tuple(out)

    @property
    def coordinates(self) -> tuple[float, float] | None:
        if self.latitude is None or self.longitude is None:
            return None
        return self.latitude, self.longitude

    def describe(self) -> str:
        """``EU-DE by 192.0.2.0/24``, for logs and explanations."""
        codes = self.codes()
        where = codes[0] if codes else f"country {self.country}" if self.country else "nowhere"
        return f"{where} by {self.network}"


class Locator(Protocol):
    """What :func:`decide` needs to know about a client's location.

    ``locate`` places an address, or returns None when the source knows
    nothing about it.  ``gap`` is then asked how far that ignorance extends:
    the largest network around the address that the source also knows
    nothing about, so that a "not placed" answer can carry an honest scope
    too.  ``gap`` may return None when it cannot tell; :func:`decide` then
    claims no more than the full address (in practice: the ECS SOURCE
    PREFIX-LENGTH).
    """

    def locate(self, address: IPAddress) -> Placement | None: ...

    def gap(self, address: IPAddress) -> IPNetwork | None: ...


class NoLocator:
    """No GeoIP source configured: nobody is placed, and that holds for the whole address space."""

    def locate(self, address: IPAddress) -> Placement | None:
        return None

    def gap(self, address: IPAddress) -> IPNetwork | None:
        return ip_network((address, 0), strict=False)


class StaticLocator:
    """Placements from a table of networks, for tests and for operator "nets" files.

    The most specific network containing the address wins (longest prefix
    match).  The returned placement's ``network`` is the block the table
    really answers for: the winning network minus any more specific entry, so
    ``{10.0.0.0/8: A, 10.1.0.0/16: B}`` places 10.2.3.4 as A by 10.2.0.0/15,
    not by 10.0.0.0/8 (which also holds B).  Lookups are a linear scan, fine
    for hand-written tables of a few hundred entries.
    """

    def __init__(self, table: Mapping[IPNetwork, Placement]) -> None:
        self._table = dict(table)

    def _containing(self, address: IPAddress) -> IPNetwork | None:
        best: IPNetwork | None = None
        for network in self._table:
            if (network.version == address.version and address in network
                    and (best is None or network.prefixlen > best.prefixlen)):
                best = network
        return best

    def locate(self, address: IPAddress) -> Placement | None:
        best = self._containing(address)
        if best is None:
            return None
        prefix = _block_prefix(address, inside=(best,), outside=self._table)
        return replace(self._table[best], network=ip_network((address, prefix), strict=False))

    def gap(self, address: IPAddress) -> IPNetwork | None:
        if self._containing(address) is not None:
            return None
        prefix = _block_prefix(address, inside=(), outside=self._table)
        return ip_network((address, prefix), strict=False)


# --- MaxMind databases ---------------------------------------------------------------------------

#: Result of one database lookup: the placement, or the gap around an unplaced address.
_Lookup = tuple[Placement | None, IPNetwork | None]


@dataclass(frozen=True, slots=True)
class _Opened:
    """One generation of an open database; replaced whole by :meth:`MaxMindLocator.refresh`."""

    reader: geoip2.database.Reader
    #: Which geoip2 method reads it: "city", "country" or "enterprise".
    method: str
    database_type: str
    ip_version: int
    #: (mtime_ns, size, inode) of the file this generation was read from.
    signature: tuple[int, int, int]
    cache: OrderedDict[IPAddress, _Lookup]


#: Addresses looked up once when a file is opened, to catch a broken search tree early.
_PROBES: tuple[IPAddress, ...] = (
    IPv4Address("1.1.1.1"), IPv4Address("8.8.8.8"), IPv6Address("2001:4860:4860::8888"),
)

#: What a lookup in a damaged file raises (a bad tree, or a record geoip2 cannot model).
_LOOKUP_ERRORS = (maxminddb.InvalidDatabaseError, ValueError, TypeError, KeyError, AttributeError)


def _signature(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _method_for(database_type: str) -> str | None:
    """The geoip2 reader method for a database type, None if it carries no locations.

    geoip2 itself matches by substring ("City" in "GeoLite2-City", in
    "DBIP-City-Lite"), and so do we; Enterprise has City's shape but its own
    method.
    """
    if "Enterprise" in database_type:
        return "enterprise"
    if "City" in database_type:
        return "city"
    if "Country" in database_type:
        return "country"
    return None


def _open(path: str) -> _Opened:
    """Open a private copy of ``path`` and check that it can answer lookups.

    The copy is why an operator may overwrite the file in place (``cp new
    old``): the reader memory-maps its file, and truncating a mapped file
    under a running process kills it with SIGBUS.  The copy is unlinked once
    open, so it disappears with the reader.  A file that opens but whose
    search tree is broken fails the probe lookups here rather than at query
    time.
    """
    try:
        signature = _signature(path)
        fd, copy = tempfile.mkstemp(prefix="dnsfail-geoip-", suffix=".mmdb")
        try:
            with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
                shutil.copyfileobj(src, dst)
            reader = geoip2.database.Reader(copy, locales=["en"])
        finally:
            os.unlink(copy)
    except OSError as exc:
        raise GeoError(f"{path}: cannot read GeoIP database: {exc.strerror or exc}") from exc
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoError(f"{path}: not a valid MaxMind DB (.mmdb) file: {exc}") from exc
    meta = reader.metadata()
    method = _method_for(meta.database_type)
    if method is None:
        reader.close()
        raise GeoError(
            f"{path}: database type {meta.database_type!r} has no locations "
            "(need a Country or City database, e.g. GeoLite2-City or DBIP-Country-Lite)"
        )
    opened = _Opened(reader, method, meta.database_type, meta.ip_version, signature, OrderedDict())
    for probe in _PROBES:
        try:
            _read(opened, probe)
        except _LOOKUP_ERRORS as exc:
            reader.close()
            raise GeoError(f"{path}: corrupt MaxMind DB: {exc}") from exc
    return opened


def _read(opened: _Opened, address: IPAddress) -> _Lookup:
    """One uncached lookup; database errors propagate (the caller decides what they mean)."""
    if address.version == 6 and opened.ip_version == 4:
        # An IPv4-only database knows no IPv6 address at all.
        return None, ip_network((address, 0), strict=False)
    reader = opened.reader
    try:
        model: geoip2.models.Country
        if opened.method == "city":
            model = reader.city(address)
        elif opened.method == "enterprise":
            model = reader.enterprise(address)
        else:
            model = reader.country(address)
    except geoip2.errors.AddressNotFoundError as exc:
        gap = exc.network
        if gap is None or gap.version != address.version:
            return None, None
        return None, gap
    network = model.traits.network
    if network is None or network.version != address.version:
        network = ip_network(address)  # cannot happen with geoip2 >= 4.8; claim only the address
    subdivision: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    if isinstance(model, geoip2.models.City):
        if model.subdivisions:
            subdivision = model.subdivisions[0].iso_code
        latitude, longitude = model.location.latitude, model.location.longitude
    placement = Placement(
        continent=model.continent.code,
        country=model.country.iso_code,
        subdivision=subdivision,
        latitude=latitude,
        longitude=longitude,
        network=network,
    )
    return placement, None


class MaxMindLocator:
    """Placements from a MaxMind DB file: GeoIP2/GeoLite2 or DB-IP lite, Country or City.

    Only ``country`` (where the client is) is used, never
    ``registered_country``: an anycast block registered in one country says
    nothing about where its users sit, and the catch-all is a better answer
    than a wrong continent.  Lookups are remembered per address (bounded
    LRU, emptied on reload), since resolvers send the same ECS prefixes over
    and over.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened = _open(path)
        #: Signature of a file that failed to load, so a broken file is reported once.
        self._failed: tuple[int, int, int] | None = None

    @property
    def database_type(self) -> str:
        return self._opened.database_type

    def locate(self, address: IPAddress) -> Placement | None:
        return self._lookup(address)[0]

    def gap(self, address: IPAddress) -> IPNetwork | None:
        return self._lookup(address)[1]

    def _lookup(self, address: IPAddress) -> _Lookup:
        opened = self._opened  # one generation for the whole lookup, even if refresh() swaps
        cache = opened.cache
        hit = cache.get(address)
        if hit is not None:
            cache.move_to_end(address)
            return hit
        try:
            result = _read(opened, address)
        except _LOOKUP_ERRORS as exc:
            # Never fail a query over the database: treat the client as unplaced, scope unknown.
            log.error("GeoIP lookup of %s in %s failed: %s", address, self.path, exc)
            return None, None
        cache[address] = result
        if len(cache) > CACHE_LIMIT:
            cache.popitem(last=False)
        return result

    def refresh(self) -> bool:
        """Reload the database if its file changed (mtime, size or inode); True if reloaded.

        A new file that cannot be used is logged once and the loaded data
        keeps serving: a bad download must not turn geo steering off.  Safe to
        call from a worker thread (``asyncio.to_thread``): the swap is one
        attribute assignment, and the old reader is closed by garbage
        collection once no lookup still holds it.
        """
        try:
            signature = _signature(self.path)
        except OSError as exc:
            marker = (-1, -1, -1)
            if self._failed != marker:
                log.error("GeoIP database %s: %s; keeping the loaded copy", self.path,
                          exc.strerror or exc)
                self._failed = marker
            return False
        if signature in (self._opened.signature, self._failed):
            return False
        try:
            opened = _open(self.path)
        except GeoError as exc:
            log.error("%s; keeping the loaded %s", exc, self._opened.database_type)
            self._failed = signature
            return False
        self._opened = opened
        self._failed = None
        log.info("GeoIP database %s reloaded (%s)", self.path, opened.database_type)
        return True

    def close(self) -> None:
        self._opened.reader.close()


# --- rule matching -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """Which rule answers a client, for how wide a block, and why."""

    rule: Rule
    #: Position of ``rule`` in ``record.rules`` (0-based; ``why`` counts from 1 like octoDNS).
    index: int
    #: ECS SCOPE PREFIX-LENGTH (RFC 7871 section 7.2.1): every address in client/scope
    #: gets this same rule.  0 when the rule does not depend on the client.
    scope: int
    #: The client's placement, when a lookup was needed to decide (else None).
    placement: Placement | None
    why: str


def _shared_bits(a: int, b: int, bits: int) -> int:
    """How many leading bits two addresses of ``bits`` bits have in common."""
    return bits - (a ^ b).bit_length()


def _block_prefix(address: IPAddress, inside: Iterable[IPNetwork],
                  outside: Iterable[IPNetwork]) -> int:
    """Shortest prefix P such that ``address/P`` lies in every ``inside`` network and
    overlaps no ``outside`` network that does not contain the address.

    For a network S not containing the address, ``address/P`` and S are
    disjoint exactly when P exceeds the number of leading bits the address
    shares with S's network address (S cannot contain the block, since it
    does not contain the address).  Networks of the other family never
    overlap, so they are skipped.
    """
    bits = address.max_prefixlen
    a = int(address)
    need = 0
    for network in inside:
        need = max(need, network.prefixlen)
    for network in outside:
        if network.version != address.version or address in network:
            continue
        need = max(need, _shared_bits(a, int(network.network_address), bits) + 1)
    return need


def _geo_match(geos: Iterable[str], placement: Placement) -> str | None:
    """The first of a rule's geo codes that covers the placement, if any.

    ``EU`` compares the continent; ``EU-DE`` the country and ``NA-US-CA`` the
    country and first subdivision, *without* the continent, as providers do
    (octodns-route53 writes ``NA-US`` as ``GeoLocation: {CountryCode: US}``):
    a database that files a country under another continent than octoDNS's
    table (Turkey, Cyprus, Russia...) still matches its country rules.
    """
    for geo in geos:
        parts = geo.split("-")
        if len(parts) == 1:
            hit = placement.continent == parts[0]
        elif len(parts) == 2:
            hit = placement.country == parts[1]
        else:
            hit = placement.country == parts[1] and placement.subdivision == parts[2]
        if hit:
            return geo
    return None


def describe_rule(index: int, rule: Rule) -> str:
    """``rule 2 (geos EU, AF; subnets 10.0.0.0/8)``, numbered from 1 like octoDNS's messages."""
    if rule.is_catch_all:
        return f"rule {index + 1} (catch-all)"
    parts = []
    if rule.geos:
        parts.append("geos " + ", ".join(rule.geos))
    if rule.subnets:
        parts.append("subnets " + ", ".join(str(s) for s in rule.subnets))
    return f"rule {index + 1} ({'; '.join(parts)})"


def _fallback(record: DynamicRecord) -> int:
    """The rule for a client nothing else matches: the catch-all, else the last rule."""
    for index, rule in enumerate(record.rules):
        if rule.is_catch_all:
            return index
    return len(record.rules) - 1


def decide(
    record: DynamicRecord,
    address: IPAddress | None,
    source_prefix: int | None,
    locator: Locator,
) -> Decision:
    """Pick the first rule of ``record`` that matches the client, with an honest ECS scope.

    ``address`` is where the client is: the ECS ADDRESS when the query had an
    ECS option, else the packet's source.  ``source_prefix`` is the ECS
    SOURCE PREFIX-LENGTH, None without ECS.  An ECS client is decided as its
    network address, the bits past ``source_prefix`` zero (RFC 7871 section
    6), exactly as a plain client of that address would be.  ``address=None``
    means unknown (ECS SOURCE PREFIX-LENGTH 0: "do not use my address",
    section 7.1.2): the catch-all answers, scope 0.  When the matched rule is
    ``nearest``, its pools are ordered by :func:`order_by_distance`: the
    client is then placed even if no geo rule was reached, and the scope
    covers that placement.

    Scope (section 7.2.1; resolvers reuse the answer for the whole
    ``address/scope`` block, section 7.3.1): the shortest prefix P such that
    ``address/P``

    * lies inside the subnet that matched, if a subnet matched (the widest
      subnet of the rule holding the address, not the first one listed);
    * overlaps no subnet of a rule tried before the match, nor a subnet of
      the matched rule when it matched on a geo (a subnet S not holding the
      client needs P > the leading bits the client shares with S);
    * lies inside the placement's network (or the database's gap around an
      unplaced client) once any geo rule was tried, so every address in the
      block is placed alike; an unplaced client in a database that cannot
      say how far its gap goes claims the full address length.

    Every address B of ``address/P`` then takes the same path through the
    rules and gets this same P (given a locator whose networks and gaps are
    blocks, as a MaxMind tree's are), so a reply kept for the block is the
    very reply B would get: the handler's block caches rely on it.

    The scope is *not* capped at SOURCE PREFIX-LENGTH.  When the source block
    holds more than one answer (a /24 whose halves are in two countries, or
    two subnet rules of /25), the answer is the network address's and the
    scope is longer than the source: section 7.2.1's "the provided prefix
    length was not specific enough", which tells the resolver to send more
    bits for this network, and makes it keep this answer only for queries of
    exactly this SOURCE PREFIX-LENGTH (section 7.3.1) rather than hand one
    half's answer to the whole /24.  We learn no more bits than were sent:
    whether to send them is the resolver's privacy choice (section 7.2.1).  A
    record whose rules are all catch-alls (and not ``nearest``) answers scope
    0: nothing depends on the client.
    """
    rules = record.rules
    if address is None:
        index = _fallback(record)
        return Decision(rules[index], index, 0, None,
                        f"client unknown (ECS source prefix 0); "
                        f"{describe_rule(index, rules[index])} matched; scope /0")
    if source_prefix is not None:
        source_prefix = max(0, min(source_prefix, address.max_prefixlen))
        address = ip_network((address, source_prefix), strict=False).network_address
        client = f"client {address}/{source_prefix} (ECS)"
    else:
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
        client = f"client {address}"

    nearest = any(rule.nearest for rule in rules)
    if not nearest and all(rule.is_catch_all for rule in rules):
        index = _fallback(record)
        return Decision(rules[index], index, 0, None,
                        f"{client}; {describe_rule(index, rules[index])} matched "
                        "(no rule depends on the client); scope /0")

    where_client: IPAddress = address  # a plain name, so the closure below knows it is set
    bits = address.max_prefixlen
    a = int(address)
    need = 0
    located = False
    placement: Placement | None = None
    where = ""

    def place() -> None:
        nonlocal located, placement, need, where
        located = True
        placement = locator.locate(where_client)
        if placement is not None:
            need = max(need, placement.network.prefixlen)
            where = f" placed {placement.describe()}"
            return
        gap = locator.gap(where_client)
        need = max(need, bits if gap is None else gap.prefixlen)
        where = f" not placed ({'nothing known in ' + str(gap) if gap else 'gap unknown'})"

    matched: int | None = None
    how = ""
    for index, rule in enumerate(rules):
        if rule.is_catch_all:
            matched = index
            break
        # The widest holding subnet: it holds every other subnet of the rule that holds
        # the address, so each address of the block finds this same one.
        holding = min((s for s in rule.subnets if s.version == address.version and address in s),
                      key=lambda s: s.prefixlen, default=None)
        if holding is not None:
            need = max(need, holding.prefixlen)
            matched, how = index, f" on subnet {holding}"
            break
        # Not in this rule's subnets: nor may any address of the answered block be, so
        # that all of it takes the same path (a geo match here included).
        for s in rule.subnets:
            if s.version == address.version:
                need = max(need, _shared_bits(a, int(s.network_address), bits) + 1)
        if rule.geos:
            if not located:
                place()
            geo = _geo_match(rule.geos, placement) if placement is not None else None
            if geo is not None:
                matched, how = index, f" on {geo}"
                break
    if matched is None:
        matched = _fallback(record)
        how = " (nothing matched)"
    rule = rules[matched]
    if rule.nearest and not located:
        place()
    scope = need  # may exceed source_prefix: "send more bits" (see above)
    why = (f"{client}{where}; {describe_rule(matched, rule)} matched{how}; "
           f"scope /{scope}")
    if rule.nearest:
        ordered = order_by_distance({p: record.coordinates[p] for p in rule.pools}, placement)
        rule = replace(rule, pools=ordered)
        why += f"; nearest first: {', '.join(ordered)}"
    return Decision(rule, matched, scope, placement, why)


# --- nearest site --------------------------------------------------------------------------------


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points in degrees (haversine)."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def order_by_distance(pools: Mapping[str, tuple[float, float]],
                      placement: Placement | None) -> tuple[str, ...]:
    """Pool names nearest first to the client, ties by name (gdnsd ``auto_dc_coords``,
    PowerDNS ``pickclosest``).

    ``pools`` maps pool name to its (latitude, longitude).  Without client
    coordinates (no placement, a Country database, or a City record without
    a location) the mapping's own order is returned unchanged, so passing the
    rule's pools in configured order makes "unknown location" mean "the
    configured failover order".  Distances are rounded to whole kilometres
    before comparing, so ties between co-located pools go by name.
    """
    origin = placement.coordinates if placement is not None else None
    if origin is None:
        return tuple(pools)
    return tuple(sorted(pools, key=lambda name: (round(distance_km(origin, pools[name])), name)))
