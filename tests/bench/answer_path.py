"""In-process microseconds per query on the answer path, for traffic that repeats and that does not.

    PYTHONPATH=<checkout> python tests/bench/answer_path.py [--queries 20000] [--rounds 3]
        [--rows static,nx,...] [--ab OLD NEW] [--callgrind]

Loads the comparison zone (``peers/dnsfail/bench.example.com.yaml``), builds a
``Handler`` with no sockets, and times ``handle`` over pre-built queries for each row
(median of ``--rounds``, microseconds per query).  The rows are ``compare.py``'s, their
queries made by the same generator (``compare_streams``), ECS from the same 100,000
/24s: static, fo and geo repeated (exact-bytes cache hits); nx (a new nonexistent name
each time), wild (a new name under ``*.wild``), ecs (the geo name with ECS from the
/24s), case (the fo name in a new letter case), mix (the public-resolver mix: 0x20 and
ECS on every query, 5% new nonexistent names); plus mix-static, mix-fo, mix-geo and
mix-nx, each part of the mix alone.  Every row starts warm: the handler has answered
the repeated names and a few hundred of the row's own kind first.

``--ab OLD NEW`` runs this script under each checkout in turn (``PYTHONPATH``), one
round at a time, alternating, and prints both medians and the ratio: the A/B of two
versions in one run on a loaded machine.  ``--callgrind`` instead runs each checkout
once under ``valgrind --tool=callgrind`` and prints instructions per query for each row
(a dump before each row; repeatable under load, unlike time).

``--flood N`` instead sends N questions that never repeat (a quarter each: new
nonexistent names, new wildcard names, new ECS /24s for ``geo``, new letter cases
of ``fo``), and after every 100 of them one of four questions real clients repeat;
it prints the caches' largest sizes, the share of the repeated questions answered
from the exact-bytes cache, and RSS before and after.  Not part of the test
suite; no sockets, no subprocesses.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dnsfail
from dnsfail.dns.handler import Handler
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402  (a sibling script, not a package)
import compare_streams  # noqa: E402

ZONE = "bench.example.com."
WILDCARD = "'*.wild':\n  ttl: 60\n  type: A\n  value: 192.0.2.80\n"


def wire_name(name: str) -> bytes:
    return b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"


def query(name: str, ecs: bytes = b"", qid: int = 0x4242) -> bytes:
    """A query as dnsperf sends it: RD clear, EDNS (payload 1232), optionally ECS."""
    options = b""
    if ecs:
        options = struct.pack("!HH", 8, len(ecs)) + ecs
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return (struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1) + wire_name(name)
            + struct.pack("!HH", 1, 1) + opt)


def random_label(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                   for _ in range(rng.randint(8, 16)))


def random_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


#: compare.py's rows by key, and the mix's parts alone.
ROWS = {row.key: row.shapes for row in compare.ROWS if row.key != "tcp"}
ROWS.update({f"mix-{name}": ((shape, 1.0),) for name, (shape, _) in
             zip(("static", "fo", "geo", "nx"), ROWS["mix"], strict=True)})
#: The repeated rows' queries (the geo row's ECS /24 as compare.py sends it).
REPEATED = {"static": (f"static.{ZONE}", b""), "fo": (f"fo.{ZONE}", b""),
            "geo": (f"geo.{ZONE}", bytes((0, 1, 24, 0, 10, 1, 2)))}
#: Queries of each row answered before it is timed (caches, templates and blocks warm).
WARM = 500


def workloads(n: int, rows: list[str], rng: random.Random) -> dict[str, list[bytes]]:
    """Each row's ``n`` queries (and ``WARM`` more in front), as ``compare.py`` sends them."""
    nets = compare_streams.networks(100_000, random.Random("nets"),
                                    always=("10.1.0.0/16", "10.2.0.0/16"))
    out: dict[str, list[bytes]] = {}
    for row in rows:
        if row in REPEATED:
            out[row] = [query(*REPEATED[row])] * (n + WARM)
        else:
            out[row] = compare_streams.split(compare_streams.stream(ROWS[row], n + WARM, rng,
                                                                    nets))
    return out


def handler() -> tuple[Handler, Store]:
    text = (HERE / "peers" / "dnsfail" / "bench.example.com.yaml").read_text()
    if "'*.wild':" not in text:  # older checkouts' bench zone had no wildcard
        text += WILDCARD
    zone = parse_zone(text, "bench.example.com.yaml", ZONE, serial=1)
    store = Store({ZONE: zone})
    return Handler(lambda: store.snapshot, identity="bench"), store


def timed(handle: Callable[..., bytes | None], batch: list[bytes]) -> float:
    started = time.perf_counter()
    for data in batch:
        handle(data, False, "192.0.2.7")
    return (time.perf_counter() - started) / len(batch) * 1e6


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sizes(replies: dict[bytes, object]) -> tuple[int, ...]:
    parts = ("keyed", "keyed_previous", "previous")
    return (*(len(getattr(replies, a, ())) for a in parts), len(replies))


def flood(count: int) -> None:
    rng = random.Random(14)
    h, store = handler()
    real = [query(f"static.{ZONE}"), query(f"fo.{ZONE}"), query(f"ns1.{ZONE}"),
            query(f"geo.{ZONE}", bytes((0, 1, 24, 0, 10, 1, 2)))]
    for data in real * 2:
        h.handle(data, False, "192.0.2.7")
    replies = store.snapshot.replies
    before, peak, hits, asked = rss_mib(), [0, 0, 0, 0], 0, 0
    started = time.perf_counter()
    for i in range(count):
        kind = i & 3
        if kind == 0:
            data = query(f"{random_label(rng)}.{ZONE}")
        elif kind == 1:
            data = query(f"{random_label(rng)}.wild.{ZONE}")
        elif kind == 2:
            net = rng.randrange(1 << 24).to_bytes(3, "big")
            data = query(f"geo.{ZONE}", bytes((0, 1, 24, 0)) + net)
        else:
            data = query(random_case(rng, f"fo.{ZONE}"))
        h.handle(data, False, "192.0.2.7")
        if i % 100 == 0:
            ask = real[i // 100 & 3]
            asked += 1
            hits += ask[2:] in replies or ask[2:] in getattr(replies, "previous", {})
            h.handle(ask, False, "192.0.2.7")
            peak = [max(p, n) for p, n in zip(peak, sizes(replies), strict=True)]
    took = time.perf_counter() - started
    print(f"# {Path(dnsfail.__file__).parent.parent}: {count:,} new questions in {took:.1f} s")
    print(f"largest keyed / keyed previous / exact previous / exact: {peak}")
    print(f"final: {list(sizes(replies))}")
    print(f"repeated questions answered from the exact-bytes cache: {hits}/{asked}")
    print(f"RSS {before:.1f} MiB before, {rss_mib():.1f} MiB after")


def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    """``--rounds`` rounds of every row in this process: row -> microseconds per query."""
    rng = random.Random(13)
    figures: dict[str, list[float]] = {}
    rows = args.rows.split(",")
    for _ in range(args.rounds):
        for row, batch in workloads(args.queries, rows, rng).items():
            h, _store = handler()
            for name, ecs in REPEATED.values():
                for _ in range(2):
                    h.handle(query(name, ecs), False, "192.0.2.7")
            for data in batch[:WARM]:
                h.handle(data, False, "192.0.2.7")
            if args.dump:
                os.getppid()  # callgrind --dump-before=getppid: the timed part is one dump
            figures.setdefault(row, []).append(timed(h.handle, batch[WARM:]))
            if args.dump:
                os.getppid()
    return figures


def ab(args: argparse.Namespace) -> None:
    """Alternate the checkouts, one round each, and print medians and ratios."""
    figures: list[dict[str, list[float]]] = [{}, {}]
    for _ in range(args.rounds):
        for side, src in enumerate(args.ab):
            argv = [sys.executable, __file__, "--queries", str(args.queries), "--rounds", "1",
                    "--rows", args.rows, "--raw"]
            out = subprocess.run(argv, env={**os.environ, "PYTHONPATH": src}, check=True,
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                row, value = line.split()
                figures[side].setdefault(row, []).append(float(value))
    print(f"# A = {args.ab[0]}, B = {args.ab[1]}: us/query, median of {args.rounds} "
          "alternating rounds (python " + sys.version.split()[0] + ")")
    for row in args.rows.split(","):
        a, b = (statistics.median(f[row]) for f in figures)
        print(f"{row:10s} A {a:7.2f}  B {b:7.2f}  B/A {b / a:5.2f}")


def callgrind(args: argparse.Namespace) -> None:
    """Instructions per query for each row and checkout, from callgrind's dumps."""
    rows = args.rows.split(",")
    for src in args.ab or [str(Path(dnsfail.__file__).parent.parent)]:
        with tempfile.TemporaryDirectory() as work:
            out = Path(work) / "cg.out"
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    "--dump-before=getppid", "--dump-instr=no", sys.executable, __file__,
                    "--queries", str(args.queries), "--rounds", "1", "--rows", args.rows,
                    "--raw", "--dump"]
            subprocess.run(argv, env={**os.environ, "PYTHONPATH": src}, check=True,
                           capture_output=True)
            totals = []
            for part in sorted(Path(work).glob("cg.out.*"), key=lambda p: int(p.suffix[1:])):
                found = re.search(r"^(?:summary|totals): (\d+)", part.read_text(), re.M)
                totals.append(int(found.group(1)) if found else 0)
        # The dumps alternate: set-up and warm-up, then a row's timed queries.
        print(f"# {src}: instructions per query (callgrind, {args.queries} queries a row)")
        for k, row in enumerate(rows):
            print(f"{row:10s} {totals[2 * k + 1] / args.queries:12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=0)
    parser.add_argument("--rows", default="static,fo,geo,nx,wild,ecs,case,mix,mix-static,"
                        "mix-fo,mix-geo,mix-nx")
    parser.add_argument("--ab", nargs=2, metavar=("OLD", "NEW"))
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dump", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        flood(args.flood)
        return
    if args.callgrind:
        callgrind(args)
        return
    if args.ab:
        ab(args)
        return
    figures = measure(args)
    if args.raw:
        for row, values in figures.items():
            print(row, statistics.median(values))
        return
    print(f"# {Path(dnsfail.__file__).parent.parent} (python {sys.version.split()[0]})")
    for row, values in figures.items():
        print(f"{row:10s} {statistics.median(values):8.2f} us/query")


if __name__ == "__main__":
    main()
