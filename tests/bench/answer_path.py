"""In-process microseconds per query on the answer path, for traffic that repeats and that does not.

    PYTHONPATH=<checkout> python tests/bench/answer_path.py [--queries 20000] [--rounds 3]

Loads the comparison zone (``peers/dnsfail/bench.example.com.yaml``) plus one wildcard,
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
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dnsfail
from dnsfail.dns.handler import Handler
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


def handler() -> tuple[Handler, Store]:
    text = (HERE / "peers" / "dnsfail" / "bench.example.com.yaml").read_text()
    if "'*.wild':" not in text:  # the comparison zone has had one since compare.py's rows
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=0)
    args = parser.parse_args()
    if args.flood:
        flood(args.flood)
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
