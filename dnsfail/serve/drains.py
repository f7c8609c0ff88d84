"""The drain service: operator overrides set, ended, expired and kept across restarts.

``drain``/``undrain`` save the new set to the state file first and publish
it (``Store.set_overrides``) only if that worked, so what answers use is
always what a restart would restore.  One lock orders every change, the
expiry task's included.  A damaged state file is moved aside, never fatal.

What an override matches and when its drain is complete are answered from
the store's indexes (``steering.overrides``), for the control API's views.

This module is the drain half of the daemon (``serve.app`` owns its task); a
backend shared by several instances would replace the state file here.  It
must not import ``serve.app`` or ``control.api``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from dnsfail.control.metrics import Metrics
from dnsfail.events.log import EventLog
from dnsfail.logs import iso
from dnsfail.model import Status
from dnsfail.state import Store
from dnsfail.steering import overrides
from dnsfail.steering.overrides import Match, Override, OverrideError, Selector
from dnsfail.steering.stranded import WouldStrand, stranded

log = logging.getLogger(__name__)

#: What ``complete_at`` promises, as the drain's reply says it.
COMPLETE_MEANS = (
    "answers changed on the next query; after complete_at no resolver that obeys "
    "TTLs still caches an answer with the matched values (complete_at = now + the "
    "longest TTL of the records containing them, an upper bound of every such "
    "answer's TTL)"
)


#: Restored overrides logged one per line at start; past it, one line says how many more
#: (a 10,000-drain state file must not write 10,000 lines, or take seconds to log them).
RESTORED_LOG_LINES = 20


class Drains:
    """Operator overrides over ``store`` (set at start), saved to ``state_path`` if any."""

    def __init__(self, state_path: Path | None, metrics: Metrics,
                 events: EventLog | None = None) -> None:
        self.state_path = state_path
        self.metrics = metrics
        #: Where drains, undrains and expiries are told (``/v1/events``, webhooks).
        self.events = events or EventLog()
        self.store: Store | None = None
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def load_saved(self) -> list[Override]:
        """Overrides from the state file; a damaged file is moved aside, never fatal.

        Refusing to start would turn a bad state file into a DNS outage; the
        file is kept (renamed ``*.corrupt``) for the operator to inspect.
        """
        if self.state_path is None:
            return []
        try:
            return overrides.load(self.state_path, time.time())
        except OverrideError as exc:
            aside = self.state_path.with_name(self.state_path.name + ".corrupt")
            with contextlib.suppress(OSError):
                self.state_path.replace(aside)
            log.error("state file ignored: %s (moved to %s); starting without overrides", exc,
                      aside, extra={"fields": {"event": "error", "state_file": str(aside)}})
            return []

    def log_restored(self) -> None:
        """One line per override the store started with (read by ``load_saved``), for the
        first RESTORED_LOG_LINES; then one line with the count of the rest."""
        assert self.store is not None
        for o in self.store.overrides[:RESTORED_LOG_LINES]:
            log.warning("override restored from %s: %s %s until %s (%s; by %s)%s",
                        self.state_path, o.selector, o.state.name, iso(o.expires), o.reason,
                        o.by or "?", "" if self.override_matches(o) else "; matches nothing",
                        extra={"fields": {"event": "override_restored", **o.to_json()}})
        more = len(self.store.overrides) - RESTORED_LOG_LINES
        if more > 0:
            log.warning("%d more override(s) restored from %s, not logged one by one "
                        "(dnsfail status lists them)", more, self.state_path,
                        extra={"fields": {"event": "override_restored_more", "count": more}})

    def override_matches(self, o: Override) -> tuple[Match, ...]:
        assert self.store is not None
        found = self.store.index.matched.get(o.selector)
        if found is None:  # not one of the store's overrides
            found = self.store.values.lookup(overrides.parse_selector(o.selector))
        return found

    def drain_complete_at(self, o: Override) -> float:
        """When no answer that contained the override's values can still be cached."""
        return o.created + overrides.drain_ttl(self.override_matches(o))

    async def _save_and_publish(self, new: list[Override]) -> None:
        assert self.store is not None
        if self.state_path is not None:
            await asyncio.to_thread(overrides.save, self.state_path, new)
        self.store.set_overrides(new)
        self._changed.set()

    async def drain(self, selector: Selector, state: Status, seconds: float, reason: str,
                    by: str, force: bool = False) -> dict[str, Any]:
        """Force what ``selector`` matches to ``state`` for ``seconds``; saved, then published.

        Raises OverrideError when the selector matches no pool value (a typo
        must not look like a successful drain) and OSError when the state file
        cannot be written, in which case nothing changes.  Unless ``force``, a drain
        that would leave a record with no healthy pool value raises WouldStrand
        (``steering.stranded``), naming the records.
        """
        async with self._lock:
            assert self.store is not None
            found = self.store.values.lookup(selector)
            if not found:
                raise OverrideError(f"{selector.text} ({selector.kind.value}) matches no pool "
                                    "value of any health-checked record")
            now = time.time()
            o = Override(selector.text, state, reason, now, now + seconds, by)
            previous = [x for x in self.store.overrides if x.selector == selector.text]
            rest = [x for x in self.store.overrides if x.selector != selector.text]
            if state is Status.DOWN and not force:
                snap = self.store.snapshot
                lost = stranded(snap.zones, snap.is_up, found)
                if lost:
                    raise WouldStrand(selector.text, lost)
            await self._save_and_publish([*rest, o])
        ttl = overrides.drain_ttl(found)
        verb = "drain" if state is Status.DOWN else "force up"
        log.warning("%s %s (%d value(s)) for %.0fs until %s by %s: %s; complete at %s "
                    "(max TTL %ds)", verb, o.selector, len(found), seconds, iso(o.expires),
                    by, reason, iso(o.created + ttl), ttl,
                    extra={"fields": {"event": "drain", **o.to_json(), "max_ttl": ttl,
                                      "values": len(found)}})
        self.metrics.overrides.labels("set").inc()
        self.events.emit("drain", **o.to_json(), values=len(found), max_ttl=ttl,
                         complete_at=o.created + ttl,
                         records=sorted({m.record.name for m in found}))
        return {
            "override": o.to_json(),
            "replaced": previous[0].to_json() if previous else None,
            "matched": [_match_json(m) for m in found],
            "effective_at": o.created,
            "max_ttl": ttl,
            "complete_at": o.created + ttl,
            "complete_at_iso": iso(o.created + ttl),
            "expires_at_iso": iso(o.expires),
            "complete_means": COMPLETE_MEANS,
            "warnings": overrides.not_covered(self.store.configured, selector),
        }

    async def undrain(self, selector: Selector, by: str) -> dict[str, Any]:
        """End the override set for exactly ``selector`` (its canonical spelling)."""
        async with self._lock:
            assert self.store is not None
            removed = [o for o in self.store.overrides if o.selector == selector.text]
            if removed:
                await self._save_and_publish(
                    [o for o in self.store.overrides if o.selector != selector.text])
        if not removed:
            return {"removed": []}
        now = time.time()
        ttl = overrides.drain_ttl(self.store.values.lookup(selector))
        for o in removed:
            log.warning("undrain %s by %s (was %s: %s)", o.selector, by, o.state.name, o.reason,
                        extra={"fields": {"event": "undrain", **o.to_json(), "undrain_by": by}})
        self.metrics.overrides.labels("removed").inc(len(removed))
        for o in removed:
            self.events.emit("undrain", **o.to_json(), undrain_by=by)
        return {
            "removed": [o.to_json() for o in removed],
            "max_ttl": ttl,
            "complete_at": now + ttl,
            "complete_at_iso": iso(now + ttl),
        }

    async def expire_forever(self) -> None:
        """End overrides when they run out, even if nobody asks (an owned task).

        Wakes at the next expiry, when the set changes, and at least once a
        minute, so a wall-clock step cannot postpone an expiry for long.
        """
        while True:
            assert self.store is not None
            upcoming = overrides.next_expiry(self.store.overrides)
            delay = 60.0 if upcoming is None else min(60.0, max(0.0, upcoming - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay + 0.001)
            self._changed.clear()
            async with self._lock:
                gone = self.store.expire()
                if gone and self.state_path is not None:
                    try:
                        await asyncio.to_thread(overrides.save, self.state_path,
                                                self.store.overrides)
                    except OSError as exc:  # expired entries are dropped at load anyway
                        log.error("could not update state file %s: %s", self.state_path, exc,
                                  extra={"fields": {"event": "error"}})
            for o in gone:
                self.events.emit("expired", **o.to_json())
                log.warning("override expired: %s %s (set by %s: %s)", o.selector,
                            o.state.name, o.by or "?", o.reason,
                            extra={"fields": {"event": "override_expired", **o.to_json()}})
            if gone:
                self.metrics.overrides.labels("expired").inc(len(gone))


def _match_json(m: Match) -> dict[str, Any]:
    return {"zone": m.zone, "record": m.record.name, "type": m.record.rtype.name,
            "pool": m.pool, "value": m.value.value, "ttl": m.record.ttl,
            "target": m.value.probe.label if m.value.probe is not None else None}
