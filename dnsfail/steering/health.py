"""Rule 1: all health transitions live in health.py.

This module owns the anti-flap state machine of one probed target and
nothing else: it is pure (no asyncio, no sockets, no clock; time is passed
in), so every transition can be table-tested and property-tested.
``probe.py`` produces results, the state store feeds them to :func:`observe`
and publishes the new :class:`TargetHealth`; answer selection only reads it.

The machine (rise/fall, as in HAProxy, Cloudflare ``consecutive_up/down``
and Route 53 ``FailureThreshold`` in both directions)::

    UNKNOWN --first result ok--> UP
    UNKNOWN --first result fail--> DOWN
    UP   --`fall` consecutive failures--> DOWN
    DOWN --`rise` consecutive successes--> UP

One lost probe never withdraws a site and one good probe never restores a
flapping one.  Cold start is the exception on purpose: the first result sets
the state directly.  There is no history to protect yet, and holding a target
in UNKNOWN for ``fall`` rounds would either serve dead sites (unknown = up,
PowerDNS's opposite problem is pdns#9529) or withdraw healthy ones for
``fall x interval`` seconds after every restart (unknown = down).  The cost is
that a target whose very first probe fails transiently stays withdrawn for
``rise x interval``, which is the safe direction: other pools answer.

Defaults for an API gateway, against the prior art (gdnsd.config(5) ``service_types``;
the Amazon Route 53 Developer Guide, "Values that you specify when you create or update
health checks"; PowerDNS's Lua records documentation, ``ifportup`` and ``ifurlup`` options):

============  ===========  ==========  ==============================  =========================
System        Interval     Timeout     Down after                      Up after
============  ===========  ==========  ==============================  =========================
dnsfail       5 s          2 s         3 consecutive (<= ~15 s + 2 s)  2 consecutive (~10 s)
gdnsd         10 s         interval/2  10 failures (>= 100 s)          20 consecutive (>= 200 s)
Route 53      30 s / 10 s  4 s + 2 s   3 (FailureThreshold)            3
PowerDNS LUA  5 s          2 s         1 (minimumFailures)             1st success
============  ===========  ==========  ==============================  =========================

gdnsd is built for long TTLs and is slow to react; PowerDNS reacts to a
single lost packet and flaps (pdns#7469).  Three failures at 5 s detect a
dead gateway in at most about 15 s plus one timeout, while a single dropped
probe or a 2 s GC pause never moves traffic.  Rising needs fewer results than
falling because a wrong "up" costs less than a wrong "down" of the last site,
yet one success is not enough to trust a site that was just failing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: Seconds between two probes of one target.
DEFAULT_INTERVAL = 5.0
#: Seconds a probe may take before it counts as a failure.
DEFAULT_TIMEOUT = 2.0
#: Consecutive successes that bring a DOWN target back UP.
DEFAULT_RISE = 2
#: Consecutive failures that take an UP target DOWN.
DEFAULT_FALL = 3


class Health(enum.Enum):
    """The tracked state of one target."""

    #: No result yet (cold start, or a target just added by a reload).
    UNKNOWN = "unknown"
    #: Serving: answers may include this target.
    UP = "up"
    #: Withdrawn: answers skip this target.
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Result:
    """One probe outcome as the machine remembers it."""

    ok: bool
    #: Human-readable outcome from probe.py, e.g. ``HTTP 503`` or ``connection refused``.
    detail: str
    #: Seconds the probe took.
    latency: float
    #: When the result arrived, on the caller's clock (monotonic seconds).
    at: float


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """Everything the machine knows about one target; a new value per result."""

    state: Health = Health.UNKNOWN
    #: Consecutive successes ending with the last result (0 if it failed).
    successes: int = 0
    #: Consecutive failures ending with the last result (0 if it succeeded).
    failures: int = 0
    #: UP <-> DOWN flips so far; the first verdict out of UNKNOWN is not a flap.
    transitions: int = 0
    last: Result | None = None
    #: Time of the last state change (the first verdict counts), on the caller's clock.
    since: float = 0.0


def observe(
    h: TargetHealth,
    ok: bool,
    detail: str,
    latency: float,
    at: float,
    *,
    rise: int,
    fall: int,
) -> TargetHealth:
    """Fold one probe result into ``h`` and return the new health.

    Pure: the same inputs always give the same output, and ``h`` is not
    changed.  ``rise`` and ``fall`` are read per call, so a reload that
    changes them applies to the counters already accumulated.
    """
    if rise < 1 or fall < 1:
        raise ValueError(f"rise and fall must be >= 1, not rise={rise} fall={fall}")
    successes = h.successes + 1 if ok else 0
    failures = 0 if ok else h.failures + 1
    state = h.state
    if state is Health.UNKNOWN:
        state = Health.UP if ok else Health.DOWN
    elif state is Health.UP and failures >= fall:
        state = Health.DOWN
    elif state is Health.DOWN and successes >= rise:
        state = Health.UP
    changed = state is not h.state
    flipped = changed and h.state is not Health.UNKNOWN
    return TargetHealth(
        state=state,
        successes=successes,
        failures=failures,
        transitions=h.transitions + 1 if flipped else h.transitions,
        last=Result(ok, detail, latency, at),
        since=at if changed else h.since,
    )


def describe_change(
    before: TargetHealth, after: TargetHealth, label: str, context: str = ""
) -> str | None:
    """The INFO log line for a state change, or None if the state did not change.

    ``label`` names the target (``ProbeSpec.label``); ``context`` says which
    records and pools use it, so an operator reading
    ``target 192.0.2.10:443 (api.gw.example.com pool eu) UP -> DOWN
    (3 failures; last: connect timeout after 2.0s)`` knows what traffic moved
    and why without cross-referencing the config.
    """
    if before.state is after.state or after.last is None:
        return None
    if after.last.ok:
        count, noun = after.successes, "success" if after.successes == 1 else "successes"
    else:
        count, noun = after.failures, "failure" if after.failures == 1 else "failures"
    where = f" ({context})" if context else ""
    return (
        f"target {label}{where} {before.state.name} -> {after.state.name} "
        f"({count} {noun}; last: {after.last.detail})"
    )


def next_change_bound(h: TargetHealth, rise: int, fall: int, interval: float) -> float:
    """The soonest, in seconds, that the state of ``h`` could flip.

    gdnsd's rule (github.com/gdnsd/gdnsd, ``src/dnspacket.c``: ``do_dyn_callback``):
    a flip needs the missing consecutive results, and results come one per
    ``interval``, so an answer built on this state can be cached that long
    without going stale.  An UP
    target needs ``fall - failures`` more failures, a DOWN one ``rise -
    successes`` more successes.  UNKNOWN returns 0: the next result decides,
    so nothing built on it should be cached beyond the TTL floor.
    """
    if h.state is Health.UP:
        needed = fall - h.failures
    elif h.state is Health.DOWN:
        needed = rise - h.successes
    else:
        return 0.0
    return interval * max(needed, 1)
