"""Compare dnsfail with gdnsd and PowerDNS on the same zone, on loopback, in one run.

    python tests/bench/compare.py [--seconds 10] [--rounds 1] [--skip-install]
        [--rows static,fo,...] [--dnsfail-args "--rrl-rate 100000"]
        [--big-records 1000000 | --skip-big]

What it does:

1. Installs the peers if missing (``apt-get install -y gdnsd pdns-server
   pdns-backend-bind dnsperf``; ``--skip-install`` skips a missing peer instead).
2. Starts three TCP listeners on 127.0.0.71-73 port 8443: the "sites" that every
   server health-checks with a TCP connect.
3. Configures each server from ``tests/bench/peers/`` with the same zone
   ``bench.example.com``: ``static`` (a plain A), ``fo`` (every healthy site of
   three), ``geo`` (the site for the client's subnet, 10.1.0.0/16 -> .72,
   10.2.0.0/16 -> .73, else .71) and the wildcard ``*.wild`` (192.0.2.20), and
   starts them all on loopback ports: dnsfail (``--workers auto``, one answering
   process per core, as gdnsd runs a thread per core; ``--workers 1`` to compare one
   process), with ``--dnsfail-args`` a second dnsfail started with those extra
   arguments, gdnsd, PowerDNS with ``enable-lua-records=yes`` (a new Lua state per
   query) and PowerDNS with ``enable-lua-records=shared``.
4. The rows (``--rows`` picks some): the three names asked again and again (text input;
   the geo name with ECS 10.1.2.0/24 by ``-E 8:<hex>``), and rows where no query
   repeats, sent from streams generated here (``compare_streams.py``) with
   ``dnsperf -B`` (wire-format input; dnsperf replaces only the ID): random
   nonexistent names, random names under the wildcard, the geo name with ECS from
   ``--ecs-networks`` distinct /24s, the failover name with a random letter case
   (0x20) per query, and a "public resolver" mix (0x20 on every query, ECS on every
   query, 5% nonexistent names); plus the static name over TCP (``dnsperf -m tcp``).
   A generated stream is new for every round and phase, shared by the servers (each
   its own process), holds ``--max-qps`` queries per second of run and is read once
   (``-n 1``): a run that reaches its end is marked, never repeated.
5. Checks every server's answers to a few queries of every row (rcode, addresses,
   the question echoed with its exact case, the SOA of an NXDOMAIN, the owner of a
   wildcard answer) and notes where servers differ; then per row runs dnsperf
   against each server in turn (the order rotates each round): ``--warmup`` s,
   ``--seconds`` at full load (``-c 4 -q 200``, EDNS on) for queries/s, average
   latency, lost queries and response codes, then ``--latency-seconds`` at a fixed
   ``--latency-qps`` and again at half of that server's own peak, both with
   ``dnsperf -v`` for p50/p99 (dnsperf 2.x has no percentiles and ``-v`` costs it a
   quarter of its speed, so it is kept out of the throughput run).  RSS (summed over
   the server's processes) is read before and after each row, and every run's CPU
   (``Usage``: the server's processes, dnsperf, the machine's idle and steal time).
6. Loads a zone of ``--big-records`` A records (``compare_zone.py``) into dnsfail
   with ``--workers 1`` and ``--workers auto``: ``dnsfail check`` time, start until
   the first answer and until every worker answers (its log lines), RSS and PSS
   (``/proc/PID/smaps_rollup``) summed over the processes, SIGHUP reload until the
   "reloaded" log line and until every process answers from the new zone (workers:
   ``/v1/status``), RSS after it and the reload's peak (every process's VmHWM, reset
   just before it through ``/proc/PID/clear_refs``); and the same zone into gdnsd and
   PowerDNS for reference (``--skip-big`` skips this part).

The scheduler matters on a small machine: with Linux's autogroup
(``kernel.sched_autogroup_enabled``, on in Debian's kernels) every session is one
scheduling group and the CPUs are shared between sessions first; each server, dnsperf
and this script run in sessions of their own (dnsfail's worker processes each start
one, see ``dnsfail/serve/workers.py``).  The output says which was in force;
``--autogroup on|off`` sets it for the run (root) and puts it back afterwards.

Medians over ``--rounds`` are printed as Markdown on stdout; progress goes to
stderr.  Every process started here is stopped on exit, Ctrl-C included.
Only 127.0.0.0/8 is ever sent a packet.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import queue
import random
import re
import resource
import selectors
import shlex
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
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_streams  # sibling scripts, not a package
import compare_zone
from compare_streams import Shape

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEERS = HERE / "peers"
ZONE = "bench.example.com"
SITES = ("127.0.0.71", "127.0.0.72", "127.0.0.73")
AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")
SITE_PORT = 8443
PACKAGES = ("gdnsd", "pdns-server", "pdns-backend-bind", "dnsperf")
DNSFAIL, GDNSD, PDNS, PDNS_SHARED = "dnsfail", "gdnsd", "PowerDNS", "PowerDNS (lua shared)"


@dataclass(frozen=True)
class Row:
    """One benchmark row: what is asked, how, and (for the fixed-name rows) the right answer.

    A row with ``shapes`` sends a generated stream (``compare_streams``) through
    ``dnsperf -B``, so that names, cases or ECS networks never repeat; the others send
    ``qname`` (with ``-E`` for ``ecs``) on every query, as dnsperf's text input does.
    """

    key: str
    label: str
    qname: str
    ecs: str | None = None
    expected: frozenset[str] = frozenset()
    shapes: tuple[tuple[Shape, float], ...] = ()
    mode: str = "udp"


#: The wildcard every server's bench zone holds, and its address.
WILD, WILD_ADDRESS = f"wild.{ZONE}", "192.0.2.20"
#: Share of nonexistent names in the "public resolver" mix.
MIX_NXDOMAIN = 0.05
_NX = Shape(ZONE, random_label=True)
_MIX = (
    *((Shape(f"{label}.{ZONE}", case=True, ecs=True), (1 - MIX_NXDOMAIN) / 3)
      for label in ("static", "fo", "geo")),
    (Shape(ZONE, random_label=True, case=True, ecs=True), MIX_NXDOMAIN),
)  # fmt: skip

ROWS = (
    Row("static", "static", f"static.{ZONE}", expected=frozenset({"192.0.2.10"})),
    Row("fo", "failover, 3 sites (TCP checks)", f"fo.{ZONE}", expected=frozenset(SITES)),
    Row("geo", "geo by ECS 10.1.2.0/24", f"geo.{ZONE}", "10.1.2.0/24",
        frozenset({"127.0.0.72"})),
    Row("nx", "random nonexistent names (NXDOMAIN)", f"<random>.{ZONE}", shapes=((_NX, 1),)),
    Row("wild", "random names under a wildcard", f"<random>.{WILD}",
        shapes=((Shape(WILD, random_label=True), 1),)),
    Row("ecs", "geo name, ECS from {nets} distinct /24s", f"geo.{ZONE}",
        shapes=((Shape(f"geo.{ZONE}", ecs=True), 1),)),
    Row("case", "failover name, random letter case (0x20)", f"fo.{ZONE}",
        shapes=((Shape(f"fo.{ZONE}", case=True), 1),)),
    Row("tcp", "static name over TCP", f"static.{ZONE}", expected=frozenset({"192.0.2.10"}),
        mode="tcp"),
    Row("mix", "public resolver mix (0x20, ECS from {nets} /24s, 5% NXDOMAIN)",
        f"<mixed>.{ZONE}", shapes=_MIX),
)  # fmt: skip


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


def _read_name(msg: bytes, pos: int) -> str:
    """The (decompressed) name at ``pos``, case kept, without the final dot."""
    labels: list[str] = []
    for _ in range(128):  # bounds a pointer loop
        length = msg[pos]
        if length >= 0xC0:
            pos = struct.unpack_from("!H", msg, pos)[0] & 0x3FFF
            continue
        if length == 0:
            break
        labels.append(msg[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += length + 1
    return ".".join(labels)


@dataclass(frozen=True)
class Reply:
    """What the answer checks compare: rcode, AA, the question as sent back, the answer."""

    rcode: int
    aa: bool
    question: bytes
    addresses: frozenset[str]
    #: Owner names of the answer's A records, case kept.
    owners: frozenset[str]
    #: RR types of the authority section (an NXDOMAIN carries the zone's SOA, RFC 2308).
    authority: tuple[int, ...]

    def summary(self) -> str:
        rcode = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(self.rcode,
                                                                              str(self.rcode))
        soa = " +SOA" if 6 in self.authority else ""
        return f"{rcode}{' aa' if self.aa else ''} {sorted(self.addresses)}{soa}"


def parse_reply(msg: bytes) -> Reply:
    _, flags, qdcount, ancount, nscount = struct.unpack("!HHHHH", msg[:10])
    pos = 12
    question = b""
    for _ in range(qdcount):
        end = _skip_name(msg, pos) + 4
        question, pos = msg[pos:end], end
    found, owners = set(), set()
    for _ in range(ancount):
        owner = _read_name(msg, pos)
        pos = _skip_name(msg, pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            found.add(socket.inet_ntoa(msg[pos : pos + 4]))
            owners.add(owner)
        pos += rdlen
    authority = []
    for _ in range(nscount):
        pos = _skip_name(msg, pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
        authority.append(rtype)
        pos += 10 + rdlen
    return Reply(flags & 0xF, bool(flags & 0x0400), question, frozenset(found),
                 frozenset(owners), tuple(authority))  # fmt: skip


def a_records(msg: bytes) -> tuple[int, frozenset[str]]:
    """(rcode, addresses of the A records in the answer section)."""
    reply = parse_reply(msg)
    return reply.rcode, reply.addresses


def exchange(port: int, wire: bytes, timeout: float = 1.0, tcp: bool = False) -> bytes:
    """Send one query to 127.0.0.1:port and return the reply (OSError on timeout)."""
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(wire)) + wire)
            head = b""
            while len(head) < 2:
                chunk = s.recv(2 - len(head))
                if not chunk:
                    raise OSError("TCP connection closed")
                head += chunk
            (length,) = struct.unpack("!H", head)
            body = b""
            while len(body) < length:
                chunk = s.recv(length - len(body))
                if not chunk:
                    raise OSError("TCP connection closed")
                body += chunk
            return body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, ("127.0.0.1", port))
        return s.recvfrom(65535)[0]


def ask(port: int, qname: str, ecs: str | None = None, timeout: float = 1.0) -> frozenset[str]:
    """The A addresses 127.0.0.1:port answers for qname; raises OSError on timeout or error."""
    rcode, found = a_records(exchange(port, query(qname, ecs), timeout))
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
    started_at: float = 0.0
    lines: queue.Queue[tuple[float, str]] = field(default_factory=queue.Queue)

    def start(self, probe_name: str, timeout: float = 120.0) -> float:
        """Start and wait until it answers ``probe_name``; returns the seconds that took."""
        log(f"starting {self.name} on 127.0.0.1:{self.port}")
        t0 = self.started_at = time.monotonic()
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

    def pids(self) -> list[int]:
        """The server's process and its children (dnsfail --workers); [] if not running."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *_children(self.proc.pid)]

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB from /proc/PID/status, summed over the server's child
        processes too (dnsfail --workers); (0, 0) if not running."""
        rss = hwm = 0
        for pid in self.pids():
            fields = {}
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    fields[key] = value.split()[0] if value.split() else "0"
            rss += int(fields.get("VmRSS", 0))
            hwm += int(fields.get("VmHWM", 0))
        return rss, hwm

    def pss(self) -> int:
        """Proportional set size in KiB (/proc/PID/smaps_rollup), summed over the processes:
        what the processes cost together, pages they share counted once."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
                total += int(found.group(1)) if found else 0
        return total

    def reset_peak(self) -> None:
        """Reset every process's VmHWM to its current RSS (``5 > /proc/PID/clear_refs``),
        so that the next peak read is the reload's, not the start's."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

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
    workers: str = "auto", extra: Sequence[str] = (), name: str = DNSFAIL,
    control: str = "off",
) -> Server:  # fmt: skip
    """``dnsfail serve`` with no state file and (by default) no control API, so that two
    instances (``--dnsfail-args``) never share either."""
    argv = [sys.executable, "-m", "dnsfail", "serve", str(zones),
            "--listen", f"127.0.0.1:{port}", "--log-level", log_level,
            "--workers", workers, "--state-file", "", "--control", control,
            *extra]  # fmt: skip
    return Server(name, argv, port, workdir, cwd=src)


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
    #: Response codes dnsperf counted, as (name, count).
    rcodes: tuple[tuple[str, int], ...]
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    #: A generated stream ran out before the time limit (raise ``--max-qps``).
    ran_out: bool = False
    #: Where the machine's CPU went during the run (``Usage``); None where not measured.
    usage: Usage | None = None


@dataclass(frozen=True)
class Usage:
    """CPU seconds of one run: the server's processes (all threads), dnsperf, and the
    machine's idle and steal time (``/proc/stat``: time the hypervisor gave to others).

    Why: a fixed-rate p99 measures queueing, and on a 2-core VM the queue is set by what
    else wants the CPU: dnsperf itself, and the host (steal).  These show whether a slow
    p99 came from the server's own cost per query or from a machine with none to spare."""

    seconds: float
    server_s: float
    client_s: float
    idle_s: float
    steal_s: float

    def per_query_us(self, answered: int) -> float:
        return self.server_s / answered * 1e6 if answered else math.nan


def machine_times() -> tuple[float, float, float]:
    """(all, idle, steal) CPU seconds since boot, summed over the CPUs (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    return sum(fields[:8]) / tick, (fields[3] + fields[4]) / tick, fields[7] / tick


def process_cpu(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (each with all its threads), in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def dnsperf(
    port: int, row: Row, datafile: Path, seconds: float, *, clients: int, outstanding: int,
    rate: int | None = None, verbose: bool = False, capacity: int | None = None,
    server: Server | None = None,
) -> Perf:  # fmt: skip
    """One dnsperf run; ``capacity`` is the number of queries in a generated ``datafile``,
    which dnsperf reads once (``-n 1``), so that no query is ever sent twice."""
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile),
            "-l", str(seconds), "-c", str(clients), "-q", str(outstanding)]  # fmt: skip
    if row.shapes:
        argv += ["-B", "-n", "1"]  # wire-format input: EDNS and ECS are in every message
    else:
        argv.append("-e")
        if row.ecs is not None:
            argv += ["-E", f"8:{ecs_option(row.ecs).hex()}"]
    if row.mode != "udp":
        argv += ["-m", row.mode]
    if rate is not None:
        argv += ["-Q", str(rate)]
    if verbose:
        argv.append("-v")
    pids = server.pids() if server is not None else []
    started, server0 = time.monotonic(), process_cpu(pids)
    machine0, child0 = machine_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, start_new_session=True
    )
    machine1, child1 = machine_times(), resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = Usage(seconds=time.monotonic() - started, server_s=process_cpu(pids) - server0,
                  client_s=(child1.ru_utime + child1.ru_stime
                            - child0.ru_utime - child0.ru_stime),
                  idle_s=machine1[1] - machine0[1], steal_s=machine1[2] - machine0[2])
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    perf = dataclasses.replace(parse_dnsperf(done.stdout), usage=usage if pids else None)
    if capacity is not None and perf.sent >= capacity:
        perf = dataclasses.replace(perf, ran_out=True)
    return perf


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
    counts = re.findall(r"([A-Z]+) (\d+) \(", rcodes.group(1)) if rcodes else []
    return Perf(
        qps=grab(r"Queries per second:\s+([\d.]+)"),
        avg_ms=grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        sent=int(grab(r"Queries sent:\s+(\d+)")),
        lost=int(grab(r"Queries lost:\s+(\d+)")),
        rcodes=tuple((name, int(n)) for name, n in counts),
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of sorted values; NaN when empty."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(pct / 100 * len(values)) - 1)]


# --- query streams ---------------------------------------------------------------------------

#: The runs of one server on one row, in order: (phase, what sets the file's size).
PHASES = ("warmup", "load", "fixed", "half")


class Streams:
    """The dnsperf input files of every row: one text line for the repeated rows, and for
    the generated rows a new stream per round and phase, shared by the servers (each is
    its own process, so none sees another's queries) and removed after the round.

    A stream holds ``--max-qps`` queries per second of its run (half of that for the
    half-peak run), so that a server answering up to that rate never gets a repeat;
    a run that reaches the end is marked in the table.
    """

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.nets = compare_streams.networks(args.ecs_networks, random.Random("nets"),
                                             always=("10.1.0.0/16", "10.2.0.0/16"))  # fmt: skip

    def capacity(self, phase: str) -> int:
        a = self.args
        seconds: dict[str, int] = {"warmup": a.warmup, "load": a.seconds,
                                   "half": a.latency_seconds}  # fmt: skip
        if phase == "fixed":
            return int(a.latency_qps * a.latency_seconds * 1.2) + 1000
        rate: int = a.max_qps // 2 if phase == "half" else a.max_qps
        return rate * seconds[phase]

    def prepare(self, row: Row, round_no: int) -> dict[str, tuple[Path, int | None]]:
        """phase -> (input file, queries in it or None for a repeated text line)."""
        if not row.shapes:
            path = self.workdir / f"queries-{row.key}.txt"
            path.write_text(f"{row.qname} A\n")
            return dict.fromkeys(PHASES, (path, None))
        files: dict[str, tuple[Path, int | None]] = {}
        t0 = time.monotonic()
        for phase in PHASES:
            count = self.capacity(phase)
            rng = random.Random(f"{row.key}/{round_no}/{phase}")
            path = self.workdir / f"stream-{row.key}-{phase}.bin"
            path.write_bytes(compare_streams.stream(row.shapes, count, rng, self.nets))
            files[phase] = (path, count)
        total = sum(count or 0 for _, count in files.values())
        log(f"generated {total:,} queries for {row.key} in {time.monotonic() - t0:.1f} s")
        return files

    @staticmethod
    def remove(files: dict[str, tuple[Path, int | None]]) -> None:
        for path, count in files.values():
            if count is not None:
                path.unlink(missing_ok=True)

    def samples(self, row: Row) -> list[bytes]:
        """A few queries of the row's kind for the answer checks (the same for every server),
        with some ECS networks inside the steered 10.1/16 and 10.2/16."""
        if not row.shapes:
            return [query(row.qname, row.ecs)]
        rng = random.Random(f"check/{row.key}")
        nets = [b"\x0a\x01\x07", b"\x0a\x02\x09", *rng.sample(self.nets, 4)]
        # Four of each shape, so that even a 5% share (the mix's NXDOMAINs) is checked.
        return [wire for shape, _ in row.shapes for wire in compare_streams.split(
            compare_streams.stream(((shape, 1),), 4, rng, nets))]


# --- the comparison --------------------------------------------------------------------------


@dataclass
class Cell:
    """One server x row: full-load runs and fixed-rate runs, one per round."""

    load: list[Perf] = field(default_factory=list)
    fixed: list[Perf] = field(default_factory=list)
    #: Runs at half of the server's own peak rate (the issue's p99 target is stated there).
    half: list[Perf] = field(default_factory=list)
    #: The server's RSS (KiB, all processes) before and after the row, per round.
    rss: list[tuple[int, int]] = field(default_factory=list)

    def median(self, pick: Callable[[Perf], float], runs: str = "load") -> float:
        values = [pick(p) for p in getattr(self, runs)]
        values = [v for v in values if not math.isnan(v)]
        return statistics.median(values) if values else math.nan


def _ecs24(wire: bytes) -> bytes | None:
    """The address octets of an ECS /24 in our own query ``wire`` (one question, one OPT)."""
    pos = _skip_name(wire, 12) + 4
    pos = _skip_name(wire, pos) + 8
    (rdlen,) = struct.unpack_from("!H", wire, pos)
    pos += 2
    end = pos + rdlen
    while pos + 4 <= end:
        code, length = struct.unpack_from("!HH", wire, pos)
        if code == 8:
            return wire[pos + 8 : pos + 4 + length]
        pos += 4 + length
    return None


def expect(wire: bytes) -> tuple[int, frozenset[str]]:
    """(rcode, addresses) the bench zone must answer to our query ``wire``, all sites up."""
    name = _read_name(wire, 12).lower()
    if name == f"static.{ZONE}":
        return 0, frozenset({"192.0.2.10"})
    if name == f"fo.{ZONE}":
        return 0, frozenset(SITES)
    if name == f"geo.{ZONE}":
        prefix = (_ecs24(wire) or b"\x7f\x00")[:2]  # no ECS: the source, 127.0.0.1
        site = {b"\x0a\x01": SITES[1], b"\x0a\x02": SITES[2]}.get(prefix, SITES[0])
        return 0, frozenset({site})
    if name.endswith(f".{WILD}"):
        return 0, frozenset({WILD_ADDRESS})
    return 3, frozenset()


def _wrong(reply: Reply, wire: bytes) -> str | None:
    """Why ``reply`` is not the answer to ``wire``, or None when it is."""
    rcode, addresses = expect(wire)
    qname = _read_name(wire, 12)
    if (reply.rcode, reply.addresses) != (rcode, addresses):
        return f"got {reply.summary()}, want rcode {rcode} {sorted(addresses)}"
    if reply.question != wire[12 : _skip_name(wire, 12) + 4]:
        return f"question not echoed as sent (0x20): {_read_name(reply.question, 0)!r}"
    if rcode == 3 and 6 not in reply.authority:
        return "NXDOMAIN without the zone's SOA in the authority section (RFC 2308)"
    if any(owner.lower() != qname.lower() for owner in reply.owners):
        return f"answer owner {sorted(reply.owners)} is not the question {qname!r}"
    return None


def check_answers(
    servers: Sequence[Server], rows: Sequence[Row], streams: Streams, timeout: float = 20.0
) -> list[str]:
    """Ask every server a few queries of every row; return a warning per wrong answer and
    per query the servers answer differently.

    PowerDNS probes lazily (the first query of a LUA record starts its checks)
    and serves its backup choice until the first result, so wrong answers are
    retried until ``timeout``.
    """
    warnings = []
    for row in rows:
        samples = streams.samples(row)
        deadline = time.monotonic() + timeout
        while True:
            wrong: dict[str, str] = {}
            seen: dict[int, dict[str, str]] = {}
            for server in servers:
                for i, wire in enumerate(samples):
                    try:
                        reply = parse_reply(exchange(server.port, struct.pack("!H", 0x4242 + i)
                                                     + wire[2:], tcp=row.mode == "tcp"))
                    except OSError as exc:
                        wrong.setdefault(server.name, f"{_read_name(wire, 12)}: error {exc}")
                        continue
                    seen.setdefault(i, {})[server.name] = reply.summary()
                    if (why := _wrong(reply, wire)) is not None:
                        wrong.setdefault(server.name, f"{_read_name(wire, 12)}: {why}")
            if not wrong or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        warnings += [f"{name}: {row.key}: {why}" for name, why in wrong.items()]
        for i, answers in seen.items():
            if len(set(answers.values())) > 1:
                warnings.append(f"servers differ on {_read_name(samples[i], 12)}: " + "; ".join(
                    f"{name} {summary}" for name, summary in answers.items()))
    return warnings


def compare(
    servers: Sequence[Server], rows: Sequence[Row], args: argparse.Namespace, streams: Streams
) -> dict[tuple[str, str], Cell]:
    cells = {(s.name, r.key): Cell() for s in servers for r in rows}
    load = {"clients": args.clients, "outstanding": args.outstanding}
    for round_no in range(args.rounds):
        for row in rows:
            files = streams.prepare(row, round_no)
            shift = round_no % len(servers)
            for server in [*servers[shift:], *servers[:shift]]:
                cell = cells[(server.name, row.key)]

                def run(phase: str, seconds: float, **extra: Any) -> Perf:
                    path, capacity = files[phase]  # noqa: B023
                    return dnsperf(server.port, row, path, seconds, capacity=capacity,  # noqa: B023
                                   server=server, **load, **extra)  # noqa: B023  # fmt: skip

                before, _ = server.memory()
                run("warmup", args.warmup)
                perf = run("load", args.seconds)
                fixed = run("fixed", args.latency_seconds, rate=args.latency_qps, verbose=True)
                half = run("half", args.latency_seconds, rate=max(1, int(perf.qps / 2)),
                           verbose=True)  # fmt: skip
                after, _ = server.memory()
                cell.load.append(perf)
                cell.fixed.append(fixed)
                cell.half.append(half)
                cell.rss.append((before, after))
                log(f"round {round_no + 1}/{args.rounds} {row.key} {server.name}: "
                    f"{perf.qps:,.0f} q/s avg {perf.avg_ms:.2f} ms lost {perf.lost}; "
                    f"@{args.latency_qps}/s p50 {fixed.p50_ms:.3f} p99 {fixed.p99_ms:.3f} ms; "
                    f"@{half.qps:,.0f}/s p99 {half.p99_ms:.3f} ms lost {half.lost} "
                    f"[{rcode_text(perf.rcodes)}] RSS {before / 1024:.0f}->{after / 1024:.0f} MiB"
                    + (" (stream ran out)" if perf.ran_out else ""))  # fmt: skip
            streams.remove(files)
    return cells


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:,.0f}x" if a / b >= 100 else f"{a / b:.3g}x"


def rcode_text(rcodes: Sequence[tuple[str, int]]) -> str:
    """``NOERROR 95.0%, NXDOMAIN 5.0%`` from dnsperf's counts (summed over runs)."""
    totals: dict[str, int] = {}
    for name, count in rcodes:
        totals[name] = totals.get(name, 0) + count
    whole = sum(totals.values())
    if not whole:
        return "none"
    return ", ".join(f"{name} {100 * n / whole:.1f}%" for name, n in totals.items())


def row_label(row: Row, args: argparse.Namespace) -> str:
    return row.label.format(nets=f"{args.ecs_networks:,}")


def print_table(
    servers: Sequence[Server], rows: Sequence[Row], cells: dict[tuple[str, str], Cell],
    args: argparse.Namespace,
) -> None:  # fmt: skip
    names = [s.name for s in servers]
    mine = [n for n in names if n.startswith(DNSFAIL)]
    base = GDNSD if GDNSD in names else None

    def qps(server: str, row: Row) -> float:
        return cells[(server, row.key)].median(lambda p: p.qps)

    print(f"\n### dnsfail vs gdnsd vs PowerDNS ({os.cpu_count()} cores, loopback, "
          f"dnsperf -c {args.clients} -q {args.outstanding}, EDNS, {args.seconds} s per run, "
          f"median of {args.rounds} round(s), dnsfail --workers {args.workers})\n")  # fmt: skip
    ratios = [f"{m} / gdnsd" for m in mine] if base else []
    print("| traffic | " + " | ".join(f"{n} q/s" for n in names) + " | "
          + " | ".join(ratios) + " |")  # fmt: skip
    print("|---|" + "---:|" * (len(names) + len(ratios)))
    for row in rows:
        cols = [fmt(qps(n, row), 0) for n in names]
        cols += [ratio(qps(m, row), qps(base, row)) for m in mine] if base else []
        print(f"| {row_label(row, args)} | " + " | ".join(cols) + " |")

    rate = f"@ {args.latency_qps:,}/s"
    print(f"\n| traffic | server | queries/s | vs gdnsd | avg ms (full load) | lost / sent | "
          f"rcodes | p50 ms {rate} | p99 ms {rate} | p99 ms @ half peak | lost @ half peak | "
          "RSS MiB before → after |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    ran_out = False
    for row in rows:
        for server in names:
            c = cells[(server, row.key)]
            lost = f"{sum(p.lost for p in c.load):,} / {sum(p.sent for p in c.load):,}"
            q = qps(server, row)
            out = any(p.ran_out for p in (*c.load, *c.half))
            ran_out |= out
            # Above half its capacity the fixed-rate run measures queueing, not service time.
            mark = " (near capacity)" if q < 2 * args.latency_qps else ""
            half_lost = f"{sum(p.lost for p in c.half):,} / {sum(p.sent for p in c.half):,}"
            rss = (f"{c.rss[0][0] / 1024:.0f} → {c.rss[-1][1] / 1024:.0f}" if c.rss else "n/a")
            vs = ratio(q, qps(base, row)) if base else "n/a"
            codes = rcode_text([rc for p in c.load for rc in p.rcodes])
            print(f"| {row_label(row, args)} | {server} | {fmt(q, 0)}{' †' if out else ''} | "
                  f"{vs} | {fmt(c.median(lambda p: p.avg_ms))} | {lost} | {codes} | "
                  f"{fmt(c.median(lambda p: p.p50_ms, 'fixed'), 3)}{mark} | "
                  f"{fmt(c.median(lambda p: p.p99_ms, 'fixed'), 3)}{mark} | "
                  f"{fmt(c.median(lambda p: p.p99_ms, 'half'), 3)} | {half_lost} | "
                  f"{rss} |")  # fmt: skip
    print_usage(names, rows, cells, args)
    if ran_out:
        print(f"\n† a generated stream ran out before the run's end (more than --max-qps "
              f"{args.max_qps:,} q/s): the figure stands, but raise --max-qps.")


def print_usage(names: Sequence[str], rows: Sequence[Row],
                cells: dict[tuple[str, str], Cell], args: argparse.Namespace) -> None:
    """Where the CPU went in the full-load and half-peak runs (medians over rounds)."""
    print("\n| traffic | server | server CPU µs/query (full load) | server CPU µs/query "
          "@ half peak | dnsperf CPU % @ half peak | machine idle % @ half peak | "
          "steal % @ half peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    cores = os.cpu_count() or 1

    def per_query(p: Perf) -> float:
        return p.usage.per_query_us(p.sent - p.lost) if p.usage else math.nan

    def percent(pick: Callable[[Usage], float], of: int) -> Callable[[Perf], float]:
        return lambda p: 100 * pick(p.usage) / (p.usage.seconds * of) if p.usage else math.nan

    client = percent(lambda u: u.client_s, 1)
    idle = percent(lambda u: u.idle_s, cores)
    steal = percent(lambda u: u.steal_s, cores)
    for row in rows:
        for server in names:
            c = cells[(server, row.key)]
            print(f"| {row_label(row, args)} | {server} | {fmt(c.median(per_query), 1)} | "
                  f"{fmt(c.median(per_query, 'half'), 1)} | {fmt(c.median(client, 'half'), 0)} | "
                  f"{fmt(c.median(idle, 'half'), 0)} | {fmt(c.median(steal, 'half'), 0)} |")
    print(f"\n(dnsperf CPU % is of one core; idle and steal are of all {cores} cores.)")


def print_memory(servers: Sequence[Server]) -> None:
    print("\n| server (bench zone, after the runs) | RSS MiB | peak RSS MiB |")
    print("|---|---:|---:|")
    for server in servers:
        rss, hwm = server.memory()
        print(f"| {server.name} | {rss / 1024:.1f} | {hwm / 1024:.1f} |")


# --- the big zone ----------------------------------------------------------------------------


@dataclass
class BigFigures:
    server: str
    check_s: float = math.nan
    #: Start until the first answer (dnsfail: the main process answers before its workers).
    start_s: float = math.nan
    #: Start until every worker process answers (dnsfail --workers > 1, its log lines).
    workers_s: float = math.nan
    rss_mib: float = math.nan
    pss_mib: float = math.nan
    #: Reload until the server says it is done ("reloaded" log line, or the command returns).
    reload_s: float = math.nan
    #: Reload until every process answers from the new zone.
    reload_all_s: float = math.nan
    reload_rss_mib: float = math.nan
    #: The highest RSS during the reload: every process's VmHWM, reset before it, summed.
    reload_peak_mib: float = math.nan
    note: str = ""


def autogroup() -> str:
    """Whether Linux autogroup scheduling is in force: "on", "off" or "absent"."""
    try:
        return "on" if AUTOGROUP.read_text().strip() == "1" else "off"
    except OSError:
        return "absent"


@contextlib.contextmanager
def scheduler(want: str) -> Iterator[str]:
    """Autogroup as ``want`` ("keep", "on" or "off") for the block, then as it was."""
    before = autogroup()
    if want != "keep" and before not in ("absent", want):
        AUTOGROUP.write_text("1\n" if want == "on" else "0\n")
    try:
        yield autogroup()
    finally:
        if before != "absent" and autogroup() != before:
            AUTOGROUP.write_text("1\n" if before == "on" else "0\n")


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


#: Consecutive right answers, each from a new source port, that count as "every process
#: answers the new zone" for servers without a status API (gdnsd threads and PowerDNS
#: spread clients by port).
NEW_ANSWER_STREAK = 20


def wait_answer(port: int, qname: str, want: str, timeout: float, streak: int = 1) -> None:
    deadline = time.monotonic() + timeout
    good = 0
    while time.monotonic() < deadline:
        try:
            good = good + 1 if want in ask(port, qname, timeout=0.5) else 0
        except OSError:
            good = 0
        if good >= streak:
            return
        if not good:
            time.sleep(0.05)
    raise PeerFailed(f"{qname} did not become {want} within {timeout:.0f} s")


def wait_workers_applied(control_port: int, timeout: float) -> None:
    """Until every dnsfail worker has applied the main process's snapshot (/v1/status)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{control_port}/v1/status"
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=2) as response:
                status = json.load(response)
            if all(w["generation"] >= status["generation"] for w in status["workers"]):
                return
        time.sleep(0.05)
    raise PeerFailed(f"dnsfail workers did not apply the reload within {timeout:.0f} s")


@dataclass(frozen=True)
class Reload:
    """How to reload one server: rewrite its zone (untimed), then trigger and time it."""

    prepare: Callable[[], object]
    trigger: Callable[[], float]
    #: After ``trigger``: wait until every process answers the new zone (or None: by answers).
    settle: Callable[[], None] | None = None


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
    # Every server starts with the probe name at 198.18.0.1 and reloads it to this.
    new_address = "198.18.255.254"

    def measure(figures: BigFigures, server: Server, reload: Reload, workers: int = 0) -> None:
        started.append(server)
        try:
            figures.start_s = server.start(probe, timeout=args.big_timeout)
            for _ in range(workers):
                stamp, _ = server.wait_line(r"worker \d+ \(pid \d+\) answering",
                                            args.big_timeout)  # fmt: skip
                figures.workers_s = stamp - server.started_at
            rss, _ = server.memory()
            figures.rss_mib, figures.pss_mib = rss / 1024, server.pss() / 1024
            reload.prepare()
            server.reset_peak()
            server.drain()
            t0 = time.monotonic()
            figures.reload_s = reload.trigger()
            if reload.settle is not None:
                reload.settle()
            wait_answer(server.port, probe, new_address, args.big_timeout,
                        streak=NEW_ANSWER_STREAK)  # fmt: skip
            figures.reload_all_s = time.monotonic() - t0
            rss, hwm = server.memory()
            figures.reload_rss_mib, figures.reload_peak_mib = rss / 1024, hwm / 1024
        finally:
            server.stop()

    try:
        log(f"dnsfail check on {count:,} records")
        check_s = timed([sys.executable, "-m", "dnsfail", "check", str(yaml_dir)],
                        cwd=args.dnsfail_src)  # fmt: skip
    except PeerFailed as exc:
        check_s = math.nan
        log(f"WARNING: {exc}")
    processes = len(os.sched_getaffinity(0))
    for workers in ("1", "auto"):
        figures = BigFigures(f"{DNSFAIL} --workers {workers}", check_s=check_s)
        results.append(figures)
        try:
            compare_zone.write_yaml(zone_yaml, count)  # the previous run reloaded it
            control = free_port()
            server = dnsfail_server(workdir / f"big-dnsfail-run-{workers}", yaml_dir,
                                    args.dnsfail_src, free_port(), log_level="info",
                                    workers=workers, control=f"127.0.0.1:{control}")  # fmt: skip
            server.workdir.mkdir(parents=True, exist_ok=True)

            def trigger_dnsfail(server: Server = server) -> float:
                assert server.proc is not None
                t0 = time.monotonic()
                server.proc.send_signal(signal.SIGHUP)
                stamp, line = server.wait_line(r"zone \S+: reloaded|reload rejected",
                                               args.big_timeout)  # fmt: skip
                if "rejected" in line:
                    raise PeerFailed(f"dnsfail rejected the reload: {line}")
                return stamp - t0

            def settle_dnsfail(control: int = control) -> None:
                wait_workers_applied(control, args.big_timeout)

            reload = Reload(
                lambda: compare_zone.write_yaml(zone_yaml, count, probe_address=new_address),
                trigger_dnsfail, settle_dnsfail,
            )
            log(f"dnsfail serve --workers {workers} on the big zone")
            measure(figures, server, reload, workers=processes - 1 if workers == "auto" else 0)
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
            reload = Reload(
                lambda: compare_zone.write_rfc1035(gdir / "zones" / origin, count, serial=2,
                                                   probe_address=new_address),
                lambda: timed(["gdnsdctl", "-c", str(gdir), "reload-zones"]),
            )  # fmt: skip
            log("gdnsd on the big zone")
            measure(figures, server, reload)
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
            figures.check_s = timed(["pdnsutil", f"--config-dir={pdir}", "check-zone", origin])
            reload = Reload(
                lambda: compare_zone.write_rfc1035(pzone, count, serial=2,
                                                   probe_address=new_address),
                lambda: timed(["pdns_control", f"--socket-dir={pdir}", "bind-reload-now",
                               origin]),
            )  # fmt: skip
            log("PowerDNS on the big zone")
            measure(figures, server, reload)
        except PeerFailed as exc:
            figures.note = str(exc)
            log(f"WARNING: {exc}")
    return results


def print_big(results: Sequence[BigFigures], count: int) -> None:
    print(f"\n### A zone of {count:,} A records\n")
    print("| server | check s | start → first answer s | start → every worker answers s | "
          "RSS MiB | PSS MiB | reload s | reload → every process answers s | "
          "RSS after reload MiB | reload peak RSS MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for f in results:
        print(
            f"| {f.server} | {fmt(f.check_s, 3)} | {fmt(f.start_s, 3)} | {fmt(f.workers_s, 3)} | "
            f"{fmt(f.rss_mib, 1)} | {fmt(f.pss_mib, 1)} | {fmt(f.reload_s, 3)} | "
            f"{fmt(f.reload_all_s, 3)} | {fmt(f.reload_rss_mib, 1)} | "
            f"{fmt(f.reload_peak_mib, 1)} |"
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
    peers: Sequence[str], workdir: Path, dnsfail_src: Path, workers: str = "auto",
    extra: Sequence[str] = (),
) -> list[Server]:  # fmt: skip
    """dnsfail, then dnsfail with ``extra`` arguments (``--dnsfail-args``), then the peers."""
    servers = [dnsfail_server(workdir / "dnsfail", PEERS / "dnsfail", dnsfail_src, free_port(),
                              workers=workers)]  # fmt: skip
    if extra:
        servers.append(dnsfail_server(workdir / "dnsfail-args", PEERS / "dnsfail", dnsfail_src,
                                      free_port(), workers=workers, extra=extra,
                                      name=f"{DNSFAIL} {shlex.join(extra)}"))  # fmt: skip
    for server in servers:
        server.workdir.mkdir(parents=True, exist_ok=True)
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
    parser.add_argument("--skip-big", action="store_true", help="skip the big-zone part")
    parser.add_argument("--big-records", type=int, default=1_000_000, metavar="N",
                        help="A records in the big zone (default 1,000,000)")
    parser.add_argument("--rows", default=",".join(r.key for r in ROWS), metavar="KEY,...",
                        help="rows to run, of: " + ", ".join(r.key for r in ROWS))
    parser.add_argument("--ecs-networks", type=int, default=100_000, metavar="N",
                        help="distinct ECS /24s of the ecs and mix rows (default 100,000)")
    parser.add_argument("--max-qps", type=int, default=250_000, metavar="N",
                        help="queries per second of run in each generated stream, so that no "
                             "query repeats up to that rate (default 250,000)")
    parser.add_argument("--dnsfail-args", default="", metavar='"ARGS"',
                        help="also run every row against a second dnsfail started with these "
                             "extra serve arguments, e.g. \"--rrl-rate 100000\"")
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
    parser.add_argument("--autogroup", choices=("keep", "on", "off"), default="keep",
                        help="Linux autogroup scheduling during the run (root; default: "
                             "as the machine has it)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    known = {r.key: r for r in ROWS}
    unknown = [k for k in args.rows.split(",") if k not in known]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; rows are {', '.join(known)}")
    args.row_list = [known[k] for k in args.rows.split(",")]
    args.dnsfail_extra = shlex.split(args.dnsfail_args)
    return args


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
            for server in build_servers(peers, workdir, args.dnsfail_src, args.workers,
                                        args.dnsfail_extra):  # fmt: skip
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
            streams = Streams(workdir, args)
            for warning in check_answers(running, args.row_list, streams):
                notes.append(f"wrong answer before measuring: {warning}")
                log(f"WARNING: {notes[-1]}")
            load1, _, _ = os.getloadavg()
            log(f"load average before measuring: {load1:.2f}")
            speed = [cpu_reference()]
            with scheduler(args.autogroup) as sched:
                log(f"autogroup scheduling: {sched}")
                cells = compare(running, args.row_list, args, streams)
            print_table(running, args.row_list, cells, args)
            print(f"\nLinux autogroup scheduling during the rows: {sched} "
                  f"(kernel.sched_autogroup_enabled; --autogroup sets it).")
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
