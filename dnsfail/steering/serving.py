"""What each dynamic record answers right now, per rule, and why: the operator's view.

For every dynamic record and every one of its rules this runs the answer
path's own walk (:func:`~dnsfail.steering.selection.select`, no weighted
draw) over a health view, and classifies the outcome:

* ``pools``: the first pool the rule tries answers (its primary);
* ``fallback``: a later pool answers, reached by a ``fallback`` chain or as
  a later pool of the rule, because every earlier one had no up value;
* ``backup``: no pool had an up value; the record's plain ``values`` answer
  (``all_down: backup``);
* ``all_down``: no pool had an up value and the policy served every pool
  value (``all_down: all``, or ``backup`` without backup values) or SERVFAIL.

A ``nearest`` rule orders its pools by the client's distance; with no
client in view, the configured order is shown (and the ``why`` says so).
A record's overall ``serving`` (for the ``dnsfail_record_serving`` gauge)
is the worst of its rules', in the order above.

Pure: no I/O, no clock; it reads the same ``HealthView`` (a
``state.Snapshot``) that answers read, so it cannot disagree with them.
Cost: one ``select`` per rule, what one cache-missing query costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dnsfail.model import DynamicRecord, Rule, Zone
from dnsfail.steering.answers import HealthView
from dnsfail.steering.selection import ALL_DOWN_BACKUP, Selection, select

#: The values of ``serving``, best first: a record's overall value is its rules' worst.
SERVING = ("pools", "fallback", "backup", "all_down")


@dataclass(frozen=True, slots=True)
class RuleServing:
    """What one rule of a record answers now."""

    #: 1-based, as ``explain`` and octoDNS count rules.
    rule: int
    #: ``catch-all``, ``geos EU,NA``, ``subnets 10.0.0.0/8``, or both.
    matches: str
    serving: str
    #: The pool that answers; None when the all-down policy does.
    pool: str | None
    addresses: tuple[str, ...]
    ttl: int
    servfail: bool
    #: The selection's trail, e.g. ``pool eu: 0/2 up -> fallback us: 1/1 up``.
    why: str


@dataclass(frozen=True, slots=True)
class RecordServing:
    zone: str
    name: str
    rtype: str
    #: The worst of the rules' ``serving`` (see SERVING).
    serving: str
    rules: tuple[RuleServing, ...]


def classify(rule: Rule, chosen: Selection) -> str:
    """``pools``, ``fallback``, ``backup`` or ``all_down`` for one selection."""
    if chosen.pool is not None:
        first = chosen.reason.split(" -> ", 1)[0]
        return "pools" if first.startswith(f"pool {chosen.pool}:") else "fallback"
    return "backup" if chosen.reason.endswith(ALL_DOWN_BACKUP) else "all_down"


def describe_rule(rule: Rule) -> str:
    parts = []
    if rule.geos:
        parts.append("geos " + ",".join(rule.geos))
    if rule.subnets:
        parts.append("subnets " + ",".join(str(n) for n in rule.subnets))
    text = " or ".join(parts) or "catch-all"
    return text + (" (nearest)" if rule.nearest else "")


def rule_serving(record: DynamicRecord, index: int, rule: Rule,
                 health: HealthView) -> RuleServing:
    chosen = select(record, rule, health.is_up, health.change_bound)
    why = chosen.reason
    if rule.nearest:
        why += " (nearest: the order depends on the client; configured order shown)"
    return RuleServing(index + 1, describe_rule(rule), classify(rule, chosen), chosen.pool,
                       chosen.addresses, chosen.ttl, chosen.servfail, why)


def record_serving(origin: str, record: DynamicRecord, health: HealthView) -> RecordServing:
    rules = tuple(rule_serving(record, i, rule, health) for i, rule in enumerate(record.rules))
    worst = max((SERVING.index(r.serving) for r in rules), default=0)
    return RecordServing(origin, record.name, record.rtype.name, SERVING[worst], rules)


class Memo:
    """The last snapshot's view, reused while answers cannot have changed.

    A snapshot's ``generation`` moves on whenever a state, a TTL bound, an
    override or the zones change (``state.Store``); a snapshot of the same
    generation over the same zones gives the same answers, so the same view.
    Holding one reference to the zones keeps the identity check exact.
    """

    def __init__(self) -> None:
        self._key: tuple[int, Mapping[str, Zone]] | None = None
        self._view: tuple[RecordServing, ...] = ()

    def view(self, zones: Mapping[str, Zone], generation: int,
             health: HealthView) -> tuple[RecordServing, ...]:
        key = self._key
        if key is None or key[0] != generation or key[1] is not zones:
            self._view = tuple(serving(zones, health))
            self._key = (generation, zones)
        return self._view


def serving(zones: Mapping[str, Zone], health: HealthView) -> Iterator[RecordServing]:
    """Every dynamic record of ``zones``, by zone then name, with what it answers now."""
    for origin in sorted(zones):
        dynamic = zones[origin].dynamic
        for key in sorted(dynamic, key=lambda k: (k[0], int(k[1]))):
            yield record_serving(origin, dynamic[key], health)
