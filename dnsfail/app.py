"""The composition root: builds the store, handler and listeners, and owns their lifetime.

Everything long-lived is created in ``Daemon.start`` and torn down in
``Daemon.stop``: sockets, the zone-watch task and signal handlers.  Reload
(SIGHUP, ``--watch``) is all-or-nothing: zones are parsed off the event loop,
and only a set with no problem at all replaces the running one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dnsfail.config import load_zones
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.geo import Locator, MaxMindLocator, NoLocator
from dnsfail.handler import Handler
from dnsfail.model import Zone
from dnsfail.probe import Prober
from dnsfail.server import TcpLimits, UdpListener, bind_udp, serve_tcp
from dnsfail.state import Store

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 5300)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` to a pair; ValueError with the reason otherwise."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT or [IPV6]:PORT")
    return host, int(port)


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
    #: Longest wait for the first probe round before answering; None: derived from the
    #: slowest probe timeout (gdnsd waits for its first monitoring round too).
    startup_timeout: float | None = None
    #: MaxMind/DB-IP .mmdb file for ``geos`` rules; None: subnet rules only.
    geoip: str | None = None
    #: Seconds between checks of the GeoIP file for a new version.
    geoip_refresh: float = 5.0


def zone_files(paths: Sequence[str]) -> dict[str, float]:
    """Modification times of every zone file the paths name, for ``--watch``."""
    out: dict[str, float] = {}
    for path in paths:
        p = Path(path)
        files = sorted(p.glob("*.y*ml")) if p.is_dir() else [p]
        for f in files:
            with contextlib.suppress(OSError):
                out[str(f)] = f.stat().st_mtime
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
        self._signals: list[int] = []

    @property
    def zones(self) -> dict[str, Zone]:
        assert self.store is not None
        return dict(self.store.snapshot.zones)

    async def start(self) -> None:
        """Load zones (raising ConfigError if any is bad), bind, and start answering."""
        geoip = self.settings.geoip
        if geoip is not None:
            self.locator = await asyncio.to_thread(MaxMindLocator, geoip)
            log.info("GeoIP database %s loaded", geoip)
        zones = await asyncio.to_thread(load_zones, self.settings.paths, geoip=geoip is not None)
        for zone in zones.values():
            log.info("zone %s: %d records, serial %d (%s)", zone.origin,
                     zone.record_count, zone.serial, zone.source)
        self.store = Store(zones)
        store = self.store
        self.handler = Handler(lambda: store.snapshot, identity=self.settings.identity,
                               version=self.settings.version, locator=self.locator)
        loop = asyncio.get_running_loop()
        try:
            for host, port in self.settings.listen:  # bind first: a busy port fails fast
                sock = bind_udp(host, port)
                bound = sock.getsockname()[1]
                self.udp.append(UdpListener(sock, self.handler.handle))
                self.tcp.append(await serve_tcp(host, bound, self.handler.handle, self.limits))
                self.ports.append((host, bound))
            await self._first_probe_round()
            for listener in self.udp:
                listener.start(loop)
            for server in self.tcp:
                await server.start_serving()
        except BaseException:
            await self.stop()
            raise
        for host, bound in self.ports:
            log.info("listening on %s port %d (udp, tcp)", host, bound)
        if self.settings.watch:
            self.tasks.append(asyncio.create_task(self._watch(), name="zone-watch"))
        if isinstance(self.locator, MaxMindLocator):
            self.tasks.append(asyncio.create_task(self._refresh_geoip(self.locator),
                                                  name="geoip-refresh"))
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)
                self._signals.append(signum)

    async def _first_probe_round(self) -> None:
        """Cold start: answer dynamic names from probe results, never from guesses.

        Like gdnsd, queries wait (in the socket buffers) until every target
        has been probed once.  If some target gives no result in time it is
        served as up until it does: starting by declaring sites down is the
        PowerDNS failure mode (pdns#9529) that withdraws healthy gateways.
        """
        assert self.store is not None
        targets = self.store.targets
        self.prober = Prober(targets, self.store.observe)
        await self.prober.start()
        if not targets:
            return
        timeout = self.settings.startup_timeout
        if timeout is None:
            timeout = max(spec.timeout for spec in targets) + 2.0
        if await self.prober.first_round(timeout):
            log.info("first probe round complete: %d target(s)", len(targets))
        else:
            missing = ", ".join(s.label for s in self.store.unknown_targets())
            log.warning("no probe result after %.1fs for %s; serving them as up until probed",
                        timeout, missing)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.tasks = [t for t in self.tasks if not t.done()]
            self.tasks.append(asyncio.create_task(self._reload_quietly(), name="reload"))
        else:
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            self.stopped.set()

    async def _reload_quietly(self) -> None:
        await self.reload()  # problems are logged by reload() itself

    async def reload(self) -> list[str]:
        """Re-read every zone; publish all or nothing.  Returns the problems found."""
        async with self.reload_lock:
            assert self.store is not None
            previous = self.store.snapshot.zones
            try:
                zones = await asyncio.to_thread(
                    load_zones, self.settings.paths, previous,
                    geoip=self.settings.geoip is not None,
                )
            except ConfigError as exc:
                self.last_reload_ok = False
                for problem in exc.problems:
                    log.error("reload rejected: %s", problem)
                log.error("reload rejected: %d problem(s); still serving the previous zones",
                          len(exc.problems))
                return [str(p) for p in exc.problems]
            self.store.replace_zones(zones)
            if self.prober is not None:
                await self.prober.update(self.store.targets)
            self.last_reload_ok = True
            for zone in zones.values():
                old = previous.get(zone.origin)
                if old is None or old.serial != zone.serial:
                    log.info("zone %s: reloaded, %d records, serial %d", zone.origin,
                             zone.record_count, zone.serial)
            for origin in previous.keys() - zones.keys():
                log.info("zone %s: no longer served", origin)
            return []

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
            if await asyncio.to_thread(locator.refresh):
                log.info("GeoIP database %s reloaded", self.settings.geoip)

    async def stop(self) -> None:
        """Stop listening and cancel every task this daemon owns."""
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            loop.remove_signal_handler(signum)
        self._signals = []
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []
        if self.prober is not None:
            await self.prober.stop()
            self.prober = None
        for listener in self.udp:
            listener.stop(loop)
        self.udp = []
        for server in self.tcp:
            server.close()
        for server in self.tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self.tcp = []
        if isinstance(self.locator, MaxMindLocator):
            self.locator.close()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await self.stopped.wait()
        finally:
            await self.stop()


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
