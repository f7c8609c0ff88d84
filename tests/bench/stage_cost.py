"""What the stages after the lookup cost: DNS Cookies alone ("off") against cookies and RRL
at a rate nobody reaches ("on"), in process, on the same queries.

    PYTHONPATH=<checkout> python tests/bench/stage_cost.py [--queries N] [--rounds R]
    PYTHONPATH=<checkout> python tests/bench/stage_cost.py --callgrind [--rows static,fo,...]

Without ``--callgrind`` it alternates off and on in one run (microseconds per query, median
of the rounds); ``--callgrind`` runs every row off then on under ``valgrind
--tool=callgrind``, collecting only the drain loop, and prints instructions per query
(repeatable under load).  The queries are ``answer_path``'s (compare.py's own generator).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from answer_path import HERE, ZONE, query, workloads

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


def handler(config: str = "") -> tuple[Handler, Store]:
    """A Handler over a new store; ``config``: "" no stages, "off" the cookie stage, "on"
    the cookie stage and the rate limiter (a rate nobody reaches)."""
    text = (HERE / "peers" / "dnsfail" / "bench.example.com.yaml").read_text()
    zone = parse_zone(text, "bench.example.com.yaml", ZONE, serial=1)
    store = Store({ZONE: zone})
    stats = QueryStats()
    cookies = CookieStage(Secrets.random()) if config else None
    limiter = (open_limiter(RrlSettings(rate=1_000_000), stats, lambda: store.snapshot)
               if config == "on" else None)
    return Handler(lambda: store.snapshot, identity="bench", stats=stats,
                   after=stages(cookies, limiter)), store


#: The rows of ``--stages``: repeated questions, then questions new every time.
STAGE_ROWS = ("static", "fo", "geo", "case", "nx", "wild", "ecs", "mix")
GEO_ECS = bytes((0, 1, 24, 0, 10, 1, 2))
CLIENT = "192.0.2.7"


def stage_batch(row: str, n: int, rng: random.Random) -> list[tuple[bytes, bool, str]]:
    if row in ("static", "fo"):
        batch = [query(f"{row}.{ZONE}")] * n
    elif row == "geo":
        batch = [query(f"geo.{ZONE}", GEO_ECS)] * n
    else:
        batch = workloads(n, [row], rng)[row][-n:]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--rows", default=",".join(STAGE_ROWS), help="comma-separated")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = tuple(args.rows.split(","))
    if args.inner:
        inner(args.queries, rows)
    elif args.callgrind:
        callgrind(args.queries, rows)
    else:
        stage_ab(args.queries, args.rounds, rows)


if __name__ == "__main__":
    main()
