"""octoDNS dynamic records: pools, rules, health checks, coordinates and fallbacks.

Owns the ``dynamic`` block of an A or AAAA record validated as octoDNS does
(pools and their values, rules and their order, geo codes and subnets,
fallback chains), the health-check options (``octodns.healthcheck`` and
dnsfail's ``healthcheck`` knobs), nearest-pool coordinates, the ordered
pools of a rule, and the dual-stack shorthand (``ipv6``).  ``dynamic_records``
builds every dynamic record of a zone.

Imports ``model``, ``located``, ``rdata`` and ``records``.  It must not import
``rules``, ``soa``, ``load`` or a reader.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from dnsfail.model import (
    AAAA,
    A,
    AllDown,
    DynamicRecord,
    Pool,
    PoolValue,
    ProbeProtocol,
    ProbeSpec,
    Quorum,
    RRType,
    Rule,
    Status,
)
from dnsfail.zonefile.located import Problems, Scope, YEntry, YMap, YNode, YScalar, YSeq
from dnsfail.zonefile.rdata import parse_address
from dnsfail.zonefile.records import MAX_TTL, NO_OPTIONS, Options, Record

_POOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")


#: Continent, continent-country, continent-country-subdivision (octoDNS ``GeoCodes``).
_GEO_RE = re.compile(r"^(AF|AN|AS|EU|NA|OC|SA)(-[A-Z]{2}(-[A-Z0-9]{1,3})?)?$")


#: octoDNS's health-check defaults (HTTPS to port 443, path /_dns) with dnsfail's timing;
#: a record's check starts from this template, with the address filled in per value.
_OCTODNS_CHECK = ProbeSpec(ProbeProtocol.HTTPS, "", 443, path="/_dns")


def _probe_for(check: ProbeSpec, address: str) -> ProbeSpec:
    """The probe for one address; TCP drops the HTTP knobs so equal TCP probes dedupe."""
    if check.protocol is ProbeProtocol.TCP:
        return ProbeSpec(
            check.protocol, address, check.port, interval=check.interval,
            timeout=check.timeout, rise=check.rise, fall=check.fall, quorum=check.quorum,
        )  # fmt: skip
    return replace(check, address=address)


_OCTODNS_HEALTH_KEYS = frozenset({"host", "path", "port", "protocol"})
_DNSFAIL_HEALTH_KEYS = frozenset(
    {"interval", "timeout", "rise", "fall", "expect_status", "body_match", "headers",
     "verify_tls", "ca_file", "probe_addresses", "quorum"}
)  # fmt: skip


def _octodns_health(scope: Scope, node: YMap | None, health: ProbeSpec) -> ProbeSpec:
    """octoDNS's ``octodns.healthcheck``: protocol, port, host and path."""
    if node is None or scope.mapping(node, "octodns.healthcheck", _OCTODNS_HEALTH_KEYS) is None:
        return health
    choices = [p.value for p in ProbeProtocol]
    if (n := node.get("protocol")) and (
        protocol := scope.choice(n, "healthcheck protocol", choices)
    ):
        health = replace(health, protocol=ProbeProtocol(protocol))
    if (n := node.get("port")) and (port := scope.integer(n, "healthcheck port", 1, 65535)):
        health = replace(health, port=port)
    if (n := node.get("host")) and (host := scope.string(n, "healthcheck host")):
        health = replace(health, host=host)
    if (n := node.get("path")) and (path := scope.string(n, "healthcheck path")) is not None:
        if path.startswith("/"):
            health = replace(health, path=path)
        else:
            scope.error(n.line, f"healthcheck path {path!r} must start with '/'")
    return health


def _dnsfail_timing(scope: Scope, node: YMap, health: ProbeSpec) -> ProbeSpec:
    """How often to probe and the anti-flap thresholds (rise successes up, fall failures down)."""
    if (n := node.get("interval")) and (interval := scope.number(n, "interval", 0.5, 3600)):
        health = replace(health, interval=interval)
    if (n := node.get("timeout")) and (timeout := scope.number(n, "timeout", 0.001, 3600)):
        health = replace(health, timeout=timeout)
    if (n := node.get("rise")) and (rise := scope.integer(n, "rise", 1, 100)):
        health = replace(health, rise=rise)
    if (n := node.get("fall")) and (fall := scope.integer(n, "fall", 1, 100)):
        health = replace(health, fall=fall)
    if (n := node.get("quorum")) and (
        quorum := scope.choice(n, "quorum", [q.value for q in Quorum])
    ):
        health = replace(health, quorum=Quorum(quorum))
    if health.timeout >= health.interval:
        line = node.key_line("timeout" if "timeout" in node.entries else "interval")
        scope.error(
            line, f"timeout {health.timeout:g} must be shorter than interval {health.interval:g}"
        )
    return health


def _dnsfail_http(scope: Scope, node: YMap, health: ProbeSpec) -> ProbeSpec:
    """What counts as a healthy HTTP(S) answer, and how TLS is verified."""
    if (n := node.get("expect_status")) is not None:
        items = n.items if isinstance(n, YSeq) else (n,)
        codes = [scope.integer(item, "expect_status", 100, 599) for item in items]
        if not items:
            scope.error(n.line, "expect_status is empty")
        health = replace(health, expect_status=tuple(c for c in codes if c is not None))
    if (n := node.get("body_match")) and (body := scope.string(n, "body_match")) is not None:
        health = replace(health, body_match=body)
    if (n := node.get("verify_tls")) and (verify := scope.flag(n, "verify_tls")) is not None:
        health = replace(health, verify_tls=verify)
    if (n := node.get("ca_file")) and (ca_file := scope.string(n, "ca_file")) is not None:
        health = replace(health, ca_file=ca_file)
    if (n := node.get("headers")) and (headers := scope.mapping(n, "headers")):
        pairs = [(k, scope.string(e.value, f"header {k!r}")) for k, e in headers.entries.items()]
        health = replace(health, headers=tuple((k, v) for k, v in pairs if v is not None))
    return health


def _health(
    scope: Scope, record: Record, options: Options
) -> tuple[ProbeSpec, dict[str, tuple[int, str]]]:
    """The record's health check, and ``probe_addresses`` (value -> (line, probed address)).

    octoDNS's defaults (HTTPS, port 443, path ``/_dns``, host = the record's
    name) come first, then ``octodns.healthcheck``, then dnsfail's knobs.
    """
    start = replace(_OCTODNS_CHECK, host=record.name.rstrip("."))
    health = _octodns_health(scope, options.healthcheck, start)
    knobs = options.dnsfail_node("healthcheck")
    if knobs is None:
        return health, {}
    knob_map = scope.mapping(knobs, "octodns.dnsfail.healthcheck", _DNSFAIL_HEALTH_KEYS)
    if knob_map is None:
        return health, {}
    health = _dnsfail_http(scope, knob_map, _dnsfail_timing(scope, knob_map, health))
    addresses = knob_map.get("probe_addresses")
    return health, _probe_addresses(scope, addresses) if addresses is not None else {}


def _probe_addresses(scope: Scope, node: YNode) -> dict[str, tuple[int, str]]:
    """dnsfail extension: probe another address than the one answered (e.g. a backend)."""
    out: dict[str, tuple[int, str]] = {}
    table = scope.mapping(node, "probe_addresses")
    for key, entry in table.entries.items() if table else ():
        try:
            value = str(ipaddress.ip_address(key))
        except ValueError:
            scope.error(entry.key_line, f"probe_addresses key {key!r} is not an IP address")
            continue
        text = scope.string(entry.value, f"probe address for {key!r}")
        try:
            out[value] = (entry.key_line, str(ipaddress.ip_address(text or "")))
        except ValueError:
            if text is not None:
                scope.error(entry.value.line, f"{text!r} is not a valid IP address")
    return out


@dataclass(frozen=True, slots=True)
class _PoolDraft:
    pool: Pool
    line: int
    fallback_line: int


def _pool_value(
    scope: Scope, node: YNode, where: str, version: int, health: ProbeSpec,
    addresses: Mapping[str, tuple[int, str]],
) -> PoolValue | None:  # fmt: skip
    item = scope.mapping(node, where, frozenset({"value", "weight", "status"}))
    if item is None:
        return None
    value_node = item.get("value")
    if value_node is None:
        scope.error(item.line, f"missing 'value' in {where}")
        return None
    address = parse_address(scope, value_node, version, f"{where} value")
    weight_node, status_node = item.get("weight"), item.get("status")
    weight = scope.integer(weight_node, f"{where} weight", 1, 100) if weight_node else 1
    status = (
        scope.choice(status_node, f"{where} status", [s.value for s in Status])
        if status_node
        else "obey"
    )
    if address is None or weight is None or status is None:
        return None
    probed = addresses.get(address, (0, address))[1]
    return PoolValue(address, weight, Status(status), _probe_for(health, probed))


def _pool(
    scope: Scope, name: str, entry: YEntry, version: int, health: ProbeSpec,
    addresses: Mapping[str, tuple[int, str]],
) -> _PoolDraft | None:  # fmt: skip
    if not _POOL_NAME_RE.match(name):
        scope.error(entry.key_line, f"invalid pool name {name!r}")
    body = scope.mapping(entry.value, f"pool {name!r}", frozenset({"fallback", "values"}))
    if body is None:
        return None
    values_node = body.get("values")
    if values_node is None:
        scope.error(entry.key_line, f"pool {name!r} is missing 'values'")
        return None
    values: list[PoolValue] = []
    items = scope.sequence(values_node, f"pool {name!r} values") or ()
    for number, node in enumerate(items, 1):
        value = _pool_value(
            scope, node, f"pool {name!r} value {number}", version, health, addresses
        )
        if value is not None and any(v.value == value.value for v in values):
            scope.error(node.line, f"duplicate value {value.value!r} in pool {name!r}")
        elif value is not None:
            values.append(value)
    if len(items) == 1 and values and values[0].weight != 1:
        scope.error(entry.key_line, f"pool {name!r} has a single value with weight != 1 (octoDNS)")
    fallback_node = body.get("fallback")
    fallback = None
    if fallback_node is not None and not (
        isinstance(fallback_node, YScalar) and fallback_node.value is None
    ):
        fallback = scope.string(fallback_node, f"pool {name!r} fallback")
    return _PoolDraft(
        Pool(name, tuple(values), fallback), entry.key_line, body.key_line("fallback")
    )


def _check_fallbacks(
    scope: Scope, drafts: Mapping[str, _PoolDraft], defined: frozenset[str]
) -> set[str]:
    """Fallbacks must name pools and never loop; returns the pools used as a fallback."""
    used: set[str] = set()
    reported: set[frozenset[str]] = set()
    for name, draft in drafts.items():
        fallback = draft.pool.fallback
        if fallback is None:
            continue
        if fallback not in defined:
            scope.error(draft.fallback_line, f"pool {name!r}: fallback {fallback!r} is not a pool")
            continue
        used.add(fallback)
        chain = [name]
        current: str | None = fallback
        while current is not None and current in drafts and current not in chain:
            chain.append(current)
            current = drafts[current].pool.fallback
        if current in chain:
            loop = frozenset(chain[chain.index(current) :])
            if loop not in reported and name in loop:
                reported.add(loop)
                shown = " -> ".join([*chain[chain.index(current) :], current])
                scope.error(draft.fallback_line, f"loop in pool fallbacks: {shown}")
    return used


@dataclass(frozen=True, slots=True)
class _RuleDraft:
    number: int
    line: int
    pool: str | None
    geos: tuple[str, ...]
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    #: Whether the rule targets by geo / subnet at all (even if an entry was invalid).
    by_geo: bool
    by_subnet: bool

    @property
    def rank(self) -> int:
        """octoDNS's order: subnet-only, subnet+geo, geo-only, catch-all."""
        if self.by_subnet:
            return 1 if self.by_geo else 0
        return 2 if self.by_geo else 3


def _rule(scope: Scope, number: int, node: YNode, geoip: bool) -> _RuleDraft | None:
    body = scope.mapping(node, f"rule {number}", frozenset({"pool", "geos", "subnets"}))
    if body is None:
        return None
    pool_node = body.get("pool")
    pool = scope.string(pool_node, f"rule {number} pool") if pool_node is not None else None
    if pool_node is None:
        scope.error(body.line, f"rule {number} has no 'pool'")
    geos: list[str] = []
    geos_node = body.get("geos")
    if geos_node is not None and not geoip:
        scope.error(body.key_line("geos"),
                    f"rule {number} has geos but no GeoIP database is configured (--geoip PATH)")
    for item, geo in scope.strings(geos_node, f"rule {number} geos") if geos_node else ():
        if _GEO_RE.match(geo):
            geos.append(geo)
        else:
            scope.error(item.line, f"rule {number}: invalid geo code {geo!r}")
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    subnets_node = body.get("subnets")
    for item, text in scope.strings(subnets_node, f"rule {number} subnets") if subnets_node else ():
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            scope.error(item.line, f"rule {number}: {text!r} is not a valid subnet")
            continue
        if network.network_address != ipaddress.ip_address(text.partition("/")[0]):
            scope.error(item.line, f"rule {number}: subnet {text!r} has host bits set")
            continue
        subnets.append(network)
    return _RuleDraft(
        number, body.line, pool, tuple(geos), tuple(subnets),
        by_geo=geos_node is not None, by_subnet=subnets_node is not None,
    )  # fmt: skip


def _check_rules(scope: Scope, rules: Sequence[_RuleDraft], pools: frozenset[str]) -> None:
    """octoDNS's rule checks: known pools, one rule per pool, order, one final catch-all."""
    used_by: dict[str, int] = {}
    worst = 0
    catch_all: _RuleDraft | None = None
    for position, rule in enumerate(rules):
        if rule.pool is not None and rule.pool not in pools:
            scope.error(rule.line, f"rule {rule.number}: pool {rule.pool!r} is not defined")
        elif rule.pool is not None and rule.pool in used_by and rule.rank < 3:
            scope.error(
                rule.line,
                f"rule {rule.number}: pool {rule.pool!r} is already used by rule "
                f"{used_by[rule.pool]} (a pool may back only one rule besides the catch-all)",
            )
        if rule.pool is not None:
            used_by.setdefault(rule.pool, rule.number)
        if rule.rank == 3:
            if catch_all is not None:
                scope.error(rule.line, f"rule {rule.number} is a second catch-all rule")
            elif any(later.rank < 3 for later in rules[position + 1 :]):
                scope.error(
                    rule.line, f"rule {rule.number} is a catch-all but is not the last rule"
                )
            catch_all = catch_all or rule
        elif rule.rank < worst:
            scope.error(rule.line, f"rule {rule.number} is out of order: {_ORDER}")
        worst = max(worst, rule.rank) if rule.rank < 3 else worst
    if rules and catch_all is None:
        scope.error(
            rules[-1].line, "no catch-all rule (the last rule must have no geos and no subnets)"
        )
    _check_shadowing(scope, rules)


_ORDER = "subnet-only rules come first, then subnet+geo rules, then geo-only rules"


def _check_shadowing(scope: Scope, rules: Sequence[_RuleDraft]) -> None:
    """A geo or subnet already matched by an earlier rule can never match again (octoDNS)."""
    geos_seen: dict[str, int] = {}
    nets_seen: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = {}
    for rule in rules:
        for geo in sorted(rule.geos):
            for seen, number in geos_seen.items():
                if geo == seen or geo.startswith(seen + "-"):
                    scope.error(
                        rule.line,
                        f"rule {rule.number}: geo {geo} is already covered by {seen} "
                        f"in rule {number}",
                    )
        geos_seen.update((geo, rule.number) for geo in rule.geos if geo not in geos_seen)
        for net in rule.subnets:
            for seen_net, number in nets_seen.items():
                if _subnet_of(net, seen_net):
                    scope.error(
                        rule.line,
                        f"rule {rule.number}: subnet {net} is already covered by {seen_net} "
                        f"in rule {number}",
                    )
        nets_seen.update((net, rule.number) for net in rule.subnets if net not in nets_seen)


def _subnet_of(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    other: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if isinstance(net, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return net.subnet_of(other)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return net.subnet_of(other)
    return False


def _rule_pools(
    scope: Scope, node: YNode | None, rules: Sequence[_RuleDraft], count: int,
    defined: frozenset[str], located: frozenset[str], geoip: bool,
) -> tuple[list[tuple[str, ...]], list[bool]]:  # fmt: skip
    """Per rule, the ordered pools it tries (its ``pool``, or dnsfail's ordered list),
    and whether it orders them by distance to the client.

    ``octodns.dnsfail.rules[i].pools`` (a dnsfail extension) replaces rule i's
    single pool with an ordered list, e.g. ``[eu, us]``; octoDNS itself only
    sees ``pool`` and the fallback chain.  ``nearest: true`` tries those
    pools nearest first, by the ``coordinates`` of each pool.
    """
    default: list[tuple[str, ...]] = [(rule.pool,) if rule.pool else () for rule in rules]
    nearest = [False] * len(rules)
    if node is None:
        return default, nearest
    items = scope.sequence(node, "octodns.dnsfail.rules")
    if items is None:
        return default, nearest
    if len(items) != count:
        scope.error(
            node.line, f"octodns.dnsfail.rules has {len(items)} entries, dynamic.rules has {count}"
        )
        return default, nearest
    ordered = list(default)
    for index, item in enumerate(items[: len(rules)]):
        what = f"octodns.dnsfail.rules item {index + 1}"
        body = scope.mapping(item, what, frozenset({"pools", "nearest"}))
        if body is not None and (flag := body.get("nearest")) is not None:
            nearest[index] = bool(scope.flag(flag, f"{what} nearest"))
            if nearest[index] and not geoip:
                scope.error(flag.line, f"{what}: nearest needs a GeoIP City database (--geoip)")
        pools_node = body.get("pools") if body is not None else None
        if body is not None and pools_node is None:
            scope.error(body.line, f"{what} has no 'pools'")
        names: list[str] = []
        for pool_node, name in scope.strings(pools_node, f"{what} pools") if pools_node else ():
            if name not in defined:
                scope.error(pool_node.line, f"{what}: pool {name!r} is not defined")
            elif name in names:
                scope.error(pool_node.line, f"{what}: pool {name!r} is listed twice")
            else:
                names.append(name)
        ordered[index] = tuple(names) or default[index]
        missing = [p for p in ordered[index] if p not in located]
        if nearest[index] and missing and body is not None:
            scope.error(body.line, f"{what} is nearest but pools {', '.join(missing)} "
                                   "have no coordinates")
    return ordered, nearest


def _coordinates(
    scope: Scope, node: YNode | None, defined: frozenset[str]
) -> tuple[dict[str, tuple[float, float]], frozenset[str]]:
    """``octodns.dnsfail.coordinates``: ``{pool: [latitude, longitude]}`` for nearest mode.

    Returns the valid coordinates and the names given at all, so a bad
    coordinate is reported once, not again as missing.
    """
    out: dict[str, tuple[float, float]] = {}
    table = scope.mapping(node, "coordinates") if node is not None else None
    given = frozenset(table.entries) if table is not None else frozenset()
    for name, entry in table.entries.items() if table is not None else ():
        if name not in defined:
            scope.error(entry.key_line, f"coordinates: pool {name!r} is not defined")
            continue
        pair = scope.sequence(entry.value, f"coordinates of {name!r}")
        if pair is None or len(pair) != 2:
            scope.error(entry.value.line, f"coordinates of {name!r} must be [latitude, longitude]")
            continue
        lat = scope.number(pair[0], f"latitude of {name!r}", -90.0, 90.0)
        lon = scope.number(pair[1], f"longitude of {name!r}", -180.0, 180.0)
        if lat is not None and lon is not None:
            out[name] = (lat, lon)
    return out, given


def _dynamic_knobs(scope: Scope, record: Record, options: Options) -> tuple[AllDown, int]:
    all_down, ttl_floor = AllDown.BACKUP, 5
    if (node := options.dnsfail_node("all_down")) is not None:
        choice = scope.choice(node, "all_down", [a.value for a in AllDown])
        all_down = AllDown(choice) if choice else all_down
    if (node := options.dnsfail_node("ttl_floor")) is not None:
        floor = scope.integer(node, "ttl_floor", 0, MAX_TTL)
        if floor is not None and floor > record.ttl:
            scope.error(node.line, f"ttl_floor {floor} is above the record's ttl {record.ttl}")
        ttl_floor = floor if floor is not None else ttl_floor
    return all_down, ttl_floor


def _dynamic(
    problems: Problems, record: Record, options: Options, geoip: bool
) -> DynamicRecord | None:
    """octoDNS's ``dynamic`` block, validated as octoDNS does, plus dnsfail's knobs."""
    scope = Scope(problems, record.label)
    node = record.dynamic
    body = scope.mapping(node, "dynamic", frozenset({"pools", "rules"})) if node else None
    health, addresses = _health(scope, record, options)
    all_down, ttl_floor = _dynamic_knobs(scope, record, options)
    if body is None:
        return None
    pools_node, rules_node = body.get("pools"), body.get("rules")
    for key, present in (("pools", pools_node), ("rules", rules_node)):
        if present is None:
            scope.error(body.line, f"dynamic has no {key!r}")
    pools_map = scope.mapping(pools_node, "pools") if pools_node else None
    if pools_map is not None and not pools_map.entries:
        scope.error(pools_map.line, "pools is empty")
    defined = frozenset(pools_map.entries if pools_map else ())
    version = 4 if record.rtype == "A" else 6
    drafts: dict[str, _PoolDraft] = {}
    for name, entry in pools_map.entries.items() if pools_map else ():
        if (draft := _pool(scope, name, entry, version, health, addresses)) is not None:
            drafts[name] = draft
    rule_items = (scope.sequence(rules_node, "rules") if rules_node else None) or ()
    rules = [
        r for n, item in enumerate(rule_items, 1) if (r := _rule(scope, n, item, geoip)) is not None
    ]
    _check_rules(scope, rules, defined)
    used = _check_fallbacks(scope, drafts, defined)
    coordinates, located = _coordinates(scope, options.dnsfail_node("coordinates"), defined)
    ordered, nearest = _rule_pools(
        scope, options.dnsfail_node("rules"), rules, len(rule_items), defined, located, geoip
    )
    used |= {name for pools in ordered for name in pools}
    for name, draft in drafts.items():
        if name not in used:
            scope.error(draft.line, f"pool {name!r} is not used by any rule or fallback")
    values = {v.value for draft in drafts.values() for v in draft.pool.values}
    for value, (line, _) in addresses.items():
        if value not in values:
            scope.error(line, f"probe_addresses names {value!r}, which is in no pool")
    backup = tuple(r.address for r in record.rdatas if isinstance(r, A | AAAA))
    return DynamicRecord(
        name=record.name,
        rtype=RRType[record.rtype],
        ttl=record.ttl,
        pools=MappingProxyType({name: draft.pool for name, draft in drafts.items()}),
        rules=tuple(
            Rule(pools, r.geos, r.subnets, near)
            for pools, r, near in zip(ordered, rules, nearest, strict=True)
        ),
        backup=backup,
        all_down=all_down,
        ttl_floor=ttl_floor,
        coordinates=MappingProxyType(coordinates),
    )


def _dual_stack(
    scope: Scope, record: DynamicRecord, node: YNode, line: int, has_aaaa: bool
) -> DynamicRecord | None:
    """dnsfail's dual-stack shorthand: the AAAA twin of a dynamic A record.

    ``octodns: dnsfail: ipv6: {192.0.2.10: 2001:db8::10, ...}`` gives every
    site its IPv6 address once; the AAAA record gets the same pools, rules,
    fallbacks, policy and health-check settings, and each IPv6 address is
    probed on its own, so a site whose IPv6 path fails leaves the AAAA answers
    only (per-family health, as gdnsd's ``addrs_v6``).  octoDNS itself needs
    two records with duplicated rules for this.
    """
    if record.rtype != RRType.A:
        scope.error(line, "'ipv6' applies to A records only")
        return None
    if has_aaaa:
        scope.error(line, "'ipv6' would create an AAAA record beside the one already here")
        return None
    table = scope.mapping(node, "ipv6")
    if table is None:
        return None
    mapping: dict[str, str] = {}
    given: set[str] = set()
    for key, entry in table.entries.items():
        text = scope.string(entry.value, f"ipv6 address for {key!r}")
        try:
            v4 = str(ipaddress.IPv4Address(key))
        except ValueError:
            scope.error(entry.key_line, f"ipv6 key {key!r} is not an IPv4 address")
            continue
        given.add(v4)
        try:
            mapping[v4] = str(ipaddress.IPv6Address(text or ""))
        except ValueError:
            scope.error(entry.value.line, f"{text!r} is not a valid IPv6 address")
    used = [v.value for pool in record.pools.values() for v in pool.values] + list(record.backup)
    missing = sorted(set(used) - given)
    if missing:
        scope.error(line, f"ipv6 has no address for {', '.join(missing)}")
    unused = sorted(given - set(used))
    if unused:
        scope.error(line, f"ipv6 maps {', '.join(unused)}, which is not a value of the record")
    if missing or unused or len(mapping) != len(table.entries):
        return None

    def twin(value: PoolValue) -> PoolValue:
        v6 = mapping[value.value]
        probe = replace(value.probe, address=v6) if value.probe is not None else None
        return replace(value, value=v6, probe=probe)

    pools = {
        name: replace(pool, values=tuple(twin(v) for v in pool.values))
        for name, pool in record.pools.items()
    }
    return replace(
        record,
        rtype=RRType.AAAA,
        pools=MappingProxyType(pools),
        backup=tuple(mapping[v] for v in record.backup),
    )


def _is_dynamic_address(record: Record) -> bool:
    return record.is_dynamic and record.rtype in ("A", "AAAA")


def dynamic_records(
    problems: Problems, index: Mapping[str, Mapping[str, Record]],
    options: Mapping[tuple[str, str], Options], geoip: bool,
) -> dict[tuple[str, RRType], DynamicRecord]:  # fmt: skip
    """Every dynamic A and AAAA record of the zone, with the AAAA twins of ``ipv6``."""
    dynamic: dict[tuple[str, RRType], DynamicRecord] = {}
    for name, by_type in index.items():
        for rtype, record in by_type.items():
            if not _is_dynamic_address(record):
                continue
            opts = options.get((name, rtype), NO_OPTIONS)
            built = _dynamic(problems, record, opts, geoip)
            if built is None:
                continue
            dynamic[(name, RRType[rtype])] = built
            ipv6 = opts.dnsfail_node("ipv6")
            if ipv6 is None:
                continue
            line = opts.dnsfail.key_line("ipv6") if opts.dnsfail else ipv6.line
            twin = _dual_stack(Scope(problems, record.label), built, ipv6, line, "AAAA" in by_type)
            if twin is not None:
                dynamic[(name, RRType.AAAA)] = twin
    return dynamic
