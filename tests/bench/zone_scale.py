"""Time and memory of a big zone: check, start, workers, reload (issue 13, "zones that scale").

    python tests/bench/zone_scale.py --records 1000000 [--workers 1 auto] [--tree A=DIR ...]

For each ``--tree`` (a directory whose ``dnsfail`` package is run: A/B of two
checkouts in one run, alternating), it measures on a zone written by
``compare_zone.write_yaml``:

* ``check``: wall time of ``python3 -m dnsfail check``;
* ``start``: wall time from ``serve`` to the first answer to ``h000000`` on loopback,
  and with workers until ``/v1/status`` shows every worker ready and in step;
* steady memory: the sum of RSS and of PSS (``/proc/PID/smaps_rollup``) of the
  server and its worker processes;
* reload: a changed zone and SIGHUP; the largest RSS sum sampled (every 20 ms) until
  the new answer is served and every worker has applied it, and the time that took.

``--flood SECONDS`` instead starts ``serve --workers auto`` on the zone and sends
``--rate`` questions a second for that long from one UDP socket: new nonexistent names,
new letter cases and new ECS /24s of known names (a third each), and every 100th
question one of four names real clients repeat, from 8 source ports (so that the
processes share it).  It prints each process's RSS before, every 10 s, at its largest
(sampled every second) and after, and the questions answered and lost.

Prints one JSON object per measurement.  Loopback only, ports chosen by the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dns.edns
import dns.message
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_zone import PROBE_NAME, ZONE, write_yaml

QNAME = f"{PROBE_NAME}.{ZONE}."
#: Source sockets of ``--flood`` (one port each).
SOURCES = 8


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port: int = udp.getsockname()[1]
    return port


def env_for(tree: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": tree}


def answer(port: int, timeout: float = 0.2) -> str | None:
    """The first A address answered for ``QNAME``, or None."""
    query = dns.message.make_query(QNAME, dns.rdatatype.A)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query.to_wire(), ("127.0.0.1", port))
            reply = dns.message.from_wire(sock.recv(65535))
        except (OSError, dns.exception.DNSException):
            return None
    for rrset in reply.answer:
        for rdata in rrset:
            return str(rdata)
    return None


def processes(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                text = Path(f"/proc/{p}/task/{task}/children").read_text()
                todo += [int(c) for c in text.split()]
        except OSError:
            pass
    return out


def rss_each(pid: int) -> list[float]:
    """RSS MiB of ``pid`` and of each of its descendants."""
    out = []
    for p in processes(pid):
        try:
            status_text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        out += [int(line.split()[1]) / 1024 for line in status_text.splitlines()
                if line.startswith("VmRSS:")]
    return out


def memory(pid: int) -> tuple[float, float, int]:
    """(sum of RSS MiB, sum of PSS MiB, process count) over ``pid`` and its descendants."""
    rss = pss = 0
    pids = processes(pid)
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024, len(pids)


def status(control: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{control}/v1/status", timeout=5) as resp:
        data: dict[str, object] = json.load(resp)
    return data


def in_step(control: int) -> bool:
    try:
        state = status(control)
    except OSError:
        return False
    workers = state.get("workers") or []
    assert isinstance(workers, list)
    return all(w["alive"] and w["ready"] and w["generation"] == state["generation"]
               for w in workers)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far (all threads).

    On a shared machine wall time is mostly other people's load; CPU time is not."""
    total = 0
    for p in processes(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def check(tree: str, zones: Path) -> dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dnsfail", "check", str(zones)],
                          env=env_for(tree), capture_output=True, text=True, check=False,
                          cwd=zones.parent)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"check_s": round(time.monotonic() - start, 2), "check_cpu_s": round(cpu, 2),
            "check_maxrss_mib": round(after.ru_maxrss / 1024), "ok": done.returncode == 0}


def serve(tree: str, zones: Path, workers: str, records: int) -> dict[str, object]:
    port, control = free_port(), free_port()
    command = [sys.executable, "-m", "dnsfail", "serve", "--listen", f"127.0.0.1:{port}",
               "--control", f"127.0.0.1:{control}", "--state-file", "", "--workers", workers,
               "--log-level", "warning", str(zones)]
    start = time.monotonic()
    # cwd: ``-m`` puts the working directory first on the path, before PYTHONPATH.
    server = subprocess.Popen(command, env=env_for(tree), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=zones.parent)
    out: dict[str, object] = {}
    try:
        while answer(port) is None:
            if server.poll() is not None or time.monotonic() - start > 300:
                return {"error": "no answer"}
        out["start_s"] = round(time.monotonic() - start, 2)
        out["start_cpu_s"] = round(cpu_seconds(server.pid), 2)
        while not in_step(control):
            time.sleep(0.05)
        out["workers_ready_s"] = round(time.monotonic() - start, 2)
        out["workers_ready_cpu_s"] = round(cpu_seconds(server.pid), 2)
        time.sleep(2)
        rss, pss, count = memory(server.pid)
        out.update(processes=count, rss_mib=round(rss), pss_mib=round(pss),
                   rss_each_mib=[round(r) for r in rss_each(server.pid)])
        # Reload a changed zone: the probe name's address moves.
        write_yaml(zones / f"{ZONE}.yaml", records, probe_address="198.18.255.254")
        cpu_before = cpu_seconds(server.pid)
        reload_start = time.monotonic()
        server.send_signal(signal.SIGHUP)
        peak = rss
        while True:
            peak = max(peak, memory(server.pid)[0])
            if answer(port, 0.02) == "198.18.255.254" and in_step(control):
                break
            if time.monotonic() - reload_start > 300:
                out["reload_error"] = "not applied"
                break
        out["reload_s"] = round(time.monotonic() - reload_start, 2)
        out["reload_cpu_s"] = round(cpu_seconds(server.pid) - cpu_before, 2)
        out["reload_peak_rss_mib"] = round(peak)
        out["reload_peak_over_steady"] = round(peak / rss, 2)
    finally:
        server.terminate()
        server.wait(30)
        write_yaml(zones / f"{ZONE}.yaml", records)
    return out


def flood_query(rng: random.Random, i: int) -> bytes:
    """The ``i``-th question of the flood (see the module docstring)."""
    qid = i & 0xFFFF
    if i % 100 == 0:
        return dns.message.make_query(f"h00000{i // 100 % 4}.{ZONE}.", "A", id=qid).to_wire()
    kind = i % 3
    if kind == 0:
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        return dns.message.make_query(f"{label}.{ZONE}.", "A", id=qid).to_wire()
    if kind == 1:
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in f"h000001.{ZONE}.")
        return dns.message.make_query(name, "A", id=qid).to_wire()
    subnet = dns.edns.ECSOption(f"10.{rng.randrange(256)}.{rng.randrange(256)}.0", 24)
    return dns.message.make_query(f"h000002.{ZONE}.", "A", id=qid, use_edns=0,
                                  options=[subnet]).to_wire()


def flood(tree: str, zones: Path, seconds: float, rate: int) -> dict[str, object]:
    port, control = free_port(), free_port()
    command = [sys.executable, "-m", "dnsfail", "serve", "--listen", f"127.0.0.1:{port}",
               "--control", f"127.0.0.1:{control}", "--state-file", "", "--workers", "auto",
               "--log-level", "warning", str(zones)]
    server = subprocess.Popen(command, env=env_for(tree), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=zones.parent)
    out: dict[str, object] = {"rate": rate, "seconds": seconds}
    try:
        start = time.monotonic()
        while answer(port) is None or not in_step(control):
            if server.poll() is not None or time.monotonic() - start > 300:
                return {"error": "no answer"}
            time.sleep(0.05)
        rng = random.Random(13)
        for i in range(0, 400, 100):  # the repeated names, each seen twice before the flood
            answer_wire(port, flood_query(rng, i))
            answer_wire(port, flood_query(rng, i))
        time.sleep(2)
        out["rss_before_mib"] = [round(r) for r in rss_each(server.pid)]
        largest = list(out["rss_before_mib"])  # type: ignore[call-overload]
        # Several source ports, so that SO_REUSEPORT spreads the flood over the processes.
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOURCES)]
        received = [0] * SOURCES
        done = threading.Event()

        def count_replies(index: int) -> None:
            sock = socks[index]
            while not done.is_set():
                try:
                    sock.recv(4096)
                    received[index] += 1
                except OSError:
                    continue

        for sock in socks:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.connect(("127.0.0.1", port))
            sock.settimeout(0.2)
        readers = [threading.Thread(target=count_replies, args=(i,)) for i in range(SOURCES)]
        for reader in readers:
            reader.start()
        sent, began, next_sample = 0, time.monotonic(), time.monotonic() + 1
        #: (second, questions sent, RSS MiB of each process) every 10 seconds.
        timeline: list[tuple[int, int, list[int]]] = []
        while (now := time.monotonic()) - began < seconds:
            due = int((now - began) * rate)
            while sent < due:
                socks[sent % SOURCES].send(flood_query(rng, sent))
                sent += 1
            if now >= next_sample:
                rss = rss_each(server.pid)
                largest = [max(a, round(b)) for a, b in zip(largest, rss, strict=False)]
                if now - began >= 10 * (len(timeline) + 1):
                    timeline.append((round(now - began), sent, [round(r) for r in rss]))
                next_sample += 1
            time.sleep(0.001)
        time.sleep(1)
        done.set()
        for reader in readers:
            reader.join()
        for sock in socks:
            sock.close()
        received = [sum(received)]
        out.update(sent=sent, answered=received[0], lost=sent - received[0],
                   rss_largest_mib=largest, rss_every_10s=timeline,
                   rss_after_mib=[round(r) for r in rss_each(server.pid)])
    finally:
        server.terminate()
        server.wait(30)
    return out


def answer_wire(port: int, wire: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(wire, ("127.0.0.1", port))
            return sock.recv(65535)
        except OSError:
            return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workers", nargs="+", default=["1", "auto"])
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=DIR: run DIR's dnsfail (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--flood", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--rate", type=int, default=4000, help="questions a second (--flood)")
    args = parser.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(Path(__file__).parents[2])]]
    with tempfile.TemporaryDirectory() as tmp:
        zones = Path(tmp) / "zones"
        write_yaml(zones / f"{ZONE}.yaml", args.records)
        if args.flood:
            for name, tree in trees:
                row = {"tree": name, "records": args.records,
                       **flood(tree, zones, args.flood, args.rate)}
                print(json.dumps(row), flush=True)
            return 0
        for round_ in range(args.rounds):
            for name, tree in trees:
                row = {"tree": name, "round": round_, "records": args.records,
                       **check(tree, zones)}
                print(json.dumps(row), flush=True)
            for workers in args.workers:
                for name, tree in trees:
                    row = {"tree": name, "round": round_, "records": args.records,
                           "workers": workers, **serve(tree, zones, workers, args.records)}
                    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
