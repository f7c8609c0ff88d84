"""Worker processes that answer DNS from the main process's view (``serve --workers N``).

Why: one CPython process answers on one core.  A cached answer costs a few
microseconds of Python, but each datagram also costs a receive and a send
system call and the event loop's dispatch, so one process saturates a core
well below what the network stack can carry.  N processes answer on N cores.

How the work is shared: the main process binds the UDP and TCP sockets and
hands *the same sockets* to every worker (passed over its channel, SCM_RIGHTS).  The
kernel gives each datagram to whichever process reads first, so the load is
balanced however few client ports there are.  ``SO_REUSEPORT`` (what gdnsd
and CoreDNS use) gives each process its own socket and spreads clients by a
hash of their address and port: with a handful of busy resolver ports it
leaves one process with most of the traffic (measured with two processes:
91k q/s from four dnsperf ports, one process doing 70% of the work, and
103k from eight; a shared socket split four ports evenly, 95k).  TCP
connections are spread by an accept throttle over a shared table of counts
(``serve.spread``): a process holding more than a sibling leaves the next
connection to it.

Why the workers decide nothing: probing, reloads, drains, GeoIP refreshes,
the control API and metrics stay in the main process, so every target is
probed once, not once per worker, and there is one state file and one
control address.  Every snapshot the main process publishes is sent to each
worker over a Unix socket: the zones that changed (by object identity, so a
health change sends only the small health map) and the health of every
target.  A worker answers with ``Handler`` exactly as the main process does,
from its mirror of the latest snapshot; it reports its counters once a second
and acknowledges every generation it applies, which ``/v1/status`` shows.

When: the worker processes are spawned as the daemon starts, before the zones
load, so that their interpreter start and imports (about half a second) run on
another core while the main process parses; each then waits, holding nothing,
for its setup (``Setup``: the settings and the listening sockets, sent once they
are bound) and the first snapshot.  A start that fails (a bad zone, a busy
port) stops them.

Lifetimes: the main process owns the worker processes and one supervising task
per worker; a worker that dies is logged and restarted (with a growing pause),
its counts folded into the totals so that counters never go backwards.  A
worker exits when its channel closes, so no worker outlives the main process,
even one killed with SIGKILL.

Sessions: each worker starts a session of its own (``setsid``), so that signals
meant for the daemon's session or process group (Ctrl-C, a terminal's hang-up,
job control, a supervisor's ``kill -- -PGID``) reach the main process alone,
which stops the workers in order.  It also sets how the CPU is shared: with
Linux's autogroup scheduling (``kernel.sched_autogroup_enabled``, on in Debian's
kernels) every session is one scheduling group, and all the processes of a
group share one share of the CPUs against every other session, such as the
resolver or load generator beside the server.  With the workers in the main
process's session, the N answering processes ran on one process's share: at half
of their peak, beside dnsperf on two cores, p99 was 8.7-13.6 ms, against 0.6-0.8
ms with autogroup off; in their own sessions each process gets its own share, as N
separate daemons would.  Beside a load generator that is more of the CPU than a
server whose threads share one session gets (gdnsd's): the README's benchmarks
give the figures with autogroup off too, the even comparison.  Under systemd
autogroup does not apply: with the cpu controller on, the service's cgroup is one
group for all its processes, as the session was before.

The channel (``serve.channel``) carries length-prefixed pickles between
processes of the same program (never from the network); a zone's packed blob
and index (tens of megabytes for a million records) go beside it, on a second
socket pair that a thread on each side writes and reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dnsfail.cookies.settings import Secrets
from dnsfail.cookies.stage import CookieStage
from dnsfail.dns.handler import ExactSource, Handler, SignedPath, exact_source
from dnsfail.dns.stats import QueryStats, Totals
from dnsfail.errors import DnsfailError
from dnsfail.model import ProbeSpec, Zone
from dnsfail.rrl.limiter import open_limiter
from dnsfail.rrl.settings import RrlSettings
from dnsfail.serve import pacing
from dnsfail.serve.channel import (
    bulk_pair,
    encode,
    encode_parts,
    receive,
    receive_setup,
    setup_message,
    write_frame,
)
from dnsfail.serve.collector import settle
from dnsfail.serve.server import TCP_MAX_PER_SOURCE, TcpAcceptor, TcpLimits, UdpListener
from dnsfail.serve.spread import Shares
from dnsfail.serve.wiring import (
    answer_path,
    open_locator,
    open_signed,
    plain_pass,
    reread_keys,
    stages,
)
from dnsfail.state import Snapshot
from dnsfail.steering.health import TargetHealth
from dnsfail.steering.mmdb import MaxMindLocator
from dnsfail.tasks import cancel_all

log = logging.getLogger(__name__)

#: Seconds between a worker's counter reports.
REPORT_EVERY = 1.0
#: Longest wait for a worker to start answering, and for one message to be written.
START_TIMEOUT = 60.0
SEND_TIMEOUT = 10.0
#: Pause before restarting a worker that died: doubles per quick death, up to the maximum.
RESTART_PAUSE = 0.5
RESTART_PAUSE_MAX = 30.0



@dataclass(frozen=True)
class Publish:
    """One snapshot as a worker needs it: the zones that changed since the last one sent."""

    generation: int
    #: Every zone origin, in the main process's order.
    order: tuple[str, ...]
    changed: Mapping[str, Zone]
    health: Mapping[ProbeSpec, TargetHealth]
    #: Reopen the GeoIP database before applying (the main process reloaded it).
    geoip_changed: bool = False
    #: Read the ``--dnssec-keys`` directory again before applying (a reload re-read it).
    keys_changed: bool = False


class Mirror:
    """A worker's copy of the main process's snapshot, rebuilt from ``Publish`` messages."""

    def __init__(self) -> None:
        self.zones: dict[str, Zone] = {}
        self.snapshot = Snapshot(0, {})

    def apply(self, message: Publish) -> Snapshot:
        changed = message.changed
        zones = {origin: changed[origin] if origin in changed else self.zones[origin]
                 for origin in message.order}
        self.zones = zones
        self.snapshot = Snapshot(message.generation, zones, message.health)
        if changed:  # new zones: freeze them, as the main process does (serve.collector)
            settle()
        return self.snapshot


def changes(snapshot: Snapshot, sent: Mapping[str, Zone]) -> dict[str, Zone]:
    """The zones of ``snapshot`` a worker that has ``sent`` does not have (by identity)."""
    return {origin: zone for origin, zone in snapshot.zones.items() if sent.get(origin) is not zone}


# --- the setup: settings and listening sockets, sent once they are bound ----------------------

@dataclass(frozen=True)
class Launch:
    """What a worker process needs to start, known before the zones load."""

    log_level: str = "info"
    log_format: str = "text"
    uvloop: bool = True


def send_setup(channel: socket.socket, settings: WorkerSettings,
               sockets: Sequence[tuple[int, bool]], shares: Shares | None) -> str | None:
    """Send a worker its setup: ``settings``, and the ``sockets``' and shared tables'
    descriptors (SCM_RIGHTS).  None when sent, else what went wrong.

    Never waits: a few hundred octets are the first thing on an empty channel.
    """
    spec = {**asdict(settings), "shares": [shares.fd, shares.slots] if shares else None}
    shared = [*([shares.fd] if shares else []),
              *([settings.rrl_fd] if settings.rrl_fd is not None else [])]
    message, fds = setup_message(spec, sockets, shared)
    channel.setblocking(False)
    try:
        sent = socket.send_fds(channel, [message], fds)
    except OSError as exc:  # it died in between
        return str(exc)
    return None if sent == len(message) else f"cut short: {sent} of {len(message)} octets"


# --- the main process's side ------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs besides the snapshots: how to answer and how to log."""

    identity: str
    version: str | None
    geoip: str | None
    tcp_idle_timeout: float
    tcp_max_connections: int
    log_level: str
    log_format: str
    uvloop: bool = True
    #: DNS Cookies answered; the secrets are not settings (they would show in the
    #: worker's command line): they travel first on the channel (``Workers.secrets``).
    cookies: bool = False
    udp_size_cap_without_cookie: int = 0
    tcp_max_per_source: int = TCP_MAX_PER_SOURCE
    #: Seconds a UDP reader waits after a small drain at a steady rate (``serve.pacing``).
    udp_coalesce: float = pacing.DEFAULT_DELAY
    #: Which UDP drain reads the sockets (``serve.server.UDP_DRAINS``).
    udp_drain: str = "auto"
    #: Response-rate limiting, and the shared table's descriptor (the main process's).
    rrl: RrlSettings | None = None
    rrl_fd: int | None = None
    #: The DNSSEC key directory (``dnssec.keys``), read again by each worker.
    dnssec_keys: str | None = None
    #: ``--dnssec-flood-budget`` (``dnssec.flood``); None: off.
    dnssec_flood_budget: int | None = 1000


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    #: The zones this worker has been sent, by origin (identity tells what changed).
    sent: dict[str, Zone] = field(default_factory=dict)
    #: The last snapshot generation the worker said it applied.
    applied: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    totals: Totals = field(default_factory=Totals)
    reported_at: float = 0.0
    restarts: int = 0
    started_at: float = 0.0
    #: Sends to one worker happen one at a time, so generations arrive in order.
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: This life's socket for out-of-band buffers (``write_frame``).
    bulk: socket.socket | None = None


class Workers:
    """Spawns, feeds, supervises and stops the ``count`` worker processes.

    ``count`` is the number of *extra* processes; the main process answers
    too.  ``spawn`` starts them early (they wait for their setup); ``configure``
    gives the listening sockets as (file descriptor, is TCP) and the settings;
    ``start`` feeds the first snapshot.
    ``publish`` is a Store subscriber: it only notes the newest snapshot, and
    one owned task sends it (so a slow worker never delays the event loop,
    and a burst of snapshots sends only the last).
    """

    def __init__(self, count: int, launch: Launch | None = None) -> None:
        self.launch = launch or Launch()
        self.settings: WorkerSettings | None = None
        #: The cookie secrets every worker answers with, sent as each one's first message
        #: when it runs the cookie stage (cookies or the size cap on).
        self.secrets: Secrets | None = None
        #: The TCP connection counts the processes share (``serve.spread``), slot = index.
        self.shares: Shares | None = None
        self.sockets: list[tuple[int, bool]] = []
        #: Set by ``configure``: every worker (and every restarted one) can get its setup.
        self.configured = asyncio.Event()
        self.workers = [_Worker(i + 1) for i in range(count)]
        self.tasks: list[asyncio.Task[None]] = []
        self.pending: Snapshot | None = None
        self.geoip_pending = False
        self.keys_pending = False
        self.wake = asyncio.Event()
        #: Counts of worker processes that have exited, so that counters never go back.
        self.retired = Totals()
        self.stopping = False

    def spawn(self) -> None:
        """Start the processes now (each supervised): they import, then wait for a setup."""
        if not self.tasks:
            self.tasks = [asyncio.create_task(self._supervise(w), name=f"worker-{w.index}")
                          for w in self.workers]
            self.tasks.append(asyncio.create_task(self._send_loop(), name="worker-publish"))

    def configure(self, sockets: Sequence[tuple[int, bool]], settings: WorkerSettings,
                  secrets: Secrets | None = None, shares: Shares | None = None) -> None:
        """What every worker answers on and with; sent as each one's setup."""
        self.sockets, self.settings = list(sockets), settings
        self.secrets, self.shares = secrets, shares
        self.configured.set()

    async def start(self, snapshot: Snapshot) -> None:
        """Feed every worker ``snapshot`` and wait (bounded) until each is answering."""
        self.pending = snapshot
        self.spawn()
        waits = [asyncio.create_task(w.ready.wait()) for w in self.workers]
        _, not_done = await asyncio.wait(waits, timeout=START_TIMEOUT)
        for task in not_done:
            task.cancel()
        if not_done:
            log.warning("%d worker(s) not answering after %.0fs; the others are",
                        len(not_done), START_TIMEOUT)

    def publish(self, snapshot: Snapshot) -> None:
        self.pending = snapshot
        self.wake.set()

    def geoip_changed(self) -> None:
        self.geoip_pending = True
        self.wake.set()

    def keys_changed(self) -> None:
        """The next snapshot sent tells the workers to re-read the key directory."""
        self.keys_pending = True

    def totals(self) -> list[Totals]:
        """Every worker's latest counts, plus those of exited workers."""
        return [self.retired, *(w.totals for w in self.workers)]

    def describe(self) -> list[dict[str, Any]]:
        """For ``/v1/status``: which workers run, what they applied, when they last reported."""
        out = []
        for w in self.workers:
            alive = w.process is not None and w.process.returncode is None
            out.append({
                "index": w.index, "pid": w.process.pid if w.process is not None else None,
                "alive": alive, "ready": w.ready.is_set(), "generation": w.applied,
                "restarts": w.restarts, "queries": sum(w.totals.counts.values()),
                "tcp_open": w.totals.tcp_open,
                "reported_at": round(w.reported_at, 3) if w.reported_at else None,
            })
        return out

    async def stop(self) -> None:
        """Close every channel (workers exit on EOF), then wait; kill what lingers."""
        self.stopping = True
        for w in self.workers:
            if w.writer is not None:
                w.writer.close()
            elif w.process is not None:  # not set up yet: it holds nothing, has nothing to finish
                _kill(w.process)
        for w in self.workers:
            if w.process is not None and w.process.returncode is None:
                try:
                    await asyncio.wait_for(w.process.wait(), 5.0)
                except TimeoutError:
                    log.warning("worker %d (pid %d) did not exit; killing it", w.index,
                                w.process.pid)
                    _kill(w.process)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(w.process.wait(), 5.0)
        await cancel_all(self.tasks)
        self.tasks = []

    async def _supervise(self, worker: _Worker) -> None:
        pause = RESTART_PAUSE
        while not self.stopping:
            started = time.monotonic()
            try:
                await self._run(worker)
            except OSError as exc:
                log.error("worker %d could not be started: %s", worker.index, exc)
            except Exception:  # a bug here must not end supervision
                log.exception("worker %d failed", worker.index)
            if self.stopping:
                return
            code = worker.process.returncode if worker.process is not None else None
            log.error("worker %d exited (code %s); restarting it in %.1fs", worker.index,
                      code, pause, extra={"fields": {"event": "worker_exit",
                                                     "worker": worker.index, "code": code}})
            self.retired.add(worker.totals)
            worker.totals = Totals()
            worker.restarts += 1
            await asyncio.sleep(pause)
            pause = RESTART_PAUSE if time.monotonic() - started > 60 else min(
                pause * 2, RESTART_PAUSE_MAX)

    async def _run(self, worker: _Worker) -> None:
        """One life of one worker process: spawn, set up, feed the snapshot, read reports."""
        parent, child = socket.socketpair()
        worker.bulk, bulk_child = bulk_pair(SEND_TIMEOUT)
        worker.ready.clear()
        try:
            worker.process = process = await _spawn(worker.index, self.launch, child, bulk_child)
            worker.started_at = time.time()
            if await self._set_up(worker, process, parent):
                await self._feed(worker, parent)
        finally:
            parent.close()  # the worker exits on EOF, even one whose process object was lost
            worker.bulk.close()
            if worker.process is not None:
                if not self.stopping:
                    _kill(worker.process)
                await worker.process.wait()
            if self.shares is not None:
                self.shares.absent(worker.index)  # its connections died with it: wait for none

    async def _set_up(self, worker: _Worker, process: asyncio.subprocess.Process,
                      parent: socket.socket) -> bool:
        """Wait until configured (or the process exits), then send the setup.  False: it
        exited, or took no setup (the supervisor restarts it)."""
        if not self.configured.is_set():
            waits = [asyncio.create_task(process.wait()),
                     asyncio.create_task(self.configured.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_all(waits)
            if not self.configured.is_set():
                return False
        assert self.settings is not None
        problem = send_setup(parent, self.settings, self.sockets, self.shares)
        if problem is not None:
            log.error("worker %d: setup not sent (%s)", worker.index, problem)
        return problem is None

    async def _feed(self, worker: _Worker, parent: socket.socket) -> None:
        """Send the secrets and the current snapshot; read reports until the channel closes."""
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker.writer = writer
        worker.sent = {}
        try:
            if self.secrets is not None:
                writer.write(encode(self.secrets))
            if self.pending is not None:
                await self._send(worker, self.pending, geoip=False)
            while True:
                message = await receive(reader)
                if message is None:
                    break
                self._on_report(worker, message)
        finally:
            worker.writer = None
            writer.close()

    def _on_report(self, worker: _Worker, message: object) -> None:
        if isinstance(message, Totals):
            worker.totals = message
            worker.reported_at = time.time()
        elif isinstance(message, tuple) and message and message[0] == "applied":
            worker.applied = int(message[1])
            if not worker.ready.is_set():
                worker.ready.set()
                log.info("worker %d (pid %s) answering, generation %d", worker.index,
                         worker.process.pid if worker.process is not None else "?",
                         worker.applied)

    async def _send_loop(self) -> None:
        """Send the newest snapshot to every worker, whenever one is published."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            snapshot, geoip, rekey = self.pending, self.geoip_pending, self.keys_pending
            self.geoip_pending = self.keys_pending = False
            if snapshot is None:
                continue
            results = await asyncio.gather(
                *(self._send(w, snapshot, geoip, rekey) for w in self.workers
                  if w.writer is not None),
                return_exceptions=True)
            for failure in results:
                if isinstance(failure, Exception):  # a bug must not stop every later publish
                    log.error("publishing generation %d to workers failed: %r",
                              snapshot.generation, failure)

    async def _send(self, worker: _Worker, snapshot: Snapshot, geoip: bool,
                    rekey: bool = False) -> None:
        async with worker.sending:
            await self._send_one(worker, snapshot, geoip, rekey)

    async def _send_one(self, worker: _Worker, snapshot: Snapshot, geoip: bool,
                        rekey: bool = False) -> None:
        writer = worker.writer
        if writer is None:
            return
        changed = changes(snapshot, worker.sent)
        message = Publish(snapshot.generation, tuple(snapshot.zones), changed,
                          dict(snapshot.health), geoip, rekey)
        # Pickling a large zone takes a while; off the loop it delays answers less.
        frame = await asyncio.to_thread(encode_parts, message) if changed else encode_parts(message)
        try:
            await asyncio.wait_for(write_frame(writer, frame, worker.bulk), SEND_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.error("worker %d: could not send generation %d (%s); restarting it",
                      worker.index, snapshot.generation, exc or "timed out")
            if worker.process is not None:
                _kill(worker.process)
            return
        worker.sent = dict(snapshot.zones)


async def _spawn(index: int, launch: Launch, channel: socket.socket,
                 bulk: socket.socket) -> asyncio.subprocess.Process:
    """Worker ``index``'s process, given the child ends of its channel and bulk pairs (closed
    here once it holds them)."""
    spec = {"index": index, "channel": channel.fileno(), "bulk": bulk.fileno(), **asdict(launch)}
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dnsfail.serve.workers", json.dumps(spec),
            pass_fds=[channel.fileno(), bulk.fileno()], stdin=subprocess.DEVNULL,
            start_new_session=True)  # see "Sessions" above
    finally:
        channel.close()
        bulk.close()


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


# --- the worker process's side ----------------------------------------------------------------

async def _rekey(signed: SignedPath, directory: str, zones: Sequence[str]) -> None:
    """Read the key directory again, as the main process just did; if it cannot be read
    now (changed again in between), keep signing with the keys this worker has."""
    try:
        commit = await asyncio.to_thread(reread_keys, signed, directory, zones)
    except DnsfailError as exc:
        log.error("keys not re-read: %s (still signing with the previous keys)", exc)
        return
    commit()


def _listen(spec: dict[str, Any], loop: asyncio.AbstractEventLoop, handler: Handler,
            limits: TcpLimits, exact: ExactSource | None
            ) -> tuple[list[UdpListener], list[TcpAcceptor]]:
    """Answer on the sockets the setup handed over, from ``handler``."""
    udp: list[UdpListener] = []
    tcp: list[TcpAcceptor] = []
    for fd, stream in spec["sockets"]:
        sock = socket.socket(fileno=fd)
        if stream:
            tcp.append(TcpAcceptor(sock, handler.handle, limits))
            tcp[-1].start(loop)
        else:
            udp.append(UdpListener(sock, handler.handle, spec["udp_coalesce"], exact,
                                   spec["udp_drain"]))
            udp[-1].start(loop)
    return udp, tcp


async def _serve(spec: dict[str, Any], bulk: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_unix_connection(
        sock=socket.socket(fileno=spec["channel"]))
    mirror = Mirror()
    first = await receive(reader, bulk)
    cookies: CookieStage | None = None
    if isinstance(first, Secrets):
        cookies = CookieStage(first, answer=spec["cookies"],
                              size_cap=spec["udp_size_cap_without_cookie"])
        first = await receive(reader, bulk)
    if not isinstance(first, Publish):
        return  # the main process went away before sending anything
    mirror.apply(first)  # and settles, before the listeners start (serve.collector)
    stats = QueryStats()
    limiter = (open_limiter(RrlSettings(**spec["rrl"]), stats, lambda: mirror.snapshot,
                            spec["rrl_fd"]) if spec.get("rrl") else None)
    answers = answer_path(functools.partial(getattr, mirror, "snapshot"),  # no frame
                          open_locator(spec["geoip"]),
                          identity=spec["identity"], version=spec["version"], stats=stats,
                          after=stages(cookies, limiter),
                          signed=open_signed(spec.get("dnssec_keys"), first.order,
                                             spec.get("dnssec_flood_budget")))
    handler, locator, stats = answers.handler, answers.locator, answers.stats
    limits = TcpLimits(spec["tcp_idle_timeout"], spec["tcp_max_connections"],
                       spec["tcp_max_per_source"])
    if spec["shares"] is not None:
        limits.shares = Shares(spec["shares"][0], spec["shares"][1], spec["index"])
    udp, tcp = _listen(spec, loop, handler, limits, exact_source(handler, plain_pass(
        cookies, limiter)))

    def totals() -> Totals:
        out = stats.totals()
        out.udp_dropped_sends = sum(u.dropped_sends for u in udp)
        out.tcp_open = limits.open
        out.tcp_closed = dict(limits.closed)
        if cookies is not None:
            out.cookies = cookies.counters()
        return out

    async def report() -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            writer.write(encode(totals()))
            await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)

    writer.write(encode(("applied", mirror.snapshot.generation)))
    reporter = asyncio.create_task(report(), name="report")
    try:
        while (message := await receive(reader, bulk)) is not None:
            if not isinstance(message, Publish):
                continue
            if message.geoip_changed and isinstance(locator, MaxMindLocator):
                await asyncio.to_thread(locator.refresh)
            if message.keys_changed and handler.signed is not None and spec.get("dnssec_keys"):
                await _rekey(handler.signed, spec["dnssec_keys"], message.order)
            mirror.apply(message)
            writer.write(encode(("applied", message.generation)))
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, TimeoutError):
            await reporter
        for listener in udp:
            listener.stop(loop)
        for acceptor in tcp:
            acceptor.stop()
        answers.close()
        if limiter is not None:
            limiter.table.close()
        writer.close()


def main(argv: Sequence[str]) -> int:
    """``python -m dnsfail.serve.workers LAUNCH``: started by ``Workers``, never by hand.

    Imported already (the module's imports are most of a worker's start), it
    waits for its setup; a main process that fails to start closes the channel
    first, and this one exits having bound nothing.
    """
    from dnsfail import logs

    launch = json.loads(argv[0])
    logs.setup(launch["log_level"], launch["log_format"])
    prefix = f"worker {int(launch['index'])}: "

    def tag(record: logging.LogRecord) -> bool:
        record.msg = prefix + str(record.msg)  # workers share the main process's stderr
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
    # The main process decides when workers stop (it closes their channels), so that it can
    # stop them in order.  A worker is in a session of its own, which no terminal's Ctrl-C
    # reaches; SIGINT is ignored all the same, for one started by hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with socket.socket(fileno=os.dup(launch["channel"])) as channel:
        setup = receive_setup(channel)
    if setup is None:
        return 0  # the main process went away, or did not start
    spec = {**setup, "index": launch["index"], "channel": launch["channel"]}
    with socket.socket(fileno=launch["bulk"]) as bulk:  # blocking: read by threads
        if spec.get("uvloop") and not os.environ.get("DNSFAIL_NO_UVLOOP"):
            with contextlib.suppress(ImportError):
                import uvloop

                uvloop.run(_serve(spec, bulk))
                return 0
        asyncio.run(_serve(spec, bulk))
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: messages unpickle as
    # dnsfail.serve.workers classes, and isinstance must recognise them.
    from dnsfail.serve.workers import main as _main

    raise SystemExit(_main(sys.argv[1:]))
