"""The quorum rule: how the votes of several instances on one target become one state.

Each instance probes every target itself and runs its own rise/fall
(``steering.health``), as each Route 53 checker applies FailureThreshold; it
publishes one *vote* per target.  Votes are aggregated, never raw probes.

Freshness without comparing clocks
----------------------------------
A vote travels as its *age*: seconds since its last probe result, measured
on the sender's monotonic clock at send time.  The receiver places it on its
own monotonic clock as ``received_at - age``.  Two hosts' wall clocks are
never compared, so instances whose clocks differ by seconds (or hours) judge
freshness alike; the only error is the transit time, which makes a vote look
younger by at most one request timeout.

A vote is fresh while ``now - observed <= FRESH_INTERVALS x interval + timeout``
(:func:`fresh_window`).  Why 3 and not 2 intervals: a vote is up to
``1.1 x interval + timeout`` old when sent (probe jitter +-10 %) and is
replaced at the next pull, up to ``1.1 x interval`` later; 2 intervals would
let healthy peers' votes flicker stale, the third is the slack.

The rule (per record: ``octodns: dnsfail: healthcheck: quorum:``)
-----------------------------------------------------------------
``N`` is the number of *configured* instances (the peer list plus this one),
never the reachable ones.

* ``majority`` (default; NS1 "Quorum", Cloudflare's majority): DOWN when fresh
  DOWN votes >= floor(N/2) + 1.  An instance that hears nobody has one vote
  and can never withdraw a site on its own.
* ``any`` (NS1 "One"): DOWN when any fresh vote says DOWN.
* ``all`` (NS1 "All"): DOWN only when all N instances say DOWN, freshly.

Otherwise UP if any fresh vote is UP or DOWN, UNKNOWN if no vote is fresh.

Without quorum
--------------
An instance that hears fewer than ``floor(N/2) + 1`` instances (itself
included) cannot tell "the site died" from "I am cut off", so it changes no
verdict: it *holds* the last state agreed with a quorum.  For a target never
agreed on (a cold start alone), the rule still runs on the votes it has
(which under ``majority`` cannot withdraw).  After :func:`degraded_after`
without quorum (10 probe intervals of the fastest check, at most 60 s) it is
*degraded*: reported in ``/readyz``, ``/v1/status``, metrics and ``explain``;
with ``--peer-degraded hold`` (default) it keeps holding and falls back to its
own vote only for targets never agreed on; with ``own`` it uses its own vote
for every target (gdnsd's single point of view, chosen knowingly).

Replays
-------
Every message carries the sender's boot id (its start time in ms on its own
clock plus a random part) and a sequence number that grows with every message
of that boot.  A message whose (boot, seq) is not newer than the last accepted
one from the same instance is rejected (:func:`accept`): an old captured
message cannot bring back old votes.

Core: no I/O, no clock (time is passed in).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from dnsfail.model import Quorum
from dnsfail.steering.health import Health

#: Probe intervals a vote stays fresh, plus one timeout (see the module docstring).
FRESH_INTERVALS = 3.0
#: Fastest-check probe intervals without quorum before an instance reports degraded.
DEGRADED_INTERVALS = 10.0
#: Upper bound of that wait in seconds, whatever the intervals.
DEGRADED_MAX = 60.0


class Fallback(enum.Enum):
    """What a degraded instance answers from (``--peer-degraded``)."""

    #: Keep the last agreed state; own vote only for targets never agreed on.
    HOLD = "hold"
    #: Own vote for every target (a single point of view, as gdnsd).
    OWN = "own"


@dataclass(frozen=True, slots=True)
class Vote:
    """One instance's state of one target, placed on the receiver's monotonic clock."""

    origin: str
    state: Health
    #: When the voter last probed the target, on the receiver's clock (received_at - age).
    observed: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.observed)


def fresh_window(interval: float, timeout: float) -> float:
    """Seconds a vote counts after its voter's last probe result."""
    return FRESH_INTERVALS * interval + timeout


def degraded_after(intervals: Iterable[float]) -> float:
    """Seconds without quorum before degraded: 10 x the fastest interval, at most 60 s."""
    fastest = min(intervals, default=DEGRADED_MAX / DEGRADED_INTERVALS)
    return min(DEGRADED_INTERVALS * fastest, DEGRADED_MAX)


def majority(n: int) -> int:
    """floor(N/2) + 1: more than half of the configured instances."""
    return n // 2 + 1


def needed(quorum: Quorum, n: int) -> int:
    """Fresh DOWN votes that withdraw a target under ``quorum`` with ``n`` instances."""
    if quorum is Quorum.ANY:
        return 1
    if quorum is Quorum.ALL:
        return max(n, 1)
    return majority(n)


@dataclass(frozen=True, slots=True)
class Tally:
    """The rule applied to one target's votes."""

    state: Health
    down: int
    fresh: int
    needed: int
    n: int
    quorum: Quorum
    #: Every vote considered, fresh or not, for explain and status.
    votes: tuple[Vote, ...]


def tally(votes: Iterable[Vote], n: int, quorum: Quorum, now: float, window: float) -> Tally:
    """Apply ``quorum`` to ``votes`` (one per instance) with ``n`` configured instances."""
    every = tuple(votes)
    fresh = [v for v in every if v.age(now) <= window and v.state is not Health.UNKNOWN]
    down = sum(1 for v in fresh if v.state is Health.DOWN)
    need = needed(quorum, n)
    if down >= need:
        state = Health.DOWN
    elif fresh:
        state = Health.UP
    else:
        state = Health.UNKNOWN
    return Tally(state, down, len(fresh), need, n, quorum, every)


@dataclass(frozen=True, slots=True)
class Judgement:
    """The state answers use for one target, and why."""

    state: Health
    #: "quorum" (the rule decided), "held" (no quorum: last agreed state), "own"
    #: (degraded fallback to this instance's vote), "rule" (no quorum, never agreed).
    basis: str
    tally: Tally


def judge(
    t: Tally, own: Health, *, heard: int, agreed: Health | None, degraded: bool,
    fallback: Fallback,
) -> Judgement:
    """The verdict from ``t``, given how many instances are heard (this one included).

    With quorum (``heard >= majority(N)``) the rule decides and the caller
    records the result as agreed.  Without it: see the module docstring.
    """
    if heard >= majority(t.n) or t.n <= 1:
        return Judgement(t.state, "quorum", t)
    if degraded and fallback is Fallback.OWN:
        return Judgement(own, "own", t)
    if agreed is not None and agreed is not Health.UNKNOWN:
        return Judgement(agreed, "held", t)
    if degraded:
        return Judgement(own, "own", t)
    return Judgement(t.state, "rule", t)


@dataclass(frozen=True, slots=True)
class Seen:
    """The newest message accepted from one instance."""

    boot: str
    seq: int


def boot_key(boot: str) -> tuple[int, str]:
    """Order boots of one instance: ``<start ms>-<random>``, by start time (its own clock)."""
    head, _, tail = boot.partition("-")
    try:
        return int(head), tail
    except ValueError:
        return -1, boot


#: Milliseconds a remembered boot's start may lie ahead of our clock: one further ahead
#: (forged, or stamped by a clock that was wrong) is not trusted to make later boots "older".
BOOT_AHEAD_MS = 300_000


def accept(prev: Seen | None, boot: str, seq: int, now_ms: float | None = None) -> str | None:
    """None if a message (boot, seq) is newer than ``prev``, else why it is refused.  With
    ``now_ms`` (our wall clock), a ``prev`` boot more than BOOT_AHEAD_MS in the future is
    superseded by any other boot, so it cannot lock the instance out."""
    if prev is None:
        return None
    if boot == prev.boot:
        return None if seq > prev.seq else "replayed or reordered (sequence not newer)"
    if boot_key(boot) > boot_key(prev.boot):
        return None  # the instance restarted
    if now_ms is not None and boot_key(prev.boot)[0] > now_ms + BOOT_AHEAD_MS:
        return None  # the boot we remember is from the future: not to be trusted
    return "from an older boot of that instance"


@dataclass(frozen=True, slots=True)
class QuorumClock:
    """When quorum of instances was lost (None: it is held), to time degraded."""

    lost_since: float | None = None

    def step(self, has_quorum: bool, now: float) -> QuorumClock:
        if has_quorum:
            return QuorumClock(None)
        return self if self.lost_since is not None else QuorumClock(now)

    def degraded(self, now: float, after: float) -> bool:
        return self.lost_since is not None and now - self.lost_since > after


def describe(j: Judgement, now: float, window: float) -> str:
    """``DOWN (2 of 3 fresh votes: ns1 DOWN 1 s ago, ns2 DOWN 2 s ago, ns3 UP 1 s ago)``."""
    t = j.tally
    parts = []
    for v in sorted(t.votes, key=lambda v: v.origin):
        age = v.age(now)
        stale = "" if age <= window else " stale"
        parts.append(f"{v.origin} {v.state.name} {age:.0f} s ago{stale}")
    votes = ", ".join(parts) or "no votes"
    head = f"{t.down} of {t.fresh} fresh votes"
    rule = f"; {t.quorum.value}: DOWN needs {t.needed} of {t.n}"
    why = {"quorum": rule, "held": "; no quorum of instances: last agreed state held",
           "own": "; degraded: this instance's own vote",
           "rule": "; no quorum of instances, never agreed"}[j.basis]
    return f"{j.state.name} ({head}: {votes}{why})"
