"""state.py without sockets: probe results swap snapshots and change the very next answer."""

from __future__ import annotations

import textwrap

import dns.message
import dns.rcode
import pytest

from dnsfail.dns.handler import Handler
from dnsfail.model import ProbeSpec, Zone
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone

ZONE = textwrap.dedent("""\
    '':
      type: NS
      value: ns1.dual.test.
    api:
      dynamic:
        pools:
          eu: {fallback: us, values: [{value: 192.0.2.10}, {value: 192.0.2.11}]}
          us: {values: [{value: 198.51.100.10}]}
        rules:
        - pool: eu
      octodns:
        dnsfail:
          healthcheck: {fall: 3, interval: 2, rise: 2, timeout: 1}
          ipv6:
            192.0.2.10: 2001:db8::10
            192.0.2.11: 2001:db8::11
            192.0.2.99: 2001:db8::99
            198.51.100.10: 2001:db8:1::10
        healthcheck: {port: 443, protocol: TCP}
      ttl: 30
      type: A
      values: [192.0.2.99]
    ns1:
      type: A
      value: 192.0.2.1
    """)


@pytest.fixture
def zone() -> Zone:
    return parse_zone(ZONE, "dual.test.yaml", "dual.test.", serial=1)


def ask(handler: Handler, rdtype: str) -> tuple[int, list[str], int]:
    reply = handler.handle(dns.message.make_query("api.dual.test.", rdtype).to_wire())
    assert reply is not None
    message = dns.message.from_wire(reply)
    if not message.answer:
        return message.rcode(), [], 0
    rrset = message.answer[0]
    return message.rcode(), sorted(str(r) for r in rrset), rrset.ttl


def spec_of(store: Store, address: str) -> ProbeSpec:
    return next(s for s in store.targets if s.address == address)


def test_health_changes_the_next_answer_per_family(zone: Zone) -> None:
    store = Store({"dual.test.": zone})
    handler = Handler(lambda: store.snapshot)
    now = 0.0
    for spec in store.targets:  # first round: everything up
        store.observe(spec, True, "connected", 0.001, now)
    assert ask(handler, "A") == (0, ["192.0.2.10", "192.0.2.11"], 6)  # 2 s x 3 failures
    assert ask(handler, "AAAA") == (0, ["2001:db8::10", "2001:db8::11"], 6)

    # The IPv6 path of site .10 fails: one failure shortens the TTL, three withdraw it,
    # and only from the AAAA answer.
    v6 = spec_of(store, "2001:db8::10")
    store.observe(v6, False, "connection refused", 0.001, now := now + 2)
    assert ask(handler, "AAAA")[2] == 5  # 2 s x 2 more failures = 4 s, floored at 5
    generation = store.snapshot.generation
    for _ in range(2):
        store.observe(v6, False, "connection refused", 0.001, now := now + 2)
    assert store.snapshot.generation > generation
    assert ask(handler, "AAAA")[1] == ["2001:db8::11"]
    assert ask(handler, "A")[1] == ["192.0.2.10", "192.0.2.11"]

    # Both IPv4 sites of eu down: the fallback pool answers A.
    for address in ("192.0.2.10", "192.0.2.11"):
        for _ in range(3):
            store.observe(spec_of(store, address), False, "timeout", 1.0, now := now + 2)
    assert ask(handler, "A")[1] == ["198.51.100.10"]

    # One success does not restore a site (rise 2); the second does.
    spec = spec_of(store, "192.0.2.10")
    store.observe(spec, True, "connected", 0.001, now := now + 2)
    assert ask(handler, "A")[1] == ["198.51.100.10"]
    store.observe(spec, True, "connected", 0.001, now := now + 2)
    assert ask(handler, "A")[1] == ["192.0.2.10"]


def test_all_down_serves_backup_at_the_floor(zone: Zone) -> None:
    store = Store({"dual.test.": zone})
    handler = Handler(lambda: store.snapshot)
    for spec in store.targets:
        store.observe(spec, False, "connection refused", 0.001, 0.0)
    assert ask(handler, "A") == (0, ["192.0.2.99"], 5)
    assert ask(handler, "AAAA") == (0, ["2001:db8::99"], 5)


def test_results_that_change_nothing_keep_the_warm_cache(zone: Zone) -> None:
    store = Store({"dual.test.": zone})
    handler = Handler(lambda: store.snapshot)
    for spec in store.targets:
        store.observe(spec, True, "connected", 0.001, 0.0)
    ask(handler, "A")
    cache = store.snapshot.replies.keyed
    assert cache
    for spec in store.targets:
        store.observe(spec, True, "connected", 0.001, 2.0)
    assert store.snapshot.replies.keyed is cache


def test_reload_keeps_health_of_remaining_targets(zone: Zone) -> None:
    store = Store({"dual.test.": zone})
    down = spec_of(store, "192.0.2.10")
    for spec in store.targets:
        store.observe(spec, spec != down, "x", 0.001, 0.0)
    store.replace_zones({"dual.test.": zone})
    handler = Handler(lambda: store.snapshot)
    assert ask(handler, "A")[1] == ["192.0.2.11"]


def test_a_result_for_a_removed_target_is_ignored(zone: Zone) -> None:
    store = Store({"dual.test.": zone})
    spec = spec_of(store, "192.0.2.10")
    store.replace_zones({})
    store.observe(spec, False, "late", 0.001, 0.0)
    assert spec not in store.snapshot.health
    handler = Handler(lambda: store.snapshot)
    assert ask(handler, "A")[0] == dns.rcode.REFUSED


def test_reload_that_only_retunes_a_check_keeps_its_health(zone: Zone) -> None:
    """Changing fall/rise/interval is the same target: a known-down site stays down."""
    store = Store({"dual.test.": zone})
    down = spec_of(store, "192.0.2.10")
    for spec in store.targets:
        store.observe(spec, spec != down, "x", 0.001, 0.0)
    retuned = parse_zone(ZONE.replace("fall: 3", "fall: 4"), "dual.test.yaml", "dual.test.",
                         serial=2)
    store.replace_zones({"dual.test.": retuned})
    new = spec_of(store, "192.0.2.10")
    assert new != down
    assert new.fall == 4
    assert store.snapshot.is_up(new) is False
    handler = Handler(lambda: store.snapshot)
    assert ask(handler, "A")[1] == ["192.0.2.11"]
