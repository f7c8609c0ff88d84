"""overrides.py without sockets: selectors, durations, apply, drain TTLs and the state file."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import dns.message
import pytest

from dnsfail.dns.handler import Handler
from dnsfail.model import Status, Zone
from dnsfail.state import Store
from dnsfail.steering import overrides
from dnsfail.steering.overrides import Kind, Override, OverrideError, parse_duration, parse_selector
from dnsfail.zonefile import parse_zone

ZONE = textwrap.dedent("""\
    '':
      type: NS
      value: ns1.drain.test.
    api:
      dynamic:
        pools:
          eu: {fallback: us, values: [{value: 192.0.2.10}, {value: 192.0.2.11}]}
          us: {values: [{value: 198.51.100.10}]}
        rules:
        - pool: eu
      octodns:
        healthcheck: {port: 443, protocol: TCP}
      ttl: 30
      type: A
      values: [192.0.2.99]
    web:
      dynamic:
        pools:
          eu: {fallback: us, values: [{value: 192.0.2.10}]}
          us: {values: [{value: 198.51.100.10}]}
        rules:
        - pool: eu
      octodns:
        healthcheck: {port: 8443, protocol: TCP}
      ttl: 120
      type: A
      values: [198.51.100.10]
    static:
      type: A
      value: 192.0.2.10
    ns1:
      type: A
      value: 192.0.2.1
    """)


@pytest.fixture
def zones() -> dict[str, Zone]:
    return {"drain.test.": parse_zone(ZONE, "drain.test.yaml", "drain.test.", serial=1)}


def ask(handler: Handler, qname: str = "api.drain.test.") -> list[str]:
    reply = handler.handle(dns.message.make_query(qname, "A").to_wire())
    assert reply is not None
    return sorted(str(rd) for rrset in dns.message.from_wire(reply).answer for rd in rrset)


def up_store(zones: dict[str, Zone], now: list[float]) -> Store:
    store = Store(zones, now=lambda: now[0])
    for spec in store.targets:
        store.observe(spec, True, "connected", 0.001, 0.0)
    return store


def drain(selector: str, created: float = 0.0, seconds: float = 60.0,
          state: Status = Status.DOWN) -> Override:
    return Override(parse_selector(selector).text, state, "test", created, created + seconds)


# --- selectors and durations --------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind", "canonical"), [
    ("192.0.2.10", Kind.SITE, "192.0.2.10"),
    (" 2001:DB8::10 ", Kind.SITE, "2001:db8::10"),
    ("192.0.2.10:443", Kind.TARGET, "192.0.2.10:443"),
    ("[2001:db8:0::10]:443", Kind.TARGET, "[2001:db8::10]:443"),
    ("API.Drain.Test./eu", Kind.RECORD_POOL, "api.drain.test/eu"),
    ("pool:eu", Kind.POOL, "pool:eu"),
])
def test_selectors_parse_to_a_canonical_spelling(text: str, kind: Kind, canonical: str) -> None:
    selector = parse_selector(text)
    assert (selector.kind, selector.text) == (kind, canonical)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty selector"),
    ("eu-west", "is not a selector"),
    ("192.0.2.300", "is not a selector"),
    ("192.0.2.10:0", "port '0' is not 1-65535"),
    ("192.0.2.10:99999", "is not 1-65535"),
    ("[2001:db8::1]", "is not a selector"),
    ("pool:", "is not a pool name"),
    ("pool:a b", "is not a pool name"),
    ("/eu", "is not NAME/POOL"),
    ("api.drain.test/", "is not NAME/POOL"),
    ("192.0.2.10:\u00b2", "is not 1-65535"),  # isdigit() but not int(): was a ValueError
    ("[2001:db8::1]:\u00b9", "is not 1-65535"),
])
def test_bad_selectors_say_why(text: str, reason: str) -> None:
    with pytest.raises(OverrideError, match=reason):
        parse_selector(text)


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("1h30m", 5400.0),
    ("2d", 172800.0), (" 1H ", 3600.0),
])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [0, -5, "0s", "soon", "30 m", "1x", "31d", True, None, [30],
                                   float("nan"), float("inf"),
                                   10**400])  # beyond a float: was an OverflowError
def test_bad_durations_are_refused(value: object) -> None:
    with pytest.raises(OverrideError):
        parse_duration(value)


# --- matching and applying -----------------------------------------------------------------


def where(found: list[overrides.Match]) -> list[str]:
    return sorted(f"{m.record.name}{m.pool}:{m.value.value}" for m in found)


def test_each_selector_kind_matches_its_values(zones: dict[str, Zone]) -> None:
    def match(text: str) -> list[str]:
        return where(overrides.matches(zones, parse_selector(text)))

    assert match("192.0.2.10") == ["api.drain.test.eu:192.0.2.10", "web.drain.test.eu:192.0.2.10"]
    assert match("192.0.2.10:443") == ["api.drain.test.eu:192.0.2.10"]
    assert match("192.0.2.10:8443") == ["web.drain.test.eu:192.0.2.10"]
    assert match("api.drain.test/eu") == ["api.drain.test.eu:192.0.2.10",
                                          "api.drain.test.eu:192.0.2.11"]
    assert match("pool:us") == ["api.drain.test.us:198.51.100.10",
                                "web.drain.test.us:198.51.100.10"]
    assert match("192.0.2.1") == []  # the static ns1 address is no pool value


def test_drain_ttl_is_the_longest_record_ttl(zones: dict[str, Zone]) -> None:
    assert overrides.drain_ttl(overrides.matches(zones, parse_selector("192.0.2.10"))) == 120
    assert overrides.drain_ttl(overrides.matches(zones, parse_selector("192.0.2.11"))) == 30
    assert overrides.drain_ttl([]) == 0


def test_not_covered_names_static_and_backup_uses(zones: dict[str, Zone]) -> None:
    assert overrides.not_covered(zones, parse_selector("192.0.2.10")) == [
        "static.drain.test. A: static record"]
    assert overrides.not_covered(zones, parse_selector("198.51.100.10")) == [
        "web.drain.test. A: backup values (all-down policy)"]
    assert overrides.not_covered(zones, parse_selector("pool:eu")) == []


def test_apply_touches_only_matching_values_and_keeps_identity(zones: dict[str, Zone]) -> None:
    assert overrides.apply(zones, [], 0.0) == zones
    applied = overrides.apply(zones, [drain("192.0.2.10:443")], 1.0)
    api = applied["drain.test."].dynamic[("api.drain.test.", 1)]
    web = applied["drain.test."].dynamic[("web.drain.test.", 1)]
    assert [v.status for v in api.pools["eu"].values] == [Status.DOWN, Status.OBEY]
    assert web is zones["drain.test."].dynamic[("web.drain.test.", 1)]
    assert api.pools["us"] is zones["drain.test."].dynamic[("api.drain.test.", 1)].pools["us"]


def test_expired_overrides_do_not_apply(zones: dict[str, Zone]) -> None:
    assert overrides.apply(zones, [drain("192.0.2.10", 0.0, 10.0)], 10.0) == zones


def test_the_newest_override_wins(zones: dict[str, Zone]) -> None:
    later_up = [drain("pool:eu", 0.0), drain("192.0.2.10", 5.0, state=Status.UP)]
    api = overrides.apply(zones, later_up, 6.0)["drain.test."].dynamic[("api.drain.test.", 1)]
    assert [v.status for v in api.pools["eu"].values] == [Status.UP, Status.DOWN]
    api = overrides.apply(zones, list(reversed(later_up)), 6.0)["drain.test."].dynamic[
        ("api.drain.test.", 1)]
    assert [v.status for v in api.pools["eu"].values] == [Status.UP, Status.DOWN]


# --- the store: the next query sees a drain, and its end ---------------------------------


def test_a_drain_changes_the_next_answer_and_expires(zones: dict[str, Zone]) -> None:
    now = [100.0]
    store = up_store(zones, now)
    handler = Handler(lambda: store.snapshot)
    assert ask(handler) == ["192.0.2.10", "192.0.2.11"]
    store.set_overrides([drain("192.0.2.10", 100.0, 30.0)])
    assert ask(handler) == ["192.0.2.11"]
    assert ask(handler, "web.drain.test.") == ["198.51.100.10"]
    store.set_overrides([*store.overrides, drain("api.drain.test/eu", 101.0, 60.0)])
    assert ask(handler) == ["198.51.100.10"]
    now[0] = 130.0
    assert [o.selector for o in store.expire()] == ["192.0.2.10"]
    assert ask(handler, "web.drain.test.") == ["192.0.2.10"]
    assert ask(handler) == ["198.51.100.10"]
    now[0] = 161.0
    store.expire()
    assert store.overrides == []
    assert ask(handler) == ["192.0.2.10", "192.0.2.11"]


def test_a_drained_site_stays_out_when_all_are_down(zones: dict[str, Zone]) -> None:
    now = [0.0]
    store = up_store(zones, now)
    handler = Handler(lambda: store.snapshot)
    for spec in store.targets:
        if spec.port == 8443 and spec.address == "198.51.100.10":
            store.observe(spec, False, "refused", 0.001, 1.0)
    store.set_overrides([drain("192.0.2.10", 0.0)])
    assert ask(handler, "web.drain.test.") == ["198.51.100.10"]  # backup, not the drained site


def test_a_reload_keeps_overrides(zones: dict[str, Zone]) -> None:
    now = [0.0]
    store = up_store(zones, now)
    store.set_overrides([drain("192.0.2.11", 0.0)])
    store.replace_zones(zones)
    assert ask(Handler(lambda: store.snapshot)) == ["192.0.2.10"]
    assert store.configured["drain.test."] is zones["drain.test."]


def test_probes_go_on_under_a_drain(zones: dict[str, Zone]) -> None:
    now = [0.0]
    store = up_store(zones, now)
    store.set_overrides([drain("192.0.2.10", 0.0)])
    # Drained targets are still probed, so their real state is known when the drain ends.
    assert {s.label for s in store.targets} >= {"192.0.2.10:443", "192.0.2.10:8443"}


# --- the state file --------------------------------------------------------------------


def test_state_file_round_trip_drops_expired(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    kept = Override("192.0.2.10", Status.DOWN, "maintenance", 100.0, 200.0, "ops@host")
    gone = Override("pool:us", Status.UP, "old", 0.0, 150.0)
    overrides.save(path, [kept, gone])
    assert overrides.load(path, 160.0) == [kept]
    assert overrides.load(tmp_path / "missing.json", 0.0) == []
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_save_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    first = [Override("192.0.2.10", Status.DOWN, "a", 0.0, 100.0)]
    overrides.save(path, first)

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        overrides.save(path, [])
    monkeypatch.undo()
    assert overrides.load(path, 1.0) == first  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize(("text", "reason"), [
    ("{", "not JSON"),
    ("[]", "not a version 1"),
    ('{"version": 2, "overrides": []}', "not a version 1"),
    ('{"version": 1, "overrides": {}}', "is not a list"),
    ('{"version": 1, "overrides": [{"selector": "x"}]}', "is not a selector"),
    ('{"version": 1, "overrides": [{"selector": "192.0.2.1", "state": "obey", "reason": "",'
     ' "created": 0, "expires": 1}]}', "state must be up or down"),
])
def test_damaged_state_files_are_refused_whole(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(OverrideError, match=reason):
        overrides.load(path, 0.0)


def test_state_file_is_readable_json(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    overrides.save(path, [Override("pool:eu", Status.DOWN, "r", 1.0, 2.0, "me")])
    assert json.loads(path.read_text()) == {"version": 1, "overrides": [
        {"selector": "pool:eu", "state": "down", "reason": "r", "created": 1.0,
         "expires": 2.0, "by": "me"}]}


def test_load_removes_temporaries_a_killed_save_left(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    overrides.save(path, [drain("192.0.2.10", 1.0, 1e11)])
    left = [tmp_path / ".state.json.abc123.tmp", tmp_path / ".state.json.x.tmp"]
    for stale in left:
        stale.write_text('{"version": 1, "overr')  # a write cut short by kill -9
    kept = [tmp_path / ".other.json.abc.tmp", tmp_path / "state.json.tmp", tmp_path / "notes"]
    for other in kept:
        other.write_text("x")
    assert [o.selector for o in overrides.load(path, 2.0)] == ["192.0.2.10"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["state.json", *(k.name for k in kept)])


def test_selectors_are_parsed_once_and_long_ones_are_not_kept() -> None:
    """The store re-parses every override on each change; the cache makes that a lookup,
    and keeps only short texts (a 60 KB NAME/POOL typo is parsed, not remembered)."""
    from dnsfail.steering import overrides as mod

    mod._parse_cached.cache_clear()
    first = mod.parse_selector("192.0.2.10")
    assert mod.parse_selector("192.0.2.10") is first
    assert mod._parse_cached.cache_info().hits == 1
    long = "a" * 60_000 + ".example/eu"
    assert mod.parse_selector(long).pool == "eu"
    assert mod._parse_cached.cache_info().currsize == 1
    with pytest.raises(OverrideError):
        mod.parse_selector("not a selector")
    assert mod._parse_cached.cache_info().maxsize == mod.SELECTOR_CACHE
