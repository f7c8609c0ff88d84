"""``dnsfail explain``: the server's decision for one client, after one probe round.

The command loads the zones, probes every target once (unless
``--no-probe``), builds the answer path exactly as ``dnsfail serve`` does
(``serve.wiring``), and prints the decision text (``dns.explain``, the same
text ``GET /v1/explain`` gives).  Its options are ``cli.main``'s, which
imports this module only when the command runs (``dnsfail check`` must not
load the server).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from dnsfail.dns.explain import explain as explain_text
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.serve.probe import Prober
from dnsfail.serve.wiring import answer_path, close_locator, load_store, open_locator


async def _decide(args: argparse.Namespace) -> str:
    locator = open_locator(args.geoip)
    try:
        store = load_store(args.zones, geoip=args.geoip is not None)
        if not args.no_probe and store.targets:
            prober = Prober(store.targets, store.observe)
            await prober.start()
            try:
                await prober.first_round(args.probe_timeout)
            finally:
                await prober.stop()
        handler = answer_path(lambda: store.snapshot, locator).handler
        return explain_text(handler, store.snapshot, args.name, args.type, args.client,
                            args.ecs)
    finally:
        close_locator(locator)


def main(args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_decide(args)))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    except (DnsfailError, KeyError, ValueError) as exc:
        print(f"dnsfail explain: {exc}", file=sys.stderr)
        return 2
    return 0
