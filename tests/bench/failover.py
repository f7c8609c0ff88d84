"""Benchmark failover: how fast a dead site leaves the answer and comes back, and query rate.

    python tests/bench/failover.py [--runs 3] [--seconds 10]

Starts three local health endpoints (127.0.0.41-43, one common port; the
controllable :class:`Endpoint` of tests/integration/test_failover.py) and
``dnsfail serve`` on a ``drill.test`` zone whose dynamic record ``api`` has
the pools eu = (.41, .42) -> us = (.43).  For two health settings, the
defaults (interval 5 s, timeout 2 s, rise 2, fall 3) and the fastest the
configuration accepts (interval 0.5 s, timeout 0.2 s, rise 1, fall 1), it
stops .41's endpoint (connection refused from then on), queries every 50 ms
and records the time of the last answer still containing .41 and of the first
without it; then restores the endpoint and records the time to the first
answer containing .41 again.  Averaged over ``--runs`` runs.

Then, with probes running at the fast settings, dnsperf measures queries/s
on the failover name, on a static name for comparison, and on the failover
name while .41 flaps (every probe result changes the answer or its TTL, so the
prepared-reply cache is dropped twice a second).

Prints Markdown tables for the README.  Needs the ``dnsperf`` binary.  Not
part of the test suite: nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import DnsfailProcess  # noqa: E402
from tests.integration.test_failover import (  # noqa: E402
    QNAME,
    S41,
    S42,
    SITES,
    Endpoint,
    LoopThread,
    ask,
    common_port,
    dynamic,
    zone,
)

POLL = 0.05

PROFILES: dict[str, dict[str, Any] | None] = {
    "defaults (interval 5 s, timeout 2 s, rise 2, fall 3)": None,
    "fastest (interval 0.5 s, timeout 0.2 s, rise 1, fall 1)": {
        "interval": 0.5,
        "timeout": 0.2,
        "rise": 1,
        "fall": 1,
    },
}
DEFAULTS = {"interval": 5.0, "timeout": 2.0, "rise": 2, "fall": 3}


def start_server(directory: Path, port: int, knobs: dict[str, Any] | None) -> DnsfailProcess:
    record = dynamic(port, **(knobs or {}))
    if knobs is None:  # omit octodns.dnsfail.healthcheck entirely: the built-in defaults
        del record["octodns"]["dnsfail"]["healthcheck"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "drill.test.yaml").write_text(
        yaml.safe_dump(zone({"api": record}), sort_keys=False)
    )
    return DnsfailProcess([str(directory)]).wait_ready()


def has41(server: DnsfailProcess) -> bool | None:
    """Whether the answer holds .41; None when the query itself failed (counted apart)."""
    try:
        return S41 in ask(server, QNAME).addresses
    except Exception:
        return None


def one_run(
    server: DnsfailProcess, site: Endpoint, interval: float, rng: random.Random, limit: float
) -> tuple[float, float, float]:
    """(stop -> last answer with .41, stop -> first answer without, restore -> first with).

    Each change waits a random part of an interval first: the answer changes
    right after a probe, so acting at once would always hit the same phase of
    the probe cycle (right after a probe: the worst case) and bias the mean.
    """
    while not has41(server):
        time.sleep(POLL)
    time.sleep(rng.uniform(0, interval))
    site.stop()
    stopped = last_with = time.monotonic()
    while True:
        now = time.monotonic()
        got = has41(server)
        if got:
            last_with = now
        elif got is False:
            first_without = now
            break
        if now - stopped > limit:
            raise SystemExit(f".41 still answered {limit:.0f} s after its endpoint stopped")
        time.sleep(POLL)
    time.sleep(rng.uniform(0, interval))
    site.start()
    restored = time.monotonic()
    while not has41(server):
        if time.monotonic() - restored > limit:
            raise SystemExit(f".41 not answered {limit:.0f} s after its endpoint came back")
        time.sleep(POLL)
    back = time.monotonic()
    return last_with - stopped, first_without - stopped, back - restored


def dnsperf(port: int, qname: str, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(f"{qname} A\n")
        datafile = f.name
    try:
        out = subprocess.run(
            [
                "dnsperf",
                "-s",
                "127.0.0.1",
                "-p",
                str(port),
                "-d",
                datafile,
                "-l",
                str(seconds),
                "-c",
                "4",
                "-q",
                "200",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(datafile)

    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else float("nan")

    return {
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "sent": grab(r"Queries sent:\s+(\d+)"),
        "lost": grab(r"Queries lost:\s+(\d+)"),
        "avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
    }


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        raise SystemExit("dnsperf not found: apt-get install dnsperf")
    loop = LoopThread()
    port = common_port(SITES)
    sites = {h: Endpoint(loop, h, port) for h in SITES}
    timing_rows: list[tuple[str, dict[str, Any], list[tuple[float, float, float]]]] = []
    rng = random.Random(args.seed)
    perf_rows: list[tuple[str, dict[str, float]]] = []
    try:
        import uvloop  # noqa: F401
    except ImportError:
        event_loop = "asyncio"
    else:
        event_loop = "asyncio" if os.environ.get("DNSFAIL_NO_UVLOOP") else "uvloop"
    with tempfile.TemporaryDirectory(prefix="dnsfail-bench-") as tmp:
        for n, (name, knobs) in enumerate(PROFILES.items()):
            server = start_server(Path(tmp) / f"zones{n}", port, knobs)
            try:
                runs = []
                settings = knobs or DEFAULTS
                for i in range(args.runs):
                    runs.append(one_run(server, sites[S41], settings["interval"], rng, limit=60))
                    print(
                        f"{name} run {i + 1}: last with .41 {runs[-1][0]:.2f} s, first "
                        f"without {runs[-1][1]:.2f} s, back after {runs[-1][2]:.2f} s",
                        file=sys.stderr,
                    )
                timing_rows.append((name, settings, runs))
                if knobs is not None:  # query rate while the fast probes run
                    for label, qname in [
                        ("failover name (api, 3 probed targets)", QNAME),
                        ("static name (www)", "www.drill.test."),
                    ]:
                        perf_rows.append((label, dnsperf(server.port, qname, args.seconds)))
                        print(f"{label}: {perf_rows[-1][1]}", file=sys.stderr)
                    sites[S41].flapping = True
                    label = "failover name while .41 flaps (answer changes every probe)"
                    perf_rows.append((label, dnsperf(server.port, QNAME, args.seconds)))
                    print(f"{label}: {perf_rows[-1][1]}", file=sys.stderr)
                    sites[S41].flapping = False
                    assert S42 in ask(server).addresses
            finally:
                server.stop()
    for site in sites.values():
        site.close()
    loop.close()

    print(
        f"Failover timing, seconds, mean (min-max) of {args.runs} runs; the endpoint is "
        "stopped (connection refused), DNS polled every 50 ms; the bound is when the health "
        "machine must have acted (probes every interval +-10 %), before query latency and "
        "polling:\n"
    )
    print(
        "| health settings | stop -> last answer with the site | stop -> first answer "
        "without | restore -> first answer with it again |"
    )
    print("|---|---:|---:|---:|")
    for name, settings, runs in timing_rows:
        cols = [fmt([r[k] for r in runs]) for k in range(3)]
        # One probe per interval +-10 %; the first counting result comes 0..1 interval in.
        every, fall, rise = (
            float(settings["interval"]),
            int(settings["fall"]),
            int(settings["rise"]),
        )
        down = f"{(fall - 1) * every * 0.9:g}-{fall * every * 1.1:g}"
        up = f"{(rise - 1) * every * 0.9:g}-{rise * every * 1.1:g}"
        print(f"| {name} | {cols[0]} | {cols[1]} (bound {down}) | {cols[2]} (bound {up}) |")
    print(
        f"\nQueries per second while probes run (fast settings, {event_loop}, "
        f"{os.cpu_count()} cores, dnsperf -c 4 -q 200, {args.seconds} s):\n"
    )
    print("| query | queries/s | avg latency ms | lost |")
    print("|---|---:|---:|---:|")
    for label, r in perf_rows:
        print(
            f"| {label} | {r['qps']:,.0f} | {r['avg_ms']:.2f} | {r['lost']:.0f} / {r['sent']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
