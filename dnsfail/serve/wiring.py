"""The answer path, built in one place: zones into a Store, a Locator, a Handler, its counters.

``dnsfail serve`` (``serve.app``), each worker process (``serve.workers``)
and ``dnsfail explain`` (``cli.explain``) answer with the same code; this
module is the only one that puts it together, so that the three cannot
drift apart (a GeoIP option honoured by one and not another, say).

* :func:`load_store` reads the zone files (``zonefile.load``) into a Store,
  with the operator overrides restored from the state file, if any;
* :func:`open_locator` picks how clients are placed: a GeoIP database, or
  subnet rules only;
* :func:`answer_path` builds the Handler over a source of snapshots (the
  store's, or a worker's mirror of the main process's) with its counters.

It owns no task, socket or thread: callers run the slow parts (reading
zones, opening a database) off their event loop.  It must not import
``serve.app`` or ``control.api``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dnsfail.cookies.stage import CookieStage
from dnsfail.dns.handler import Handler, PlainPass, SignedPath
from dnsfail.dns.stages import After, Limiter, Stages
from dnsfail.dns.stats import QueryStats
from dnsfail.rrl.limiter import RateLimiter
from dnsfail.rrl.stage import guarded
from dnsfail.state import Snapshot, Store
from dnsfail.steering.geo import Locator, NoLocator
from dnsfail.steering.mmdb import MaxMindLocator
from dnsfail.steering.overrides import Override
from dnsfail.zonefile import load_zones

log = logging.getLogger(__name__)


@dataclass
class AnswerPath:
    """One process's answer path: who answers, how clients are placed, what is counted."""

    handler: Handler
    locator: Locator
    stats: QueryStats

    def close(self) -> None:
        close_locator(self.locator)


def load_store(paths: Sequence[str], *, geoip: bool,
               saved: Sequence[Override] = ()) -> Store:
    """The zones under ``paths`` (raising ConfigError on any problem) with ``saved`` overrides.

    ``geoip``: a GeoIP database will place clients, so ``geos`` rules are allowed.
    """
    return Store(load_zones(paths, geoip=geoip), saved)


def open_locator(geoip: str | None) -> Locator:
    """The database at ``geoip`` (raising GeoError if unusable), or subnet rules only."""
    return MaxMindLocator(geoip) if geoip else NoLocator()


def close_locator(locator: Locator) -> None:
    if isinstance(locator, MaxMindLocator):
        locator.close()


def stages(cookies: CookieStage | None, limiter: Limiter | None) -> After | None:
    """The stages after the lookup for this process: none, the cookie stage alone (it is an
    ``After`` itself, one call less per query), or cookies and the rate limiter composed (by
    the limiter itself, one call where the query holds no cookie, when it is ours)."""
    if limiter is None:  # the bound method: calling the instance costs a slot wrapper more
        return cookies.__call__ if cookies is not None else None
    if isinstance(limiter, RateLimiter):
        return guarded(cookies, limiter)
    return Stages(cookies=cookies, limiter=limiter)


def plain_pass(cookies: CookieStage | None, limiter: Limiter | None) -> PlainPass | None:
    """How ``stages(cookies, limiter)`` passes a query holding no COOKIE option, when it
    passes its reply unchanged: the cookie stage alone, without a size cap.  With a rate
    limiter every reply is its to judge (None)."""
    return cookies.plain_pass() if cookies is not None and limiter is None else None


def answer_path(
    snapshot: Callable[[], Snapshot],
    locator: Locator,
    *,
    identity: str = "dnsfail",
    version: str | None = None,
    stats: QueryStats | None = None,
    after: After | None = None,
    signed: SignedPath | None = None,
) -> AnswerPath:
    """The Handler answering from ``snapshot()`` (read once per message), and its counters.

    ``stats``: counters that exist before the handler (the daemon's metrics read them);
    new ones otherwise.  ``after``: the stages after the lookup (``dns.stages``), if any.
    ``signed``: the DNSSEC signed path (``dnssec.path``), if any zone is signed.
    """
    stats = stats if stats is not None else QueryStats()
    handler = Handler(snapshot, identity=identity, version=version, locator=locator,
                      stats=stats, after=after, signed=signed)
    return AnswerPath(handler, locator, stats)


def open_signed(directory: str | None, zones: Sequence[str], flood_budget: int | None = None
                ) -> SignedPath | None:
    """The signed path for the keys in ``directory`` (KeyFileError if unusable), or None;
    keys of zones not in ``zones`` are logged and ignored.  ``flood_budget``: flood
    denial's budget (``dnssec.flood``), None for compact denial always."""
    if directory is None:
        return None
    from dnsfail.dnssec.setup import key_tags, load_signed

    signed = load_signed(directory, flood_budget)
    _log_keys(directory, key_tags(signed), zones)
    return signed


def reread_keys(signed: SignedPath, directory: str, zones: Sequence[str]
                ) -> Callable[[], None]:
    """Read ``directory`` again (KeyFileError if unusable: nothing changes); returns what
    puts the keys read into ``signed``, for the reload to call once its zones are good."""
    from dnsfail.dnssec.setup import rekey

    replace, changed = rekey(signed, directory)

    def commit() -> None:
        replace()
        _log_keys(directory, changed, zones)

    return commit


def _log_keys(directory: str, tags: Mapping[str, Sequence[int]], zones: Sequence[str]) -> None:
    for origin, found in tags.items():
        if not found:
            log.info("zone %s: no key in %s any more: answered unsigned", origin, directory)
        elif origin in zones:
            log.info("zone %s signed with key(s) %s", origin, ", ".join(map(str, found)))
        else:
            log.warning("%s: key for zone %s, which is not served: ignored", directory, origin)
