"""Drains on every instance: the drain service, replicated through the node and the exchange.

A drain or undrain through any instance is applied here first (state file,
then the store, as ``serve.drains`` always does), recorded in the node's
versioned drain set, saved to the cluster file next to the state file
(``<state-file>.cluster.json``: origins and undrain tombstones, which the
state file cannot hold), and pushed to every peer at once; the reply says on
how many instances it was applied.  A peer that did not answer catches up at
its next pull (the drain set travels with every message whose digest differs:
anti-entropy), also after a restart, since both files survive it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from dnsfail.cluster import drainset
from dnsfail.cluster.drainset import DrainRecord
from dnsfail.cluster.node import Node
from dnsfail.control.metrics import Metrics
from dnsfail.logs import iso
from dnsfail.model import Status
from dnsfail.serve.drains import Drains
from dnsfail.steering import overrides
from dnsfail.steering.overrides import OverrideError, Selector

log = logging.getLogger("dnsfail.cluster")

#: Replicated drains logged one per line per merge; past it, one line says how many more
#: (a peer's 10,000-drain set must not write 10,000 lines, on every instance, at once).
DRAIN_LOG_LINES = 10

Push = Callable[[], Awaitable[dict[str, bool]]]


def cluster_path(state_path: Path | None) -> Path | None:
    return None if state_path is None else state_path.with_name(state_path.name + ".cluster.json")


def save_records(path: Path, records: Iterable[DrainRecord]) -> None:
    """Write the drain set atomically (a temporary file renamed over the old one)."""
    text = json.dumps({"version": 1, "drains": [r.to_json() for r in records]}, indent=1)
    overrides.write_durably(path, text + "\n")


def load_records(path: Path, now: float) -> dict[str, DrainRecord]:
    """The saved drain set; a missing file is empty, a damaged one is logged and ignored."""
    try:
        with path.open("rb") as f:
            raw = f.read(overrides.MAX_STATE_FILE + 1)
        if len(raw) > overrides.MAX_STATE_FILE:
            raise ValueError(f"larger than {overrides.MAX_STATE_FILE} octets")
        data = json.loads(raw)
        items = data["drains"] if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ValueError("no drains list")
        records = [DrainRecord.from_json(item) for item in items]
    except FileNotFoundError:
        return {}
    except RecursionError:
        log.error("cluster drain file %s ignored: nested too deeply", path)
        return {}
    except (OSError, ValueError, KeyError, OverrideError) as exc:
        log.error("cluster drain file %s ignored: %s", path, str(exc)[:200])
        return {}
    return drainset.merge({}, records, now)[0]


class ClusterDrains(Drains):
    """``serve.drains.Drains`` whose every change reaches the node's peers."""

    def __init__(self, state_path: Path | None, metrics: Metrics, node: Node) -> None:
        super().__init__(state_path, metrics)
        self.node = node
        self.file = cluster_path(state_path)
        self.push: Push | None = None

    def log_restored(self) -> None:
        """Restore the drain set: the cluster file, plus state-file drains it lacks (ours)."""
        super().log_restored()
        assert self.store is not None
        now = self.node.wall()
        records = load_records(self.file, now) if self.file is not None else {}
        mine = [DrainRecord.of(o, self.node.instance) for o in self.store.overrides
                if (r := records.get(o.selector)) is None or r.created != o.created]
        self.node.drains = drainset.merge(records, mine, now)[0]
        self.store.set_overrides(drainset.overrides(self.node.drains, now))

    async def _save_records(self) -> None:
        if self.file is not None:
            await asyncio.to_thread(save_records, self.file, list(self.node.drains.values()))

    async def _replicate(self, result: dict[str, Any]) -> dict[str, Any]:
        acked = await self.push() if self.push is not None else {}
        n = self.node.n
        applied = [self.node.instance] + [
            self.node.peers[url].instance or url for url, ok in acked.items() if ok]
        missing = [url for url, ok in acked.items() if not ok]
        result["cluster"] = {"instances": n, "applied": applied, "missing": missing,
                             "summary": f"applied on {len(applied)}/{n} instances"
                                        + (f"; not answered: {', '.join(missing)}"
                                           if missing else "")}
        return result

    async def drain(self, selector: Selector, state: Status, seconds: float, reason: str,
                    by: str, force: bool = False) -> dict[str, Any]:
        # The stranding check (force) is the origin's: peers take the drain as made.
        result = await super().drain(selector, state, seconds, reason, by, force)
        o = overrides.Override.from_json(result["override"])
        async with self._lock:
            self.node.drains[o.selector] = DrainRecord.of(o, self.node.instance)
            await self._save_records()
        return await self._replicate(result)

    async def undrain(self, selector: Selector, by: str) -> dict[str, Any]:
        result = await super().undrain(selector, by)
        if result["removed"]:
            async with self._lock:
                self.node.drains[selector.text] = DrainRecord.tombstone(
                    selector.text, by, time.time(), self.node.instance)
                await self._save_records()
            return await self._replicate(result)
        return result

    async def merge_remote(self, records: Iterable[DrainRecord]) -> None:
        """Take a peer's drain set: newer records win; saved, then published."""
        async with self._lock:
            assert self.store is not None
            now = self.node.wall()
            merged, taken = drainset.merge(drainset.prune(self.node.drains, now), records, now)
            if not taken:
                return
            try:
                self.node.drains = merged
                await self._save_and_publish(drainset.overrides(merged, now))
                await self._save_records()
            except OSError as exc:
                log.error("could not save drains from a peer: %s", exc)
        for r in taken[:DRAIN_LOG_LINES]:
            log.warning("drain from %s: %s %s until %s (%s; by %s)", r.origin, r.selector,
                        r.state, iso(r.expires), r.reason, r.by or "?",
                        extra={"fields": {"event": "drain_replicated", **r.to_json()}})
        if len(taken) > DRAIN_LOG_LINES:
            more = len(taken) - DRAIN_LOG_LINES
            log.warning("%d more drain record(s) from peers not logged one by one (see "
                        "/v1/status overrides)", more,
                        extra={"fields": {"event": "drain_replicated_more", "count": more}})
