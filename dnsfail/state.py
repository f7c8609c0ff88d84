"""Snapshots of everything an answer depends on, and the one writer that swaps them.

A query reads ``store.snapshot`` once and uses nothing else, so it sees one
consistent generation of zones and health even while a reload or a probe
result replaces the snapshot (the same idea as gdnsd's RCU-swapped state table
and CoreDNS's ``zone.snapshot()``).  Replacing is a single attribute
assignment, atomic for every reader on the event loop.

Each snapshot carries its own reply cache (``dns.replycache.ReplyCache``):
answers are a pure function of the snapshot and the question, so a new
snapshot simply starts with an empty cache and no invalidation logic is
needed.  A probe result that changes a target's state, or how soon it could
change (which bounds the TTL), swaps in a new snapshot; the very next query
sees it.

This module owns ``Snapshot`` and ``Store`` only (a query's view of dynamic
records is ``steering.answers.Steering``).  Part of the core: no I/O, no
clock but the one ``Store`` is given, nothing from serve, control or cli.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from dnsfail.dns.replycache import ReplyCache
from dnsfail.model import ProbeSpec, Zone, pool_values
from dnsfail.steering.health import (
    Health,
    TargetHealth,
    describe_change,
    next_change_bound,
    observe,
)
from dnsfail.steering.overrides import Override, OverrideIndex, ValueIndex, active, apply

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Zones plus the health of every probed target, at one generation.

    Dynamic records are answered from this snapshot's health and nothing
    else, through a per-query ``Steering`` view.
    """

    generation: int
    zones: Mapping[str, Zone]
    health: Mapping[ProbeSpec, TargetHealth] = field(default_factory=dict)
    #: Prepared replies (a memo, not state): answers are a pure function of this
    #: snapshot and the question, so each snapshot starts with an empty cache.
    replies: ReplyCache = field(default_factory=ReplyCache, compare=False)

    def is_up(self, spec: ProbeSpec) -> bool | None:
        h = self.health.get(spec)
        if h is None or h.state is Health.UNKNOWN:
            return None
        return h.state is Health.UP

    def change_bound(self, spec: ProbeSpec) -> float:
        h = self.health.get(spec)
        if h is None:
            return 0.0
        return next_change_bound(h, spec.rise, spec.fall, spec.interval)


def probe_specs(zones: Mapping[str, Zone]) -> dict[ProbeSpec, list[str]]:
    """Every distinct probe target, with the records and pools that use it (for logs)."""
    out: dict[ProbeSpec, list[str]] = {}
    for _, record, pool, value in pool_values(zones):
        if value.probe is not None:
            where = f"{record.name.rstrip('.')} pool {pool.name}"
            users = out.setdefault(value.probe, [])
            if where not in users:
                users.append(where)
    return out


def _what_is_probed(spec: ProbeSpec) -> ProbeSpec:
    """``spec`` without its timing: two specs equal here probe the same thing the same way."""
    return replace(spec, interval=0.0, timeout=0.0, rise=1, fall=1)


class Prepared(NamedTuple):
    """What publishing a zone set needs besides the zones, built by ``prepare``: off the
    event loop on reload, since for 1,000 targets it takes tens of milliseconds."""

    zones: Mapping[str, Zone]
    values: ValueIndex
    targets: dict[ProbeSpec, list[str]]
    #: Each target without its timing (``_what_is_probed``).
    probed: dict[ProbeSpec, ProbeSpec]


def prepare(zones: Mapping[str, Zone]) -> Prepared:
    """The indexes of ``zones`` that ``Store.replace_zones`` uses: pure, for any thread."""
    targets = probe_specs(zones)
    return Prepared(zones, ValueIndex.build(zones), targets,
                    {spec: _what_is_probed(spec) for spec in targets})


class Store:
    """The single writer of snapshots: reloads, probe results and overrides come through here.

    ``configured`` holds the zones as loaded; the snapshot's zones are those
    with the active operator overrides applied (overrides.apply), so an
    override changes answers exactly as a ``status`` in the zone file would.
    ``now`` is the wall clock that override expiry is measured on.
    """

    def __init__(
        self,
        zones: Mapping[str, Zone],
        overrides: Sequence[Override] = (),
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.now = now
        self.configured: dict[str, Zone] = dict(zones)
        #: The configured pool values by selector key, and what each override matches:
        #: rebuilt with every zone or override change, so no view rescans the zones.
        self.values = ValueIndex.build(self.configured)
        self.overrides: list[Override] = active(overrides, now())
        self.index = OverrideIndex.build(self.values, self.overrides)
        self.snapshot = Snapshot(1, apply(self.configured, self.overrides, now(), self.values))
        self.targets = probe_specs(zones)
        self._probed = {spec: _what_is_probed(spec) for spec in self.targets}
        #: Called with every newly published snapshot (worker processes mirror it).
        self.subscribers: list[Callable[[Snapshot], None]] = []
        #: Called with (spec, before, after) when a target's state changes, by a probe result
        #: or a cluster's verdict (the daemon's event history).
        self.changes: list[Callable[[ProbeSpec, TargetHealth, TargetHealth], None]] = []

    def _publish(self, zones: Mapping[str, Zone], health: Mapping[ProbeSpec, TargetHealth]) -> None:
        self.snapshot = Snapshot(self.snapshot.generation + 1, zones, health)
        for subscriber in self.subscribers:
            subscriber(self.snapshot)

    def replace_zones(
        self, zones: Mapping[str, Zone], prepared: Prepared | None = None
    ) -> Snapshot:
        """Publish a new zone set, keeping the health of targets that are still probed.

        A target whose check changed only in timing (interval, timeout, rise,
        fall) is the same target: it keeps its state and counters, and the new
        thresholds apply to them (as ``health.observe`` promises).  Otherwise
        a reload that tunes ``fall`` would forget that a site is down and
        serve it until its next probe.

        ``prepared`` is ``prepare(zones)`` made beforehand (off the event loop):
        what is left here is linear in the targets with small constants.
        """
        if prepared is None or prepared.zones is not zones:
            prepared = prepare(zones)
        self.configured = dict(zones)
        self.values = prepared.values
        self.index = OverrideIndex.build(self.values, self.overrides)
        old = self.snapshot.health
        probed = self._probed
        by_target = {probed.get(s) or _what_is_probed(s): h for s, h in old.items()}
        self.targets, self._probed = prepared.targets, prepared.probed
        health = {}
        for spec in self.targets:
            known = old.get(spec) or by_target.get(self._probed[spec])
            if known is not None:
                health[spec] = known
        self._publish(apply(self.configured, self.overrides, self.now(), self.values), health)
        return self.snapshot

    def republish(self) -> Snapshot:
        """Publish the same zones and health as a new generation: an empty reply cache.

        For inputs that change answers without living in the snapshot: a
        reloaded GeoIP database places clients differently.
        """
        snap = self.snapshot
        self._publish(snap.zones, snap.health)
        return self.snapshot

    def set_overrides(self, overrides: Sequence[Override]) -> Snapshot:
        """Publish answers under ``overrides`` (the complete new set); the next query sees them."""
        self.overrides = active(overrides, self.now())
        self.index = OverrideIndex.build(self.values, self.overrides)
        self._publish(apply(self.configured, self.overrides, self.now(), self.values),
                      self.snapshot.health)
        return self.snapshot

    def expire(self) -> list[Override]:
        """Drop the overrides that have run out and republish; returns the ones dropped."""
        now = self.now()
        gone = [o for o in self.overrides if not o.active(now)]
        if gone:
            self.set_overrides([o for o in self.overrides if o.active(now)])
        return gone

    def observe(self, spec: ProbeSpec, ok: bool, detail: str, latency: float, at: float) -> None:
        """Fold one probe result in; publish a new snapshot if answers could differ."""
        if spec not in self.targets:
            return  # a result that raced a reload which removed its target
        snap = self.snapshot
        before = snap.health.get(spec, TargetHealth())
        after = observe(before, ok, detail, latency, at, rise=spec.rise, fall=spec.fall)
        line = describe_change(before, after, spec.label, ", ".join(self.targets[spec]))
        if line is not None:
            fields = {"event": "state_change", "target": spec.label,
                      "from": before.state.value, "to": after.state.value, "detail": detail}
            if before.state is Health.UNKNOWN:
                line = line.replace(" UNKNOWN -> ", " first result: ")
                log.info("%s", line, extra={"fields": fields})
            else:
                log.warning("%s", line, extra={"fields": fields})
        self._apply(spec, before, after)

    def set_health(self, spec: ProbeSpec, after: TargetHealth) -> None:
        """Publish ``after`` as the health answers use for ``spec`` (a cluster's verdict).

        The same rule as :meth:`observe`: a new generation only if answers could differ.
        """
        if spec not in self.targets:
            return
        self._apply(spec, self.snapshot.health.get(spec, TargetHealth()), after)

    def _apply(self, spec: ProbeSpec, before: TargetHealth, after: TargetHealth) -> None:
        """Put ``after`` in the snapshot: a new generation only if answers could differ."""
        snap = self.snapshot
        health = dict(snap.health)
        health[spec] = after
        if (
            after.state is not before.state
            or snap.change_bound(spec) != next_change_bound(after, spec.rise, spec.fall,
                                                            spec.interval)
        ):
            self._publish(snap.zones, health)
            if after.state is not before.state:
                self._changed(spec, before, after)
        else:
            # Same answers, so the prepared replies stay valid: share the warm caches.
            self.snapshot = Snapshot(snap.generation, snap.zones, health, snap.replies)

    def _changed(self, spec: ProbeSpec, before: TargetHealth, after: TargetHealth) -> None:
        for watcher in self.changes:
            try:
                watcher(spec, before, after)
            except Exception:  # a watcher's bug must not undo a published state
                log.exception("state change watcher failed for %s", spec.label)

    def unknown_targets(self) -> Iterable[ProbeSpec]:
        return [s for s in self.targets if self.snapshot.is_up(s) is None]
