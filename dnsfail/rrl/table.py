"""The rate-limit buckets: a fixed-size open-addressed table in memory shared by processes.

One table serves the whole server: the main process creates it on a memfd
(an anonymous file; a deleted temporary file where memfd is missing) and
every ``--workers`` process maps the same descriptor, which it inherits.  So a
source block has ONE balance, whichever process its datagrams reach.

A bucket is 32 octets, ``<QdII`` and 8 spare: key (0: empty), ``tat`` (when
the bucket is full again, ``account``; on ``time.monotonic``, CLOCK_MONOTONIC,
one clock for every process of the host), the slip counter and flags
(:data:`LOGGED`).  A key's home is ``key & mask``; it lives in one of the
:data:`PROBES` buckets from there.  Finding it reads at most that many
buckets; a new key takes the first empty one, else one already full again
(``tat <= now``: the same as a fresh bucket, nothing is lost), else the one
nearest to full, so the cost per query is bounded and a flood from random
spoofed sources churns idle buckets but cannot grow the table or push out a
stream being limited (its debt puts it a second or more from full).

No locks: each process reads a bucket, computes, and writes it whole.  Two
processes debiting one bucket at the same instant may lose one of the two
debits (the limit is then one response looser), or both insert different
keys into one empty bucket (the loser starts afresh next time: looser
again).  A read torn by a concurrent write can mix two buckets' fields for
that one decision; the next write makes the bucket whole again.  Never
stricter than the limit except by that torn read, which needs two writes to
the same 32 octets within the same instant.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile

BUCKET = struct.Struct("<QdII8x")
#: A bucket's offset is its index shifted by this (32 octets: half a cache line).
SHIFT = 5
assert BUCKET.size == 1 << SHIFT
#: The two fields a reply that passes reads (key, tat) and the one it writes (tat).
HEAD = struct.Struct("<Qd")
TAT = struct.Struct("<d")
TAT_AT = 8
#: A reply to a full bucket writes both: its tat, and the slip count restarted.
TAT_SLIPS = struct.Struct("<dI")
SLIPS = struct.Struct("<I")
SLIPS_AT = 16
FLAGS = struct.Struct("<I")
FLAGS_AT = 20
#: Buckets probed per key: bounds the cost of a lookup (and of an insert under a flood).
PROBES = 8
#: Flag: a "limit responses to ..." line was logged for this bucket.
LOGGED = 1


class Table:
    """``size`` buckets (a power of two) over a shared buffer; ``fd`` is what workers map."""

    def __init__(self, size: int, fd: int, buffer: mmap.mmap) -> None:
        self.size = size
        self.mask = size - 1
        self.fd = fd
        self.buffer = buffer

    @staticmethod
    def length(size: int) -> int:
        """Octets for ``size`` buckets: the probe window never wraps, so PROBES more."""
        return (size + PROBES) * BUCKET.size

    @classmethod
    def create(cls, size: int) -> Table:
        """A zeroed table on a new anonymous shared file."""
        length = cls.length(size)
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("dnsfail-rrl")  # close-on-exec: workers get it by pass_fds
        else:  # pragma: no cover - not Linux
            with tempfile.TemporaryFile() as handle:
                fd = os.dup(handle.fileno())
        os.ftruncate(fd, length)
        return cls(size, fd, mmap.mmap(fd, length, mmap.MAP_SHARED))

    @classmethod
    def attach(cls, size: int, fd: int) -> Table:
        """The table another process created, by its inherited descriptor."""
        length = cls.length(size)
        if os.fstat(fd).st_size != length:
            raise ValueError(f"rate-limit table descriptor {fd} is not {length} octets")
        return cls(size, fd, mmap.mmap(fd, length, mmap.MAP_SHARED))

    def close(self) -> None:
        self.buffer.close()
        os.close(self.fd)

    def find(self, key: int, now: float) -> tuple[int, bool, bool]:
        """Where ``key`` lives: ``(offset, found, evicted)``.

        Not found: ``offset`` is the bucket to overwrite, and ``evicted`` says
        whether it still held debt or credit in use (table pressure).
        """
        buffer, unpack = self.buffer, HEAD.unpack_from
        start = (key & self.mask) * BUCKET.size
        victim, nearest = start, float("inf")
        for offset in range(start, start + PROBES * BUCKET.size, BUCKET.size):
            held, tat = unpack(buffer, offset)
            if held == key:
                return offset, True, False
            if held == 0:
                return offset, False, False
            if tat < nearest:
                victim, nearest = offset, tat
        return victim, False, nearest > now
