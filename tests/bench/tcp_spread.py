"""How TCP connections spread over ``serve --workers N`` processes, and what dnsperf gets.

    python3 -m tests.bench.tcp_spread [--tree DIR ...] [--rounds 30] [--seconds 5]

For each source tree given (default: this one; two trees compare A/B in one run,
alternating), starts ``dnsfail serve --workers N`` on loopback and

* ``rounds`` times opens 4 connections at once (as ``dnsperf -c 4`` does), asks one
  query on each, and counts which process holds each accepted socket (from
  /proc/net/tcp and /proc/PID/fd: exact and immediate, no waiting for reports);
* runs ``dnsperf -m tcp -c 4`` for ``seconds`` a few times and prints q/s and the split.

Not part of the test suite (it needs dnsperf and minutes); Linux only.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.conftest import connection_holders

ROOT = Path(__file__).resolve().parents[2]
ZONES = ROOT / "tests" / "data" / "zones"
QUERY = bytes.fromhex("abcd01000001000000000000") + b"\x02gw\x04test\x00\x00\x0f\x00\x01"


def start(tree: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": tree}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnsfail", "serve", str(ZONES), "--listen", f"127.0.0.1:{port}",
         "--workers", str(workers), "--control", "off", "--state-file", "",
         "--log-level", "warning"], cwd=tree, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(processes(proc.pid)) == workers:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(len(QUERY).to_bytes(2, "big") + QUERY)
                    if s.recv(2):
                        time.sleep(1.0)  # the workers' first report, their listeners
                        return proc
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{tree}: no answer in 30 s")


def processes(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *map(int, children)]


def four_at_once(port: int) -> list[socket.socket]:
    socks = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    for s in socks:
        s.setblocking(True)
        s.settimeout(2.0)
        s.sendall(len(QUERY).to_bytes(2, "big") + QUERY)
    for s in socks:
        length = int.from_bytes(s.recv(2, socket.MSG_WAITALL), "big")
        s.recv(length, socket.MSG_WAITALL)
    return socks


def split(pids: list[int], port: int, socks: list[socket.socket]) -> tuple[int, ...]:
    holders = connection_holders(pids, port)
    counts = collections.Counter(holders.get(s.getsockname()[1]) for s in socks)
    return tuple(sorted((counts.get(pid, 0) for pid in pids), reverse=True))


def dnsperf(port: int, seconds: int, pids: list[int]) -> tuple[float, str, tuple[int, ...]]:
    """q/s, lost queries, and the split of dnsperf's connections a second into the run."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("gw.test MX\napi.gw.test A\n")
        data = f.name
    try:
        run = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-m", "tcp",
                                "-c", "4", "-q", "200", "-l", str(seconds), "-d", data],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1.0)
        counts = collections.Counter(connection_holders(pids, port).values())
        out, _ = run.communicate(timeout=seconds + 30)
    finally:
        os.unlink(data)
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    shares = tuple(sorted((counts.get(pid, 0) for pid in pids), reverse=True))
    return (float(m.group(1)) if m else float("nan")), (lost.group(1) if lost else "?"), shares


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", help="source tree (default: this one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--perf-rounds", type=int, default=3)
    args = parser.parse_args()
    trees = args.tree or [str(ROOT)]
    splits: dict[str, collections.Counter[tuple[int, ...]]] = {t: collections.Counter()
                                                             for t in trees}
    rates: dict[str, list[float]] = {t: [] for t in trees}
    servers = {}
    try:
        for tree in trees:
            port = free_port()
            servers[tree] = (start(tree, port, args.workers), port)
        for _ in range(args.rounds):
            for tree in trees:
                proc, port = servers[tree]
                socks = four_at_once(port)
                splits[tree][split(processes(proc.pid), port, socks)] += 1
                for s in socks:
                    s.close()
                deadline = time.monotonic() + 5  # the servers saw the closes: counts back to 0
                while connection_holders(processes(proc.pid), port) and time.monotonic() < deadline:
                    time.sleep(0.01)
        if shutil.which("dnsperf"):
            for _ in range(args.perf_rounds):
                for tree in trees:
                    proc, port = servers[tree]
                    qps, lost, shares = dnsperf(port, args.seconds, processes(proc.pid))
                    rates[tree].append(qps)
                    print(f"{tree}: dnsperf -m tcp -c 4: {qps:,.0f} q/s, lost {lost}, "
                          f"connections {':'.join(map(str, shares))}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    for tree in trees:
        shown = ", ".join(f"{':'.join(map(str, k))} x{v}" for k, v in splits[tree].most_common())
        print(f"{tree}: {args.rounds} rounds of 4 connections over {args.workers} processes: "
              f"{shown}")
        if rates[tree]:
            r = sorted(rates[tree])
            print(f"{tree}: dnsperf q/s min {r[0]:,.0f} median {r[len(r) // 2]:,.0f} "
                  f"max {r[-1]:,.0f}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


if __name__ == "__main__":
    main()
