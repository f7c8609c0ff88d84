"""Geo steering as tables: (database, address) -> placement; (rules, client, ECS) -> (rule, scope).

The databases are real .mmdb files written by ``tests/mmdb.py`` into
``tmp_path``; the scope properties run on :class:`StaticLocator` so that
Hypothesis can try thousands of rule sets quickly, both on ``decide`` and
through the ``Handler`` with its reply caches (no sockets: see
tests/integration/test_geo.py for the same over UDP and TCP).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import dns.edns
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.model import DynamicRecord, Pool, PoolValue, RRType, Rule
from dnsfail.state import Store
from dnsfail.steering import geo
from dnsfail.steering.geo import (
    Decision,
    Locator,
    NoLocator,
    Placement,
    StaticLocator,
    decide,
    distance_km,
    order_by_distance,
)
from dnsfail.steering.mmdb import MaxMindLocator
from dnsfail.zonefile import parse_zone
from tests.mmdb import WORLD, Entry, write_city_db

IPAddress = IPv4Address | IPv6Address

# --- data ----------------------------------------------------------------------------------------

def placement(network: str, entry: Entry) -> Placement:
    continent, country, subdivision, location = entry
    lat, lon = location if location else (None, None)
    return Placement(continent, country, subdivision, lat, lon, ip_network(network))


STATIC = StaticLocator({ip_network(n): placement(n, e) for n, e in WORLD.items()})


def record(*rules: Rule) -> DynamicRecord:
    names = {p for r in rules for p in r.pools}
    pools = {n: Pool(n, (PoolValue(f"192.0.2.{i + 1}"),)) for i, n in enumerate(sorted(names))}
    return DynamicRecord("api.gw.test.", RRType.A, 60, pools, rules, backup=())


def nets(*texts: str) -> tuple[geo.IPNetwork, ...]:
    return tuple(ip_network(t) for t in texts)


#: octoDNS's order: subnet-only, subnet+geo, geo-only, catch-all.
RECORD = record(
    Rule(("office",), subnets=nets("10.1.0.0/16")),
    Rule(("apac",), geos=("AS", "OC"), subnets=nets("198.51.100.0/24", "2001:db8:f::/48")),
    Rule(("west",), geos=("NA-US-CA",)),
    Rule(("de_us",), geos=("EU-DE", "NA-US")),
    Rule(("eu",), geos=("EU",)),
    Rule(("na",)),
)


# --- placement -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "codes"),
    [
        (Placement("NA", "US", "CA", None, None, ip_network("::/0")), ("NA-US-CA", "NA-US", "NA")),
        (Placement("EU", "DE", None, None, None, ip_network("::/0")), ("EU-DE", "EU")),
        (Placement("EU", None, None, None, None, ip_network("::/0")), ("EU",)),
        (Placement(None, None, None, None, None, ip_network("::/0")), ()),
    ],
)
def test_codes_most_specific_first(p: Placement, codes: tuple[str, ...]) -> None:
    assert p.codes() == codes


# --- decide --------------------------------------------------------------------------------------

DECIDE_CASES = [
    # (why, address, ECS source prefix or None, rule index, scope)
    ("subnet-only rule", "10.1.2.3", None, 0, 16),
    ("subnet-only rule via ECS /24", "10.1.2.0", 24, 0, 16),
    # 10.0.0.0/8 holds the office's 10.1/16: the answer is 10.0.0.0's, valid for its /16 only.
    ("ECS /8 is masked to 10.0.0.0, outside 10.1/16; scope longer than SOURCE",
     "10.1.2.3", 8, 5, 16),
    ("subnet of the subnet+geo rule; no lookup needed", "198.51.100.77", None, 1, 24),
    ("geo of the subnet+geo rule (AS)", "203.0.113.9", None, 1, 24),
    ("country (EU-DE), not continent", "192.0.2.1", None, 3, 24),
    ("continent (EU)", "192.0.3.7", 24, 4, 24),
    ("subdivision (NA-US-CA) by a /15", "198.18.5.5", None, 2, 15),
    ("country NA-US catches Texas", "198.20.1.1", 24, 3, 16),
    ("IPv6 subdivision", "2001:db8:1::5", None, 2, 48),
    ("IPv6 subnet of the subnet+geo rule", "2001:db8:f:1::", 56, 1, 48),
    ("IPv6 continent", "2001:db8:2::", 56, 4, 48),
    ("continent without a country", "2001:db8:3::", 56, 4, 48),
    ("not found: catch-all, scope of the gap and the subnets", "100.64.0.1", None, 5, 2),
    ("not found next to known /24s", "192.0.4.0", 24, 5, 22),
    ("IPv4-mapped source address (no ECS)", "::ffff:192.0.2.1", None, 3, 24),
    ("ECS /0 would be address None; /1 holds rule subnets and known networks",
     "192.0.2.1", 1, 5, 2),
]


@pytest.mark.parametrize("kind", ["static", "city"])
@pytest.mark.parametrize(
    ("why", "address", "source", "index", "scope"), DECIDE_CASES, ids=[c[0] for c in DECIDE_CASES]
)
def test_decide(
    city_path: Path, kind: str, why: str, address: str, source: int | None, index: int, scope: int
) -> None:
    locator: Locator = STATIC if kind == "static" else MaxMindLocator(str(city_path))
    got = decide(RECORD, ip_address(address), source, locator)
    assert (got.index, got.scope) == (index, scope), got.why
    assert got.rule is RECORD.rules[index]


def test_decide_explains() -> None:
    got = decide(RECORD, ip_address("192.0.3.0"), 24, STATIC)
    assert got.why == (
        "client 192.0.3.0/24 (ECS) placed EU-FR by 192.0.3.0/24; rule 5 (geos EU) matched on EU; "
        "scope /24"
    )
    assert got.placement is not None
    assert got.placement.country == "FR"
    got = decide(RECORD, ip_address("10.1.0.9"), None, STATIC)
    assert got.why == (
        "client 10.1.0.9; rule 1 (subnets 10.1.0.0/16) matched on subnet 10.1.0.0/16; scope /16"
    )
    assert got.placement is None  # no geo rule was reached, so no lookup was made


def test_unknown_client_gets_catch_all_scope_zero() -> None:
    """ECS SOURCE PREFIX-LENGTH 0: "do not use my address" (RFC 7871 section 7.1.2)."""
    got = decide(RECORD, None, 0, STATIC)
    assert (got.index, got.scope, got.placement) == (5, 0, None)
    assert "client unknown (ECS source prefix 0)" in got.why


def test_no_client_address_is_not_called_ecs() -> None:
    """No address and no ECS (``dnsfail explain`` without --client): not "prefix 0"."""
    got = decide(RECORD, None, None, STATIC)
    assert (got.index, got.scope) == (5, 0)
    assert got.why.startswith("no client address; ")
    assert "ECS" not in got.why


def test_catch_all_only_record_does_not_depend_on_the_client() -> None:
    only = record(Rule(("na",)))
    for address, source in [("192.0.2.1", None), ("2001:db8:1::", 56), ("10.0.0.1", 32)]:
        got = decide(only, ip_address(address), source, STATIC)
        assert (got.index, got.scope) == (0, 0)


def test_ipv6_client_ignores_ipv4_subnets() -> None:
    v4 = record(Rule(("office",), subnets=nets("10.0.0.0/8")), Rule(("na",)))
    got = decide(v4, ip_address("2001:db8::1"), 56, NoLocator())
    assert (got.index, got.scope) == (1, 0)
    got = decide(v4, ip_address("11.0.0.1"), 24, NoLocator())
    assert (got.index, got.scope) == (1, 8)  # 11/8 shares 7 bits with 10/8


def test_no_database_means_geo_rules_never_match_and_cost_no_scope() -> None:
    got = decide(RECORD, ip_address("192.0.2.1"), 24, NoLocator())
    assert (got.index, got.scope) == (5, 6)  # only 198.51.100.0/24 (shares 5 bits) constrains


def test_locator_that_cannot_tell_its_gap_claims_the_full_address() -> None:
    class Blind:
        def locate(self, address: IPAddress) -> Placement | None:
            return None

        def gap(self, address: IPAddress) -> geo.IPNetwork | None:
            return None

    assert decide(RECORD, ip_address("100.64.0.0"), 24, Blind()).scope == 32
    assert decide(RECORD, ip_address("100.64.0.1"), None, Blind()).scope == 32


def test_nearest_places_the_client_even_for_the_catch_all() -> None:
    only = replace(
        record(Rule(("sin", "iad", "fra"), nearest=True)),
        coordinates={"fra": (50.11, 8.68), "iad": (38.95, -77.45), "sin": (1.35, 103.82)},
    )
    got = decide(only, ip_address("192.0.3.4"), 24, STATIC)
    assert (got.index, got.scope) == (0, 24)
    assert got.placement is not None
    assert got.placement.country == "FR"
    assert "placed EU-FR" in got.why
    assert got.rule.pools == ("fra", "iad", "sin")  # Paris: Frankfurt, Virginia, Singapore


# --- a source block that holds two answers ------------------------------------------------------

#: A /24 whose halves are in two countries, and two subnet rules of /25 that split another.
HALVES: dict[str, Entry] = {
    "192.0.2.0/25": ("EU", "DE", None, (52.5, 13.4)),
    "192.0.2.128/25": ("NA", "US", "CA", (37.4, -122.1)),
}
HALVES_RECORD = record(
    Rule(("low",), subnets=nets("10.1.2.0/25")),
    Rule(("high",), subnets=nets("10.1.2.128/25")),
    Rule(("eu",), geos=("EU",)),
    Rule(("na",), geos=("NA",)),
    Rule(("other",)),
)

MIXED_CASES = [
    # (why, client: ECS network or plain address, rule index, scope)
    ("a /24 over two countries: the first half's answer, scope /25", "192.0.2.0/24", 2, 25),
    ("the first half asked alone", "192.0.2.0/25", 2, 25),
    ("the second half asked alone", "192.0.2.128/25", 3, 25),
    ("a /23: decided for 192.0.2.0", "192.0.2.0/23", 2, 25),
    ("a /24 over two subnet rules: the first subnet's", "10.1.2.0/24", 0, 25),
    ("the second subnet asked alone", "10.1.2.128/25", 1, 25),
    ("a /26 inside the second subnet: scope shorter than source", "10.1.2.192/26", 1, 25),
    ("a /16 whose network 10.1.0.0 is clear of both subnets", "10.1.0.0/16", 4, 23),
    ("no ECS, source in the second half", "192.0.2.200", 3, 25),
    ("no ECS, source in the first subnet", "10.1.2.5", 0, 25),
]


@pytest.fixture(scope="module")
def halves_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("geo") / "halves.mmdb"
    write_city_db(path, HALVES)
    return path


def client_of(text: str) -> tuple[IPAddress, int | None]:
    """``10.1.2.0/24`` -> (its network address, 24); ``10.1.2.5`` -> (that address, None)."""
    if "/" not in text:
        return ip_address(text), None
    network = ip_network(text)
    return network.network_address, network.prefixlen


@pytest.mark.parametrize("kind", ["static", "city"])
@pytest.mark.parametrize(
    ("why", "client", "index", "scope"), MIXED_CASES, ids=[c[0] for c in MIXED_CASES]
)
def test_scope_of_a_mixed_source_block_says_send_more_bits(
    halves_path: Path, kind: str, why: str, client: str, index: int, scope: int
) -> None:
    """RFC 7871 section 7.2.1: a SCOPE longer than SOURCE says the source was too short to
    pick one answer; the answer is the ECS network address's, never one half's for both."""
    locator: Locator = StaticLocator(
        {ip_network(n): placement(n, e) for n, e in HALVES.items()}
    ) if kind == "static" else MaxMindLocator(str(halves_path))
    address, source = client_of(client)
    got = decide(HALVES_RECORD, address, source, locator)
    assert (got.index, got.scope) == (index, scope), got.why
    assert got.why.endswith(f"scope /{scope}")


# --- the scope property --------------------------------------------------------------------------

#: Everything the property generates lives in one small block, so rules and clients overlap.
UNIVERSES = [ip_network("10.0.0.0/16"), ip_network("2001:db8::/112")]

World = tuple[DynamicRecord, dict[geo.IPNetwork, Placement], geo.IPNetwork]

PLACES = [("EU", "DE", None), ("EU", "FR", None), ("NA", "US", "CA"), ("NA", "US", "TX"),
          ("AS", "JP", None), ("EU", None, None)]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """A record whose rules each answer their own pool, and a placement table.

    Often one network is split in two halves that get different answers (two
    countries, or two subnet rules), so that ECS sources covering both occur.
    """
    universe = draw(st.sampled_from(UNIVERSES))
    size = universe.num_addresses

    def network(longest: int = universe.max_prefixlen) -> geo.IPNetwork:
        prefix = draw(st.integers(universe.prefixlen, longest))
        start = universe.network_address + draw(st.integers(0, size - 1))
        return ip_network((start, prefix), strict=False)

    geos = ["EU", "EU-DE", "EU-FR", "NA", "NA-US", "NA-US-CA", "AS"]
    matchers: list[tuple[tuple[str, ...], tuple[geo.IPNetwork, ...]]] = []
    for _ in range(draw(st.integers(0, 4))):
        subnets = tuple(network() for _ in range(draw(st.integers(0, 3))))
        rule_geos = tuple(draw(st.lists(st.sampled_from(geos), max_size=2, unique=True)))
        if subnets or rule_geos:
            matchers.append((rule_geos, subnets))
    table = {}
    for _ in range(draw(st.integers(0, 6))):
        continent, country, subdivision = draw(st.sampled_from(PLACES))
        n = network()
        table[n] = Placement(continent, country, subdivision, None, None, n)
    split = draw(st.sampled_from(["none", "countries", "subnets"]))
    if split != "none":
        low, high = network(universe.max_prefixlen - 1).subnets()
        if split == "subnets":
            at = draw(st.integers(0, len(matchers)))
            matchers[at:at] = [((), (low,)), ((), (high,))]
        else:
            for half, place in zip((low, high), draw(st.permutations(PLACES))[:2], strict=True):
                table[half] = Placement(*place, None, None, half)
            matchers.append((("EU",), ()))
            matchers.append((("NA",), ()))
    rules = [Rule((f"r{i}",), geos=g, subnets=s) for i, (g, s) in enumerate(matchers)]
    rules.append(Rule((f"r{len(rules)}",)))
    return record(*rules), table, universe


def ecs_clients(universe: geo.IPNetwork) -> st.SearchStrategy[tuple[IPAddress, int | None]]:
    """A client address in ``universe`` and an ECS SOURCE PREFIX-LENGTH (None: no ECS)."""
    bits = universe.max_prefixlen
    return st.tuples(
        st.integers(0, universe.num_addresses - 1).map(lambda i: universe.network_address + i),
        st.one_of(st.none(), st.integers(1, bits), st.integers(universe.prefixlen, bits)),
    )


def assert_uniform(rec: DynamicRecord, locator: Locator, table: Mapping[geo.IPNetwork, object],
                   address: IPAddress, got: Decision, data: st.DataObject) -> None:
    """Every address of ``address``/scope gets ``got``'s rule, and claims that same scope
    (so a reply cached for the block is the reply any of its addresses would get)."""
    block = ip_network((address, got.scope), strict=False)
    first, last = int(block.network_address), int(block.broadcast_address)
    probes = {first, last, int(address)}
    probes.update(data.draw(st.lists(st.integers(first, last), max_size=20)))
    # Also probe every rule subnet and table network that overlaps the block.
    for n in [*table, *(s for r in rec.rules for s in r.subnets)]:
        if n.version == block.version and n.overlaps(block):
            probes.add(max(first, int(n.network_address)))
            probes.add(min(last, int(n.broadcast_address)))
    for value in probes:
        probe = type(address)(value)  # ip_address(0) would be IPv4 even in an IPv6 block
        other = decide(rec, probe, None, locator)
        assert (other.index, other.scope) == (got.index, got.scope), (probe, got.why)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(world=worlds(), data=st.data())
def test_every_address_in_the_scope_gets_the_same_rule(
    world: World, data: st.DataObject
) -> None:
    """With or without ECS, and whatever SOURCE PREFIX-LENGTH: the scope names a block in
    which every address gets the same rule (RFC 7871 section 7.3.1: resolvers reuse the
    answer for all of it), even when the source block holds more than one rule."""
    rec, table, universe = world
    locator = StaticLocator(table)
    client, source = data.draw(ecs_clients(universe))
    got = decide(rec, client, source, locator)
    address = client if source is None else ip_network((client, source), strict=False)[0]
    assert_uniform(rec, locator, table, address, got, data)


@settings(max_examples=200, deadline=None)
@given(world=worlds(), data=st.data())
def test_ecs_decides_for_its_network_address_and_never_caps_the_scope(
    world: World, data: st.DataObject
) -> None:
    """The decision for ECS is the one for the network address it names (bits beyond the
    source are zero); the scope is that address's, longer than the source when the source
    block holds several answers (section 7.2.1: "send more bits")."""
    rec, table, universe = world
    locator = StaticLocator(table)
    client = universe.network_address + data.draw(st.integers(0, universe.num_addresses - 1))
    source = data.draw(st.integers(1, client.max_prefixlen))
    masked = ip_network((client, source), strict=False).network_address
    with_ecs: Decision = decide(rec, client, source, locator)
    plain = decide(rec, masked, None, locator)
    assert (with_ecs.index, with_ecs.scope) == (plain.index, plain.scope)


# --- the same through the handler and its caches -------------------------------------------------

GEO_ZONE = """\
'':
  type: NS
  value: ns1.geo.test.
api:
  dynamic:
    pools:
      a: {values: [{status: up, value: 192.0.2.1}]}
    rules:
    - pool: a
  type: A
  values: [192.0.2.99]
"""

QNAME = "api.geo.test."


def geo_handler(rec: DynamicRecord, locator: Locator) -> Handler:
    """A handler, with empty caches, for a zone whose ``api`` A record is ``rec``."""
    zone = parse_zone(GEO_ZONE, "geo.test.yaml", "geo.test.", serial=1)
    dynamic = {(QNAME, RRType.A): replace(rec, name=QNAME)}
    store = Store({zone.origin: replace(zone, dynamic=dynamic)})
    return Handler(lambda: store.snapshot, identity="unit", locator=locator)


def geo_query(address: IPAddress, source: int | None) -> tuple[bytes, str]:
    """(query bytes, packet source): ECS ``address/source`` from a resolver on 127.0.0.1,
    or, with ``source`` None, no ECS and the packet from ``address`` itself."""
    if source is None:
        return dns.message.make_query(QNAME, "A", use_edns=0).to_wire(), str(address)
    network = ip_network((address, source), strict=False)
    option = dns.edns.ECSOption(str(network.network_address), source)
    return dns.message.make_query(QNAME, "A", use_edns=0, options=[option]).to_wire(), "127.0.0.1"


def answers(reply: bytes | None) -> tuple[list[str], tuple[int, int] | None]:
    """The addresses answered and the echoed ECS (SOURCE, SCOPE), None without ECS."""
    assert reply is not None
    message = dns.message.from_wire(reply)
    echo = next(((o.srclen, o.scopelen) for o in message.options
                 if isinstance(o, dns.edns.ECSOption)), None)
    return sorted(rd.address for rrset in message.answer for rd in rrset), echo


@pytest.mark.parametrize("kind", ["static", "city"])
def test_a_block_cached_from_a_wide_source_never_answers_a_narrower_one(
    halves_path: Path, kind: str
) -> None:
    """A reply for ECS 192.0.2.0/24 (scope /25) is kept for 192.0.2.0/25 and /24 sources
    only: the second half, asked by ECS or as a packet source, gets its own answer."""
    locator: Locator = StaticLocator(
        {ip_network(n): placement(n, e) for n, e in HALVES.items()}
    ) if kind == "static" else MaxMindLocator(str(halves_path))
    pools = {rule.pools[0]: HALVES_RECORD.pools[rule.pools[0]].values[0].value
             for rule in HALVES_RECORD.rules}
    warm = geo_handler(HALVES_RECORD, locator)
    asks = [
        ("192.0.2.0/24", "eu", (24, 25)), ("192.0.2.128/25", "na", (25, 25)),
        ("192.0.2.0/25", "eu", (25, 25)), ("192.0.2.200", "na", None),
        ("192.0.2.5", "eu", None), ("192.0.2.128/26", "na", (26, 25)),
        ("10.1.2.0/24", "low", (24, 25)), ("10.1.2.128/25", "high", (25, 25)),
        ("10.1.2.130", "high", None), ("10.1.2.0/23", "low", (23, 25)),
    ]
    for _ in range(2):  # the second round is answered from the caches
        for client, pool, echo in asks:
            data, source = geo_query(*client_of(client))
            for tcp in (False, True):
                reply = warm.handle(data, tcp, source)
                assert answers(reply) == ([pools[pool]], echo), client
                assert reply == geo_handler(HALVES_RECORD, locator).handle(data, tcp, source)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(world=worlds(), data=st.data())
def test_replies_from_warm_caches_equal_cold_ones_and_their_scope_is_uniform(
    world: World, data: st.DataObject
) -> None:
    """Random layouts with mixed blocks, random ECS networks of random source prefix and
    plain source addresses: every reply the warm handler gives (its exact, question,
    ECS-block and client-block caches) is the byte-for-byte reply of a cold handler, and
    every address in the echoed address/scope gets the same answer as a plain client."""
    rec, table, universe = world
    locator = StaticLocator(table)
    warm = geo_handler(rec, locator)
    anchors = [universe.network_address,
               *(n.network_address for n in table), *(s.network_address for r in rec.rules
                                                     for s in r.subnets)]
    near = st.tuples(st.sampled_from(anchors), st.integers(0, 3)).map(
        lambda a: ip_address(min(int(a[0]) + a[1], int(universe.broadcast_address))))
    bits = universe.max_prefixlen
    clients = st.tuples(
        st.one_of(near, ecs_clients(universe).map(lambda c: c[0])),
        st.one_of(st.none(), st.integers(0, bits), st.integers(bits - 12, bits)),
    )
    asks = data.draw(st.lists(clients, min_size=1, max_size=8))
    for address, source in asks + asks:
        query, packet_source = geo_query(address, source)
        tcp = data.draw(st.booleans())
        reply = warm.handle(query, tcp, packet_source)
        assert reply == geo_handler(rec, locator).handle(query, tcp, packet_source)
        got, echo = answers(reply)
        if echo is None or source is None or source == 0:
            continue
        network = ip_network((address, source), strict=False).network_address
        block = ip_network((network, echo[1]), strict=False)
        inside = data.draw(st.lists(st.integers(0, block.num_addresses - 1), max_size=3))
        for probe in {block[0], block[-1], *(block[i] for i in inside)}:
            query, packet_source = geo_query(probe, None)
            plain, _ = answers(geo_handler(rec, locator).handle(query, False, packet_source))
            assert plain == got, (f"{network}/{source}", echo, probe)


#: (why, rules, placement table, client, scope, another address of client/scope)
STABLE_CASES = [
    ("nested subnets of one rule: the widest decides, whichever is listed first",
     (Rule(("a",), subnets=nets("10.0.1.0/24", "10.0.0.0/16")), Rule(("b",))),
     {}, "10.0.2.0", 16, "10.0.1.9"),
    ("a geo match next to the rule's own subnet: the block stays clear of the subnet",
     (Rule(("a",), geos=("EU",), subnets=nets("10.0.0.0/24")), Rule(("b",))),
     {"10.0.0.0/16": ("EU", "DE", None, None)}, "10.0.1.0", 24, "10.0.1.200"),
]


@pytest.mark.parametrize(
    ("why", "rules", "table", "client", "scope", "other"), STABLE_CASES,
    ids=[c[0] for c in STABLE_CASES],
)
def test_every_address_of_the_block_claims_the_same_scope(
    why: str, rules: tuple[Rule, ...], table: dict[str, Entry], client: str, scope: int,
    other: str,
) -> None:
    """The handler answers a new network of a known block with the block's reply, scope
    included: that is only the reply the network would get if it claims the same scope."""
    locator = StaticLocator({ip_network(n): placement(n, e) for n, e in table.items()})
    rec = record(*rules)
    got = decide(rec, ip_address(client), None, locator)
    assert got.scope == scope, got.why
    assert ip_address(other) in ip_network((client, scope), strict=False)
    again = decide(rec, ip_address(other), None, locator)
    assert (again.index, again.scope) == (got.index, got.scope), again.why
    warm = geo_handler(rec, locator)
    for network in (client, other, client):
        query, source = geo_query(ip_address(network), 24)
        assert warm.handle(query, False, source) == geo_handler(rec, locator).handle(
            query, False, source)


# --- nearest site --------------------------------------------------------------------------------

SITES = {"sin": (1.35, 103.82), "iad": (38.95, -77.45), "fra": (50.11, 8.68)}


@pytest.mark.parametrize(
    ("where", "order"),
    [
        ((48.86, 2.35), ("fra", "iad", "sin")),  # Paris
        ((35.68, 139.69), ("sin", "fra", "iad")),  # Tokyo
        ((40.71, -74.01), ("iad", "fra", "sin")),  # New York
        ((-33.87, 151.21), ("sin", "iad", "fra")),  # Sydney
        ((50.11, 8.68), ("fra", "iad", "sin")),  # in Frankfurt itself
    ],
)
def test_order_by_distance(where: tuple[float, float], order: tuple[str, ...]) -> None:
    client = Placement("EU", "FR", None, where[0], where[1], ip_network("192.0.3.0/24"))
    assert order_by_distance(SITES, client) == order


def test_order_by_distance_without_coordinates_keeps_configured_order() -> None:
    no_location = Placement("EU", "FR", None, None, None, ip_network("192.0.3.0/24"))
    assert order_by_distance(SITES, no_location) == ("sin", "iad", "fra")
    assert order_by_distance(SITES, None) == ("sin", "iad", "fra")


def test_order_by_distance_ties_by_name() -> None:
    client = Placement("EU", "DE", None, 48.1, 11.6, ip_network("192.0.2.0/24"))
    same = {"fra-b": (50.11, 8.68), "fra-a": (50.11, 8.68), "ams": (52.37, 4.9)}
    assert order_by_distance(same, client) == ("fra-a", "fra-b", "ams")


def test_distance_km() -> None:
    assert distance_km((48.86, 2.35), (50.11, 8.68)) == pytest.approx(478, abs=5)
    assert distance_km((0.0, 0.0), (0.0, 180.0)) == pytest.approx(20015, abs=5)
    assert distance_km((10.0, 20.0), (10.0, 20.0)) == 0.0
