"""The UDP drains side by side at full load: q/s, CPU per query of the server and of dnsperf,
and the machine's idle time, in shuffled order per round.

    python tests/bench/drain_ab.py [--rows static,mix] [--rounds 3] [--seconds 5] [--pinned]

Why the idle column: on a 2-core machine dnsperf shares the cores with the server, so "full
load" is what the two together reach.  A server that needs less CPU per query does not
always answer more then; the idle time shows whether the cores were busy at all.  The
variants are dnsfail with the compiled drain and with the pure-Python one (``--udp-drain``),
each with the coalescing wait on (the default) and off (``--udp-coalesce 0``), and gdnsd on
the same bench zone.  ``--pinned`` measures what one core answers instead: every server
(dnsfail with ``--workers 1``) on the last core, dnsperf on the others, so that the load
generator no longer shares the server's core.  Built on ``compare.py``'s servers and
streams (the generated rows never repeat a query); not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare as c  # type: ignore[import-not-found]

CORES = os.cpu_count() or 1
VARIANTS: dict[str, list[str]] = {
    "compiled": [],
    "pure": ["--udp-drain", "python"],
    "compiled, coalesce 0": ["--udp-coalesce", "0"],
    "pure, coalesce 0": ["--udp-drain", "python", "--udp-coalesce", "0"],
}


def _pin(servers: Iterable[c.Server]) -> None:
    """Every thread of every server on the last core; this process (and so dnsperf, its
    child) on the others."""
    last = CORES - 1
    for server in servers:
        for pid in server.pids():
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), {last})
    os.sched_setaffinity(0, set(range(last)) or {last})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="static,mix", help="compare.py row keys")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pinned", action="store_true",
                        help="servers on the last core (dnsfail --workers 1), dnsperf on the rest")
    args = parser.parse_args(argv)
    workers = "1" if args.pinned else "auto"
    rows = {row.key: row for row in c.ROWS}
    work = Path(tempfile.mkdtemp(prefix="drain-ab-"))
    servers: dict[str, c.Server] = {}
    for name, extra in VARIANTS.items():
        servers[name] = c.dnsfail_server(work / name.replace(", ", "-"), c.PEERS / "dnsfail",
                                         c.ROOT, c.free_port(), extra=extra, name=name,
                                         workers=workers)
    servers["gdnsd"] = c.gdnsd_server(work / "gdnsd", [c.PEERS / "gdnsd" / c.ZONE],
                                      c.free_port(), c.PEERS / "gdnsd" / "config")
    for server in servers.values():
        server.workdir.mkdir(parents=True, exist_ok=True)
    streams = c.Streams(work, argparse.Namespace(
        warmup=1, seconds=args.seconds, latency_seconds=1, max_qps=250_000,
        latency_qps=1000, ecs_networks=100_000))
    print("| row | round | server | q/s | avg ms | server us/query | dnsperf us/query | idle % |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    try:
        with c.Sites(c.SITES, c.SITE_PORT):
            for server in servers.values():
                server.start(f"static.{c.ZONE}")
            if args.pinned:
                _pin(servers.values())
            for key in args.rows.split(","):
                row = rows[key]
                for round_no in range(args.rounds):
                    files = streams.prepare(row, round_no)
                    order = list(servers)
                    random.Random(round_no).shuffle(order)
                    for name in order:
                        server = servers[name]
                        path, count = files["warmup"]
                        c.dnsperf(server.port, row, path, 1, clients=4, outstanding=200,
                                  capacity=count)
                        path, count = files["load"]
                        perf = c.dnsperf(server.port, row, path, args.seconds, clients=4,
                                         outstanding=200, capacity=count, server=server)
                        use = perf.usage
                        assert use is not None
                        answered = perf.qps * use.seconds
                        print(f"| {key} | {round_no + 1} | {name} | {perf.qps:,.0f} | "
                              f"{perf.avg_ms:.2f} | {use.server_s / answered * 1e6:.1f} | "
                              f"{use.client_s / answered * 1e6:.1f} | "
                              f"{use.idle_s / use.seconds / CORES * 100:.0f} |", flush=True)
                    streams.remove(files)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
