"""Benchmark dnsfail with dnsperf on loopback and print a Markdown table.

    python tests/bench/run.py [--seconds 10] [--zones zones] [--loop uvloop|asyncio]

Starts ``dnsfail serve`` on a free loopback port, runs dnsperf once per
scenario (a static name, a missing name, ...), stops the server and prints
queries per second, average latency, p99-free summary and lost queries.
Needs the ``dnsperf`` binary (Debian package ``dnsperf``).  Not part of the
test suite: performance is measured here and recorded in the README, never
asserted in a timed test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCENARIOS = {
    "static A (www)": ["www.gw.example.com A"],
    "health-checked A (api, probes running)": ["api.gw.example.com A"],
    "CNAME chain to the health-checked name (edge)": ["edge.gw.example.com A"],
    "apex NS with glue": ["gw.example.com NS"],
    "missing name (NXDOMAIN)": ["no-such-name.gw.example.com A"],
    "mixed static set": [
        "www.gw.example.com A",
        "gw.example.com MX",
        "gw.example.com NS",
        "nope.gw.example.com AAAA",
        "Www.Gw.Example.Com A",
    ],
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(
    zones: str, port: int, loop: str, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if loop == "asyncio":
        env["DNSFAIL_NO_UVLOOP"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnsfail", "serve", zones, "--listen", f"127.0.0.1:{port}",
         "--log-level", "warning", *(extra or [])],
        cwd=ROOT, env=env,
    )
    deadline = time.monotonic() + 15
    probe = bytes.fromhex("abcd01000001000000000000") + b"\x02id\x06server\x00\x00\x10\x00\x03"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(probe, ("127.0.0.1", port))
            try:
                s.recvfrom(4096)
                return proc
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("dnsfail exited during startup") from None
    proc.kill()
    raise SystemExit("dnsfail did not answer within 15 s")


def dnsperf(port: int, queries: list[str], seconds: int, extra: list[str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(queries) + "\n")
        datafile = f.name
    try:
        out = subprocess.run(
            ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", datafile, "-l", str(seconds),
             "-c", "4", "-q", "200", *extra],
            capture_output=True, text=True, check=True, timeout=seconds + 30,
        ).stdout
    finally:
        os.unlink(datafile)
    return parse(out)


def parse(out: str) -> dict[str, float]:
    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else float("nan")

    return {
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "sent": grab(r"Queries sent:\s+(\d+)"),
        "lost": grab(r"Queries lost:\s+(\d+)"),
    }


#: ECS option 192.0.2.0/24 (family 1, source 24, scope 0, three address octets), for dnsperf -E.
ECS_EU = "8:00011800c00002"
GEO_ZONE = """\
'':
  type: NS
  values: [ns1.geo.test.]
api:
  dynamic:
    pools:
      ap: {values: [{status: up, value: 127.0.0.53}]}
      eu: {fallback: us, values: [{status: up, value: 127.0.0.51}]}
      us: {fallback: ap, values: [{status: up, value: 127.0.0.52}]}
    rules:
    - geos: [EU]
      pool: eu
    - geos: [NA]
      pool: us
    - pool: ap
  ttl: 30
  type: A
  values: [192.0.2.99]
ns1:
  type: A
  value: 192.0.2.1
static:
  type: A
  value: 192.0.2.7
"""
GEO_SCENARIOS = {
    "geo A with ECS 192.0.2.0/24 (EU)": (["api.geo.test A"], ["-E", ECS_EU]),
    "geo A without ECS (source address decides)": (["api.geo.test A"], []),
    "static A with ECS (scope 0 echoed)": (["static.geo.test A"], ["-E", ECS_EU]),
}


def geo_setup(tmp: Path) -> tuple[str, str]:
    """A geo zone and a City database built with tests/mmdb.py (needs mmdb-writer)."""
    sys.path.insert(0, str(ROOT))
    from tests.mmdb import write_city_db

    zones = tmp / "zones"
    zones.mkdir()
    (zones / "geo.test.yaml").write_text(GEO_ZONE)
    write_city_db(tmp / "city.mmdb", {
        "192.0.2.0/24": ("EU", "DE", None, (52.5, 13.4)),
        "198.51.100.0/24": ("NA", "US", "CA", (37.4, -122.1)),
    })
    return str(zones), str(tmp / "city.mmdb")


def run_scenarios(
    zones: str, extra: list[str], loop: str, seconds: int,
    scenarios: dict[str, tuple[list[str], list[str]]],
) -> list[tuple[str, dict[str, float]]]:
    port = free_port()
    proc = start_server(zones, port, loop, extra)
    rows = []
    try:
        for name, (queries, args) in scenarios.items():
            result = dnsperf(port, queries, seconds, args)
            rows.append((name, result))
            print(f"{name}: {result}", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--zones", default="zones")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--no-geo", action="store_true", help="skip the GeoIP/ECS scenarios")
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        raise SystemExit("dnsperf not found: apt-get install dnsperf")
    plain = {name: (queries, []) for name, queries in SCENARIOS.items()}
    rows = run_scenarios(args.zones, [], args.loop, args.seconds, plain)
    if not args.no_geo:
        with tempfile.TemporaryDirectory() as tmp:
            zones, mmdb = geo_setup(Path(tmp))
            rows += run_scenarios(zones, ["--geoip", mmdb], args.loop, args.seconds,
                                  GEO_SCENARIOS)
    print(f"| scenario ({args.loop}, {os.cpu_count()} cores, dnsperf -c 4 -q 200, "
          f"{args.seconds} s) | queries/s | avg latency ms | lost |")
    print("|---|---:|---:|---:|")
    for name, r in rows:
        lost = f"{r['lost']:.0f} / {r['sent']:.0f}"
        print(f"| {name} | {r['qps']:,.0f} | {r['avg_ms']:.2f} | {lost} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
