"""In-process microseconds per query on the answer path, for traffic that repeats and that does not.

    PYTHONPATH=<checkout> python tests/bench/answer_path.py [--queries 20000] [--rounds 3]

Loads the comparison zone (``peers/dnsfail/bench.example.com.yaml``, with its wildcard),
builds a ``Handler`` with no sockets, and times ``handle`` over pre-built queries for
each row (median of ``--rounds``, microseconds per query):

* repeated: the same ``static`` question, EDNS on, every time (the exact-bytes cache);
* nxdomain: a new random name under the zone every time (water torture);
* wildcard: a new random name under ``*.wild`` every time;
* ecs: the ``geo`` name with ECS from a new /24 every time;
* case: the ``fo`` name in a new random letter case every time (0x20).

Run it with PYTHONPATH pointing at two checkouts, alternating, to compare them in
one run.  It also prints the reply caches' sizes after the run.

``--flood N`` instead sends N questions that never repeat (a quarter each: new
nonexistent names, new wildcard names, new ECS /24s for ``geo``, new letter cases
of ``fo``), and after every 100 of them one of four questions real clients repeat;
it prints the caches' largest sizes, the share of the repeated questions answered
from the exact-bytes cache, and RSS before and after.  Not part of the test
suite; no sockets, no subprocesses.
"""

from __future__ import annotations

import argparse
import collections
import itertools
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
from dnsfail.cookies.settings import Secrets
from dnsfail.cookies.stage import CookieStage
from dnsfail.dns.handler import Handler
from dnsfail.dns.stats import QueryStats
from dnsfail.rrl.limiter import open_limiter
from dnsfail.rrl.settings import RrlSettings
from dnsfail.serve.wiring import stages
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone

HERE = Path(__file__).resolve().parent
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


def workloads(n: int, rng: random.Random) -> dict[str, list[bytes]]:
    ecs = []
    for _ in range(n):
        net = rng.randrange(1 << 24)
        ecs.append(query(f"geo.{ZONE}", bytes((0, 1, 24, 0)) + net.to_bytes(3, "big")))
    return {
        "repeated": [query(f"static.{ZONE}")] * n,
        "nxdomain": [query(f"{random_label(rng)}.{ZONE}") for _ in range(n)],
        "wildcard": [query(f"{random_label(rng)}.wild.{ZONE}") for _ in range(n)],
        "ecs": ecs,
        "case": [query(random_case(rng, f"fo.{ZONE}")) for _ in range(n)],
    }


def handler(config: str = "") -> tuple[Handler, Store]:
    """A Handler over a new store; ``config``: "" no stages, "off" the cookie stage, "on"
    the cookie stage and the rate limiter (a rate nobody reaches)."""
    text = (HERE / "peers" / "dnsfail" / "bench.example.com.yaml").read_text()
    if "'*.wild':" not in text:  # the zone has had its own since
        text += WILDCARD
    zone = parse_zone(text, "bench.example.com.yaml", ZONE, serial=1)
    store = Store({ZONE: zone})
    stats = QueryStats()
    cookies = CookieStage(Secrets.random()) if config else None
    limiter = (open_limiter(RrlSettings(rate=1_000_000), stats, lambda: store.snapshot)
               if config == "on" else None)
    return Handler(lambda: store.snapshot, identity="bench", stats=stats,
                   after=stages(cookies, limiter)), store


#: The rows of ``--stages``: repeated questions, then questions new every time.
STAGE_ROWS = ("static", "fo", "geo", "case", "nxdomain", "wildcard", "ecs")
GEO_ECS = bytes((0, 1, 24, 0, 10, 1, 2))
CLIENT = "192.0.2.7"


def stage_batch(row: str, n: int, rng: random.Random) -> list[tuple[bytes, bool, str]]:
    if row in ("static", "fo"):
        batch = [query(f"{row}.{ZONE}")] * n
    elif row == "geo":
        batch = [query(f"geo.{ZONE}", GEO_ECS)] * n
    else:
        batch = workloads(n, rng)[row]
    return [(data, False, CLIENT) for data in batch]


def primed(config: str) -> Handler:
    h, _ = handler(config)
    for data in (query(f"static.{ZONE}"), query(f"fo.{ZONE}"), query(f"geo.{ZONE}", GEO_ECS)):
        for _ in range(3):
            h.handle(data, False, CLIENT)
    return h


def drain(h: Handler, batch: list[tuple[bytes, bool, str]]) -> float:
    """Answer ``batch``; microseconds per query.  The loop is C (``deque`` draining a
    ``starmap``), so that ``--callgrind`` can collect exactly it."""
    started = time.perf_counter()
    collections.deque(itertools.starmap(h.handle, batch), 0)
    return (time.perf_counter() - started) / len(batch) * 1e6


def stage_ab(n: int, rounds: int, rows: tuple[str, ...]) -> None:
    rng = random.Random(14)
    handlers = {config: primed(config) for config in ("off", "on")}
    figures: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        for row in rows:
            batch = stage_batch(row, n, rng)
            for config in ("off", "on") if i % 2 == 0 else ("on", "off"):
                if row not in STAGE_ROWS[:3]:  # new questions: new to each handler
                    batch = stage_batch(row, n, rng)
                figures.setdefault((row, config), []).append(drain(handlers[config], batch))
    print(f"# {Path(dnsfail.__file__).parent.parent} (python {sys.version.split()[0]}), "
          f"{n} queries a row, median of {rounds}, us/query; off: cookies, on: cookies + RRL")
    print(f"{'row':10s} {'off':>7s} {'on':>7s} {'on-off':>7s} {'on/off':>7s}")
    for row in rows:
        off = statistics.median(figures[row, "off"])
        on = statistics.median(figures[row, "on"])
        print(f"{row:10s} {off:7.2f} {on:7.2f} {on - off:7.2f} {on / off:7.2f}")


def inner(n: int, rows: tuple[str, ...]) -> None:
    """What ``--callgrind`` runs under valgrind: every row, off then on, one ``drain`` each
    (valgrind writes one profile per ``drain``, in this order)."""
    handlers = {config: primed(config) for config in ("off", "on")}
    rng = random.Random(14)
    for row in rows:
        for config in ("off", "on"):
            drain(handlers[config], stage_batch(row, n, rng))


def callgrind(n: int, rows: tuple[str, ...]) -> None:
    """Instructions per query of each row, off and on (valgrind's totals per ``drain``)."""
    print(f"# callgrind, {n} queries a row, instructions/query; off: cookies, on: + RRL")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--collect-atstart=no",
             "--toggle-collect=consume_iterator", "--dump-after=consume_iterator",
             f"--callgrind-out-file={tmp}/out", sys.executable, __file__, "--inner",
             "--queries", str(n), "--rows", ",".join(rows)],
            capture_output=True, text=True, check=True)
        dumps = sorted(Path(tmp).glob("out.*"), key=lambda f: int(f.suffix[1:]))
        totals = []
        for dump in dumps:
            found = re.search(r"^totals:\s*(\d+)", dump.read_text(), re.MULTILINE)
            assert found is not None, dump
            totals.append(int(found.group(1)) / n)
    assert len(totals) == 2 * len(rows), f"{len(totals)} profiles"
    print(f"{'row':10s} {'off':>8s} {'on':>8s} {'on-off':>8s} {'on/off':>7s}")
    for i, row in enumerate(rows):
        off, on = totals[2 * i], totals[2 * i + 1]
        print(f"{row:10s} {off:8.0f} {on:8.0f} {on - off:8.0f} {on / off:7.2f}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=0)
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--rows", default=",".join(STAGE_ROWS),
                        help="--stages and --callgrind rows, comma-separated")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = tuple(args.rows.split(","))
    if args.flood:
        flood(args.flood)
        return
    if args.inner:
        inner(args.queries, rows)
        return
    if args.callgrind:
        callgrind(args.queries, rows)
        return
    if args.stages:
        stage_ab(args.queries, args.rounds, rows)
        return
    rng = random.Random(13)
    figures: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        h, store = handler()
        h.handle(query(f"static.{ZONE}"), False, "192.0.2.7")
        h.handle(query(f"static.{ZONE}"), False, "192.0.2.7")
        h.handle(query(f"fo.{ZONE}"), False, "192.0.2.7")
        h.handle(query(f"geo.{ZONE}", bytes((0, 1, 24, 0, 10, 1, 2))), False, "192.0.2.7")
        for row, batch in workloads(args.queries, rng).items():
            figures.setdefault(row, []).append(timed(h.handle, batch))
        replies = store.snapshot.replies
    print(f"# {Path(dnsfail.__file__).parent.parent} (python {sys.version.split()[0]})")
    for row, values in figures.items():
        print(f"{row:10s} {statistics.median(values):8.2f} us/query")
    keyed = getattr(replies, "keyed", {})
    print(f"caches after the run: exact {len(replies)}, keyed {len(keyed)}")


if __name__ == "__main__":
    main()
