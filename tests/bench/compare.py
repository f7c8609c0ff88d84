"""Compare dnsfail with gdnsd and PowerDNS on the same zone, on loopback, in one run.

    python tests/bench/compare.py [--seconds 10] [--rounds 1] [--skip-install]

What it does:

1. Installs the peers if missing (``apt-get install -y gdnsd pdns-server
   pdns-backend-bind dnsperf``; ``--skip-install`` skips a missing peer instead).
2. Starts three TCP listeners on 127.0.0.71-73 port 8443: the "sites" that every
   server health-checks with a TCP connect.
3. Configures each server from ``tests/bench/peers/`` with the same zone
   ``bench.example.com``: ``static`` (a plain A), ``fo`` (every healthy site of
   three) and ``geo`` (the site for the client's subnet, 10.1.0.0/16 -> .72),
   and starts them all on loopback ports: dnsfail (``--workers auto``, one answering
   process per core, as gdnsd runs a thread per core; ``--workers 1`` to compare one
   process), gdnsd, PowerDNS with
   ``enable-lua-records=yes`` (a new Lua state per query) and PowerDNS with
   ``enable-lua-records=shared``.
4. Checks every server's answer for every name, then per name runs dnsperf
   against each server in turn (the order rotates each round): 2 s warm-up,
   ``--seconds`` at full load (``-c 4 -q 200``, EDNS on; the geo name carries
   ECS 10.1.2.0/24 with ``-E 8:<hex>``) for queries/s, average latency and lost
   queries, then ``--latency-seconds`` at a fixed ``--latency-qps`` and again at
   half of that server's own peak, both with ``dnsperf -v`` for p50/p99 (dnsperf
   2.x has no percentiles and ``-v`` costs it a quarter of its speed, so it is
   kept out of the throughput run).
5. Loads a 100,000-record zone (``compare_zone.py``) into dnsfail (one process): ``dnsfail
   check`` time, startup time and RSS, SIGHUP reload time (from the "reloaded"
   log line) and RSS after it; and the same zone into gdnsd and PowerDNS for
   reference (``--skip-big`` skips this part).

Medians over ``--rounds`` are printed as Markdown on stdout; progress goes to
stderr.  Every process started here is stopped on exit, Ctrl-C included.
Only 127.0.0.0/8 is ever sent a packet.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import queue
import re
import selectors
import shutil
import signal
import socket
import statistics
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_zone  # a sibling script, not a package

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEERS = HERE / "peers"
ZONE = "bench.example.com"
SITES = ("127.0.0.71", "127.0.0.72", "127.0.0.73")
SITE_PORT = 8443
PACKAGES = ("gdnsd", "pdns-server", "pdns-backend-bind", "dnsperf")
DNSFAIL, GDNSD, PDNS, PDNS_SHARED = "dnsfail", "gdnsd", "PowerDNS", "PowerDNS (lua shared)"


@dataclass(frozen=True)
class Name:
    """One benchmarked query: the row label, what is asked, and the right answer."""

    label: str
    qname: str
    ecs: str | None
    expected: frozenset[str]


NAMES = (
    Name("static", f"static.{ZONE}", None, frozenset({"192.0.2.10"})),
    Name("failover, 3 sites (TCP checks)", f"fo.{ZONE}", None, frozenset(SITES)),
    Name("geo by ECS 10.1.2.0/24", f"geo.{ZONE}", "10.1.2.0/24", frozenset({"127.0.0.72"})),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- DNS on the wire (just enough for readiness and answer checks) -------------------------


def ecs_option(subnet: str) -> bytes:
    """The RFC 7871 option data: family, source prefix, scope 0, address cut to the prefix."""
    net = ipaddress.ip_network(subnet)
    family = 1 if net.version == 4 else 2
    octets = net.network_address.packed[: math.ceil(net.prefixlen / 8)]
    return struct.pack("!HBB", family, net.prefixlen, 0) + octets


def query(qname: str, ecs: str | None = None, qid: int = 0x4242) -> bytes:
    """An A query with EDNS (and ECS when given), recursion not desired."""
    wire = b"".join(bytes([len(p)]) + p.encode() for p in qname.rstrip(".").split(".")) + b"\0"
    option = b""
    if ecs is not None:
        data = ecs_option(ecs)
        option = struct.pack("!HH", 8, len(data)) + data
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1) + wire + struct.pack("!HH", 1, 1) + opt


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        length = msg[pos]
        if length >= 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += length + 1


def a_records(msg: bytes) -> tuple[int, frozenset[str]]:
    """(rcode, addresses of the A records in the answer section)."""
    _, flags, qdcount, ancount = struct.unpack("!HHHH", msg[:8])
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(msg, pos) + 4
    found = set()
    for _ in range(ancount):
        pos = _skip_name(msg, pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            found.add(socket.inet_ntoa(msg[pos : pos + 4]))
        pos += rdlen
    return flags & 0xF, frozenset(found)


def ask(port: int, qname: str, ecs: str | None = None, timeout: float = 1.0) -> frozenset[str]:
    """The A addresses 127.0.0.1:port answers for qname; raises OSError on timeout or error."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query(qname, ecs), ("127.0.0.1", port))
        rcode, found = a_records(s.recvfrom(4096)[0])
    if rcode != 0:
        raise OSError(f"rcode {rcode}")
    return found


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


# --- health-check targets --------------------------------------------------------------------


class Sites:
    """TCP listeners that accept and close: what a TCP-connect health check needs."""

    def __init__(self, hosts: Sequence[str], port: int) -> None:
        self.socks = [socket.create_server((host, port), backlog=256) for host in hosts]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="sites", daemon=True)

    def __enter__(self) -> Sites:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        for sock in self.socks:
            sock.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            for sock in self.socks:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in sel.select(0.2):
                    with contextlib.suppress(OSError):
                        conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                        conn.close()


# --- servers ---------------------------------------------------------------------------------


class PeerFailed(Exception):
    """A server could not be configured or started; the run goes on without it."""


@dataclass
class Server:
    """One server under test, started as a child process in its own session."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    lines: queue.Queue[tuple[float, str]] = field(default_factory=queue.Queue)

    def start(self, probe_name: str, timeout: float = 120.0) -> float:
        """Start and wait until it answers ``probe_name``; returns the seconds that took."""
        log(f"starting {self.name} on 127.0.0.1:{self.port}")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True).start()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerFailed(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                ask(self.port, probe_name, timeout=0.2)
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.05)
        raise PeerFailed(f"{self.name} did not answer within {timeout:.0f} s: {self.tail()}")

    def _pump(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        with (self.workdir / "server.log").open("w") as out:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                out.write(line + "\n")
                out.flush()
                self.lines.put((time.monotonic(), line))

    def tail(self, count: int = 8) -> str:
        path = self.workdir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-count:])

    def wait_line(self, pattern: str, timeout: float) -> tuple[float, str]:
        """Monotonic arrival time and text of the next output line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while (left := deadline - time.monotonic()) > 0:
            try:
                stamp, line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if regex.search(line):
                return stamp, line
        raise PeerFailed(f"{self.name}: no log line matching {pattern!r} in {timeout:.0f} s")

    def drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.lines.get_nowait()

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB from /proc/PID/status, summed over the server's child
        processes too (dnsfail --workers); (0, 0) if not running."""
        if self.proc is None or self.proc.poll() is not None:
            return 0, 0
        rss = hwm = 0
        for pid in (self.proc.pid, *_children(self.proc.pid)):
            fields = {}
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    fields[key] = value.split()[0] if value.split() else "0"
            rss += int(fields.get("VmRSS", 0))
            hwm += int(fields.get("VmHWM", 0))
        return rss, hwm

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM; killing it")
            self.proc.kill()
            self.proc.wait(timeout=5)


def render(src: Path, dst: Path, templated: Sequence[str], **values: object) -> None:
    """Copy ``src/*`` to ``dst``; files named in ``templated`` get $-placeholders filled in."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        text = path.read_text()
        if path.name in templated:
            text = string.Template(text).substitute({k: str(v) for k, v in values.items()})
        (dst / path.name).write_text(text)


def _children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux /proc/PID/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def dnsfail_server(
    workdir: Path, zones: Path, src: Path, port: int, log_level: str = "warning",
    workers: str = "auto",
) -> Server:  # fmt: skip
    argv = [sys.executable, "-m", "dnsfail", "serve", str(zones),
            "--listen", f"127.0.0.1:{port}", "--log-level", log_level,
            "--workers", workers]  # fmt: skip
    return Server(DNSFAIL, argv, port, workdir, cwd=src)


def gdnsd_server(workdir: Path, zone_files: Sequence[Path], port: int, config: Path) -> Server:
    """gdnsd in the foreground (``start``) with its own run and state directories."""
    run_dir, state_dir, zones = workdir / "run", workdir / "state", workdir / "zones"
    for d in (run_dir, state_dir, zones):
        d.mkdir(parents=True, exist_ok=True)
    text = string.Template(config.read_text()).substitute(
        port=port, run_dir=run_dir, state_dir=state_dir
    )
    (workdir / "config").write_text(text)
    for zone in zone_files:
        shutil.copy(zone, zones / zone.name)
    return Server(GDNSD, ["gdnsd", "-c", str(workdir), "start"], port, workdir)


def pdns_server(
    name: str, workdir: Path, zone_files: dict[str, Path], port: int, lua_mode: str
) -> Server:
    """pdns_server with the bind backend, not daemonized, sockets in ``workdir``."""
    render(PEERS / "pdns", workdir, ["pdns.conf"], dir=workdir, port=port, lua_mode=lua_mode)
    zones = "".join(
        f'zone "{origin}" {{ type master; file "{path}"; }};\n'
        for origin, path in zone_files.items()
    )
    (workdir / "named.conf").write_text(f'options {{ directory "{workdir}"; }};\n{zones}')
    argv = ["pdns_server", f"--config-dir={workdir}"]
    return Server(name, argv, port, workdir)


# --- dnsperf ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Perf:
    qps: float
    avg_ms: float
    sent: int
    lost: int
    rcodes: str
    p50_ms: float = math.nan
    p99_ms: float = math.nan


def dnsperf(
    port: int, name: Name, datafile: Path, seconds: float, *, clients: int, outstanding: int,
    rate: int | None = None, verbose: bool = False,
) -> Perf:  # fmt: skip
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile),
            "-l", str(seconds), "-c", str(clients), "-q", str(outstanding), "-e"]  # fmt: skip
    if name.ecs is not None:
        argv += ["-E", f"8:{ecs_option(name.ecs).hex()}"]
    if rate is not None:
        argv += ["-Q", str(rate)]
    if verbose:
        argv.append("-v")
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, start_new_session=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return parse_dnsperf(done.stdout)


def parse_dnsperf(out: str) -> Perf:
    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else math.nan

    latencies = sorted(
        # "> NOERROR qname A 0.000123"; a lost query is "> T qname A", with no latency.
        float(last) for line in out.splitlines() if line.startswith("> ")
        if (last := line.rsplit(None, 1)[1]).replace(".", "", 1).isdigit()
    )
    rcodes = re.search(r"Response codes:\s+(.*)", out)
    return Perf(
        qps=grab(r"Queries per second:\s+([\d.]+)"),
        avg_ms=grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        sent=int(grab(r"Queries sent:\s+(\d+)")),
        lost=int(grab(r"Queries lost:\s+(\d+)")),
        rcodes=rcodes.group(1).strip() if rcodes else "",
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of sorted values; NaN when empty."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(pct / 100 * len(values)) - 1)]


# --- the comparison --------------------------------------------------------------------------


@dataclass
class Cell:
    """One server x name: full-load runs and fixed-rate runs, one per round."""

    load: list[Perf] = field(default_factory=list)
    fixed: list[Perf] = field(default_factory=list)
    #: Runs at half of the server's own peak rate (the issue's p99 target is stated there).
    half: list[Perf] = field(default_factory=list)

    def median(self, pick: Callable[[Perf], float], runs: str = "load") -> float:
        values = [pick(p) for p in getattr(self, runs)]
        values = [v for v in values if not math.isnan(v)]
        return statistics.median(values) if values else math.nan


def check_answers(server: Server, timeout: float = 20.0) -> list[str]:
    """Wait until every name is answered right; return a warning per name still wrong.

    PowerDNS probes lazily (the first query of a LUA record starts its checks)
    and serves its backup choice until the first result, so wrong answers are
    retried until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    wrong: dict[str, str] = {}
    while True:
        wrong = {}
        for name in NAMES:
            try:
                got = ask(server.port, name.qname, name.ecs)
            except OSError as exc:
                wrong[name.label] = f"error {exc}"
                continue
            if got != name.expected:
                wrong[name.label] = f"got {sorted(got)}, want {sorted(name.expected)}"
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [f"{server.name}: {label}: {why}" for label, why in wrong.items()]


def compare(
    servers: Sequence[Server], args: argparse.Namespace, workdir: Path
) -> dict[tuple[str, str], Cell]:
    cells = {(s.name, n.label): Cell() for s in servers for n in NAMES}
    datafiles = {}
    for i, name in enumerate(NAMES):
        datafiles[name.label] = workdir / f"queries-{i}.txt"
        datafiles[name.label].write_text(f"{name.qname} A\n")
    load = {"clients": args.clients, "outstanding": args.outstanding}
    for round_no in range(args.rounds):
        for name in NAMES:
            shift = round_no % len(servers)
            for server in [*servers[shift:], *servers[:shift]]:
                cell = cells[(server.name, name.label)]
                data = datafiles[name.label]
                dnsperf(server.port, name, data, args.warmup, **load)
                perf = dnsperf(server.port, name, data, args.seconds, **load)
                fixed = dnsperf(server.port, name, data, args.latency_seconds,
                                rate=args.latency_qps, verbose=True, **load)  # fmt: skip
                half = dnsperf(server.port, name, data, args.latency_seconds,
                               rate=max(1, int(perf.qps / 2)), verbose=True, **load)  # fmt: skip
                cell.load.append(perf)
                cell.fixed.append(fixed)
                cell.half.append(half)
                log(f"round {round_no + 1}/{args.rounds} {name.label} {server.name}: "
                    f"{perf.qps:,.0f} q/s avg {perf.avg_ms:.2f} ms lost {perf.lost}; "
                    f"@{args.latency_qps}/s p50 {fixed.p50_ms:.3f} p99 {fixed.p99_ms:.3f} ms; "
                    f"@{half.qps:,.0f}/s p99 {half.p99_ms:.3f} ms lost {half.lost} "
                    f"[{perf.rcodes}]")  # fmt: skip
    return cells


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:,.0f}x" if a / b >= 100 else f"{a / b:.3g}x"


def print_table(
    servers: Sequence[Server], cells: dict[tuple[str, str], Cell], args: argparse.Namespace
) -> None:
    rate = f"@ {args.latency_qps:,}/s"
    print(f"\n### dnsfail vs gdnsd vs PowerDNS ({os.cpu_count()} cores, loopback, "
          f"dnsperf -c {args.clients} -q {args.outstanding} -e, {args.seconds} s per run, "
          f"median of {args.rounds} round(s))\n")  # fmt: skip
    print(f"| name | server | queries/s | avg ms (full load) | lost / sent | "
          f"p50 ms {rate} | p99 ms {rate} | p99 ms @ half peak | lost @ half peak |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    names = [s.name for s in servers]
    for name in NAMES:
        for server in names:
            c = cells[(server, name.label)]
            lost = f"{sum(p.lost for p in c.load):,} / {sum(p.sent for p in c.load):,}"
            qps = c.median(lambda p: p.qps)
            # Above half its capacity the fixed-rate run measures queueing, not service time.
            mark = " (near capacity)" if qps < 2 * args.latency_qps else ""
            half_lost = f"{sum(p.lost for p in c.half):,} / {sum(p.sent for p in c.half):,}"
            print(f"| {name.label} | {server} | {fmt(qps, 0)} | "
                  f"{fmt(c.median(lambda p: p.avg_ms))} | {lost} | "
                  f"{fmt(c.median(lambda p: p.p50_ms, 'fixed'), 3)}{mark} | "
                  f"{fmt(c.median(lambda p: p.p99_ms, 'fixed'), 3)}{mark} | "
                  f"{fmt(c.median(lambda p: p.p99_ms, 'half'), 3)} | {half_lost} |")  # fmt: skip
        if DNSFAIL not in names:
            continue
        mine = cells[(DNSFAIL, name.label)]
        for peer in (n for n in names if n != DNSFAIL):
            theirs = cells[(peer, name.label)]

            def both(pick: Callable[[Perf], float], runs: str = "load") -> str:
                return ratio(mine.median(pick, runs), theirs.median(pick, runs))  # noqa: B023

            print(f"| {name.label} | *dnsfail / {peer}* | {both(lambda p: p.qps)} | "
                  f"{both(lambda p: p.avg_ms)} | - | {both(lambda p: p.p50_ms, 'fixed')} | "
                  f"{both(lambda p: p.p99_ms, 'fixed')} | {both(lambda p: p.p99_ms, 'half')} "
                  "| - |")  # fmt: skip


def print_memory(servers: Sequence[Server]) -> None:
    print("\n| server (bench zone, after the runs) | RSS MiB | peak RSS MiB |")
    print("|---|---:|---:|")
    for server in servers:
        rss, hwm = server.memory()
        print(f"| {server.name} | {rss / 1024:.1f} | {hwm / 1024:.1f} |")


# --- the 100k-record zone --------------------------------------------------------------------


@dataclass
class BigFigures:
    server: str
    check_s: float = math.nan
    start_s: float = math.nan
    rss_mib: float = math.nan
    reload_s: float = math.nan
    reload_rss_mib: float = math.nan
    peak_mib: float = math.nan
    note: str = ""


def cpu_reference() -> float:
    """Seconds a fixed pure-Python loop takes: how fast this machine's CPU was just then.

    On a shared VM that moves by half or more within an hour, and every figure with it
    (dnsfail's 100k-record check measured 1.6 s and 2.9 s); printing it beside the
    results tells a slow run from a slow server.
    """
    t0 = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


def timed(argv: Sequence[str], cwd: Path | None = None) -> float:
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, start_new_session=True)
    if done.returncode != 0:
        raise PeerFailed(f"{' '.join(argv)} failed: {(done.stdout + done.stderr)[-400:]}")
    return time.monotonic() - t0


def wait_answer(port: int, qname: str, want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if want in ask(port, qname, timeout=0.5):
                return
        time.sleep(0.05)
    raise PeerFailed(f"{qname} did not become {want} within {timeout:.0f} s")


def big_zone(
    args: argparse.Namespace, workdir: Path, peers: Sequence[str], started: list[Server]
) -> list[BigFigures]:
    """Load, check, reload a zone of ``args.big_records`` A records in each server."""
    count = args.big_records
    origin = compare_zone.ZONE
    probe = f"{compare_zone.PROBE_NAME}.{origin}"
    yaml_dir = workdir / "big-dnsfail"
    zone_yaml = compare_zone.write_yaml(yaml_dir / f"{origin}.yaml", count)
    zone_file = compare_zone.write_rfc1035(workdir / "big-rfc1035" / origin, count)
    log(f"wrote a {count:,}-record zone: {zone_yaml} ({zone_yaml.stat().st_size / 2**20:.1f} MiB)")
    results = []

    def measure(figures: BigFigures, server: Server, reload: Callable[[], float]) -> None:
        started.append(server)
        try:
            figures.start_s = server.start(probe, timeout=args.big_timeout)
            rss, _ = server.memory()
            figures.rss_mib = rss / 1024
            figures.reload_s = reload()
            wait_answer(server.port, probe, "198.18.255.254", 30)
            rss, hwm = server.memory()
            figures.reload_rss_mib, figures.peak_mib = rss / 1024, hwm / 1024
        finally:
            server.stop()

    # dnsfail: check, start, SIGHUP reload timed to its "reloaded" log line.
    figures = BigFigures(DNSFAIL)
    results.append(figures)
    try:
        log(f"dnsfail check on {count:,} records")
        figures.check_s = timed([sys.executable, "-m", "dnsfail", "check", str(yaml_dir)],
                                cwd=args.dnsfail_src)  # fmt: skip
        # One process: the figures are one copy of the zone (each --workers process holds its
        # own), and the "reloaded" line it times is the main process's.
        server = dnsfail_server(workdir / "big-dnsfail-run", yaml_dir, args.dnsfail_src,
                                free_port(), log_level="info", workers="1")  # fmt: skip
        server.workdir.mkdir(parents=True, exist_ok=True)

        def reload_dnsfail() -> float:
            compare_zone.write_yaml(zone_yaml, count, probe_address="198.18.255.254")
            server.drain()
            assert server.proc is not None
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGHUP)
            stamp, line = server.wait_line(r"zone \S+: reloaded|reload rejected", args.big_timeout)
            if "rejected" in line:
                raise PeerFailed(f"dnsfail rejected the reload: {line}")
            return stamp - t0

        log("dnsfail serve on the big zone")
        measure(figures, server, reload_dnsfail)
    except PeerFailed as exc:
        figures.note = str(exc)
        log(f"WARNING: {exc}")

    if GDNSD in peers:
        figures = BigFigures(GDNSD)
        results.append(figures)
        try:
            gdir = workdir / "big-gdnsd"
            server = gdnsd_server(gdir, [zone_file], free_port(), PEERS / "gdnsd" / "config")
            figures.check_s = timed(["gdnsd", "-c", str(gdir), "checkconf"])

            def reload_gdnsd() -> float:
                compare_zone.write_rfc1035(gdir / "zones" / origin, count, serial=2,
                                           probe_address="198.18.255.254")  # fmt: skip
                return timed(["gdnsdctl", "-c", str(gdir), "reload-zones"])

            log("gdnsd on the big zone")
            measure(figures, server, reload_gdnsd)
        except PeerFailed as exc:
            figures.note = str(exc)
            log(f"WARNING: {exc}")

    if PDNS in peers:
        figures = BigFigures(PDNS)
        results.append(figures)
        try:
            pdir = workdir / "big-pdns"
            pzone = pdir / f"{origin}.zone"
            pdir.mkdir(parents=True, exist_ok=True)
            shutil.copy(zone_file, pzone)
            server = pdns_server(PDNS, pdir, {origin: pzone}, free_port(), "yes")
            check = ["pdnsutil", f"--config-dir={pdir}", "check-zone", origin]
            figures.check_s = timed(check)

            def reload_pdns() -> float:
                compare_zone.write_rfc1035(pzone, count, serial=2, probe_address="198.18.255.254")
                return timed(["pdns_control", f"--socket-dir={pdir}", "bind-reload-now", origin])

            log("PowerDNS on the big zone")
            measure(figures, server, reload_pdns)
        except PeerFailed as exc:
            figures.note = str(exc)
            log(f"WARNING: {exc}")
    return results


def print_big(results: Sequence[BigFigures], count: int) -> None:
    print(f"\n### A zone of {count:,} A records\n")
    print("| server | check s | start → first answer s | RSS MiB | reload s | "
          "RSS after reload MiB | peak RSS MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in results:
        print(
            f"| {f.server} | {fmt(f.check_s, 3)} | {fmt(f.start_s, 3)} | {fmt(f.rss_mib, 1)} | "
            f"{fmt(f.reload_s, 3)} | {fmt(f.reload_rss_mib, 1)} | {fmt(f.peak_mib, 1)} |"
        )
    for f in results:
        if f.note:
            print(f"\n- {f.server}: {f.note}")


# --- setup and main --------------------------------------------------------------------------


def ensure_packages(skip_install: bool) -> None:
    """apt-get install what is missing; after a failure, apt-get update and try once more."""
    missing = [p for p in PACKAGES if not _installed(p)]
    if not missing:
        return
    if skip_install:
        log(f"not installing {', '.join(missing)} (--skip-install)")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"apt-get install -y {' '.join(missing)}")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, stdout=sys.stderr).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=sys.stderr, check=True)
        subprocess.run(install, env=env, stdout=sys.stderr, check=True)


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)  # fmt: skip
    return done.returncode == 0 and done.stdout.endswith("installed")


def available_peers() -> list[str]:
    peers = []
    if shutil.which("gdnsd"):
        peers.append(GDNSD)
    else:
        log("WARNING: gdnsd not installed; skipping it")
    if shutil.which("pdns_server") and _installed("pdns-backend-bind"):
        peers += [PDNS, PDNS_SHARED]
    else:
        log("WARNING: pdns-server or pdns-backend-bind not installed; skipping PowerDNS")
    return peers


def build_servers(
    peers: Sequence[str], workdir: Path, dnsfail_src: Path, workers: str = "auto"
) -> list[Server]:
    servers = [dnsfail_server(workdir / "dnsfail", PEERS / "dnsfail", dnsfail_src, free_port(),
                              workers=workers)]  # fmt: skip
    servers[0].workdir.mkdir(parents=True, exist_ok=True)
    if GDNSD in peers:
        zone = PEERS / "gdnsd" / ZONE
        servers.append(gdnsd_server(workdir / "gdnsd", [zone], free_port(),
                                    PEERS / "gdnsd" / "config"))  # fmt: skip
    for name, mode in ((PDNS, "yes"), (PDNS_SHARED, "shared")):
        if name in peers:
            pdir = workdir / ("pdns-shared" if mode == "shared" else "pdns")
            pdir.mkdir(parents=True, exist_ok=True)
            zone = pdir / f"{ZONE}.zone"
            servers.append(pdns_server(name, pdir, {ZONE: zone}, free_port(), mode))
            shutil.copy(PEERS / "pdns" / f"{ZONE}.zone", zone)
    return servers


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="full-load run per server/name")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up traffic")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    parser.add_argument(
        "--latency-qps",
        type=int,
        default=1000,
        help="fixed rate of the p50/p99 run (below every server's capacity)",
    )
    parser.add_argument("--latency-seconds", type=int, default=5)
    parser.add_argument(
        "--skip-install", action="store_true", help="never apt-get install; skip missing peers"
    )
    parser.add_argument("--skip-big", action="store_true", help="skip the 100k-record part")
    parser.add_argument("--big-records", type=int, default=100_000)
    parser.add_argument(
        "--big-timeout",
        type=float,
        default=600.0,
        help="seconds allowed for loading or reloading the big zone",
    )
    parser.add_argument(
        "--dnsfail-src",
        type=Path,
        default=ROOT,
        help="directory that holds the dnsfail package (default: this checkout)",
    )
    parser.add_argument("--workers", default="auto", metavar="N|auto",
                        help="dnsfail serve --workers for the comparison (default auto: one "
                             "process per core, as gdnsd runs one thread per core)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C, and SIGINT even when started in the background (where a shell ignores it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    ensure_packages(args.skip_install)
    if shutil.which("dnsperf") is None:
        raise SystemExit("dnsperf not found: apt-get install dnsperf")
    peers = available_peers()
    workdir = Path(tempfile.mkdtemp(prefix="dnsfail-compare-"))
    started: list[Server] = []
    notes: list[str] = []
    try:
        try:
            sites = Sites(SITES, SITE_PORT)
        except OSError as exc:
            raise SystemExit(f"cannot listen on the sites' port {SITE_PORT}: {exc}") from None
        with sites:
            log(f"sites listening on {', '.join(SITES)} port {SITE_PORT}; work dir {workdir}")
            try:
                timed([sys.executable, "-m", "dnsfail", "check", str(PEERS / "dnsfail")],
                      cwd=args.dnsfail_src)  # fmt: skip
            except PeerFailed as exc:
                raise SystemExit(f"the dnsfail bench zone does not load: {exc}") from None
            running = []
            for server in build_servers(peers, workdir, args.dnsfail_src, args.workers):
                started.append(server)
                try:
                    server.start(f"static.{ZONE}", timeout=30)
                except PeerFailed as exc:
                    notes.append(f"{server.name} did not start: {exc}")
                    log(f"WARNING: {notes[-1]}")
                    server.stop()
                    continue
                running.append(server)
            if not any(s.name == DNSFAIL for s in running):
                raise SystemExit(f"dnsfail did not start: {notes[-1]}")
            for server in running:
                for warning in check_answers(server):
                    notes.append(f"wrong answer before measuring: {warning}")
                    log(f"WARNING: {notes[-1]}")
            load1, _, _ = os.getloadavg()
            log(f"load average before measuring: {load1:.2f}")
            speed = [cpu_reference()]
            cells = compare(running, args, workdir)
            print_table(running, cells, args)
            print_memory(running)
            for server in running:
                server.stop()
            big = [] if args.skip_big else big_zone(args, workdir, peers, started)
            speed.append(cpu_reference())
        if big:
            print_big(big, args.big_records)
        print(f"\nCPU reference: a 10,000,000-step Python loop took {speed[0]:.2f} s before "
              f"the runs and {speed[1]:.2f} s after them (lower is a faster machine).")
        if notes:
            print("\nNotes:\n")
            for note in notes:
                print(f"- {note}")
        return 0
    except KeyboardInterrupt:
        log("interrupted; stopping the servers")
        return 130
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
