"""The composition root: builds the answer path and listeners, and owns their lifetime.

Everything long-lived is created in ``Daemon.start`` and torn down in
``Daemon.stop``: sockets, worker processes, the prober, the control API, the
zone-watch, GeoIP-refresh and override-expiry tasks and signal handlers.
The jobs themselves live in their own rooms: the answer path is built by
``serve.wiring``, drains by ``serve.drains``, reloads by ``serve.reload``,
the descriptor budget by ``serve.fds``.

The daemon is what the control API talks to: it implements
``control.port.ControlPort`` structurally (the store, the drain and reload
services, the status facts and counters), and control never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnsfail import __version__
from dnsfail.addresses import (
    CONTROL_HEAD_TIMEOUT,
    CONTROL_MAX_CONNECTIONS,
    DEFAULT_CONTROL,
    DEFAULT_LISTEN,
)
from dnsfail.cluster.settings import ClusterSettings
from dnsfail.control.api import ControlServer
from dnsfail.control.auth import check_exposure
from dnsfail.control.metrics import Metrics
from dnsfail.control.port import ControlPort
from dnsfail.cookies.settings import Secrets, load_secrets
from dnsfail.cookies.stage import CookieStage, summed
from dnsfail.dns.handler import Handler, SignedPath, exact_source
from dnsfail.dns.stages import After
from dnsfail.dns.stats import QueryStats, Totals
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.events.log import EventLog
from dnsfail.events.payload import Target
from dnsfail.events.webhook import telling
from dnsfail.host.notify import Notifier
from dnsfail.host.paths import prepare_state_dir
from dnsfail.model import ProbeSpec, Zone
from dnsfail.rrl.limiter import RateLimiter, open_limiter
from dnsfail.rrl.settings import RrlSettings
from dnsfail.serve import pacing
from dnsfail.serve.drains import Drains
from dnsfail.serve.fds import PROBE_IN_FLIGHT, fit_descriptors, raise_fd_limit
from dnsfail.serve.probe import Prober
from dnsfail.serve.reload import Reloader
from dnsfail.serve.server import (
    TCP_MAX_CONNECTIONS,
    TCP_MAX_PER_SOURCE,
    TcpAcceptor,
    TcpLimits,
    UdpListener,
    bind_tcp,
    bind_udp,
    compiled_built,
)
from dnsfail.serve.spread import Shares
from dnsfail.serve.wiring import (
    answer_path,
    close_locator,
    load_store,
    open_locator,
    open_signed,
    plain_pass,
    reread_keys,
    stages,
)
from dnsfail.serve.workers import Launch, Workers, WorkerSettings
from dnsfail.state import Snapshot, Store
from dnsfail.steering.geo import Locator, NoLocator
from dnsfail.steering.mmdb import MaxMindLocator
from dnsfail.steering.overrides import Override
from dnsfail.tasks import cancel_all

log = logging.getLogger(__name__)


@dataclass
class Settings:
    paths: list[str] = field(default_factory=lambda: ["zones"])
    listen: list[tuple[str, int]] = field(default_factory=lambda: [DEFAULT_LISTEN])
    identity: str = field(default_factory=socket.gethostname)
    version: str | None = None
    watch: bool = False
    watch_interval: float = 1.0
    tcp_idle_timeout: float = 10.0
    #: Per process (each has its own table and descriptors): see ``serve.admission``.
    tcp_max_connections: int = TCP_MAX_CONNECTIONS
    tcp_max_per_source: int = TCP_MAX_PER_SOURCE
    #: Seconds a UDP reader waits after a small drain at a steady rate (``serve.pacing``).
    udp_coalesce: float = pacing.DEFAULT_DELAY
    #: Which UDP drain reads the sockets (``serve.server.UDP_DRAINS``).
    udp_drain: str = "auto"
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
    #: Bearer token the control API requires; required to bind beyond loopback.
    control_token: str | None = None
    #: Where operator overrides are kept across restarts; None: in memory only.  The command
    #: line's default comes from ``host.paths`` (never the working directory).
    state_file: str | None = None
    #: Processes answering DNS: this one plus ``workers - 1`` worker processes (workers.py).
    workers: int = 1
    #: How worker processes log (the main process's logging is set up by the CLI).
    log_level: str = "info"
    log_format: str = "text"
    #: DNS Cookies (RFC 7873, RFC 9018 server cookies) answered; on by default, as BIND,
    #: Knot and NSD have them.
    cookies: bool = True
    #: NSD's cookie-secret-file format (cookies.settings); None: a random secret per start.
    cookie_secret_file: str | None = None
    #: Largest UDP reply to a client without a valid server cookie (gdnsd's
    #: max_nocookie_response); 0: no cap.
    udp_size_cap_without_cookie: int = 0
    #: Response-rate limiting; None: off.
    rrl: RrlSettings | None = None
    #: ``--webhook`` receivers, each with the event kinds it gets (``events.webhook``).
    webhooks: list[Target] = field(default_factory=list)
    #: Peers of an NS set (``--peer``); None: standalone (``cluster.daemon`` is not used).
    cluster: ClusterSettings | None = None
    #: Directory of DNSSEC keys (``dnssec.keys``); every zone with a key there is signed.
    dnssec_keys: str | None = None
    #: ``--dnssec-flood-budget`` (``dnssec.flood``, whose DEFAULT_BUDGET this is); None: off.
    dnssec_flood_budget: int | None = 1000


def describe_server(daemon: Daemon) -> dict[str, Any]:
    """Which server this is, for ``dnsfail status`` and every CLI write to name it."""
    bound = daemon.control.bound if daemon.control is not None else None
    return {
        "identity": daemon.identity, "pid": os.getpid(), "version": __version__,
        "listen": [_address(host, port) for host, port in daemon.ports],
        "control": _address(*bound) if bound is not None else None,
        "zone_paths": [str(Path(p).resolve()) for p in daemon.settings.paths],
        "state_file": str(daemon.state_path.resolve()) if daemon.state_path else None,
    }


class Telling:
    """The daemon's event history and the webhooks fed by it (a mixin of ``Daemon``)."""

    settings: Settings
    tasks: list[asyncio.Task[None]]

    @functools.cached_property
    def events(self) -> EventLog:
        """Transitions, drains, reloads (``/v1/events``); the webhooks' task goes in ``tasks``."""
        return telling(self.settings.webhooks, self.settings.identity, self.tasks)


class Daemon(Telling):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.handler: Handler | None = None
        self.udp: list[UdpListener] = []
        self.tcp: list[TcpAcceptor] = []
        self.limits = tcp_limits(settings)
        self.ports: list[tuple[str, int]] = []
        self.stopped = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.prober: Prober | None = None
        self.locator: Locator = NoLocator()
        self._signals: list[int] = []
        self.stats = QueryStats()
        self.control: ControlServer | None = None
        #: True once DNS is being served (after the first probe round or its timeout).
        self.ready = False
        self.first_round = "pending"
        self.state_path = Path(settings.state_file) if settings.state_file else None
        self.workers: Workers | None = None
        self.metrics = Metrics(self, self.stats, self._worker_totals)
        self.drains = Drains(self.state_path, self.metrics, self.events)
        self.reloads = Reloader(settings.paths, settings.geoip is not None, self.metrics,
                                self._targets_changed, self.events)
        self.control_max_connections = settings.control_max_connections
        self.stages = AnswerStages()

    @property
    def store(self) -> Store | None:
        """The one store (set at start), shared by the drain and reload services."""
        return self.drains.store

    @store.setter
    def store(self, store: Store | None) -> None:
        self.drains.store = self.reloads.store = store

    def _worker_totals(self) -> list[Totals]:
        return self.workers.totals() if self.workers is not None else []

    # --- control.port.ControlPort ---------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.settings.identity

    @property
    def config_generation(self) -> int:
        return self.reloads.config_generation

    @property
    def tcp_open(self) -> int:
        return self.limits.open + sum(t.tcp_open for t in self._worker_totals())

    @property
    def udp_dropped_sends(self) -> int:
        return (sum(listener.dropped_sends for listener in self.udp)
                + sum(t.udp_dropped_sends for t in self._worker_totals()))

    @property
    def control_closed(self) -> dict[str, int]:
        """Control-API connections its guard closed, by limit (over_cap, head_timeout)."""
        return dict(self.control.limits.closed) if self.control is not None else {}

    @property
    def tcp_closed(self) -> dict[str, int]:
        out = dict(self.limits.closed)
        for totals in self._worker_totals():
            for reason, count in totals.tcp_closed.items():
                out[reason] = out.get(reason, 0) + count
        return out

    @property
    def cookie_counts(self) -> dict[str, int]:
        """The cookie stage's counters, this process's and every worker's; empty when off."""
        return summed(self.stages.cookies, [t.cookies for t in self._worker_totals()])

    @property
    def overrides(self) -> list[Override]:
        return list(self.store.overrides) if self.store is not None else []

    @property
    def zones(self) -> dict[str, Zone]:
        assert self.store is not None
        return dict(self.store.snapshot.zones)

    def workers_status(self) -> list[dict[str, Any]]:
        return self.workers.describe() if self.workers is not None else []
    about = describe_server  # ControlPort.about: identity, pid, addresses, zone paths

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load zones (raising ConfigError if any is bad), bind, and start answering."""
        s = self.settings
        if s.control is not None:
            check_exposure(s.control[0], s.control_token)
        control = self.control_max_connections if s.control is not None else 0
        self.limits.max_connections, self.control_max_connections = fit_descriptors(
            raise_fd_limit(), self.limits.max_connections, control)
        self.workers = spawn_workers(s)  # their start overlaps the zones' parse
        try:
            await asyncio.to_thread(prepare_state_dir, self.state_path)
            saved = await asyncio.to_thread(self.drains.load_saved)
            if s.geoip is not None:
                self.locator = await asyncio.to_thread(open_locator, s.geoip)
                log.info("GeoIP database %s loaded", s.geoip)
            self.store = store = await asyncio.to_thread(load_store, s.paths,
                                                         geoip=s.geoip is not None, saved=saved)
            self.reloads.loaded(store)
            self.drains.log_restored()
            after = await self.stages.open(s, self.stats, lambda: store.snapshot, self)
            self.handler = self.stages.handler(store, self.locator, s, self.stats, after)
            await self._listen()
            await self._start_control()
            await self._first_probe_round()
            await self._start_serving(store)
        except BaseException:
            await self.stop()
            raise
        self.ready = True
        for host, bound in self.ports:
            log.info("listening on %s port %d (udp, tcp)%s", host, bound,
                     f", {s.workers} processes" if self.workers else "")
        log.info("UDP read by the %s drain", "compiled" if s.udp_drain != "python"
                 and compiled_built() else "pure-Python")
        self._start_tasks()

    async def _listen(self) -> None:
        """Bind every address first: a busy port fails fast, before any probe."""
        assert self.handler is not None
        exact = exact_source(self.handler, plain_pass(self.stages.cookies, self.stages.limiter))
        for host, port in self.settings.listen:
            sock = bind_udp(host, port)
            bound = sock.getsockname()[1]
            self.udp.append(UdpListener(sock, self.handler.handle, self.settings.udp_coalesce,
                                        exact, self.settings.udp_drain))
            self.tcp.append(TcpAcceptor(bind_tcp(host, bound), self.handler.handle, self.limits))
            self.ports.append((host, bound))

    async def _start_serving(self, store: Store) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.udp:
            listener.start(loop)
        for acceptor in self.tcp:
            acceptor.start(loop)
        if self.workers is not None:
            await self._start_workers(self.workers, store)

    def _start_tasks(self) -> None:
        """The owned tasks and the signal handlers (cancelled and removed by ``stop``)."""
        self.tasks.append(asyncio.create_task(self.drains.expire_forever(),
                                              name="override-expiry"))
        if self.settings.watch:
            self.tasks.append(asyncio.create_task(
                self.reloads.watch_forever(self.settings.watch_interval), name="zone-watch"))
        if isinstance(self.locator, MaxMindLocator):
            self.tasks.append(asyncio.create_task(self._refresh_geoip(self.locator),
                                                  name="geoip-refresh"))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)
                self._signals.append(signum)

    async def _start_workers(self, workers: Workers, store: Store) -> None:
        """Share the listening sockets with ``workers - 1`` processes fed by ``store``."""
        s = self.settings
        sockets = [(listener.sock.fileno(), False) for listener in self.udp]
        sockets += [(acceptor.sock.fileno(), True) for acceptor in self.tcp]
        self.limits.share(Shares.create(s.workers))  # the accept throttle's counts
        workers.configure(sockets, worker_settings(s, self.stages), self.stages.secrets,
                          self.limits.shares)
        store.subscribers.append(workers.publish)
        await workers.start(store.snapshot)

    async def _first_probe_round(self) -> None:
        assert self.store is not None
        self.prober = Prober(self.store.targets, self._on_probe, max_in_flight=PROBE_IN_FLIGHT)
        await self.prober.start()
        self.first_round = await first_probe_round(self.prober, self.store,
                                                   self.settings.startup_timeout)

    def _on_probe(self, spec: ProbeSpec, ok: bool, detail: str, latency: float,
                  at: float) -> None:
        assert self.store is not None
        self.metrics.observe_probe(spec, ok, latency)
        self.store.observe(spec, ok, detail, latency, at)

    async def _start_control(self) -> None:
        if self.settings.control is not None:
            self.control = await start_control(self, self.settings, self.control_max_connections)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.tasks = [t for t in self.tasks if not t.done()]
            self.tasks.append(asyncio.create_task(self.reloads.quietly("SIGHUP"), name="reload"))
        else:
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            self.stopped.set()

    async def _targets_changed(self, targets: Iterable[ProbeSpec]) -> None:
        """A reload changed the zones: probe exactly their targets from now on."""
        if self.prober is not None:
            await self.prober.update(targets)

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
        for acceptor in self.tcp:
            acceptor.stop()
        self.tcp = []
        self.limits.share(None)
        if self.control is not None:
            await self.control.stop()
            self.control = None
        close_locator(self.locator)
        self.stages.close()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await self.stopped.wait()
        finally:
            await self.stop()


async def first_probe_round(prober: Prober, store: Store, wait: float | None) -> str:
    """Cold start: answer dynamic names from probe results, never from guesses.

    Like gdnsd, queries wait (in the socket buffers) until every target
    has been probed once.  If some target gives no result in time it is
    served as up until it does: starting by declaring sites down is the
    PowerDNS failure mode (pdns#9529) that withdraws healthy gateways.
    ``wait`` None: derived from the slowest probe timeout.  Returns the
    round's outcome for ``/readyz``: "complete" or "timed out".
    """
    targets = store.targets
    if not targets:
        return "complete"
    timeout = max(spec.timeout for spec in targets) + 2.0 if wait is None else wait
    if await prober.first_round(timeout):
        log.info("first probe round complete: %d target(s)", len(targets))
        return "complete"
    missing = ", ".join(s.label for s in store.unknown_targets())
    log.warning("no probe result after %.1fs for %s; serving them as up until probed",
                timeout, missing)
    return "timed out"


@dataclass
class AnswerStages:
    """This process's stages after the lookup (``dns.stages``): the cookie stage, the
    secrets the workers answer with, the rate limiter with its shared table; and the
    DNSSEC signed path (``dnssec.path``) when ``--dnssec-keys`` is given."""

    secrets: Secrets | None = None
    cookies: CookieStage | None = None
    limiter: RateLimiter | None = None
    signed: SignedPath | None = None

    async def open(self, s: Settings, stats: QueryStats,
                   snapshot: Callable[[], Snapshot], daemon: Daemon | None = None
                   ) -> After | None:
        """Read the secrets (off the loop) and open the limiter's table, as ``s`` asks; the
        keys too, which ``daemon``'s reloads then re-read."""
        self.secrets, self.cookies = await asyncio.to_thread(cookie_stage, s)
        if s.rrl is not None:
            self.limiter = open_limiter(s.rrl, stats, snapshot)
        self.signed = await asyncio.to_thread(open_signed, s.dnssec_keys, list(snapshot().zones),
                                              s.dnssec_flood_budget)
        if daemon is not None:
            reload_keys_too(daemon, s.dnssec_keys)
        return stages(self.cookies, self.limiter)

    def handler(self, store: Store, locator: Locator, s: Settings, stats: QueryStats,
                after: After | None) -> Handler:
        """The Handler answering from ``store``'s snapshots through these stages, signing
        the zones that have keys."""
        # a C callable (no Python frame per query), as ``lambda: store.snapshot`` reads
        return answer_path(functools.partial(getattr, store, "snapshot"), locator,
                           identity=s.identity, version=s.version, stats=stats, after=after,
                           signed=self.signed).handler

    @property
    def rrl_fd(self) -> int | None:
        """The shared rate-limit table's descriptor, for the workers to map."""
        return self.limiter.table.fd if self.limiter is not None else None

    def close(self) -> None:
        if self.limiter is not None:
            self.limiter.table.close()
            self.limiter = None


def reload_keys_too(daemon: Daemon, directory: str | None) -> None:
    """Have ``daemon``'s reloads re-read ``--dnssec-keys`` (and ``--watch`` watch it)."""
    signed = daemon.stages.signed
    if signed is None or directory is None:
        return

    def step(zones: Sequence[str]) -> Callable[[], None]:
        """The reload's key step (off the loop): read the directory again; what it
        returns puts the keys in use here and tells the workers to read them too."""
        commit = reread_keys(signed, directory, zones)

        def use() -> None:
            commit()
            if daemon.workers is not None:
                daemon.workers.keys_changed()  # sent with the snapshot the reload publishes

        return use

    daemon.reloads.keys, daemon.reloads.key_dir = step, directory


def cookie_stage(s: Settings) -> tuple[Secrets | None, CookieStage | None]:
    """The secrets (read from ``--cookie-secret-file``, or drawn) and the cookie stage, when
    cookies or the size cap are on; raises SecretError for an unusable file."""
    if not (s.cookies or s.udp_size_cap_without_cookie):
        return None, None
    secrets = load_secrets(s.cookie_secret_file)
    return secrets, CookieStage(secrets, answer=s.cookies, size_cap=s.udp_size_cap_without_cookie)


async def start_control(port: ControlPort, settings: Settings,
                        max_connections: int) -> ControlServer:
    """Serve the control API over ``port``; a busy address fails the start.

    It used to be a warning for the default address, and the server ran
    without a control API while ``dnsfail status`` and ``drain`` reached the
    *other* server on that address (issue 17).  ``--no-control`` runs without.
    """
    assert settings.control is not None
    host, number = settings.control
    server = ControlServer(port, host, number, settings.control_token,
                           max_connections=max_connections,
                           head_timeout=settings.control_head_timeout)
    try:
        address = await server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DnsfailError(
                f"control API address {host}:{number} is already in use (another dnsfail? "
                f"`dnsfail status --control {host}:{number}` names it); pass --control "
                "HOST:PORT for another address, or --no-control to run without one") from exc
        raise DnsfailError(f"control API on {host}:{number}: {exc.strerror or exc}") from exc
    log.info("control API on http://%s:%d/%s", address[0], address[1],
             " (bearer token required)" if settings.control_token else "")
    return server


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_settings(s: Settings, stages: AnswerStages) -> WorkerSettings:
    """How every worker answers: as this process does, with its stages' shared tables."""
    return WorkerSettings(
        s.identity, s.version, s.geoip, s.tcp_idle_timeout, s.tcp_max_connections,
        s.log_level, s.log_format, uvloop=_uvloop_running(),
        cookies=stages.cookies is not None and s.cookies, dnssec_keys=s.dnssec_keys,
        udp_size_cap_without_cookie=s.udp_size_cap_without_cookie,
        tcp_max_per_source=s.tcp_max_per_source, udp_coalesce=s.udp_coalesce,
        udp_drain=s.udp_drain, rrl=s.rrl, rrl_fd=stages.rrl_fd,
        dnssec_flood_budget=s.dnssec_flood_budget)


def spawn_workers(s: Settings) -> Workers | None:
    """The ``workers - 1`` worker processes, spawned now (``serve.workers``); None: one."""
    if s.workers <= 1:
        return None
    workers = Workers(s.workers - 1, Launch(s.log_level, s.log_format, _uvloop_running()))
    workers.spawn()
    return workers


def tcp_limits(s: Settings) -> TcpLimits:
    """This process's TCP limits; each worker process builds its own from the same settings."""
    return TcpLimits(s.tcp_idle_timeout, s.tcp_max_connections, s.tcp_max_per_source)


def _uvloop_running() -> bool:
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def serve_notified(daemon: Daemon, notify: Notifier) -> None:
    """``Daemon.serve_forever``, telling a service manager (systemd ``Type=notify``) each
    step: READY=1 when /readyz turns ready, STATUS= lines, STOPPING=1 (``host.notify``)."""
    if not notify.enabled:
        await daemon.serve_forever()
        return
    try:
        notify.status("starting: loading zones, then the first probe round")
        await daemon.start()
        notify.ready(describe(daemon))
        keeper = asyncio.create_task(notify.keep_alive(lambda: describe(daemon)),
                                     name="sd-notify")
        try:
            await daemon.stopped.wait()
        finally:
            notify.stopping()
            await cancel_all([keeper])
            await daemon.stop()
    finally:
        notify.close()


def describe(daemon: Daemon) -> str:
    """One line for ``systemctl status``: zones, targets by state, drains, last reload."""
    store = daemon.store
    if store is None:
        return "starting"
    snapshot = store.snapshot
    states = Counter(snapshot.health[spec].state.value if spec in snapshot.health
                     else "unknown" for spec in store.targets)
    line = (f"{len(snapshot.zones)} zone(s); targets: {states['up']} up, {states['down']} "
            f"down, {states['unknown']} unknown; {len(store.overrides)} override(s)")
    reload = daemon.reloads.last_reload
    if reload is not None:
        line += "; last reload " + ("ok" if reload["ok"] else
                                    f"REJECTED ({len(reload['problems'])} problem(s))")
    return line


def run(settings: Settings, kind: type[Daemon] = Daemon) -> int:
    """Run the daemon (``kind``) until SIGTERM/SIGINT, on uvloop when it is installed."""

    async def main() -> int:
        daemon = kind(settings)
        try:
            await serve_notified(daemon, Notifier.from_env())
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
