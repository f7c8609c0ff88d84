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

Prints one JSON object per measurement.  Loopback only, ports chosen by the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_zone import PROBE_NAME, ZONE, write_yaml

QNAME = f"{PROBE_NAME}.{ZONE}."


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
        out.update(processes=count, rss_mib=round(rss), pss_mib=round(pss))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workers", nargs="+", default=["1", "auto"])
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=DIR: run DIR's dnsfail (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(Path(__file__).parents[2])]]
    with tempfile.TemporaryDirectory() as tmp:
        zones = Path(tmp) / "zones"
        write_yaml(zones / f"{ZONE}.yaml", args.records)
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
