"""The ``dnsfail`` command line: ``serve``, ``check`` (gdnsd's ``checkconf``), ``explain``,
``site``, the control API clients ``status``, ``drain``, ``undrain``, ``reload``, and
``dnssec keygen|ds``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeAlias

from dnsfail import __version__, logs
from dnsfail.addresses import (
    CONTROL_HEAD_TIMEOUT,
    CONTROL_MAX_CONNECTIONS,
    DEFAULT_CONTROL,
    DEFAULT_LISTEN,
    parse_listen,
)
from dnsfail.cli import ctl
from dnsfail.cluster import options as cluster_options
from dnsfail.dnssec import cli as dnssec_cli
from dnsfail.errors import ConfigError
from dnsfail.rrl import options as rrl_options
from dnsfail.zonefile import load_zones


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(text: str) -> int:
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (1-64) "
                                         "or 'auto'")
    return int(text)


def _control(text: str) -> tuple[str, int] | str:
    if text.lower() in ("off", "none"):
        return "off"
    return _listen(text)


#: Longest ``--udp-coalesce``, milliseconds: a wait beyond it would be latency for nothing
#: (at 3,000 datagrams a second a millisecond already gathers a few).
COALESCE_MAX_MS = 20.0
#: ``--udp-drain`` (``serve.server.UDP_DRAINS``, not imported here: ``check`` stays light).
UDP_DRAINS = ("auto", "compiled", "python")


def _coalesce(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= COALESCE_MAX_MS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds from 0 "
                                         f"(never wait) to {COALESCE_MAX_MS:g}")
    return value


def _size_cap(text: str) -> int:
    from dnsfail.cookies.settings import CAP_MAX, CAP_MIN

    if not text.isdigit() or not (int(text) == 0 or CAP_MIN <= int(text) <= CAP_MAX):
        raise argparse.ArgumentTypeError(f"{text!r} is not 0 (off) or a size of "
                                         f"{CAP_MIN}-{CAP_MAX} octets")
    return int(text)


def _duration(text: str) -> str:
    from dnsfail.steering.overrides import OverrideError, parse_duration

    try:
        parse_duration(text)
    except OverrideError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _webhook(text: str) -> object:
    from dnsfail.events.payload import parse_target

    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _flood_budget(text: str) -> int | None:
    """``--dnssec-flood-budget``: a count of new names per second, or ``off``."""
    if text == "off":
        return None
    try:
        budget = int(text)
    except ValueError:
        budget = -1
    if budget < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of names >= 0 nor 'off'")
    return budget


def _kinds(text: str) -> frozenset[str]:
    from dnsfail.events.payload import parse_kinds

    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: What ``add_subparsers`` returns (argparse names no public type for it).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dnsfail",
        description="Authoritative DNS for health-checked failover and geo routing.",
    )
    parser.add_argument("--version", action="version", version=f"dnsfail {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _check_parser(sub)
    _explain_parser(sub)
    _site_parser(sub)
    _client_parsers(sub)
    dnssec_cli.add_parser(sub)
    return parser


def _transport_options(serve: argparse.ArgumentParser) -> None:
    """How the listeners read and hold connections (``serve.server``, ``serve.pacing``)."""
    serve.add_argument("--tcp-idle-timeout", type=float, default=10.0, metavar="SECONDS")
    serve.add_argument("--tcp-max-connections", type=int, default=1000, metavar="N",
                       help="open DNS TCP connections per process; at the limit the one idle "
                            "the longest is closed for a new one (default 1000)")
    serve.add_argument("--tcp-max-per-source", type=int, default=64, metavar="N",
                       help="DNS TCP connections per process from one IPv4 address or IPv6 "
                            "/64; more are closed on accept (default 64; 0: no limit)")
    serve.add_argument("--udp-coalesce", type=_coalesce, default=1.0, metavar="MS",
                       help="at a steady rate over 3,000 datagrams a second per process, "
                            "wait this long after reading few before reading again, so "
                            "that one wake-up answers many (default 1; 0: never wait)")
    serve.add_argument("--udp-drain", choices=UDP_DRAINS, default="auto",
                       help="how UDP sockets are read: the compiled drain (recvmmsg, "
                            "sendmmsg, cache hits in C), built at install where a C compiler "
                            "was found, or pure Python (default auto: compiled if built)")


def _serve_parser(sub: Subparsers) -> None:
    serve = sub.add_parser("serve", help="answer DNS queries for the zones")
    serve.add_argument("paths", nargs="*", default=["zones"], metavar="ZONE_FILE_OR_DIR",
                       help="zone files or directories of <zone>.yaml files (default: zones/)")
    serve.add_argument("--listen", action="append", type=_listen, metavar="HOST:PORT",
                       help="address to answer on, UDP and TCP; repeatable "
                            f"(default {DEFAULT_LISTEN[0]}:{DEFAULT_LISTEN[1]})")
    serve.add_argument("--identity", help="name answered to CHAOS id.server/hostname.bind "
                                          "(default: the host name)")
    serve.add_argument("--version-string", help="answer CHAOS version.bind with this "
                                                "(default: refused)")
    serve.add_argument("--geoip", metavar="MMDB",
                       help="MaxMind or DB-IP .mmdb database for geos rules (reloaded when "
                            "the file changes)")
    serve.add_argument("--geoip-refresh", type=float, default=5.0, metavar="SECONDS",
                       help="how often to look for a new GeoIP file (default 5)")
    serve.add_argument("--watch", action="store_true",
                       help="reload when a zone file changes (as on SIGHUP)")
    _transport_options(serve)
    serve.add_argument("--control", type=_control, metavar="HOST:PORT|off",
                       help="control API (status, drain, reload, metrics) address (default "
                            f"{DEFAULT_CONTROL[0]}:{DEFAULT_CONTROL[1]}; a busy address fails "
                            "the start); beyond loopback it needs a token")
    serve.add_argument("--no-control", action="store_true",
                       help="run without a control API (as --control off)")
    serve.add_argument("--control-max-connections", type=int, default=CONTROL_MAX_CONNECTIONS,
                       metavar="N", help="control API connections open at once; more are "
                       f"closed on accept (default {CONTROL_MAX_CONNECTIONS})")
    serve.add_argument("--control-head-timeout", type=float, default=CONTROL_HEAD_TIMEOUT,
                       metavar="SECONDS", help="time a control connection has to send a "
                       f"complete request head (default {CONTROL_HEAD_TIMEOUT:g})")
    serve.add_argument("--control-token-file", metavar="FILE",
                       help="bearer token the control API requires (else env "
                            "DNSFAIL_CONTROL_TOKEN); once set, required even on loopback")
    serve.add_argument("--state-file", metavar="PATH",
                       help="where drains are kept across restarts (env DNSFAIL_STATE_FILE; "
                            "default $STATE_DIRECTORY/state.json under systemd, else "
                            "/var/lib/dnsfail/state.json for root, else "
                            "~/.local/state/dnsfail/state.json; '' keeps them in memory only)")
    serve.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                       help="processes answering DNS, sharing the sockets and one health "
                            "view (default 1; auto: one per CPU core)")
    serve.add_argument("--no-cookies", dest="cookies", action="store_false",
                       help="do not answer DNS Cookies (RFC 7873; answered by default)")
    serve.add_argument("--cookie-secret-file", metavar="FILE",
                       help="server cookie secrets, NSD's format: 32 hex digits a line, the "
                            "first makes cookies, the others are still accepted (share it "
                            "across an NS set; default: a random secret per start)")
    serve.add_argument("--udp-size-cap-without-cookie", type=_size_cap, default=0,
                       metavar="N", help="UDP replies over N octets go out truncated unless "
                       "the client sent a valid server cookie (gdnsd's max_nocookie_response;"
                       " 128-1024, default 0: off)")
    rrl_options.add_options(serve)
    serve.add_argument("--webhook", action="append", type=_webhook, default=[],
                       metavar="URL", help="POST each event (target transitions, drains, "
                       "reloads) to URL as JSON; slack+https://... posts a Slack-compatible "
                       '{"text": ...} instead; repeatable')
    serve.add_argument("--webhook-events", type=_kinds, default=None, metavar="KINDS",
                       help="which events the webhooks get, comma-separated (default all: "
                            "transition,drain,undrain,expired,reload)")
    cluster_options.add_options(serve)
    serve.add_argument("--dnssec-keys", metavar="DIR",
                       help="sign every zone with a key in DIR (dnsfail dnssec keygen)")
    serve.add_argument("--dnssec-flood-budget", type=_flood_budget, default=1000,
                       metavar="N|off",
                       help="new nonexistent names per second per zone and process past which "
                            "a signed zone denies them from its NSEC chain, not compact "
                            "denial (default 1000; 0: always the chain; off: never)")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="json: one object per line with the event's fields")


def _check_parser(sub: Subparsers) -> None:
    check = sub.add_parser("check", help="validate zone files without serving them")
    check.add_argument("paths", nargs="*", default=["zones"], metavar="ZONE_FILE_OR_DIR")
    check.add_argument("--geoip", metavar="MMDB", help="the database serve will use, if any")


def _explain_parser(sub: Subparsers) -> None:
    explain = sub.add_parser("explain", help="why does this client get this answer?")
    explain.add_argument("name")
    explain.add_argument("--type", default="A", help="query type (default A)")
    explain.add_argument("--client", default="", metavar="IP",
                         help="the querying address (a resolver's, when no ECS)")
    explain.add_argument("--ecs", metavar="CIDR", help="EDNS Client Subnet the resolver sends")
    explain.add_argument("--zones", nargs="*", default=None, metavar="ZONE_FILE_OR_DIR",
                         help="offline: the zones to load (default: zones/)")
    explain.add_argument("--geoip", metavar="MMDB")
    explain.add_argument("--no-probe", action="store_true",
                         help="do not probe the targets first (their health shows as unknown)")
    explain.add_argument("--probe-timeout", type=float, default=None, metavar="SECONDS",
                         help="offline: how long the one probe round may take (default 5)")
    explain.add_argument("--server", action="store_true",
                         help="ask the running server (its live health, drains and, in an NS "
                              "set, the votes) instead of loading the zones here; --control "
                              "HOST:PORT implies it")
    ctl.add_client_options(explain)
    explain.set_defaults(control=None)  # given on the command line: ask that server


def _site_parser(sub: Subparsers) -> None:
    site = sub.add_parser("site", help="run a stand-in gateway health endpoint for drills")
    site.add_argument("listen", type=_listen, metavar="HOST:PORT")
    site.add_argument("--name", default="site")
    site.add_argument("--status", type=int, default=200, help="status of GET /health")
    site.add_argument("--set", type=int, metavar="STATUS",
                      help="do not start a site: tell the one running at HOST:PORT to answer "
                           "STATUS from now on (POST /_status), e.g. 503 for a drill")


def _client_parsers(sub: Subparsers) -> None:
    """The control API clients (``cli.ctl``): status, drain, undrain, reload."""
    status = sub.add_parser("status", help="zones, targets and drains of a running server")
    status.add_argument("--json", action="store_true", help="the API's JSON document")
    status.add_argument("--cluster", action="store_true",
                        help="one row per instance of the NS set: reachable, epoch, degraded, "
                             "targets they disagree on (exit 1 unless all agree)")
    ctl.add_client_options(status)

    drain = sub.add_parser("drain", help="take a site, target or pool out of the answers "
                                         "for a while")
    drain.add_argument("target", metavar="TARGET",
                       help="ADDRESS (a site), ADDRESS:PORT (a probe target), NAME/POOL or "
                            "pool:NAME")
    drain.add_argument("--for", dest="duration", required=True, type=_duration,
                       metavar="DURATION", help="how long, e.g. 90s, 30m, 2h (at most 30d); "
                                                "the drain ends by itself")
    drain.add_argument("--reason", required=True, help="why; shown in status and logs")
    drain.add_argument("--state", choices=["down", "up"], default="down",
                       help="up forces the target into the answers instead (default down)")
    drain.add_argument("--force", action="store_true",
                       help="drain even if a record is left with no healthy pool value "
                            "(refused otherwise, naming the records)")
    drain.add_argument("--json", action="store_true")
    ctl.add_client_options(drain)

    undrain = sub.add_parser("undrain", help="end a drain early")
    undrain.add_argument("target", metavar="TARGET", help="the selector given to drain")
    undrain.add_argument("--json", action="store_true")
    ctl.add_client_options(undrain)

    reload = sub.add_parser("reload", help="reload a running server's zones (all or nothing)")
    ctl.add_client_options(reload)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check(args.paths, args.geoip)
    if args.command == "explain":
        from dnsfail.cli import explain

        return explain.main(args)
    if args.command == "site":
        return _site(args)
    if args.command in ("status", "drain", "undrain", "reload"):
        return ctl.main(args)
    if args.command == "dnssec":
        return dnssec_cli.main(args)
    # The server (app, control, aiohttp) is imported by ``serve`` alone: ``check`` on a big
    # zone would otherwise spend a third of its time importing what it never uses.
    from dnsfail.control.token import ControlError, read_token
    from dnsfail.serve.app import Settings, run
    from dnsfail.serve.server import compiled_built

    logs.setup(args.log_level, args.log_format)
    if args.udp_drain == "compiled" and not compiled_built():
        print("dnsfail serve: --udp-drain compiled: dnsfail.serve._datagrams was not built at "
              "install (it needs a C compiler and Python's headers, e.g. Debian's gcc and "
              "python3-dev, then a reinstall)", file=sys.stderr)
        return 2
    try:
        token = read_token(args.control_token_file, os.environ.get("DNSFAIL_CONTROL_TOKEN"))
    except ControlError as exc:
        print(f"dnsfail serve: {exc}", file=sys.stderr)
        return 1
    control: tuple[str, int] | None = (
        None if args.no_control or args.control == "off"
        else DEFAULT_CONTROL if args.control is None else args.control)
    try:
        rrl = rrl_options.from_args(args)
        cluster = cluster_options.from_args(args)
    except ValueError as exc:
        print(f"dnsfail serve: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        paths=args.paths,
        listen=args.listen or [DEFAULT_LISTEN],
        version=args.version_string,
        watch=args.watch,
        geoip=args.geoip,
        geoip_refresh=args.geoip_refresh,
        tcp_idle_timeout=args.tcp_idle_timeout,
        tcp_max_connections=args.tcp_max_connections,
        tcp_max_per_source=args.tcp_max_per_source,
        udp_coalesce=args.udp_coalesce / 1000,
        udp_drain=args.udp_drain,
        control=control,
        control_token=token,
        control_max_connections=args.control_max_connections,
        control_head_timeout=args.control_head_timeout,
        state_file=_state_file(args.state_file),
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
        cookies=args.cookies,
        cookie_secret_file=args.cookie_secret_file,
        udp_size_cap_without_cookie=args.udp_size_cap_without_cookie,
        rrl=rrl,
        webhooks=[replace(t, kinds=args.webhook_events) for t in args.webhook]
        if args.webhook_events is not None else args.webhook,
        cluster=cluster,
        dnssec_keys=args.dnssec_keys,
        dnssec_flood_budget=args.dnssec_flood_budget,
    )
    if args.identity:
        settings.identity = args.identity
    if cluster is not None:
        from dnsfail.cluster.daemon import ClusterDaemon

        return run(settings, ClusterDaemon)
    return run(settings)


def _site(args: argparse.Namespace) -> int:
    """``dnsfail site``: run a stand-in health endpoint, or ``--set`` a running one's status."""
    import asyncio

    from dnsfail.drill.site import serve_site

    host, port = args.listen
    if args.set is not None:
        from dnsfail.drill.site import set_remote_status

        try:
            print(set_remote_status(host, port, args.set))
        except (OSError, ValueError) as exc:
            print(f"dnsfail site: {exc}", file=sys.stderr)
            return 1
        return 0
    asyncio.run(serve_site(host, port, args.name, args.status))
    return 0


def _state_file(explicit: str | None) -> str | None:
    """``--state-file``, else ``$DNSFAIL_STATE_FILE``, else ``host.paths``' default rule."""
    from dnsfail.host.paths import state_file

    path = state_file(explicit)
    return str(path) if path is not None else None


def check(paths: Sequence[str], geoip: str | None = None) -> int:
    """Validate like startup does; print every problem as ``file:line: record: reason``."""
    if geoip is not None:
        from dnsfail.steering.mmdb import GeoError, MaxMindLocator  # geoip2: only for --geoip

        try:
            MaxMindLocator(geoip).close()
        except GeoError as exc:
            print(f"{geoip}: {exc}")
            return 1
    try:
        zones = load_zones(paths, geoip=geoip is not None)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    for zone in zones.values():
        print(f"{zone.source}: zone {zone.origin} OK: {zone.record_count} records, "
              f"serial {zone.serial}")
    return 0
