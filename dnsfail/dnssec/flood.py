"""Flood denial: a signed zone's nonexistent names answered from its NSEC chain under a flood.

Compact denial (RFC 9824, ``fast``) signs one NSEC per new nonexistent name: a
flood of random names costs a signature each (35-55 us of CPU for P-256).
``Flood`` counts, per zone and per one-second window of the clock, the
nonexistent-name answers that missed the signed reply caches (names not seen
before in the current snapshot and validity window: each one a new signature
under compact denial).  This *demand* is counted whichever way the name is then
answered, so the mode does not flap: when the last complete second's demand
exceeded ``budget``, the zone's nonexistent names are answered from its
traditional NSEC chain (``chain.Chain``: RFC 4034 section 4, RFC 4035 section
3.1.3.2), whose signatures are made once per owner and window, so a flood name
costs no signature; a second at or under the budget (or a second without any
such answer) returns the zone to compact denial.  Validating resolvers that use
aggressive NSEC caching (RFC 8198: Unbound, BIND by default) then answer the
rest of a random-subdomain flood from their caches.

The trade-off: a chain lets anyone walk the zone's names while it is served,
which is why it is used only above the budget and can be turned off (``budget``
None).  ``budget`` 0 serves the chain always (tests, or an operator who
publishes the names anyway).  The chain is built lazily, once per zone object
(a reload or an override makes a new one); zones over ``chain.CHAIN_NAME_LIMIT``
names build none and stay compact.  Each answering process decides for itself
(``--workers``): the demand it sees is its share of the flood.

Pure but for the clock it is given and its log lines (one per zone entering or
leaving flood denial, at most one per ``LOG_INTERVAL``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dnsfail.dnssec.chain import Chain, build
from dnsfail.model import Zone

log = logging.getLogger(__name__)

#: The default budget: new nonexistent names per second per answering process before
#: flood denial starts.  About 5% of a core's signing rate (some 20,000 P-256 signatures a
#: second), so compact denial's cost stays a small share of the CPU; far above what a
#: zone's real clients ask (typos and probes: a handful a second), so the chain, which
#: lists the zone's names, is shown only to floods.
DEFAULT_BUDGET = 1000
#: A zone's entering flood denial is logged at most once in this many seconds, and its
#: leaving only when the entering was (the spells in between are counted into the next
#: line): a flood that starts and stops every other second must not write a line a second.
LOG_INTERVAL = 60.0


class _Meter:
    """One zone's demand: the second being counted, its count, and the mode."""

    __slots__ = ("chained", "count", "logged", "second", "shown", "unlogged")

    def __init__(self, second: int) -> None:
        self.second = second
        self.count = 0
        self.chained = False
        #: When an entering was last logged, whether the current spell's was, and the
        #: spells not logged since.
        self.logged = -LOG_INTERVAL
        self.shown = False
        self.unlogged = 0


class Flood:
    """Demand meters and chains of the signed zones, for one answering process."""

    __slots__ = ("budget", "chains", "clock", "meters")

    def __init__(self, budget: int, clock: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self.clock = clock
        self.meters: dict[str, _Meter] = {}
        #: Chains by origin, for the zone object they were built from (None: too big).
        self.chains: dict[str, tuple[Zone, Chain | None]] = {}

    def reset(self) -> None:
        """Forget the chains (new keys: their signatures are the old keys')."""
        self.chains = {}

    def new_name(self, zone: Zone) -> Chain | None:
        """Count one new nonexistent name of ``zone``; the chain to deny it with, or None
        for compact denial."""
        now = self.clock()
        second = int(now)
        meter = self.meters.get(zone.origin)
        if meter is None:
            meter = self.meters[zone.origin] = _Meter(second)
        if second != meter.second:
            last = meter.count if second == meter.second + 1 else 0
            chained = last > self.budget
            if chained != meter.chained:
                meter.chained = chained
                self._log(zone.origin, meter, chained, last, now)
            meter.second, meter.count = second, 0
        meter.count += 1
        if not (meter.chained or self.budget == 0):
            return None
        return self.chain(zone)

    def chain(self, zone: Zone) -> Chain | None:
        """``zone``'s chain, built on first use for this zone object (None: too big)."""
        found = self.chains.get(zone.origin)
        if found is not None and found[0] is zone:
            return found[1]
        made = build(zone)
        self.chains[zone.origin] = (zone, made)
        return made

    def chained(self, origin: str) -> bool:
        """Whether ``origin`` is in flood denial (for the status and the tests)."""
        meter = self.meters.get(origin)
        return self.budget == 0 or (meter is not None and meter.chained)

    def _log(self, origin: str, meter: _Meter, chained: bool, last: int, now: float) -> None:
        if not chained:
            if meter.shown:
                log.warning("zone %s: %d new nonexistent names in the last second (budget "
                            "%d): back to compact denial", origin, last, self.budget)
            return
        meter.shown = now - meter.logged >= LOG_INTERVAL
        if not meter.shown:
            meter.unlogged += 1
            return
        missed = f" ({meter.unlogged} spells not logged)" if meter.unlogged else ""
        meter.logged, meter.unlogged = now, 0
        log.warning("zone %s: %d new nonexistent names in a second (budget %d): denying "
                    "them from the signed NSEC chain%s", origin, last, self.budget, missed)
