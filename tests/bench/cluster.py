"""Withdrawal time with 3 instances, and the probe and exchange load per target.

    PYTHONPATH=<checkout> python tests/bench/cluster.py [--rounds 5] [--targets 3]

Starts three ``dnsfail serve --peer ...`` instances on 127.0.0.1-3 (DNS 15440,
control 15450) and ``--targets`` HTTP sites in this process on 127.0.0.11.. (port
15460), each counting the probes it gets.  Interval 0.5 s, timeout 0.3 s, fall 2,
rise 2.  Each round stops site 1 (its listener closes: connection refused) and
polls the three instances with UDP queries every 20 ms until none answers with
it; the time until the last one withdraws it is the withdrawal time, against
the bound ``fall x interval + timeout + one exchange + 1 s``.  The site is then
restarted and the next round waits until all three serve it again.

Load: probes per second each site receives (3 instances, each probing itself,
as Route 53's checkers do), and the exchange: pulls per second (N x (N-1) /
interval), the bytes of one peer message, and the bytes per target.  Not part
of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import yaml
from aiohttp import web

INTERVAL, TIMEOUT, FALL = 0.5, 0.3, 2
DNS, CONTROL, SITE = 15440, 15450, 15460
NAMES = ["ns1", "ns2", "ns3"]
ADDR = {n: f"127.0.0.{i + 1}" for i, n in enumerate(NAMES)}
TOKEN = "bench-token"


class Site:
    def __init__(self, address: str) -> None:
        self.address, self.hits = address, 0
        self.runner: web.AppRunner | None = None

    async def handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, SITE).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def zone(sites: list[Site]) -> dict[str, object]:
    return {
        "": {"type": "NS", "values": ["ns1.bench.test."]},
        "ns1": {"type": "A", "value": "192.0.2.1"},
        "api": {"type": "A", "ttl": 30, "values": ["192.0.2.99"],
                "octodns": {"healthcheck": {"host": "api.bench.test", "path": "/health",
                                            "port": SITE, "protocol": "HTTP"},
                            "dnsfail": {"healthcheck": {"interval": INTERVAL,
                                                        "timeout": TIMEOUT, "rise": 2,
                                                        "fall": FALL}}},
                "dynamic": {"pools": {"p": {"values": [{"value": s.address} for s in sites]}},
                            "rules": [{"pool": "p"}]}},
    }


def answer(name: str) -> set[str]:
    q = dns.message.make_query("api.bench.test.", "A")
    try:
        r = dns.query.udp(q, ADDR[name], port=DNS, timeout=0.5)
    except Exception:
        return {"?"}
    return {str(rd) for rrset in r.answer for rd in rrset}


def control(name: str, path: str) -> bytes:
    req = urllib.request.Request(f"http://{ADDR[name]}:{CONTROL}{path}",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=3) as resp:
        return bytes(resp.read())


async def wait_for(check: object, timeout: float) -> float:  # noqa: ASYNC109
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await asyncio.to_thread(check):  # type: ignore[arg-type]
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise SystemExit(f"timed out after {timeout}s")


async def main(rounds: int, targets: int) -> None:
    sites = [Site(f"127.0.0.{11 + i}") for i in range(targets)]
    for s in sites:
        await s.start()
    tmp = Path(tempfile.mkdtemp(prefix="dnsfail-bench-cluster-"))
    (tmp / "zones").mkdir()
    (tmp / "zones" / "bench.test.yaml").write_text(yaml.safe_dump(zone(sites)))
    (tmp / "token").write_text(TOKEN + "\n")
    procs = []
    for n in NAMES:
        cmd = [sys.executable, "-m", "dnsfail", "serve", str(tmp / "zones"),
               "--listen", f"{ADDR[n]}:{DNS}", "--control", f"{ADDR[n]}:{CONTROL}",
               "--identity", n, "--control-token-file", str(tmp / "token"),
               "--state-file", str(tmp / f"{n}.json"), "--log-level", "warning"]
        for p in NAMES:
            cmd += ["--peer", f"http://{ADDR[p]}:{CONTROL}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,  # noqa: ASYNC220
                                      stderr=subprocess.DEVNULL,
                                      env=os.environ.copy()))
    everything = {s.address for s in sites}
    try:
        await wait_for(lambda: all(answer(n) == everything for n in NAMES), 20)
        bound = FALL * INTERVAL + TIMEOUT + INTERVAL + 1.0
        took = []
        for _ in range(rounds):
            await sites[0].stop()
            t = await wait_for(lambda: all(sites[0].address not in answer(n) for n in NAMES), 15)
            took.append(t)
            await sites[0].start()
            await wait_for(lambda: all(answer(n) == everything for n in NAMES), 15)
        print(f"withdrawal with 3 instances (interval {INTERVAL}s, timeout {TIMEOUT}s, "
              f"fall {FALL}): median {statistics.median(took):.2f}s, max {max(took):.2f}s, "
              f"bound {bound:.2f}s, rounds {rounds}")
        before = [s.hits for s in sites]
        await asyncio.sleep(10.0)
        rates = [(s.hits - b) / 10.0 for s, b in zip(sites, before, strict=True)]
        print(f"probe load per target: {statistics.mean(rates):.2f} probes/s "
              f"(3 instances x 1/{INTERVAL}s = {3 / INTERVAL:.1f} expected)")
        size = len(control("ns1", "/v1/cluster/votes"))
        digest = json.loads(control("ns1", "/v1/cluster/votes"))["drains_digest"]
        lean = len(control("ns1", f"/v1/cluster/votes?drains_digest={digest}"))
        print(f"exchange: {3 * 2 / INTERVAL:.0f} pulls/s in the mesh (N x (N-1) / interval); "
              f"one message {size} B ({lean} B when drains match), ~{lean / targets:.0f} B "
              f"per target with {targets} target(s)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for s in sites:
            await s.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--targets", type=int, default=3)
    a = parser.parse_args()
    asyncio.run(main(a.rounds, a.targets))
