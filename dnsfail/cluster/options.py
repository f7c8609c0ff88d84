"""``dnsfail serve --peer URL ...``: the command-line options of several instances."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

from dnsfail.cluster.quorum import Fallback
from dnsfail.cluster.settings import MAX_PEERS, ClusterSettings

#: TEST ONLY: seconds added to the cluster layer's wall clock (see ClusterSettings.clock_skew).
SKEW_ENV = "DNSFAIL_TEST_CLOCK_SKEW"


def add_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--peer", action="append", default=[], metavar="URL",
                       help="control API of another instance of the NS set, e.g. "
                            "http://ns2.example.com:8053; repeatable; the same list on every "
                            "instance, its own URL included or not (needs the shared "
                            "--control-token-file off loopback)")
    serve.add_argument("--peer-degraded", choices=[f.value for f in Fallback],
                       default=Fallback.HOLD.value,
                       help="without quorum for long: hold the last agreed state (own vote "
                            "for targets never agreed on; default), or own: this instance's "
                            "votes alone")
    serve.add_argument("--peer-interval", type=float, default=None, metavar="SECONDS",
                       help="seconds between pulls of each peer (default: the fastest probe "
                            "interval)")


def _url(text: str) -> str:
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 (raises ValueError for a port that is not 0-65535)
    except ValueError as exc:
        raise ValueError(f"--peer {text!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--peer {text!r} is not an http:// or https:// URL")
    return text.strip().rstrip("/")


def from_args(args: argparse.Namespace) -> ClusterSettings | None:
    """The cluster settings, or None without ``--peer`` (standalone); ValueError if unusable."""
    if not args.peer:
        return None
    peers = tuple(dict.fromkeys(_url(p) for p in args.peer))
    if len(peers) > MAX_PEERS:
        raise ValueError(f"at most {MAX_PEERS} --peer URLs")
    if args.peer_interval is not None and not 0.1 <= args.peer_interval <= 3600:
        raise ValueError("--peer-interval must be between 0.1 and 3600 seconds")
    skew = float(os.environ.get(SKEW_ENV, "0") or 0)
    return ClusterSettings(peers, Fallback(args.peer_degraded), args.peer_interval, skew)
