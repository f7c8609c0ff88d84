"""The composition root: builds the store, handler and listeners, and owns their lifetime.

Everything long-lived is created in ``Daemon.start`` and torn down in
``Daemon.stop``: sockets, the control API, the zone-watch and override-expiry
tasks and signal handlers.  Reload (SIGHUP, ``--watch``, ``POST /v1/reload``)
is all-or-nothing: zones are parsed off the event loop, and only a set with
no problem at all replaces the running one.

Operator overrides (drains) are decided here: ``drain``/``undrain`` save the
new set to the state file first and publish it only if that worked, so what
answers use is always what a restart would restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnsfail.addresses import (
    CONTROL_HEAD_TIMEOUT,
    CONTROL_MAX_CONNECTIONS,
    DEFAULT_CONTROL,
    DEFAULT_LISTEN,
)
from dnsfail.control.api import ControlServer, check_exposure
from dnsfail.control.metrics import Metrics
from dnsfail.dns.handler import Handler
from dnsfail.dns.stats import QueryStats, Totals
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.model import ProbeSpec, Status, Zone
from dnsfail.serve.probe import Prober
from dnsfail.serve.server import TcpLimits, UdpListener, bind_udp, serve_tcp
from dnsfail.serve.workers import Workers, WorkerSettings
from dnsfail.state import Store
from dnsfail.steering import overrides
from dnsfail.steering.geo import Locator, NoLocator
from dnsfail.steering.mmdb import MaxMindLocator
from dnsfail.steering.overrides import Match, Override, OverrideError, Selector
from dnsfail.tasks import cancel_all
from dnsfail.zonefile.files import discover
from dnsfail.zonefile.load import load_zones

log = logging.getLogger(__name__)

#: Probes in flight at once (each holds one socket while it runs).
PROBE_IN_FLIGHT = 64
#: Descriptors kept free of every connection cap: listeners, the log, the state file and its
#: directory, the GeoIP database, epoll, worker pipes, threads' files, the interpreter's own.
FD_RESERVE = 64
#: Fewest connections a cap is lowered to when the open-file limit is too small for all.
MIN_CAP = 16


@dataclass
class Settings:
    paths: list[str] = field(default_factory=lambda: ["zones"])
    listen: list[tuple[str, int]] = field(default_factory=lambda: [DEFAULT_LISTEN])
    identity: str = field(default_factory=socket.gethostname)
    version: str | None = None
    watch: bool = False
    watch_interval: float = 1.0
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1000
    #: Control API connections open at once, and seconds each has for a request head.
    control_max_connections: int = CONTROL_MAX_CONNECTIONS
    control_head_timeout: float = CONTROL_HEAD_TIMEOUT
    #: Longest wait for the first probe round before answering; None: derived from the
    #: slowest probe timeout (gdnsd waits for its first monitoring round too).
    startup_timeout: float | None = None
    #: MaxMind/DB-IP .mmdb file for ``geos`` rules; None: subnet rules only.
    geoip: str | None = None
    #: Seconds between checks of the GeoIP file for a new version.
    geoip_refresh: float = 5.0
    #: Control API address; None: no control API.
    control: tuple[str, int] | None = DEFAULT_CONTROL
    #: False when ``control`` is the default: then a busy port is a warning, not a failure,
    #: so a second instance on one host (or a test) still starts.
    control_explicit: bool = False
    #: Bearer token the control API requires; required to bind beyond loopback.
    control_token: str | None = None
    #: Where operator overrides are kept across restarts; None: in memory only.
    state_file: str | None = "dnsfail-state.json"
    #: Processes answering DNS: this one plus ``workers - 1`` worker processes (workers.py).
    workers: int = 1
    #: How worker processes log (the main process's logging is set up by the CLI).
    log_level: str = "info"
    log_format: str = "text"


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
        try:
            st = os.stat(file)
        except OSError:
            out[file] = None
        else:
            out[file] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.handler: Handler | None = None
        self.udp: list[UdpListener] = []
        self.tcp: list[asyncio.Server] = []
        self.limits = TcpLimits(settings.tcp_idle_timeout, settings.tcp_max_connections)
        self.ports: list[tuple[str, int]] = []
        self.stopped = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.prober: Prober | None = None
        self.locator: Locator = NoLocator()
        self.reload_lock = asyncio.Lock()
        self.last_reload_ok = True
        #: The last reload: when, what asked for it, and its result (for /v1/status).
        self.last_reload: dict[str, Any] | None = None
        #: Zone sets loaded: 1 at start, +1 per successful reload.
        self.config_generation = 0
        #: When each zone's current serial was loaded (wall clock).
        self.zone_loaded: dict[str, float] = {}
        self._signals: list[int] = []
        self.stats = QueryStats()
        self.control: ControlServer | None = None
        self.control_address: tuple[str, int] | None = None
        #: True once DNS is being served (after the first probe round or its timeout).
        self.ready = False
        self.first_round = "pending"
        self.state_path = Path(settings.state_file) if settings.state_file else None
        self._override_lock = asyncio.Lock()
        self._overrides_changed = asyncio.Event()
        self.workers: Workers | None = None
        self.metrics = Metrics(self, self.stats, self._worker_totals)
        self.control_max_connections = settings.control_max_connections

    def _fit_descriptors(self, limit: int) -> None:
        """Keep DNS TCP + control + probes + FD_RESERVE within the open-file limit.

        Every accepted connection costs a descriptor; when they are gone,
        probes fail with EMFILE and healthy sites look down (issue 11).  If
        the caps do not fit, they are lowered (control first, it matters
        least) and a warning says so: a cap we cannot honour is a lie.
        """
        control = self.control_max_connections if self.settings.control is not None else 0
        dns = self.limits.max_connections
        room = limit - PROBE_IN_FLIGHT - FD_RESERVE
        if dns + control <= room:
            return
        new_control = min(control, max(MIN_CAP, room // 8)) if control else 0
        new_dns = min(dns, max(MIN_CAP, room - new_control))
        log.warning("open-file limit %d is too small for %d DNS TCP + %d control connections "
                    "+ %d probes + %d reserved: lowered to %d DNS TCP and %d control "
                    "connections (raise the hard limit, e.g. LimitNOFILE= in systemd)",
                    limit, dns, control, PROBE_IN_FLIGHT, FD_RESERVE, new_dns, new_control,
                    extra={"fields": {"event": "fd_limit", "limit": limit,
                                      "tcp_max_connections": new_dns,
                                      "control_max_connections": new_control}})
        self.limits.max_connections = new_dns
        self.control_max_connections = new_control

    def _worker_totals(self) -> list[Totals]:
        return self.workers.totals() if self.workers is not None else []

    # --- metrics.Source ---------------------------------------------------------------

    @property
    def tcp_open(self) -> int:
        return self.limits.open + sum(t.tcp_open for t in self._worker_totals())

    @property
    def udp_dropped_sends(self) -> int:
        return (sum(listener.dropped_sends for listener in self.udp)
                + sum(t.udp_dropped_sends for t in self._worker_totals()))

    @property
    def tcp_closed(self) -> dict[str, int]:
        out = dict(self.limits.closed)
        for totals in self._worker_totals():
            for reason, count in totals.tcp_closed.items():
                out[reason] = out.get(reason, 0) + count
        return out

    @property
    def overrides(self) -> list[Override]:
        return list(self.store.overrides) if self.store is not None else []

    @property
    def zones(self) -> dict[str, Zone]:
        assert self.store is not None
        return dict(self.store.snapshot.zones)

    async def start(self) -> None:
        """Load zones (raising ConfigError if any is bad), bind, and start answering."""
        if self.settings.control is not None:
            check_exposure(self.settings.control[0], self.settings.control_token)
        self._fit_descriptors(raise_fd_limit())
        saved = await asyncio.to_thread(self._load_overrides)
        geoip = self.settings.geoip
        if geoip is not None:
            self.locator = await asyncio.to_thread(MaxMindLocator, geoip)
            log.info("GeoIP database %s loaded", geoip)
        zones = await asyncio.to_thread(load_zones, self.settings.paths, geoip=geoip is not None)
        now = time.time()
        for zone in zones.values():
            self.zone_loaded[zone.origin] = now
            log.info("zone %s: %d records, serial %d (%s)", zone.origin,
                     zone.record_count, zone.serial, zone.source)
        self.config_generation = 1
        self.store = Store(zones, saved)
        store = self.store
        for o in store.overrides:
            log.warning("override restored from %s: %s %s until %s (%s; by %s)%s",
                        self.state_path, o.selector, o.state.name, _iso(o.expires), o.reason,
                        o.by or "?", "" if self.override_matches(o) else "; matches nothing",
                        extra={"fields": {"event": "override_restored", **o.to_json()}})
        self.handler = Handler(lambda: store.snapshot, identity=self.settings.identity,
                               version=self.settings.version, locator=self.locator,
                               stats=self.stats)
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.settings.listen:  # bind first: a busy port fails fast
                sock = bind_udp(host, port)
                bound = sock.getsockname()[1]
                self.udp.append(UdpListener(sock, self.handler.handle))
                self.tcp.append(await serve_tcp(host, bound, self.handler.handle, self.limits))
                self.ports.append((host, bound))
            await self._start_control()
            await self._first_probe_round()
            for listener in self.udp:
                listener.start(loop)
            for server in self.tcp:
                await server.start_serving()
            if self.settings.workers > 1:
                await self._start_workers(store)
        except BaseException:
            await self.stop()
            raise
        self.ready = True
        for host, bound in self.ports:
            log.info("listening on %s port %d (udp, tcp)%s", host, bound,
                     f", {self.settings.workers} processes" if self.workers else "")
        self.tasks.append(asyncio.create_task(self._expire_overrides(), name="override-expiry"))
        if self.settings.watch:
            self.tasks.append(asyncio.create_task(self._watch(), name="zone-watch"))
        if isinstance(self.locator, MaxMindLocator):
            self.tasks.append(asyncio.create_task(self._refresh_geoip(self.locator),
                                                  name="geoip-refresh"))
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)
                self._signals.append(signum)

    async def _start_workers(self, store: Store) -> None:
        """Share the listening sockets with ``workers - 1`` processes fed by ``store``."""
        s = self.settings
        sockets = [(listener.sock.fileno(), False) for listener in self.udp]
        sockets += [(sock.fileno(), True) for server in self.tcp for sock in server.sockets]
        self.workers = Workers(s.workers - 1, sockets, WorkerSettings(
            s.identity, s.version, s.geoip, s.tcp_idle_timeout, s.tcp_max_connections,
            s.log_level, s.log_format, uvloop=_uvloop_running()))
        store.subscribers.append(self.workers.publish)
        await self.workers.start(store.snapshot)

    async def _first_probe_round(self) -> None:
        """Cold start: answer dynamic names from probe results, never from guesses.

        Like gdnsd, queries wait (in the socket buffers) until every target
        has been probed once.  If some target gives no result in time it is
        served as up until it does: starting by declaring sites down is the
        PowerDNS failure mode (pdns#9529) that withdraws healthy gateways.
        """
        assert self.store is not None
        targets = self.store.targets
        self.prober = Prober(targets, self._on_probe, max_in_flight=PROBE_IN_FLIGHT)
        await self.prober.start()
        if not targets:
            self.first_round = "complete"
            return
        timeout = self.settings.startup_timeout
        if timeout is None:
            timeout = max(spec.timeout for spec in targets) + 2.0
        if await self.prober.first_round(timeout):
            self.first_round = "complete"
            log.info("first probe round complete: %d target(s)", len(targets))
        else:
            self.first_round = "timed out"
            missing = ", ".join(s.label for s in self.store.unknown_targets())
            log.warning("no probe result after %.1fs for %s; serving them as up until probed",
                        timeout, missing)

    def _on_probe(self, spec: ProbeSpec, ok: bool, detail: str, latency: float,
                  at: float) -> None:
        assert self.store is not None
        self.metrics.observe_probe(spec, ok, latency)
        self.store.observe(spec, ok, detail, latency, at)

    async def _start_control(self) -> None:
        """Serve the control API; a busy *default* port is only a warning (see Settings)."""
        if self.settings.control is None:
            return
        host, port = self.settings.control
        server = ControlServer(self, host, port, self.settings.control_token,
                               max_connections=self.control_max_connections,
                               head_timeout=self.settings.control_head_timeout)
        try:
            self.control_address = await server.start()
        except OSError as exc:
            if self.settings.control_explicit or exc.errno != errno.EADDRINUSE:
                raise DnsfailError(f"control API on {host}:{port}: {exc.strerror or exc}") from exc
            log.warning("control API not started: %s:%d is in use (another dnsfail?); "
                        "pass --control HOST:PORT, or --control off", host, port)
            return
        self.control = server
        log.info("control API on http://%s:%d/%s", self.control_address[0],
                 self.control_address[1],
                 " (bearer token required)" if self.settings.control_token else "")

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.tasks = [t for t in self.tasks if not t.done()]
            self.tasks.append(asyncio.create_task(self._reload_quietly(), name="reload"))
        else:
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            self.stopped.set()

    async def _reload_quietly(self) -> None:
        await self.reload(trigger="SIGHUP")  # problems are logged by reload() itself

    async def reload(self, trigger: str = "") -> list[str]:
        """Re-read every zone; publish all or nothing.  Returns the problems found."""
        async with self.reload_lock:
            assert self.store is not None
            previous = self.store.configured
            try:
                zones = await asyncio.to_thread(
                    load_zones, self.settings.paths, previous,
                    geoip=self.settings.geoip is not None,
                )
            except ConfigError as exc:
                return self._reject_reload(trigger, [str(p) for p in exc.problems])
            except Exception as exc:  # never a silent task failure or a bare 500: a problem
                return self._reject_reload(trigger, [f"reload failed: {type(exc).__name__}: "
                                                     f"{str(exc)[:500]}"])
            self.store.replace_zones(zones)
            if self.prober is not None:
                await self.prober.update(self.store.targets)
            self.last_reload_ok = True
            self.config_generation += 1
            self._record_reload(trigger, [])
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

    def _reject_reload(self, trigger: str, problems: list[str]) -> list[str]:
        """Log a rejected reload at once, one line per problem (up to
        ``MAX_REPORTED_PROBLEMS``), record it, and return the problems reported."""
        self.last_reload_ok = False
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problem(s) "
                         "(dnsfail check lists them all)")
        self._record_reload(trigger, shown)
        for problem in shown:
            log.error("reload rejected: %s", problem)
        log.error("reload rejected: %d problem(s); still serving the previous zones",
                  len(problems),
                  extra={"fields": {"event": "reload", "ok": False, "trigger": trigger,
                                    "problems": shown}})
        return shown

    def _record_reload(self, trigger: str, problems: list[str]) -> None:
        at = time.time()
        self.last_reload = {"at": at, "at_iso": _iso(at), "trigger": trigger,
                            "ok": not problems, "problems": problems}
        self.metrics.reloads.labels("error" if problems else "ok").inc()

    # --- operator overrides ---------------------------------------------------------------

    def _load_overrides(self) -> list[Override]:
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
        self._overrides_changed.set()

    async def drain(self, selector: Selector, state: Status, seconds: float, reason: str,
                    by: str) -> dict[str, Any]:
        """Force what ``selector`` matches to ``state`` for ``seconds``; saved, then published.

        Raises OverrideError when the selector matches no pool value (a typo
        must not look like a successful drain) and OSError when the state file
        cannot be written, in which case nothing changes.
        """
        async with self._override_lock:
            assert self.store is not None
            found = self.store.values.lookup(selector)
            if not found:
                raise OverrideError(f"{selector.text} ({selector.kind.value}) matches no pool "
                                    "value of any health-checked record")
            now = time.time()
            o = Override(selector.text, state, reason, now, now + seconds, by)
            previous = [x for x in self.store.overrides if x.selector == selector.text]
            rest = [x for x in self.store.overrides if x.selector != selector.text]
            await self._save_and_publish([*rest, o])
        ttl = overrides.drain_ttl(found)
        verb = "drain" if state is Status.DOWN else "force up"
        log.warning("%s %s (%d value(s)) for %.0fs until %s by %s: %s; complete at %s "
                    "(max TTL %ds)", verb, o.selector, len(found), seconds, _iso(o.expires),
                    by, reason, _iso(o.created + ttl), ttl,
                    extra={"fields": {"event": "drain", **o.to_json(), "max_ttl": ttl,
                                      "values": len(found)}})
        self.metrics.overrides.labels("set").inc()
        return {
            "override": o.to_json(),
            "replaced": previous[0].to_json() if previous else None,
            "matched": [_match_json(m) for m in found],
            "effective_at": o.created,
            "max_ttl": ttl,
            "complete_at": o.created + ttl,
            "complete_at_iso": _iso(o.created + ttl),
            "expires_at_iso": _iso(o.expires),
            "complete_means": (
                "answers changed on the next query; after complete_at no resolver that obeys "
                "TTLs still caches an answer with the matched values (complete_at = now + the "
                "longest TTL of the records containing them, an upper bound of every such "
                "answer's TTL)"
            ),
            "warnings": overrides.not_covered(self.store.configured, selector),
        }

    async def undrain(self, selector: Selector, by: str) -> dict[str, Any]:
        """End the override set for exactly ``selector`` (its canonical spelling)."""
        async with self._override_lock:
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
        return {
            "removed": [o.to_json() for o in removed],
            "max_ttl": ttl,
            "complete_at": now + ttl,
            "complete_at_iso": _iso(now + ttl),
        }

    async def _expire_overrides(self) -> None:
        """End overrides when they run out, even if nobody asks (an owned task).

        Wakes at the next expiry, when the set changes, and at least once a
        minute, so a wall-clock step cannot postpone an expiry for long.
        """
        while True:
            assert self.store is not None
            upcoming = overrides.next_expiry(self.store.overrides)
            delay = 60.0 if upcoming is None else min(60.0, max(0.0, upcoming - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._overrides_changed.wait(), delay + 0.001)
            self._overrides_changed.clear()
            async with self._override_lock:
                gone = self.store.expire()
                if gone and self.state_path is not None:
                    try:
                        await asyncio.to_thread(overrides.save, self.state_path,
                                                self.store.overrides)
                    except OSError as exc:  # expired entries are dropped at load anyway
                        log.error("could not update state file %s: %s", self.state_path, exc,
                                  extra={"fields": {"event": "error"}})
            for o in gone:
                log.warning("override expired: %s %s (set by %s: %s)", o.selector,
                            o.state.name, o.by or "?", o.reason,
                            extra={"fields": {"event": "override_expired", **o.to_json()}})
            if gone:
                self.metrics.overrides.labels("expired").inc(len(gone))

    async def _watch(self) -> None:
        seen = zone_files(self.settings.paths)
        while True:
            await asyncio.sleep(self.settings.watch_interval)
            now = zone_files(self.settings.paths)
            if now != seen:
                seen = now
                log.info("zone files changed; reloading")
                await self.reload()

    async def _refresh_geoip(self, locator: MaxMindLocator) -> None:
        """Pick up a replaced database file without a restart (gdnsd watches its files too)."""
        while True:
            await asyncio.sleep(self.settings.geoip_refresh)
            if await asyncio.to_thread(locator.refresh) and self.store is not None:
                if self.workers is not None:
                    self.workers.geoip_changed()  # sent with the snapshot that republish() makes
                self.store.republish()  # cached geo answers came from the old database

    async def stop(self) -> None:
        """Stop listening and cancel every task this daemon owns."""
        self.ready = False
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            loop.remove_signal_handler(signum)
        self._signals = []
        await cancel_all(self.tasks)
        self.tasks = []
        if self.prober is not None:
            await self.prober.stop()
            self.prober = None
        if self.workers is not None:
            workers, self.workers = self.workers, None
            if self.store is not None and workers.publish in self.store.subscribers:
                self.store.subscribers.remove(workers.publish)
            await workers.stop()
        for listener in self.udp:
            listener.stop(loop)
        self.udp = []
        for server in self.tcp:
            server.close()
        for server in self.tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self.tcp = []
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if isinstance(self.locator, MaxMindLocator):
            self.locator.close()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await self.stopped.wait()
        finally:
            await self.stop()


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; the limit now in force.

    The common soft limit of 1,024 is a compatibility default for select();
    we use epoll, and every connection, probe and file needs a descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:  # the kernel still caps it (fs.nr_open)
        target = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit: could not raise soft limit %d to %d: %s", soft,
                        target, exc)
            target = soft
    else:
        target = soft
    log.info("open-file limit: %d (soft was %d, hard %s)", target, soft,
             "unlimited" if hard == resource.RLIM_INFINITY else hard)
    return int(target)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _match_json(m: Match) -> dict[str, Any]:
    return {"zone": m.zone, "record": m.record.name, "type": m.record.rtype.name,
            "pool": m.pool, "value": m.value.value, "ttl": m.record.ttl,
            "target": m.value.probe.label if m.value.probe is not None else None}


def _uvloop_running() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


def run(settings: Settings) -> int:
    """Run the daemon until SIGTERM/SIGINT, on uvloop when it is installed."""

    async def main() -> int:
        daemon = Daemon(settings)
        try:
            await daemon.serve_forever()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            log.error("not starting: %d problem(s) in the zone files", len(exc.problems))
            return 1
        except (OSError, DnsfailError) as exc:
            log.error("not starting: %s", exc)
            return 1
        return 0

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    if os.environ.get("DNSFAIL_NO_UVLOOP"):
        return asyncio.run(main())
    return uvloop.run(main())
