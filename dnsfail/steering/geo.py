"""Where a client is, and which rule of a dynamic record it gets: geo and subnet steering.

This module owns the decision: the ``Locator`` protocol a placement source
implements (``NoLocator``, ``StaticLocator`` here; MaxMind databases in
``steering.mmdb``, the one importer of geoip2), rule matching with its honest
ECS scope (:func:`decide`) and nearest-site ordering.  Pure: no geoip2, no
I/O, no clock.  The query path calls :func:`decide` on a reply-cache miss.

Rule semantics follow octoDNS's ``dynamic`` records (github.com/octodns/octodns:
``docs/dynamic_records.rst`` and ``octodns/record/dynamic.py``): rules are tried
in order and the first match wins; a rule with neither ``geos`` nor ``subnets`` is the catch-all.
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

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Protocol

from dnsfail.model import DynamicRecord, Rule

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: Mean Earth radius in km (IUGG), for great-circle distances.
EARTH_RADIUS_KM = 6371.0088


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
        return Decision(rules[index], index, 0, None, f"{_unknown(source_prefix)}; "
                        f"{describe_rule(index, rules[index])} matched; scope /0")
    address, client = _as_decided(address, source_prefix)
    nearest = any(rule.nearest for rule in rules)
    if not nearest and all(rule.is_catch_all for rule in rules):
        index = _fallback(record)
        return Decision(rules[index], index, 0, None,
                        f"{client}; {describe_rule(index, rules[index])} matched "
                        "(no rule depends on the client); scope /0")
    block = _Block(address)
    matched, how = _first_match(rules, block, locator)
    if matched is None:
        matched = _fallback(record)
        how = " (nothing matched)"
    rule = rules[matched]
    if rule.nearest and not block.located:
        block.place(locator)
    scope = block.need  # may exceed source_prefix: "send more bits" (see above)
    why = (f"{client}{block.where}; {describe_rule(matched, rule)} matched{how}; "
           f"scope /{scope}")
    if rule.nearest:
        ordered = order_by_distance({p: record.coordinates[p] for p in rule.pools},
                                    block.placement)
        rule = replace(rule, pools=ordered)
        why += f"; nearest first: {', '.join(ordered)}"
    return Decision(rule, matched, scope, block.placement, why)


def _unknown(source_prefix: int | None) -> str:
    """How ``why`` names a client without an address: ECS prefix 0, or none given at all."""
    return "no client address" if source_prefix is None else "client unknown (ECS source prefix 0)"


def _as_decided(address: IPAddress, source_prefix: int | None) -> tuple[IPAddress, str]:
    """The address a client is decided as, and how ``why`` names the client.

    An ECS client is its network address, the bits past ``source_prefix``
    zero (RFC 7871 section 6); a plain one its source, an IPv4-mapped IPv6
    address (a dual-stack socket's view of an IPv4 client) as IPv4.
    """
    if source_prefix is not None:
        source_prefix = max(0, min(source_prefix, address.max_prefixlen))
        address = ip_network((address, source_prefix), strict=False).network_address
        return address, f"client {address}/{source_prefix} (ECS)"
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, f"client {address}"


class _Block:
    """The block being answered for, as the rules narrow it: ``need`` is the scope so far.

    ``place`` looks the client up at most once (when a geo rule is reached,
    or the matched rule is ``nearest``), and narrows the block to the
    placement's network, or to the gap around an unplaced client.
    """

    __slots__ = ("address", "located", "need", "placement", "where")

    def __init__(self, address: IPAddress) -> None:
        self.address = address
        self.need = 0
        self.located = False
        self.placement: Placement | None = None
        #: How the client was placed, for ``why``; empty until placed.
        self.where = ""

    def place(self, locator: Locator) -> None:
        self.located = True
        self.placement = locator.locate(self.address)
        if self.placement is not None:
            self.need = max(self.need, self.placement.network.prefixlen)
            self.where = f" placed {self.placement.describe()}"
            return
        gap = locator.gap(self.address)
        self.need = max(self.need, self.address.max_prefixlen if gap is None else gap.prefixlen)
        self.where = f" not placed ({'nothing known in ' + str(gap) if gap else 'gap unknown'})"

    def avoid(self, network: IPNetwork) -> None:
        """Narrow the block until it no longer overlaps ``network`` (which does not hold the
        client): P must exceed the leading bits the two share."""
        bits = self.address.max_prefixlen
        shared = _shared_bits(int(self.address), int(network.network_address), bits)
        self.need = max(self.need, shared + 1)


def _first_match(rules: tuple[Rule, ...], block: _Block, locator: Locator
                 ) -> tuple[int | None, str]:
    """The index of the first rule that matches ``block.address`` and how it matched (for
    ``why``), narrowing ``block`` so that every address in it takes the same path."""
    address = block.address
    for index, rule in enumerate(rules):
        if rule.is_catch_all:
            return index, ""
        # The widest holding subnet: it holds every other subnet of the rule that holds
        # the address, so each address of the block finds this same one.
        holding = min((s for s in rule.subnets if s.version == address.version and address in s),
                      key=lambda s: s.prefixlen, default=None)
        if holding is not None:
            block.need = max(block.need, holding.prefixlen)
            return index, f" on subnet {holding}"
        # Not in this rule's subnets: nor may any address of the answered block be, so
        # that all of it takes the same path (a geo match here included).
        for s in rule.subnets:
            if s.version == address.version:
                block.avoid(s)
        if rule.geos:
            if not block.located:
                block.place(locator)
            placement = block.placement
            geo = _geo_match(rule.geos, placement) if placement is not None else None
            if geo is not None:
                return index, f" on {geo}"
    return None, ""


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
