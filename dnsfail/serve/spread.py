"""Spreading TCP connections over the ``--workers`` processes: a small shared table of counts.

Every process accepts from the same listening socket (``serve.workers``
says why), and the kernel wakes them all for a new connection: the first to
run takes it, and asyncio and uvloop then take every connection waiting.  A
client's few connections, made together, so mostly land on one process
(4 connections over two processes, on this 2-core machine under load: 4:0 in
21 of 30 tries, 2:2 in 1; issue 13 saw ``dnsperf -m tcp -c 4`` at 4:0 in 5 of
6 runs).  ``SO_REUSEPORT`` listeners are no better for a few connections (the
kernel hashes each to a process: 4:0 in 15 of 200 tries, 3:1 in 112, 2:2 in
73).  With this throttle: 2:2 in 60 of 60 at load 7.

So the processes share one small table (a ``memfd`` each maps): how many
connections each holds, written only by its owner.  A process that holds
more than the least loaded live sibling (``over_share``) leaves the next
connection to it for ACCEPT_DEFER, then takes it anyway if it still waits
(that sibling is busy or stuck), so a connection never waits longer than
that.  A slot reads ABSENT while its process is not running (the main
process marks it when a worker exits), so nobody waits for a dead one.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Sequence

#: A slot whose process is not accepting (not started yet, or exited).
ABSENT = -1
#: Seconds a process that holds more than its share leaves a waiting connection to its
#: siblings (each is woken for it too) before taking it itself.  A sibling that is not
#: stuck runs within a millisecond or two even while it answers UDP (it yields every
#: UDP_BATCH datagrams); this bounds the extra connect latency when one is stuck (a
#: large zone being applied) at a small fraction of an Internet handshake's round trip.
ACCEPT_DEFER = 0.02
#: While it leaves connections to siblings, how often a process looks at the counts again.
#: Two processes can both be over the other's count in turn (each took one at once), and
#: both pausing: the one that is behind again must not sleep through its turn.
ACCEPT_RECHECK = 0.002
_SLOT = 8


def over_share(mine: int, others: Sequence[int]) -> bool:
    """Whether a process holding ``mine`` connections should leave the next to a sibling.

    True when a live sibling (count not ABSENT) holds fewer: it takes the
    next, and the counts stay within one of each other.
    """
    return any(ABSENT < count < mine for count in others)


class Shares:
    """The shared table: one 8-octet count per process, slot 0 the main process."""

    def __init__(self, fd: int, slots: int, slot: int) -> None:
        self.fd = fd
        self.slots = slots
        self.slot = slot
        self.map = mmap.mmap(fd, slots * _SLOT)
        self.counts = memoryview(self.map).cast("q")

    @classmethod
    def create(cls, slots: int) -> Shares:
        """A new table (in the main process, slot 0): every worker slot ABSENT."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("dnsfail-tcp-shares", 0)  # not inherited but by pass_fds
        else:  # pragma: no cover - non-Linux
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        os.ftruncate(fd, slots * _SLOT)
        shares = cls(fd, slots, 0)
        for slot in range(1, slots):
            shares.counts[slot] = ABSENT
        return shares

    def set(self, count: int) -> None:
        """This process now holds ``count`` connections."""
        self.counts[self.slot] = count

    def absent(self, slot: int) -> None:
        """The process of ``slot`` is not running (the main process says so for a worker)."""
        self.counts[slot] = ABSENT

    def over(self) -> bool:
        counts = self.counts.tolist()
        mine = counts.pop(self.slot)
        return over_share(mine, counts)

    def unmap(self) -> None:
        self.counts.release()
        self.map.close()

    def close(self) -> None:
        self.unmap()
        os.close(self.fd)
