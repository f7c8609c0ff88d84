"""Zone reloads: all or nothing, whatever asked (SIGHUP, ``--watch``, ``POST /v1/reload``).

Zones are parsed off the event loop (``zonefile.load``), and only a set with
no problem at all replaces the running one (``Store.replace_zones``); a
rejected reload logs its problems (up to ``MAX_REPORTED_PROBLEMS``) and keeps
serving the previous zones.  The last result, the config generation and
when each zone's serial was loaded are kept for ``/v1/status`` and metrics.

``--watch`` compares :func:`zone_files`, which lists exactly the files
loading reads (``zonefile.files.discover``, one rule for both).

This module is the reload half of the daemon (``serve.app`` owns its tasks).
It must not import ``serve.app`` or ``control.api``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from dnsfail.control.metrics import Metrics
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.events import transitions
from dnsfail.events.log import EventLog
from dnsfail.logs import iso
from dnsfail.model import ProbeSpec
from dnsfail.serve.collector import settle
from dnsfail.state import Store, prepare
from dnsfail.zonefile import discover, load_zones

log = logging.getLogger(__name__)

#: Most problems a rejected reload logs and returns (``POST /v1/reload``, ``/v1/status``);
#: the rest are counted.  A broken 64 MiB file can hold millions; ``dnsfail check`` lists all.
MAX_REPORTED_PROBLEMS = 100


def zone_files(paths: Sequence[str]) -> dict[str, tuple[int, int, int] | None]:
    """What ``--watch`` compares: every zone file ``load_zones`` would read (the same
    ``zonefiles.discover``), with its inode, size and mtime; None for one that cannot be
    stat'ed (a dangling symlink, say), so that a change to it still triggers a reload."""
    files, problems = discover(paths)
    out: dict[str, tuple[int, int, int] | None] = {p.source: None for p in problems}
    for file in files:
        out[file] = _stamp(file)
    return out


def _stamp(path: str | os.DirEntry[str]) -> tuple[int, int, int] | None:
    """What ``--watch`` compares of one file: inode, size and mtime; None if it cannot be
    stat'ed."""
    try:
        st = path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


#: Entries of the key directory ``--watch`` looks at each round: a key directory holds a
#: few files (the keys themselves are limited to ``dnssec.keys.KEY_FILES_LIMIT``, 1024),
#: so past this many the scan stops rather than stat a huge directory every second.
WATCHED_KEY_ENTRIES = 4096


def key_files(directory: str | None) -> dict[str, tuple[int, int, int] | None]:
    """What ``--watch`` compares of ``--dnssec-keys DIR``: each ``.key``/``.private`` file
    with its inode, size and mtime (the directory itself as None when it cannot be read)."""
    if directory is None:
        return {}
    out: dict[str, tuple[int, int, int] | None] = {}
    try:
        with os.scandir(directory) as entries:
            for seen, entry in enumerate(entries):
                if seen >= WATCHED_KEY_ENTRIES:
                    break
                if entry.name.endswith((".key", ".private")):
                    out[entry.path] = _stamp(entry)
    except OSError:
        out[directory] = None
    return out


class Reloader:
    """Reloads the zones under ``paths`` into ``store`` (set at start).

    ``targets_changed`` is awaited with the new probe targets after each
    successful reload (the prober follows them).
    """

    def __init__(self, paths: Sequence[str], geoip: bool, metrics: Metrics,
                 targets_changed: Callable[[Iterable[ProbeSpec]], Awaitable[None]],
                 events: EventLog | None = None) -> None:
        self.paths = paths
        #: Where each reload's result is told (``/v1/events``, webhooks).
        self.events = events or EventLog()
        self.geoip = geoip
        self.metrics = metrics
        self.targets_changed = targets_changed
        self.store: Store | None = None
        self.lock = asyncio.Lock()
        self.last_reload_ok = True
        #: The last reload: when, what asked for it, and its result (for /v1/status).
        self.last_reload: dict[str, Any] | None = None
        #: Zone sets loaded: 1 at start, +1 per successful reload.
        self.config_generation = 0
        #: When each zone's current serial was loaded (wall clock).
        self.zone_loaded: dict[str, float] = {}
        #: ``--dnssec-keys``: re-reads the key directory for the new zones' names (off the
        #: loop; raises DnsfailError, KeyFileError, for an unusable one) and returns what
        #: puts the keys in use, called with the zones' publication; and the directory,
        #: which ``--watch`` watches too.
        self.keys: Callable[[Sequence[str]], Callable[[], None]] | None = None
        self.key_dir: str | None = None

    def loaded(self, store: Store) -> None:
        """The first zone set is ``store``'s: generation 1, each zone logged; from now on its
        targets' state changes are events too (``events.transitions``)."""
        self.store = store
        transitions.watch(self.events, store)
        now = time.time()
        for zone in store.configured.values():
            self.zone_loaded[zone.origin] = now
            log.info("zone %s: %d records, serial %d (%s)", zone.origin,
                     zone.record_count, zone.serial, zone.source)
        self.config_generation = 1
        self.metrics.reloaded(True, now)
        settle()  # the first zones leave the collector's walks (serve.collector)

    async def reload(self, trigger: str = "") -> list[str]:
        """Re-read every zone; publish all or nothing.  Returns the problems found."""
        async with self.lock:
            assert self.store is not None
            previous = self.store.configured
            try:
                zones = await asyncio.to_thread(load_zones, self.paths, previous,
                                                geoip=self.geoip)
                prepared = await asyncio.to_thread(prepare, zones)  # not on the loop either
            except ConfigError as exc:
                return self._reject(trigger, [str(p) for p in exc.problems])
            except Exception as exc:  # never a silent task failure or a bare 500: a problem
                return self._reject(trigger, [f"reload failed: {type(exc).__name__}: "
                                              f"{str(exc)[:500]}"])
            use_keys = None
            if self.keys is not None:
                try:
                    use_keys = await asyncio.to_thread(self.keys, list(zones))
                except Exception as exc:  # a broken key directory: the last good keys stay
                    reason = str(exc) if isinstance(exc, DnsfailError) else \
                        f"keys not re-read: {type(exc).__name__}: {str(exc)[:500]}"
                    return self._reject(trigger, [f"{reason} (still signing with the "
                                                  "previous keys)"])
            if use_keys is not None:
                use_keys()
            self.store.replace_zones(zones, prepared)
            settle()  # the old zones collected, the new ones frozen (serve.collector)
            await self.targets_changed(self.store.targets)
            self.last_reload_ok = True
            self.config_generation += 1
            self._record(trigger, [])
            self.events.emit("reload", ok=True, trigger=trigger, problems=[],
                             config_generation=self.config_generation,
                             zones=sorted(zones))
            now = time.time()
            for zone in zones.values():
                old = previous.get(zone.origin)
                if old is None or old.serial != zone.serial:
                    self.zone_loaded[zone.origin] = now
                    log.info("zone %s: reloaded, %d records, serial %d", zone.origin,
                             zone.record_count, zone.serial,
                             extra={"fields": {"event": "zone_loaded", "zone": zone.origin,
                                               "serial": zone.serial}})
            for origin in previous.keys() - zones.keys():
                self.zone_loaded.pop(origin, None)
                log.warning("zone %s removed (file gone): no longer served", origin,
                            extra={"fields": {"event": "zone_removed", "zone": origin}})
            log.info("reload done%s: %d zone(s), config generation %d",
                     f" ({trigger})" if trigger else "", len(zones), self.config_generation,
                     extra={"fields": {"event": "reload", "ok": True, "trigger": trigger,
                                       "config_generation": self.config_generation}})
            return []

    def _reject(self, trigger: str, problems: list[str]) -> list[str]:
        """Log a rejected reload at once, one line per problem (up to
        ``MAX_REPORTED_PROBLEMS``), record it, and return the problems reported."""
        self.last_reload_ok = False
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problem(s) "
                         "(dnsfail check lists them all)")
        self._record(trigger, shown)
        self.events.emit("reload", ok=False, trigger=trigger, problems=shown,
                         config_generation=self.config_generation)
        for problem in shown:
            log.error("reload rejected: %s", problem)
        log.error("reload rejected: %d problem(s); still serving the previous zones",
                  len(problems),
                  extra={"fields": {"event": "reload", "ok": False, "trigger": trigger,
                                    "problems": shown}})
        return shown

    def _record(self, trigger: str, problems: list[str]) -> None:
        at = time.time()
        self.last_reload = {"at": at, "at_iso": iso(at), "trigger": trigger,
                            "ok": not problems, "problems": problems}
        self.metrics.reloads.labels("error" if problems else "ok").inc()
        self.metrics.reloaded(not problems, at)

    async def quietly(self, trigger: str) -> None:
        await self.reload(trigger)  # problems are logged by reload() itself

    async def watch_forever(self, interval: float) -> None:
        """``--watch``: reload when the set of zone files or any one of them changes."""
        seen = zone_files(self.paths) | key_files(self.key_dir)
        while True:
            await asyncio.sleep(interval)
            now = zone_files(self.paths) | key_files(self.key_dir)
            if now != seen:
                seen = now
                log.info("zone or key files changed; reloading")
                await self.reload()
