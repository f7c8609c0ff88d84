"""When a UDP reader waits a moment before it reads again: interrupt moderation in software.

Why: at a steady moderate rate a process that reads on every readiness wakes for
one or two datagrams at a time.  Each wake-up costs a return from ``epoll_wait``,
a context switch and the event loop's dispatch, and a Python process that slept
while the client ran wakes with cold caches: on the mix of ``tests/bench`` a
query cost 37-48 us of CPU at half of the peak rate against 25 us at full load,
so half the traffic took nearly as much CPU as all of it, and with the load
generator beside it the two cores were 95-98% busy, no room left for a burst
(with this wait: 32-35 us, 16-18% idle).  Network cards solve the same problem
for interrupts (``ethtool -C rx-usecs``): wait a little, then take everything
that arrived.

The rule, per process: while the datagrams it answered over the last ``WINDOW``
come to at least ``ENTER_RATE`` per second (``LEAVE_RATE`` once it waits, so the
mode does not flap at the edge; a wait that gathered nothing ends it at once), a
drain of the socket that found fewer than ``SMALL`` datagrams is followed by
``delay`` seconds of not reading, during which arrivals queue in the socket (its
buffer holds thousands).  A drain that found ``SMALL`` or more reads on readiness
again: a wake-up's cost is already shared by many queries, and at full load on
the costlier paths batches are large and the reader seldom waits.  Below
``ENTER_RATE`` (1,000 queries a second, say) every datagram is read as it comes,
with no added latency.  The cost is latency while it waits: up to ``delay`` (one
millisecond by default, the event loop timer's resolution) on a query that
arrives just after a drain.

Pure: the listener hands in what a drain answered and the clock, and is told
whether to wait.  ``--udp-coalesce`` sets ``delay`` (0: never wait).
"""

from __future__ import annotations

#: Default of ``--udp-coalesce``, seconds (the serve option is in milliseconds).
DEFAULT_DELAY = 0.001
#: Datagrams a second one process answers, over ``WINDOW``, from which it starts to wait.
ENTER_RATE = 3000.0
#: ... and under which it stops waiting again (hysteresis).
LEAVE_RATE = 1500.0
#: Seconds over which the rate is counted; the mode changes at most this often.
WINDOW = 0.05
#: A drain that found this many datagrams or more is followed by no wait: batches are
#: already large (a wake-up's cost shared by 16 queries), and waiting would only add
#: latency, or at full load leave the cores idle.
SMALL = 16


class Pacer:
    """One listener's rate over the current window and whether it waits after a drain."""

    __slots__ = ("_count", "_since", "delay", "waiting")

    def __init__(self, delay: float, now: float) -> None:
        self.delay = delay
        #: Whether the rate is in the waiting range (``ENTER_RATE`` .. ``LEAVE_RATE``).
        self.waiting = False
        self._count = 0
        self._since = now

    def after(self, answered: int, now: float) -> bool:
        """A drain found ``answered`` datagrams at ``now``: wait ``delay`` before reading?"""
        self._count += answered
        elapsed = now - self._since
        if not answered and self.waiting:
            # A wait that gathered nothing: the traffic paused (the end of a burst, or of a
            # run), and the next query should not wait for a rate that is gone.
            self.waiting = False
            self._count, self._since = 0, now
        elif elapsed >= WINDOW:
            rate = self._count / elapsed
            self.waiting = rate >= (LEAVE_RATE if self.waiting else ENTER_RATE)
            self._count, self._since = 0, now
        return self.waiting and answered < SMALL and self.delay > 0
