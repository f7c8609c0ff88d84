"""What each record answers now, as a table: (health, rule) -> (serving, pool, addresses)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from dnsfail.model import AllDown, ProbeSpec, Rule, Status, Zone
from dnsfail.steering.serving import record_serving, serving
from tests.steering.test_selection import AP1, AP2, BK, EU1, EU2, US1, pv, record


@dataclass
class View:
    """A health view: these addresses are down, the others up."""

    down: Collection[str] = ()

    def is_up(self, spec: ProbeSpec) -> bool | None:
        return spec.address not in self.down

    def change_bound(self, spec: ProbeSpec) -> float:
        return 1000.0


CASES = [
    # (down, all_down, backup, rule pools) -> serving, pool, addresses, why contains
    ((), AllDown.BACKUP, (BK,), ("eu",), "pools", "eu", (EU1, EU2), "pool eu: 2/2 up"),
    ((EU1,), AllDown.BACKUP, (BK,), ("eu",), "pools", "eu", (EU2,), "pool eu: 1/2 up"),
    ((EU1, EU2), AllDown.BACKUP, (BK,), ("eu",), "fallback", "us", (US1,),
     "pool eu: 0/2 up -> fallback us: 1/1 up"),
    # A later pool of the rule itself is a fallback too: the primary is not answering.
    ((AP1, AP2), AllDown.BACKUP, (BK,), ("ap", "us"), "fallback", "eu", (EU1, EU2),
     "fallback eu"),
    ((EU1, EU2, US1), AllDown.BACKUP, (BK,), ("eu",), "backup", None, (BK,),
     "all down: backup values"),
    # BACKUP without backup values falls through to ALL: every pool value.
    ((EU1, EU2, US1), AllDown.BACKUP, (), ("eu",), "all_down", None,
     (EU1, EU2, US1, AP1, AP2), "every pool value"),
    ((EU1, EU2, US1), AllDown.ALL, (BK,), ("eu",), "all_down", None,
     (EU1, EU2, US1, AP1, AP2), "every pool value"),
    ((EU1, EU2, US1), AllDown.SERVFAIL, (BK,), ("eu",), "all_down", None, (),
     "all down: servfail"),
]


@pytest.mark.parametrize(("down", "policy", "backup", "pools", "kind", "pool", "addresses",
                          "why"), CASES)
def test_what_a_rule_serves(down: tuple[str, ...], policy: AllDown, backup: tuple[str, ...],
                            pools: tuple[str, ...], kind: str, pool: str | None,
                            addresses: tuple[str, ...], why: str) -> None:
    rec = replace(record(policy, backup=backup), rules=(Rule(pools),))
    got = record_serving("gw.example.com.", rec, View(down))
    [rule] = got.rules
    assert (rule.serving, rule.pool, rule.addresses) == (kind, pool, addresses)
    assert why in rule.why
    assert got.serving == kind
    assert rule.servfail is (policy is AllDown.SERVFAIL and kind == "all_down")


def test_forced_status_counts_as_the_answers_see_it() -> None:
    """A drained (forced DOWN) value is down whatever its probe says."""
    pools = dict(record().pools)
    pools["eu"] = replace(pools["eu"], values=(pv(EU1, status=Status.DOWN),
                                               pv(EU2, status=Status.DOWN)))
    rec = replace(record(), pools=pools)
    got = record_serving("z.", rec, View())
    assert (got.serving, got.rules[0].pool) == ("fallback", "us")


def test_a_record_is_as_bad_as_its_worst_rule() -> None:
    rec = replace(record(), rules=(Rule(("ap",), geos=("AS",)), Rule(("eu",))))
    got = record_serving("z.", rec, View({AP1, AP2}))
    assert [(r.rule, r.matches, r.serving) for r in got.rules] == [
        (1, "geos AS", "fallback"), (2, "catch-all", "pools")]
    assert got.serving == "fallback"


def test_nearest_rules_say_the_order_is_the_configured_one() -> None:
    rec = replace(record(), rules=(Rule(("eu", "us"), nearest=True),))
    [rule] = record_serving("z.", rec, View()).rules
    assert rule.matches == "catch-all (nearest)"
    assert "configured order shown" in rule.why


def test_every_zone_and_record_in_order(tmp_path: Path) -> None:
    from dnsfail.zonefile import load_zones
    from tests.integration.ctl_server import zone_text

    (tmp_path / "ctl.test.yaml").write_text(zone_text(8080))
    (tmp_path / "b.test.yaml").write_text(zone_text(8081))
    zones: dict[str, Zone] = load_zones([str(tmp_path)])
    got = list(serving(zones, View()))
    assert [(r.zone, r.name, r.rtype, r.serving) for r in got] == [
        ("b.test.", "api.b.test.", "A", "pools"), ("ctl.test.", "api.ctl.test.", "A", "pools")]


def test_the_memo_walks_again_only_for_a_new_generation_or_zones(tmp_path: Path) -> None:
    from dnsfail.state import Store
    from dnsfail.steering.serving import Memo
    from dnsfail.zonefile import load_zones
    from tests.integration.ctl_server import zone_text

    (tmp_path / "ctl.test.yaml").write_text(zone_text(8080))
    store = Store(load_zones([str(tmp_path)]))
    memo = Memo()
    snap = store.snapshot
    first = memo.view(snap.zones, snap.generation, View())
    assert memo.view(snap.zones, snap.generation, View({"127.0.0.61"})) is first
    down = View({"127.0.0.61", "127.0.0.62"})
    assert memo.view(snap.zones, snap.generation + 1, down)[0].serving == "fallback"
    assert memo.view(dict(snap.zones), snap.generation + 1, View())[0].serving == "pools"
