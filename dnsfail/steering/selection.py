"""Answer selection for one health-checked record: which addresses, which TTL, and why.

Pure: no I/O, no clock, no global state.  Health arrives through two
callables so that this module never knows how health is stored (the state
store passes lookups into its current snapshot, tests pass dicts).  Which
rule matches the client is decided by the caller (geo/subnet matching lives
elsewhere); this module only walks the rule's pools.

The walk, in the terms of octoDNS's ``dynamic`` records:

1. Take the rule's pools in order; from each, follow its ``fallback`` chain.
   A pool already visited is skipped, so ``pools: [eu, us]`` with
   ``eu.fallback: us`` tries ``us`` once, and a fallback loop terminates.
2. A value is up if its admin ``status`` is UP, down if it is DOWN, and
   otherwise (OBEY) whatever ``is_up(value.probe)`` says.  A value without a
   probe is always up: octoDNS treats unmonitored values as healthy.
3. The first pool with at least one up value answers with all its up values,
   in configured order.  Serving every healthy address spreads load by the
   resolvers' own rotation and keeps the answer identical for every client of
   the rule, hence cacheable.  Only when an ``rng`` is passed *and* the up
   values carry different weights is one value drawn by weight (octoDNS's
   weighted pool); that answer is marked ``cacheable=False`` so no layer
   above caches one client's draw for everybody.
4. If no pool has an up value, the record's ``all_down`` policy applies
   (see :class:`~dnsfail.model.AllDown`) at the TTL floor, so that recovery
   reaches resolvers quickly.

``is_up`` returning None means "no result yet".  What that means is the
caller's decision, made with ``unknown_up``: the daemon waits for the first
probe round before serving, so None only occurs for a target added by a
reload, and by default such a target counts as up (its TTL is then clamped to
the floor by ``change_bound``, which is 0 for UNKNOWN targets in health.py).
A caller that would rather not send traffic to an unverified target passes
``unknown_up=False``.

TTL: the answer could change as soon as any value that decided it changes
state: an answered value going down, a down value of the answering pool
coming up, or any value of an earlier, skipped pool coming up.  The TTL is
the record TTL clamped to the smallest ``change_bound`` among those values
(gdnsd's "TTL = time to next possible change"), but never below
``record.ttl_floor``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dnsfail.model import AllDown, DynamicRecord, Pool, PoolValue, ProbeSpec, Rule, Status

#: The trail's last step when the all-down policy answered (read by ``steering.serving``).
ALL_DOWN_BACKUP = "all down: backup values"
ALL_DOWN_ALL = "all down: every pool value"
ALL_DOWN_SERVFAIL = "all down: servfail"


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome of :func:`select`: an answer plus the trail that explains it."""

    #: What to answer; empty with ``servfail`` set means answer SERVFAIL.
    addresses: tuple[str, ...]
    ttl: int
    servfail: bool
    #: The pool that answered; None when the all-down policy answered.
    pool: str | None
    #: Human-readable trail, e.g. ``pool eu: 0/2 up -> fallback us: 1/1 up``.
    reason: str
    #: False when a random weighted draw was made: do not cache this answer.
    cacheable: bool


def _walk(record: DynamicRecord, rule: Rule) -> Iterator[tuple[str, Pool]]:
    """Pools in the order they are tried, each once: ("pool"|"fallback", pool)."""
    seen: set[str] = set()
    for first in rule.pools:
        name: str | None = first
        how = "pool"
        while name is not None and name not in seen:
            pool = record.pools.get(name)
            if pool is None:
                break
            seen.add(name)
            yield how, pool
            name, how = pool.fallback, "fallback"


def select(
    record: DynamicRecord,
    rule: Rule,
    is_up: Callable[[ProbeSpec], bool | None],
    change_bound: Callable[[ProbeSpec], float],
    *,
    rng: random.Random | None = None,
    unknown_up: bool = True,
) -> Selection:
    """Choose the answer for ``record`` under ``rule`` given the current health.

    ``change_bound(spec)`` is the soonest the health of ``spec`` could flip,
    in seconds (health.next_change_bound).  ``rng`` enables weighted draws;
    without it the answer is deterministic.
    """
    floor = min(record.ttl_floor, record.ttl)
    bound = math.inf
    trail: list[str] = []

    def up(value: PoolValue) -> bool | None:
        if value.status is not Status.OBEY:
            return value.status is Status.UP
        if value.probe is None:
            return True
        return is_up(value.probe)

    for how, pool in _walk(record, rule):
        chosen: list[PoolValue] = []
        unknown = 0
        for value in pool.values:
            if value.status is Status.OBEY and value.probe is not None:
                bound = min(bound, change_bound(value.probe))
            state = up(value)
            unknown += state is None
            wanted = state or (state is None and unknown_up)
            if wanted and value.value not in (c.value for c in chosen):
                chosen.append(value)
        note = f" ({unknown} unknown)" if unknown else ""
        trail.append(f"{how} {pool.name}: {len(chosen)}/{len(pool.values)} up{note}")
        if not chosen:
            continue
        ttl = max(floor, math.floor(min(record.ttl, bound)))
        if rng is not None and len({v.weight for v in chosen}) > 1:
            pick = rng.choices(chosen, weights=[v.weight for v in chosen])[0]
            trail.append(f"weighted pick {pick.value}")
            return Selection((pick.value,), ttl, False, pool.name, " -> ".join(trail), False)
        addresses = tuple(v.value for v in chosen)
        return Selection(addresses, ttl, False, pool.name, " -> ".join(trail), True)

    return _all_down(record, rule, floor, trail)


def _all_down(record: DynamicRecord, rule: Rule, floor: int, trail: list[str]) -> Selection:
    """Apply ``record.all_down`` at the TTL floor, so recovery propagates fast.

    BACKUP with no backup values falls through to ALL: failing closed is the
    one thing a failover server must not do by accident.  ALL serves every
    pool value not forced DOWN by an operator (a drained site stays drained),
    the rule's own pools first so clients that use the first address keep
    their geographic preference.  If that leaves nothing, SERVFAIL.
    """
    policy = record.all_down
    if policy is AllDown.BACKUP and record.backup:
        trail.append(ALL_DOWN_BACKUP)
        return Selection(record.backup, floor, False, None, " -> ".join(trail), True)
    if policy is not AllDown.SERVFAIL:
        names = [pool.name for _, pool in _walk(record, rule)]
        names += [n for n in record.pools if n not in names]
        values = (
            v.value for n in names for v in record.pools[n].values if v.status is not Status.DOWN
        )
        addresses = tuple(dict.fromkeys(values))
        if addresses:
            trail.append(ALL_DOWN_ALL)
            return Selection(addresses, floor, False, None, " -> ".join(trail), True)
    trail.append(ALL_DOWN_SERVFAIL)
    return Selection((), floor, True, None, " -> ".join(trail), True)
