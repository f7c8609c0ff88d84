"""Signed vs unsigned dnsfail vs Knot's mod-onlinesign, on loopback, in one run.

    python tests/bench/dnssec_bench.py [--seconds 10] [--rounds 3] [--flood 400000]
        [--ports 15510] [--before DIR] [--workers 1|N|auto] [--rows flood,static,...]
        [--compact]

Starts, each with one answering process: dnsfail without keys, dnsfail with
``--dnssec-keys`` (a key made here by ``dnsfail dnssec keygen``), and ``knotd``
(Debian ``knot``, one UDP worker) with ``mod-onlinesign`` (its default policy:
ECDSA P-256, a key it generates), all serving ``tests/bench/peers``'s
bench.example.com (the health-check port moved to 15590; the sites are TCP
listeners on 127.0.0.71-73 started here).  Rows, every query with DO set
(``dnsperf -D``): the static name, the failover name (dynamic: every healthy
site of three) and the wildcard name asked again and again, and a flood of random
nonexistent names, each sent once (``-n 1``).  Server order rotates each round;
medians are printed as Markdown.  ``--ports BASE`` moves the servers to BASE..BASE+3
and the sites to BASE+9; ``--before DIR`` adds "dnsfail signed (before)", the signed
server run from another checkout (``git archive`` of an older commit), for before/after
figures in the same run; ``--compact`` adds "dnsfail signed compact", the signed server with
``--dnssec-flood-budget off`` (compact denial for every new name), at BASE+4, beside the
default budget's (the flood's first second compact, then the NSEC chain: the flood row
says which denial each got, by its rcodes).  ``--workers auto`` is the fair comparison on a
machine of several cores: every dnsfail runs ``--workers auto`` (one answering process per core) and
Knot its default threads (one UDP worker per core), where the default ``1`` pins each to
one.  Each row also gives the servers' CPU time per answered query (user + system of the
server's processes and threads, from /proc/PID/stat, over the dnsperf run divided by the
queries answered): a ratio that depends much less on what else loads the machine than q/s
does.  ``--rows`` picks rows by their first word.  Only 127.0.0.0/8 is ever sent a packet; every
process started here is stopped on exit.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.compare import Server, Sites, parse_dnsperf

ROOT = Path(__file__).resolve().parents[2]
ZONE = "bench.example.com"
SITES = ("127.0.0.71", "127.0.0.72", "127.0.0.73")
SITE_PORT = 15590
PORTS = {"dnsfail": 15510, "dnsfail signed": 15511, "knot onlinesign": 15512,
         "dnsfail signed (before)": 15513, "dnsfail signed compact": 15514}
KNOT_ZONE = f"""\
$ORIGIN {ZONE}.
$TTL 300
@ SOA ns1 hostmaster 1 3600 600 604800 300
@ 86400 NS ns1
@ 86400 NS ns2
@ A 192.0.2.1
*.wild A 192.0.2.20
fo 30 A 127.0.0.71
fo 30 A 127.0.0.72
fo 30 A 127.0.0.73
geo 30 A 127.0.0.71
ns1 A 192.0.2.53
ns2 A 192.0.2.54
static A 192.0.2.10
"""
KNOT_CONF = """\
server:
    listen: 127.0.0.1@{port}
    rundir: {dir}
{workers}log:
  - target: stderr
    any: warning
database:
    storage: {dir}/db
policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
mod-onlinesign:
  - id: os
    policy: csk
template:
  - id: default
    storage: {dir}
    file: "%s.zone"
zone:
  - domain: {zone}
    module: mod-onlinesign/os
"""
#: Knot pinned to one thread of each kind (``--workers 1``); its default is a UDP worker per
#: core.
KNOT_ONE_WORKER = "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
ROWS = {"static": f"static.{ZONE} A", "fo (dynamic)": f"fo.{ZONE} A",
        "wildcard": f"x.wild.{ZONE} A"}


def servers(work: Path, before: Path | None = None, workers: str = "1",
            compact: bool = False) -> dict[str, Server]:
    zones = work / "zones"
    zones.mkdir()
    text = (ROOT / "tests" / "bench" / "peers" / "dnsfail" / f"{ZONE}.yaml").read_text()
    (zones / f"{ZONE}.yaml").write_text(text.replace("port: 8443", f"port: {SITE_PORT}"))
    keys = work / "keys"
    subprocess.run([sys.executable, "-m", "dnsfail", "dnssec", "keygen", ZONE, "--keys",
                    str(keys)], check=True, cwd=ROOT, capture_output=True)
    base = [sys.executable, "-m", "dnsfail", "serve", str(zones), "--log-level", "warning",
            "--workers", workers, "--state-file", "", "--control", "off"]
    knot = work / "knot"
    (knot / "db").mkdir(parents=True)
    (knot / f"{ZONE}.zone").write_text(KNOT_ZONE)
    (knot / "knot.conf").write_text(KNOT_CONF.format(
        port=PORTS["knot onlinesign"], dir=knot, zone=ZONE,
        workers=KNOT_ONE_WORKER if workers == "1" else ""))
    out = {
        "dnsfail": Server("dnsfail", [*base, "--listen", f"127.0.0.1:{PORTS['dnsfail']}"],
                          PORTS["dnsfail"], work, cwd=ROOT),
        "dnsfail signed": Server("dnsfail signed", [
            *base, "--listen", f"127.0.0.1:{PORTS['dnsfail signed']}", "--dnssec-keys",
            str(keys)], PORTS["dnsfail signed"], work, cwd=ROOT),
    }
    if before is not None:
        port = PORTS["dnsfail signed (before)"]
        out["dnsfail signed (before)"] = Server("dnsfail signed (before)", [
            "env", f"PYTHONPATH={before}", *base, "--listen", f"127.0.0.1:{port}",
            "--dnssec-keys", str(keys)], port, work, cwd=before)
    if compact:  # flood denial off: every new name signed (what --dnssec-flood-budget saves)
        port = PORTS["dnsfail signed compact"]
        out["dnsfail signed compact"] = Server("dnsfail signed compact", [
            *base, "--listen", f"127.0.0.1:{port}", "--dnssec-keys", str(keys),
            "--dnssec-flood-budget", "off"], port, work, cwd=ROOT)
    if shutil.which("knotd"):
        out["knot onlinesign"] = Server("knot onlinesign", [
            "knotd", "-c", str(knot / "knot.conf")], PORTS["knot onlinesign"], knot)
    return out


def cpu_seconds(server: Server) -> float:
    """User + system CPU seconds of the server's processes (their threads included)."""
    total = 0
    for pid in server.pids():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def run_dnsperf(port: int, datafile: Path, seconds: float, once: bool
                ) -> tuple[float, str, int]:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), "-D",
            "-l", str(seconds), "-c", "4", "-q", "200"]
    if once:
        argv += ["-n", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    perf = parse_dnsperf(done.stdout)
    codes = ", ".join(f"{n} {c}" for n, c in perf.rcodes)
    return perf.qps, f"{codes}; lost {perf.lost}" + (" (ran out)" if once and
                                                     perf.sent >= _lines(datafile) else ""), \
        perf.sent - perf.lost


def denial(note: str) -> str:
    """The rcode counts of a flood run as shares: "NXDOMAIN 97%, NOERROR 3%"."""
    counts = {}
    for part in note.split(";")[0].split(","):
        fields = part.split()
        if len(fields) == 2 and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
    total = sum(counts.values()) or 1
    return ", ".join(f"{code} {n / total:.0%}" for code, n in counts.items())


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=400_000,
                        help="distinct nonexistent names per flood run")
    parser.add_argument("--ports", type=int, default=PORTS["dnsfail"],
                        help="first of four server ports (the sites listen on this + 9)")
    parser.add_argument("--before", type=Path, help="a checkout to run as the signed 'before'")
    parser.add_argument("--workers", default="1",
                        help="dnsfail --workers (auto: one per core, and Knot's default threads)")
    parser.add_argument("--compact", action="store_true",
                        help="add dnsfail signed with --dnssec-flood-budget off (compact "
                             "denial for every name), beside the default budget's")
    parser.add_argument("--rows", default="",
                        help="comma-separated first words of the rows to run (default all)")
    args = parser.parse_args()
    global SITE_PORT
    if args.ports != PORTS["dnsfail"]:
        SITE_PORT = args.ports + 9
    for i, name in enumerate(PORTS):
        PORTS[name] = args.ports + i
    results: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    wanted = [r for r in [*ROWS, "nonexistent flood"]
              if not args.rows or r.split()[0] in args.rows.split(",")]
    notes: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="dnssec-bench-") as tmp, \
            Sites(SITES, SITE_PORT), contextlib.ExitStack() as stack:
        work = Path(tmp)
        running = servers(work, args.before, args.workers, args.compact)
        for server in running.values():
            server.start(f"static.{ZONE}")
            stack.callback(server.stop)
        time.sleep(3)  # the first probe round: fo answers every site
        files = {}
        for row, line in ROWS.items():
            files[row] = work / f"{row.split()[0]}.txt"
            files[row].write_text(line + "\n")
        names = list(running)
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for row in wanted:
                for name in order:
                    used = cpu_seconds(running[name])
                    if row == "nonexistent flood":
                        flood = work / f"flood-{round_no}-{name.split()[0]}.txt"
                        rng = random.Random(f"{round_no}")
                        flood.write_text("".join(f"r{rng.getrandbits(48):x}.{ZONE} A\n"
                                                 for _ in range(args.flood)))
                        qps, note, answered = run_dnsperf(running[name].port, flood,
                                                          args.seconds, True)
                        flood.unlink()
                    else:
                        qps, note, answered = run_dnsperf(running[name].port, files[row],
                                                          args.seconds, False)
                    used = cpu_seconds(running[name]) - used
                    per_query = used / answered * 1e6 if answered else 0.0
                    results.setdefault((row, name), []).append(qps)
                    cpu.setdefault((row, name), []).append(per_query)
                    notes[(row, name)] = note
                    print(f"round {round_no + 1} {row} {name}: {qps:.0f} q/s, "
                          f"{per_query:.1f} us CPU/query ({note})", file=sys.stderr)
    print("| row | " + " | ".join(names) + " | signed/unsigned | signed/knot |")
    print("|---|" + "---|" * (len(names) + 2))
    for row in wanted:
        med = {n: statistics.median(results[(row, n)]) for n in names}
        ratio = med["dnsfail signed"] / med["dnsfail"]
        knot = med.get("knot onlinesign")
        vs = f"{med['dnsfail signed'] / knot:.2f}x" if knot else "-"
        print(f"| {row} | " + " | ".join(f"{med[n]:,.0f}" for n in names)
              + f" | {ratio:.2f} | {vs} |")
    print("\nCPU microseconds per answered query (medians; lower is better):\n")
    print("| row | " + " | ".join(names) + " | knot/signed |")
    print("|---|" + "---|" * (len(names) + 1))
    for row in wanted:
        med = {n: statistics.median(cpu[(row, n)]) for n in names}
        knot = med.get("knot onlinesign")
        vs = f"{knot / med['dnsfail signed']:.2f}x" if knot and med["dnsfail signed"] else "-"
        print(f"| {row} | " + " | ".join(f"{med[n]:.1f}" for n in names) + f" | {vs} |")
    for (row, name), note in sorted(notes.items()):
        print(f"<!-- {row} / {name}: {note} -->")
    if "nonexistent flood" in wanted:
        print("\nDenial the flood got (last round; NXDOMAIN from dnsfail signed is its NSEC "
              "chain, NOERROR compact denial, RFC 9824):\n")
        for name in names:
            print(f"- {name}: {denial(notes[('nonexistent flood', name)])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
