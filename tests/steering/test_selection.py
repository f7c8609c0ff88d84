"""Answer selection as tables: (pools, rule, health) -> (addresses, ttl, pool, reason)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection

import pytest

from dnsfail.model import (
    AllDown,
    DynamicRecord,
    Pool,
    PoolValue,
    ProbeProtocol,
    ProbeSpec,
    RRType,
    Rule,
    Status,
)
from dnsfail.steering.selection import Selection, select


def spec(address: str) -> ProbeSpec:
    return ProbeSpec(ProbeProtocol.HTTPS, address, 443, host="api.gw.example.com")


def pv(
    address: str, weight: int = 1, status: Status = Status.OBEY, probe: bool = True
) -> PoolValue:
    return PoolValue(address, weight, status, spec(address) if probe else None)


EU1, EU2 = "192.0.2.1", "192.0.2.2"
US1 = "198.51.100.1"
AP1, AP2 = "203.0.113.1", "203.0.113.2"
BK = "192.0.2.99"

POOLS = {
    "eu": Pool("eu", (pv(EU1), pv(EU2)), fallback="us"),
    "us": Pool("us", (pv(US1),)),
    "ap": Pool("ap", (pv(AP1), pv(AP2)), fallback="eu"),
}


def record(
    all_down: AllDown = AllDown.BACKUP,
    pools: dict[str, Pool] | None = None,
    backup: tuple[str, ...] = (BK,),
    ttl: int = 60,
    floor: int = 5,
) -> DynamicRecord:
    return DynamicRecord(
        "api.gw.example.com.",
        RRType.A,
        ttl,
        pools or POOLS,
        (Rule(("eu",)),),
        backup,
        all_down,
        floor,
    )


def health(
    down: Collection[str] = (), unknown: Collection[str] = ()
) -> Callable[[ProbeSpec], bool | None]:
    def is_up(s: ProbeSpec) -> bool | None:
        if s.address in unknown:
            return None
        return s.address not in down

    return is_up


def bounds(
    per: dict[str, float] | None = None, default: float = 1000.0
) -> Callable[[ProbeSpec], float]:
    return lambda s: (per or {}).get(s.address, default)


@pytest.mark.parametrize(
    ("pools", "down", "addresses", "pool", "reason"),
    [
        (("eu",), set(), (EU1, EU2), "eu", "pool eu: 2/2 up"),
        (("eu",), {EU1}, (EU2,), "eu", "pool eu: 1/2 up"),
        (("eu",), {EU1, EU2}, (US1,), "us", "pool eu: 0/2 up -> fallback us: 1/1 up"),
        # ap -> eu -> us: the fallback chain is followed to its end.
        (
            ("ap",),
            {AP1, AP2, EU1, EU2},
            (US1,),
            "us",
            "pool ap: 0/2 up -> fallback eu: 0/2 up -> fallback us: 1/1 up",
        ),
        # Ordered rule pools (dnsfail extension): us is tried via eu's fallback, not twice.
        (
            ("eu", "us", "ap"),
            {EU1, EU2, US1},
            (AP1, AP2),
            "ap",
            "pool eu: 0/2 up -> fallback us: 0/1 up -> pool ap: 2/2 up",
        ),
    ],
)
def test_walk_table(
    pools: tuple[str, ...], down: set[str], addresses: tuple[str, ...], pool: str, reason: str
) -> None:
    sel = select(record(), Rule(pools), health(down), bounds())
    assert sel == Selection(addresses, 60, False, pool, reason, True)


@pytest.mark.parametrize(
    ("policy", "addresses", "servfail", "tail"),
    [
        (AllDown.BACKUP, (BK,), False, "all down: backup values"),
        # ALL: the rule's pools first (eu, then its fallback us), then the rest, deduplicated.
        (AllDown.ALL, (EU1, EU2, US1, AP1, AP2), False, "all down: every pool value"),
        (AllDown.SERVFAIL, (), True, "all down: servfail"),
    ],
)
def test_all_down_policies_answer_at_the_floor(
    policy: AllDown, addresses: tuple[str, ...], servfail: bool, tail: str
) -> None:
    everything = {EU1, EU2, US1, AP1, AP2}
    sel = select(record(policy), Rule(("eu",)), health(everything), bounds())
    assert sel.addresses == addresses
    assert sel.servfail is servfail
    assert sel.pool is None
    assert sel.ttl == 5
    assert sel.reason == f"pool eu: 0/2 up -> fallback us: 0/1 up -> {tail}"


def test_backup_policy_without_backup_values_fails_open() -> None:
    sel = select(record(backup=()), Rule(("us",)), health({EU1, EU2, US1, AP1, AP2}), bounds())
    assert sel.addresses == (US1, EU1, EU2, AP1, AP2)
    assert not sel.servfail


def test_all_policy_keeps_drained_values_out() -> None:
    pools = {
        "eu": Pool("eu", (pv(EU1, status=Status.DOWN), pv(EU2))),
        "us": Pool("us", (pv(EU2), pv(US1))),
    }
    sel = select(record(AllDown.ALL, pools), Rule(("eu",)), health({EU2, US1}), bounds())
    assert sel.addresses == (EU2, US1)


def test_all_policy_with_everything_drained_is_servfail() -> None:
    pools = {"eu": Pool("eu", (pv(EU1, status=Status.DOWN),))}
    sel = select(record(AllDown.ALL, pools), Rule(("eu",)), health(), bounds())
    assert sel.servfail
    assert sel.addresses == ()


@pytest.mark.parametrize(
    ("value", "probe_up", "answered"),
    [
        (pv(EU1, status=Status.UP), False, True),  # forced up beats a failing probe
        (pv(EU1, status=Status.DOWN), True, False),  # forced down (drain) beats a passing one
        (pv(EU1, probe=False), False, True),  # no health check: always up (octoDNS)
        (pv(EU1), True, True),
        (pv(EU1), False, False),
    ],
)
def test_admin_status_and_unmonitored_values(
    value: PoolValue, probe_up: bool, answered: bool
) -> None:
    pools = {"eu": Pool("eu", (value,)), "us": Pool("us", (pv(US1),))}
    sel = select(
        record(pools=pools),
        Rule(("eu", "us")),
        lambda s: probe_up if s.address == EU1 else True,
        bounds(),
    )
    assert sel.addresses == ((EU1,) if answered else (US1,))


@pytest.mark.parametrize(
    ("unknown_up", "addresses", "reason"),
    [
        (True, (EU1, EU2), "pool eu: 2/2 up (1 unknown)"),
        (False, (EU2,), "pool eu: 1/2 up (1 unknown)"),
    ],
)
def test_unknown_is_the_callers_decision(
    unknown_up: bool, addresses: tuple[str, ...], reason: str
) -> None:
    sel = select(record(), Rule(("eu",)), health(unknown={EU1}), bounds(), unknown_up=unknown_up)
    assert (sel.addresses, sel.reason) == (addresses, reason)


@pytest.mark.parametrize(
    ("down", "per", "ttl"),
    [
        # Stable everywhere: the record TTL.
        (set(), {}, 60),
        # An answered value could go down in 15 s.
        (set(), {EU2: 15.9}, 15),
        # A down value of the answering pool could come back in 10 s.
        ({EU1}, {EU1: 10.0}, 10),
        # A skipped earlier pool could come back in 20 s: the answer would move back.
        ({EU1, EU2}, {EU2: 20.0}, 20),
        # Values of pools after the answering one do not matter.
        (set(), {US1: 7.0}, 60),
        # Never below the floor, even if a change is imminent (or the target is unknown).
        (set(), {EU1: 0.0}, 5),
    ],
)
def test_ttl_clamped_to_time_until_answer_could_change(
    down: set[str], per: dict[str, float], ttl: int
) -> None:
    sel = select(record(), Rule(("eu",)), health(down), bounds(per))
    assert sel.ttl == ttl


def test_ttl_of_pool_without_probes_is_the_record_ttl() -> None:
    pools = {"eu": Pool("eu", (pv(EU1, probe=False),))}
    sel = select(record(pools=pools, ttl=300), Rule(("eu",)), health(), bounds(default=0.0))
    assert sel.ttl == 300


def test_floor_never_raises_a_lower_record_ttl() -> None:
    sel = select(record(ttl=3, floor=5), Rule(("eu",)), health(), bounds(default=0.0))
    assert sel.ttl == 3


def test_fallback_loop_and_missing_pool_terminate() -> None:
    pools = {
        "a": Pool("a", (pv(EU1),), fallback="b"),
        "b": Pool("b", (pv(EU2),), fallback="a"),
        "c": Pool("c", (pv(US1),), fallback="nowhere"),
    }
    sel = select(record(pools=pools), Rule(("a", "c")), health({EU1, EU2, US1}), bounds())
    assert sel.reason == (
        "pool a: 0/1 up -> fallback b: 0/1 up -> pool c: 0/1 up -> all down: backup values"
    )


def test_equal_weights_with_rng_answer_every_up_value() -> None:
    sel = select(record(), Rule(("eu",)), health(), bounds(), rng=random.Random(1))
    assert sel.addresses == (EU1, EU2)
    assert sel.cacheable


def test_weighted_draw_is_one_value_uncacheable_and_follows_weights() -> None:
    pools = {"eu": Pool("eu", (pv(EU1, weight=1), pv(EU2, weight=3), pv(US1, weight=50)))}
    rng = random.Random(7)
    counts: Counter[str] = Counter()
    for _ in range(2000):
        sel = select(record(pools=pools), Rule(("eu",)), health({US1}), bounds(), rng=rng)
        assert len(sel.addresses) == 1
        assert not sel.cacheable
        assert sel.reason.startswith("pool eu: 2/3 up -> weighted pick ")
        counts[sel.addresses[0]] += 1
    # The down heavy value is never drawn; the rest follow 1:3.
    assert set(counts) == {EU1, EU2}
    assert 0.65 < counts[EU2] / 2000 < 0.85


def test_weights_are_ignored_without_rng() -> None:
    pools = {"eu": Pool("eu", (pv(EU1, weight=1), pv(EU2, weight=3)))}
    sel = select(record(pools=pools), Rule(("eu",)), health(), bounds())
    assert sel.addresses == (EU1, EU2)
    assert sel.cacheable


def test_duplicate_values_in_a_pool_are_answered_once() -> None:
    pools = {"eu": Pool("eu", (pv(EU1), pv(EU1), pv(EU2)))}
    sel = select(record(pools=pools), Rule(("eu",)), health(), bounds())
    assert sel.addresses == (EU1, EU2)
