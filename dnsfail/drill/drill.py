"""``python -m dnsfail.drill``: the failure drill of docker/compose.yaml, as local processes.

Starts the same topology on loopback addresses: three stand-in gateway sites
(``dnsfail site`` on 127.0.0.11-13:8080, the example zone's sites) and two
dnsfail instances (ns1 on 127.0.0.21, ns2 on 127.0.0.22, port 5300, control
API on port 8053 of the same address) serving ``zones/``.  Then:

1. both instances answer ``api.gw.example.com`` with the eu site;
2. the eu site is stopped: both instances withdraw it (after ``fall`` failed
   probes) and answer the us site;
3. the eu site is restored: both bring it back (after ``rise`` good probes);
4. eu is drained through each instance's control API: the very next answer
   skips it; it is undrained: the very next answer has it again.

Every step prints what each instance answered and how long the change took;
the exit status is 0 only if every expectation held.  All processes are
stopped on the way out, also on Ctrl-C.  No traffic leaves 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dnsfail.dns.wire import skip_name

QNAME = "api.gw.example.com"
SITES = {"eu": "127.0.0.11", "us": "127.0.0.12", "ap": "127.0.0.13"}
SITE_PORT = 8080


class DrillFailed(Exception):
    """An expectation of the drill did not hold."""


def query_a(host: str, port: int, qname: str, timeout: float = 1.0) -> tuple[list[str], int]:
    """Ask ``host:port`` for ``qname`` A over UDP: (sorted addresses, TTL); plain stdlib.

    Small on purpose: the drill should depend on nothing but dnsfail's own
    runtime, and reading A records from one reply needs only this.
    """
    qid = secrets.randbelow(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in qname.strip(".").split("."))
    packet = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + question + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (host, port))
        while True:
            data, _ = sock.recvfrom(65535)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    rcode = data[3] & 0x0F
    if rcode:
        raise DrillFailed(f"{host}:{port} answered rcode {rcode} for {qname}")
    ancount = struct.unpack(">H", data[6:8])[0]
    pos = skip_name(data, 12) + 4
    addresses, ttl = [], 0
    for _ in range(ancount):
        pos = skip_name(data, pos)
        rtype, _cls, rttl, length = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(data[pos:pos + 4]))
            ttl = rttl
        pos += length
    return sorted(addresses), ttl


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        out = self.log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "dnsfail", *self.args], cwd=cwd, stdout=out,
            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])


@dataclass
class Instance:
    name: str
    host: str
    port: int
    control_port: int
    proc: Proc

    @property
    def control(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    def answer(self) -> list[str]:
        return query_a(self.host, self.port, QNAME)[0]

    def post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        req = urllib.request.Request(self.control + path, data=json.dumps(body).encode(),
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            result: dict[str, object] = json.loads(resp.read())
            return result


@dataclass
class Drill:
    root: Path
    zones: Path
    work: Path
    ns: list[Instance] = field(default_factory=list)
    sites: dict[str, Proc] = field(default_factory=dict)
    say: Callable[[str], None] = print

    def setup(self, ns_hosts: Sequence[str], dns_port: int, control_port: int) -> None:
        for name, host in SITES.items():
            self._free(host, SITE_PORT, f"site {name}")
            self.sites[name] = Proc(f"site-{name}", ["site", f"{host}:{SITE_PORT}", "--name",
                                                     name], self.work / f"site-{name}.log")
        for i, host in enumerate(ns_hosts, 1):
            self._free(host, control_port, f"ns{i} control API")
            self._free(host, dns_port, f"ns{i} DNS", udp=True)
            proc = Proc(f"ns{i}", [
                "serve", str(self.zones), "--listen", f"{host}:{dns_port}",
                "--control", f"{host}:{control_port}", "--identity", f"ns{i}",
                "--state-file", str(self.work / f"ns{i}-state.json"),
            ], self.work / f"ns{i}.log")
            self.ns.append(Instance(f"ns{i}", host, dns_port, control_port, proc))

    @staticmethod
    def _free(host: str, port: int, what: str, udp: bool = False) -> None:
        """Raise DrillFailed if something listens on ``host:port`` (and, ``udp``, is bound).

        TCP is tried with SO_REUSEADDR, as the servers themselves bind: the
        TIME-WAIT sockets a previous drill's probes left behind must not block
        a rerun, while a listening socket still does.  UDP without it: there
        SO_REUSEADDR would let two sockets share the port.
        """
        kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    raise DrillFailed(f"{what}: {host}:{port} is not free ({exc.strerror}); "
                                      "is another drill or dnsfail running?") from None

    def start(self) -> None:
        self.say(f"starting 3 sites on {', '.join(SITES.values())} port {SITE_PORT}")
        for proc in self.sites.values():
            proc.start(self.root)
        for name, host in SITES.items():
            url = f"http://{host}:{SITE_PORT}/health"
            self._wait(functools.partial(_http_ok, url), 15, f"site {name} to answer /health",
                       self.sites[name])
        for ns in self.ns:
            self.say(f"starting {ns.name}: DNS {ns.host}:{ns.port}, control {ns.control}")
            ns.proc.start(self.root)
        for ns in self.ns:
            self._wait(functools.partial(_http_ok, ns.control + "/readyz"), 30,
                       f"{ns.name} to be ready", ns.proc)

    def _wait(self, ok: Callable[[], bool], timeout: float, what: str, proc: Proc) -> float:
        started = time.monotonic()
        while not ok():
            if proc.popen is not None and proc.popen.poll() is not None:
                raise DrillFailed(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
            if time.monotonic() - started > timeout:
                raise DrillFailed(f"gave up waiting {timeout:.0f}s for {what}:\n{proc.tail()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def show(self, title: str) -> None:
        self.say(f"\n== {title}")
        for ns in self.ns:
            addresses, ttl = query_a(ns.host, ns.port, QNAME)
            self.say(f"  {ns.name} @{ns.host}:{ns.port} {QNAME} A -> {' '.join(addresses)} "
                     f"(ttl {ttl})")

    def expect_all(self, want: list[str], timeout: float, what: str) -> None:
        """Poll every instance until it answers ``want``; print how long each took."""
        started = time.monotonic()
        pending = list(self.ns)
        seen: dict[str, list[str]] = {}
        while pending:
            for ns in list(pending):
                got = ns.answer()
                seen[ns.name] = got
                if got == want:
                    pending.remove(ns)
                    self.say(f"  {ns.name}: {' '.join(got)} after "
                             f"{time.monotonic() - started:.1f}s")
            if pending and time.monotonic() - started > timeout:
                detail = ", ".join(f"{n.name} still {seen.get(n.name)}" for n in pending)
                raise DrillFailed(f"{what}: {detail} after {timeout:.0f}s\n"
                                  + "\n".join(n.proc.tail() for n in pending))
            time.sleep(0.2)

    def run(self) -> None:
        eu, us = [SITES["eu"]], [SITES["us"]]
        self.show("all sites up: every instance answers the eu site")
        self.expect_all(eu, 15, "initial answer")

        self.say("\n== stopping site eu")
        self.sites["eu"].stop()
        self.expect_all(us, 60, "withdrawing the stopped eu site")
        self.show("eu down: answers moved to us")

        self.say("\n== restoring site eu")
        self.sites["eu"].start(self.root)
        self.expect_all(eu, 60, "bringing eu back")
        self.show("eu restored")

        self.say("\n== draining eu through each control API (no probe delay)")
        for ns in self.ns:
            result = ns.post("/v1/drain", {"target": SITES["eu"], "for": "5m",
                                           "reason": "failure drill", "by": "drill"})
            got = ns.answer()
            self.say(f"  {ns.name}: drained; next answer {' '.join(got)}; drain complete at "
                     f"{result['complete_at_iso']}")
            if got != us:
                raise DrillFailed(f"{ns.name} still answers {got} right after the drain")
        for ns in self.ns:
            ns.post("/v1/undrain", {"target": SITES["eu"], "by": "drill"})
            got = ns.answer()
            self.say(f"  {ns.name}: undrained; next answer {' '.join(got)}")
            if got != eu:
                raise DrillFailed(f"{ns.name} answers {got} right after the undrain")
        self.say("\ndrill passed")

    def stop(self) -> None:
        for ns in self.ns:
            ns.proc.stop()
        for proc in self.sites.values():
            proc.stop()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dnsfail.drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zones", default="zones", help="zone directory (default zones/)")
    parser.add_argument("--ns", nargs=2, default=["127.0.0.21", "127.0.0.22"],
                        metavar=("NS1", "NS2"), help="addresses of the two instances")
    parser.add_argument("--port", type=int, default=5300, help="DNS port (default 5300)")
    parser.add_argument("--control-port", type=int, default=8053)
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the processes' logs (the directory is printed)")
    args = parser.parse_args(argv)
    zones = Path(args.zones).resolve()
    if not zones.exists():
        print(f"drill: {zones} does not exist (run from the repository, or --zones DIR)",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dnsfail-drill-"))
    drill = Drill(Path.cwd(), zones, work)
    code = 1
    try:
        drill.setup(args.ns, args.port, args.control_port)
        drill.start()
        drill.run()
        code = 0
    except DrillFailed as exc:
        print(f"\ndrill FAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndrill interrupted", file=sys.stderr)
        code = 130
    finally:
        drill.stop()
        if args.keep_logs or code:
            print(f"logs in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
