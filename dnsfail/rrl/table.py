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

No locks: each process reads a bucket, computes, and writes its fields back.
Every field is read and written by one aligned 8- or 4-octet access through
a typed memoryview (``keys``, ``tats``, ``words``), never ``struct.pack_into``,
which zero-fills its target before writing it: a reader in another process
would see the key or ``tat`` as 0 for that instant (an empty or a full
bucket), which measured as 10x the limit with two processes.  A new bucket's
key is written last, so whoever sees the key sees its ``tat``.  Two
processes debiting one bucket at the same instant may lose one of the two
debits (the limit is then one response looser), or both insert different
keys into one empty bucket (the loser starts afresh next time: looser
again).  Never stricter than the limit.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile

BUCKET = struct.Struct("<QdII8x")
#: Fields by index in 8-octet words (``keys``, ``tats``) and 4-octet words (``words``) of
#: bucket ``i``, whose first 8-octet word is ``q = i * WORDS``: key ``keys[q]``, tat
#: ``tats[q + 1]``, slip count ``words[2 * q + 4]``, flags ``words[2 * q + 5]``.
WORDS = 4
assert BUCKET.size == 8 * WORDS
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
        view = memoryview(buffer)
        self.keys = view.cast("Q")
        self.tats = view.cast("d")
        self.words = view.cast("I")

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
        for view in (self.keys, self.tats, self.words):
            view.release()
        self.buffer.close()
        os.close(self.fd)

    def find(self, key: int, now: float) -> tuple[int, bool, bool]:
        """Where ``key`` lives: ``(q, found, evicted)``, ``q`` its first word.

        Not found: ``q`` is the bucket to overwrite, and ``evicted`` says
        whether it still held debt or credit in use (table pressure).
        """
        keys, tats = self.keys, self.tats
        start = (key & self.mask) * WORDS
        victim, nearest = start, float("inf")
        for q in range(start, start + PROBES * WORDS, WORDS):
            held = keys[q]
            if held == key:
                return q, True, False
            if held == 0:
                return q, False, False
            tat = tats[q + 1]
            if tat < nearest:
                victim, nearest = q, tat
        return victim, False, nearest > now

    def put(self, q: int, key: int, tat: float, slips: int = 0, flags: int = 0) -> None:
        """Write a whole bucket, its key last (see the module docstring)."""
        self.tats[q + 1] = tat
        self.words[2 * q + 4] = slips
        self.words[2 * q + 5] = flags
        self.keys[q] = key

    def get(self, q: int) -> tuple[int, float, int, int]:
        """A bucket's (key, tat, slips, flags)."""
        return self.keys[q], self.tats[q + 1], self.words[2 * q + 4], self.words[2 * q + 5]
