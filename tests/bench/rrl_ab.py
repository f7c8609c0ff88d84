"""The benchmark rows with response-rate limiting off and on (nobody limited), A/B alternating.

    python tests/bench/rrl_ab.py [--seconds 5] [--rounds 3] [--workers 1]

dnsperf sends from 127.0.0.1, so "on" uses a rate no run reaches (``--rrl-rate
10000000``): every reply pays for the limiter and none is limited, which is
the cost an unattacked server pays.  Servers alternate (off, on, on, off, ...)
so that a noisy neighbour on a shared machine hurts both alike; the table
shows each side's median.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import SCENARIOS, dnsperf, free_port, start_server  # type: ignore[import-not-found]

ROWS = ("static A (www)", "missing name (NXDOMAIN)", "mixed static set")
ON = ["--rrl-rate", "10000000"]


def one(on: bool, seconds: int, workers: int) -> dict[str, float]:
    extra = ["--control", "off", "--state-file", "", "--workers", str(workers)]
    for attempt in range(3):  # free_port can race another process for the port
        port = free_port()
        try:
            proc = start_server("zones", port, "uvloop", extra + (ON if on else []))
            break
        except SystemExit:
            if attempt == 2:
                raise
    try:
        return {row: dnsperf(port, SCENARIOS[row], seconds, [])["qps"] for row in ROWS}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for i in range(args.rounds):
        for on in (False, True) if i % 2 == 0 else (True, False):
            runs[on].append(one(on, args.seconds, args.workers))
            print(f"round {i} rrl {'on' if on else 'off'}: {runs[on][-1]}", file=sys.stderr)
    print(f"| row (dnsperf -c 4 -q 200, {args.seconds} s, --workers {args.workers}, "
          f"median of {args.rounds}) | RRL off q/s | RRL on q/s | on/off |")
    print("|---|---:|---:|---:|")
    for row in ROWS:
        off_qps = statistics.median(r[row] for r in runs[False])
        on_qps = statistics.median(r[row] for r in runs[True])
        print(f"| {row} | {off_qps:,.0f} | {on_qps:,.0f} | {on_qps / off_qps:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
