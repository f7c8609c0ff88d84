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
import ipaddress
import sys

from dnsfail.dns.explain import explain as explain_text
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.model import RRType
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


def usage_problem(args: argparse.Namespace) -> str | None:
    """Why the options cannot be explained (checked before any zone is loaded), or None."""
    qtype = args.type.strip().upper()
    if qtype not in RRType.__members__:
        return f"--type {args.type!r} is not a query type: one of {', '.join(RRType.__members__)}"
    args.type = qtype
    if args.client:
        try:
            ipaddress.ip_address(args.client)
        except ValueError:
            return f"--client {args.client!r} is not an IP address (e.g. 192.0.2.1 or 2001:db8::1)"
    if args.ecs:
        try:
            ipaddress.ip_network(args.ecs, strict=False)
        except ValueError:
            return f"--ecs {args.ecs!r} is not a subnet like 192.0.2.0/24"
    return None


def main(args: argparse.Namespace) -> int:
    usage = usage_problem(args)
    if usage is not None:
        print(f"dnsfail explain: {usage}", file=sys.stderr)
        return 2
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
