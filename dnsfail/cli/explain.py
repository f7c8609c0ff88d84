"""``dnsfail explain``: the server's decision for one client, after one probe round.

Offline (the default), the command loads the zones, probes every target once
(unless ``--no-probe``), builds the answer path exactly as ``dnsfail serve``
does (``serve.wiring``), and prints the decision text (``dns.explain``, the
same text ``GET /v1/explain`` gives).  It sees only its own probes.

With ``--server`` (or an explicit ``--control HOST:PORT``) it asks the running
server instead (``GET /v1/explain``, through ``cli.ctl``'s request and token
options, so it reaches the same server as ``dnsfail status``): the answer
from that server's live health, drains and, in an NS set, the votes behind
each state.  The first line names the server that answered.

Its options are ``cli.main``'s, which imports this module only when the
command runs (``dnsfail check`` must not load the server); the server's
modules are imported by the offline mode alone.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import urllib.parse

from dnsfail.cli import ctl
from dnsfail.errors import ConfigError, DnsfailError
from dnsfail.model import RRType

#: Options that only the offline mode reads (the server has its own zones and probes).
OFFLINE_ONLY = (("zones", "--zones"), ("geoip", "--geoip"), ("no_probe", "--no-probe"),
                ("probe_timeout", "--probe-timeout"))


async def _decide(args: argparse.Namespace) -> str:
    from dnsfail.dns.explain import explain as explain_text
    from dnsfail.serve.probe import Prober
    from dnsfail.serve.wiring import answer_path, close_locator, load_store, open_locator

    locator = open_locator(args.geoip)
    try:
        store = load_store(args.zones or ["zones"], geoip=args.geoip is not None)
        if not args.no_probe and store.targets:
            prober = Prober(store.targets, store.observe)
            await prober.start()
            try:
                timeout = 5.0 if args.probe_timeout is None else args.probe_timeout
                await prober.first_round(timeout)
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
    if remote(args):
        given = [flag for attr, flag in OFFLINE_ONLY if getattr(args, attr, None)]
        if given:
            return (f"{', '.join(given)}: offline options; with --server the running server "
                    "uses its own zones and probes")
    return None


def remote(args: argparse.Namespace) -> bool:
    """Ask the running server: ``--server``, or ``--control`` given on the command line."""
    return bool(getattr(args, "server", False) or getattr(args, "control", None))


def ask_server(args: argparse.Namespace) -> int:
    """``GET /v1/explain`` of the server ``dnsfail status`` would reach; print who answered."""
    if not args.control:
        args.control = ctl.default_control()
    query = {"name": args.name, "type": args.type, "format": "json"}
    if args.client:
        query["client"] = args.client
    if args.ecs:
        query["ecs"] = args.ecs
    try:
        code, payload = ctl.request(args, "GET", "/v1/explain?" + urllib.parse.urlencode(query))
    except ctl.CtlError as exc:
        print(f"dnsfail explain: {exc}", file=sys.stderr)
        return exc.code
    if code != 200 or not isinstance(payload, dict) or "text" not in payload:
        reason = payload.get("error", payload) if isinstance(payload, dict) else payload
        print(ctl.terminal_text(f"dnsfail explain: {ctl.base_url(args.control)} answered "
                                f"{code}: {str(reason).strip()[:2000]}"), file=sys.stderr)
        return 2
    try:
        server = ctl.describe_server(payload.get("server"))
    except (KeyError, TypeError, AttributeError, ValueError):  # another version, a proxy
        server = None
    print(ctl.terminal_text(server or f"server at {ctl.base_url(args.control)}"))
    print(ctl.terminal_text(str(payload["text"]).rstrip("\n")))
    return 0


def main(args: argparse.Namespace) -> int:
    usage = usage_problem(args)
    if usage is not None:
        print(f"dnsfail explain: {usage}", file=sys.stderr)
        return 2
    if remote(args):
        return ask_server(args)
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
