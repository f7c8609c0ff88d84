"""The ``serve --rrl-*`` options: argparse in, :class:`RrlSettings` (or None: off) out."""

from __future__ import annotations

import argparse

from dnsfail.rrl.settings import (
    DEFAULT_IPV4_PREFIX,
    DEFAULT_IPV6_PREFIX,
    DEFAULT_SLIP,
    DEFAULT_TABLE_SIZE,
    DEFAULT_WINDOW,
    RrlSettings,
)


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "response-rate limiting (BIND's rate-limit; off unless --rrl-rate is given)")
    group.add_argument("--rrl-rate", type=int, metavar="N",
                       help="UDP responses per second one client block receives for one "
                            "name and type; turns RRL on (TCP and clients with a valid "
                            "DNS cookie are exempt)")
    for name, what in (("nodata", "NODATA answers, per name"),
                       ("nxdomain", "NXDOMAIN answers, per zone"),
                       ("referral", "referrals, per delegation"),
                       ("error", "errors (SERVFAIL, REFUSED, FORMERR...), per zone")):
        group.add_argument(f"--rrl-{name}-rate", type=int, metavar="N",
                           help=f"rate for {what} (default --rrl-rate; 0: unlimited)")
    group.add_argument("--rrl-slip", type=int, default=DEFAULT_SLIP, metavar="N",
                       help="send every Nth limited response truncated, so real resolvers "
                            f"retry over TCP (0: never, 1: always; default {DEFAULT_SLIP})")
    group.add_argument("--rrl-window", type=int, default=DEFAULT_WINDOW, metavar="SECONDS",
                       help="seconds of debt a flooding block accumulates, i.e. how long it "
                            f"stays limited after the flood (default {DEFAULT_WINDOW})")
    group.add_argument("--rrl-log-only", action="store_true",
                       help="count and log what would be limited, limit nothing")
    group.add_argument("--rrl-ipv4-prefix", type=int, default=DEFAULT_IPV4_PREFIX,
                       metavar="BITS", help=f"IPv4 client block (default /{DEFAULT_IPV4_PREFIX})")
    group.add_argument("--rrl-ipv6-prefix", type=int, default=DEFAULT_IPV6_PREFIX,
                       metavar="BITS", help=f"IPv6 client block (default /{DEFAULT_IPV6_PREFIX})")
    group.add_argument("--rrl-table-size", type=int, default=DEFAULT_TABLE_SIZE, metavar="N",
                       help="buckets in the shared table, a power of two, 32 octets each "
                            f"(default {DEFAULT_TABLE_SIZE})")


def from_args(args: argparse.Namespace) -> RrlSettings | None:
    """The settings the options give, None when RRL is off; ValueError lists problems."""
    if args.rrl_rate is None:
        return None
    settings = RrlSettings(
        rate=args.rrl_rate, slip=args.rrl_slip, window=args.rrl_window,
        log_only=args.rrl_log_only, ipv4_prefix=args.rrl_ipv4_prefix,
        ipv6_prefix=args.rrl_ipv6_prefix, nodata_rate=args.rrl_nodata_rate,
        nxdomain_rate=args.rrl_nxdomain_rate, referral_rate=args.rrl_referral_rate,
        error_rate=args.rrl_error_rate, table_size=args.rrl_table_size)
    problems = settings.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return settings
