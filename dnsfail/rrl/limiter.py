"""The rate limiter ``dns.stages`` calls: one reply to PASS, SLIP or DROP, and the slip reply.

Per reply (the stages call it only for UDP replies to clients without a
valid server cookie) it finds the reply's *stream*: the client's block
(memoised per address) and the reply's class key (``account.classify``,
``classkey``), hashed together (CRC-32: the same in every process, where
``hash()`` is salted per process).  Each client memoises its streams by what
the handler's lookup found the reply by (``dns.stages.Key``, see
:func:`memo_key`), so a repeated question, a new letter case, a new name
under a wildcard or a new nonexistent name of a known zone finds its stream
in two dict lookups on keys whose hashes are already computed.

A stream spends *credit*: replies it took from its bucket in the shared
table (``table``) a grant at a time (:class:`Stream`).  A reply with credit
is a decrement: no clock, no shared memory.  One without reads the clock,
reads and writes its bucket with BIND's accounting (``account.debit``), and
takes the next grant; near or over the limit grants are one reply, so
limiting is exact there.  Nothing is counted until a reply is limited.

What the operator sees: counters by action and class in ``QueryStats.limited``
(exported as ``dnsfail_rrl_responses_total``, every worker's summed), and a
log line when a stream starts being limited (BIND's ``limit responses to
192.0.2.0/24 for www.example.com. IN A``) and when it stops (``stop limiting
...``: its bucket is back to a full second's credit, or was reused).  At most
:data:`MAX_LOGGED` streams are logged at once; more are counted in one
summary line a second, so a flood from many blocks cannot flood the log.
Stops are found by a sweep that the next reply without credit runs at most
once a second, as BIND's ``log_stops`` does (no timer of its own).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from zlib import crc32

from dnsfail.dns.stages import Key
from dnsfail.dns.stats import QueryStats
from dnsfail.dns.wire import truncated
from dnsfail.model import RRType
from dnsfail.rrl.account import (
    ANSWER,
    CLASS_NAMES,
    CLASS_WORDS,
    NODATA,
    PASS,
    REFERRAL,
    classify,
    delegation,
    limited,
    name_text,
    qname_end,
)
from dnsfail.rrl.classkey import SEEDS, ClassKeys, owner
from dnsfail.rrl.settings import RrlSettings
from dnsfail.rrl.table import LOGGED, WORDS, Table
from dnsfail.state import Snapshot

log = logging.getLogger(__name__)

#: Client addresses whose block is memoised; the memo is emptied when full, so a flood
#: from random sources costs one address parse per query and bounded memory.
BLOCK_MEMO = 1 << 16
#: Longest exact-bytes key a client memo holds (``EXACT_QUERY_LIMIT`` bounds them already).
QUESTION_MEMO_OCTETS = 300
#: Per-client memo entries (what a client's query, by the handler's key, was counted as),
#: over all clients: every memo is emptied when there are more, so a flood of new names or
#: sources costs a memo insert per query and bounded memory (~200 octets an entry).
STREAM_MEMO = 1 << 16
#: Streams this process holds (bucket key -> its local state); emptied when full, which
#: forgets at most ``grant - 1`` replies of credit per stream (a stricter limit, once).
STREAM_LIMIT = 1 << 16
#: A stream takes up to ``rate // GRANT_SHARE`` replies from its shared bucket at once (at
#: least one) and spends them locally with no access to the shared table: see
#: :class:`Stream` for the error this allows (at most one grant per process).
GRANT_SHARE = 64
#: Credit of a class that is never limited (rate 0): never runs out.
UNLIMITED = 1 << 62
#: Streams logged as limited at once (BIND keeps 100 names for its "stop" lines too).
MAX_LOGGED = 100
#: Seconds between sweeps for streams that stopped being limited.
SWEEP_EVERY = 1.0
_INVALID = (-1, "")
#: ``QueryStats.limited`` keys, by [log_only][decision][class].
_COUNT_KEYS = tuple(tuple(tuple(f"{action}:{name}" for name in CLASS_NAMES)
                          for action in actions)
                    for actions in (("", "slipped", "dropped"), ("", "would_slip", "would_drop")))
#: ``QueryStats.limited`` key of buckets reused while still within their window.
EVICTED = "evicted:table"


class Stream:
    """One stream (a client block and a reply class key) as this process counts it.

    ``credit`` is replies this process took from the stream's shared bucket and has not
    sent yet: a reply that finds credit costs a decrement, no clock and no access to the
    shared table.  Only a stream with no credit goes to its bucket, and takes up to
    ``grant`` replies at once (``rate // GRANT_SHARE``, at least one; never more than the
    bucket can pass now, so near and over the limit every reply is accounted one by one,
    exactly as ``account.debit``).  The error this allows, per stream: each process holds
    at most ``grant - 1`` replies of credit, taken from the bucket at some earlier time.
    So in any interval a block receives at most ``grant * processes`` replies more than
    the exact limit allows (credit taken, then spent after the bucket refilled), and a
    quiet stream's unspent credit holds at most as many replies of debt in the bucket (a
    limit that much stricter for the other processes, until the credit is spent): with
    the default share 1/64 of one second's worth per process, whatever the window.
    """

    __slots__ = ("block", "bucket", "cls", "cost", "credit", "grant", "q")

    def __init__(self, bucket: int, q: int, cls: int, cost: float, grant: int,
                 block: str, credit: int = 0) -> None:
        self.bucket, self.q, self.cls, self.cost = bucket, q, cls, cost
        self.grant, self.block, self.credit = grant, block, credit


class Client:
    """A client address: its block's seed and text, and its memo of streams by the
    handler's key (:func:`memo_key`)."""

    __slots__ = ("block", "memo", "seed")

    def __init__(self, seed: int, block: str) -> None:
        self.seed, self.block = seed, block
        self.memo: dict[bytes | int | str, Stream] = {}


def memo_key(reply: bytes, slot: int, key: Key) -> bytes | int | str | None:
    """What a client's stream is memoised by: for a reply with an rcode, whatever the key,
    its QueryStats slot (zone, qtype and rcode: an NXDOMAIN or error stream is the zone's,
    so a flood of new names is one memo entry); else the query's bytes after the ID (an
    exact-bytes hit: one reply, so one class), else a template's wildcard
    (``"<owner> <qtype>"``, when the key has it), else the lower-cased qname's wire form
    and qtype (the question key's head, a slice:
    no walk of the name); None without a key.  A class is what the
    snapshot's replies make it, so the memos are emptied when the snapshot changes (at
    the next sweep)."""
    if key is None:
        return None
    if reply[3] & 0x0F:
        return slot
    if isinstance(key, bytes):
        return key
    if len(key) == 3:
        return key[2]  # a template's wildcard: every name under it is one stream
    return key[0][:key[1] - 14]


class RateLimiter:
    """``dns.stages.Limiter`` over a shared :class:`Table`.

    ``stats`` is the handler's QueryStats: its keys name each slot's zone, and
    ``limited`` receives the counts.  ``snapshot`` tells wildcard answers
    (a qname the zone does not hold) so that they count under the wildcard.
    """

    __slots__ = ("_clients", "_costs", "_generation", "_grants", "_keys", "_keys_by",
                 "_log_only", "_mask", "_memoised", "_next_sweep", "_rates", "_slip",
                 "_streams", "_tats", "_unlimited", "_window", "_words", "clock", "counts",
                 "logged", "names", "settings", "snapshot", "stats", "table", "unlogged")

    def __init__(self, settings: RrlSettings, table: Table, stats: QueryStats,
                 snapshot: Callable[[], Snapshot] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.table = table
        self.stats = stats
        self.snapshot = snapshot
        self.clock = clock
        self.counts = stats.limited
        self._rates = settings.rates()
        #: Seconds of ``tat`` one reply costs, by class; 0: the class is not limited.
        self._costs = tuple(1 / rate if rate else 0.0 for rate in self._rates)
        #: Replies a stream takes from its bucket at once, by class (``Stream``).
        self._grants = tuple(max(1, rate // GRANT_SHARE) for rate in self._rates)
        self._window, self._slip = settings.window, settings.slip
        self._log_only = settings.log_only
        self._keys_by = _COUNT_KEYS[1 if settings.log_only else 0]
        self._keys, self._tats, self._words = table.keys, table.tats, table.words
        self._mask = table.mask
        self._clients: dict[str, Client] = {}
        self._memoised = 0
        self._streams: dict[int, Stream] = {}
        self._unlimited = Stream(0, 0, 0, 0.0, 1, "", UNLIMITED)
        self.names = ClassKeys(stats, snapshot)
        self._generation = snapshot().generation if snapshot is not None else -1
        #: Streams this process logged as limited: bucket (first word) -> (key, text, class).
        self.logged: dict[int, tuple[int, str, int]] = {}
        self.unlogged = 0
        self._next_sweep = 0.0

    def decide(self, data: bytes, reply: bytes, client: str, slot: int,
               key: Key = None) -> int:
        """``dns.stages.Limiter.decide``; ``key`` (``dns.stages.Key``) when the handler
        gives it.  A repeat with credit (``Stream``) is two dict lookups and a
        decrement; ``rrl.stage.Guard`` inlines that much."""
        c = self._clients.get(client)
        if c is not None and key is not None:
            mk = memo_key(reply, slot, key)
            stream = c.memo.get(mk) if mk is not None else None
            if stream is not None and stream.credit:
                stream.credit -= 1
                return PASS
        return self.account(data, reply, client, slot, key)

    def account(self, data: bytes, reply: bytes, client: str, slot: int,
                key: Key = None, stream: Stream | None = None) -> int:
        """``decide`` without the credit at hand: the stream found or made (``stream``:
        what the client's memo gave, when the caller looked), its credit spent, else its
        shared bucket read and written."""
        now = self.clock()
        if now >= self._next_sweep:
            self.sweep(now)
        if stream is None:
            c = self._clients.get(client)
            if c is None:
                c = self._client(client)
            if c.seed < 0:
                return PASS
            mk = memo_key(reply, slot, key)
            stream = c.memo.get(mk) if mk is not None else None
            if stream is None:
                stream = self._stream(c, data, reply, slot, key)
                if mk is not None and (not isinstance(mk, bytes)
                                       or len(mk) <= QUESTION_MEMO_OCTETS):
                    if self._memoised >= STREAM_MEMO:
                        self._forget()
                        self._clients[client] = c
                        c.memo.clear()
                    self._memoised += 1
                    c.memo[mk] = stream
        if stream.credit:
            stream.credit -= 1
            return PASS
        q = stream.q
        bucket = stream.bucket
        if self._keys[q] == bucket:
            tat = self._tats[q + 1]
        else:
            q, bucket, tat = self._miss(bucket, now)
            stream.q = q
        cost = stream.cost
        if tat < now:  # full: this reply passes, and the slip count restarts (BIND)
            tat = now
            self._words[2 * q + 4] = 0
        tat += cost
        if tat - now <= 1:  # passes; and up to ``grant - 1`` more that also fit
            grant = stream.grant
            if grant > 1:
                extra = min(grant - 1, int((1 - (tat - now)) / cost))
                if extra > 0:
                    tat += extra * cost
                    stream.credit = extra
            self._tats[q + 1] = tat
            return PASS
        return self._limited(q, bucket, tat, now, stream.cls, stream.block, data, reply, slot)

    def _miss(self, key: int, now: float) -> tuple[int, int, float]:
        """Not in its home bucket: ``(q, key, tat)`` from the probe window, a new bucket
        taken if need be."""
        q, found, evicted = self.table.find(key, now)
        if found:
            return q, key, self._tats[q + 1]
        self.table.put(q, key, now)
        if evicted:
            self.counts[EVICTED] = self.counts.get(EVICTED, 0) + 1
        return q, key, now

    def _limited(self, q: int, key: int, tat: float, now: float, cls: int, block: str,
                 data: bytes, reply: bytes, slot: int) -> int:
        """A reply over its stream's limit: debt floor, slip or drop, counts, the log."""
        words = self._words
        slips, flags = words[2 * q + 4], words[2 * q + 5]
        tat, slips, decision = limited(tat, slips, now, self._window, self._slip)
        self._tats[q + 1] = tat
        words[2 * q + 4] = slips
        words[2 * q + 5] = flags | LOGGED
        count = self._keys_by[decision][cls]
        self.counts[count] = self.counts.get(count, 0) + 1
        if not flags & LOGGED:
            self._start(q, key, cls, block, data, reply, slot)
        return PASS if self._log_only else decision

    def slip(self, data: bytes, reply: bytes) -> bytes:
        """The reply with TC=1 and no records but the question (RFC 1035 4.1.1; BIND's
        slip): small, and a real resolver retries over TCP."""
        cut = truncated(reply, None)
        if cut is None:  # no readable question: the header alone
            return reply[:2] + bytes((reply[2] | 0x02, reply[3])) + bytes(8)
        return cut

    # --- the slower paths ---------------------------------------------------------------

    def _client(self, client: str) -> Client:
        """The client's block (seed -1 for what is not an address), memoised."""
        try:
            address = ipaddress.ip_address(client.partition("%")[0])
        except ValueError:
            c = Client(*_INVALID)
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped  # a dual-stack socket's IPv4 clients
            s = self.settings
            prefix = s.ipv4_prefix if address.version == 4 else s.ipv6_prefix
            network = ipaddress.ip_network((address, prefix), strict=False)
            seed = crc32(network.network_address.packed + bytes((prefix, address.version)))
            c = Client(seed, str(network))
        if len(self._clients) >= BLOCK_MEMO:
            self._forget()
        self._clients[client] = c
        return c

    def _forget(self) -> None:
        """Empty the client memos (full, or the snapshot changed)."""
        self._clients.clear()
        self._memoised = 0

    def _stream(self, c: Client, data: bytes, reply: bytes, slot: int, key: Key) -> Stream:
        """The stream of this reply to this client: its class and class key hashed with
        the block (CRC-32: the same in every process)."""
        cls = classify(reply)
        cost = self._costs[cls]
        if not cost:
            return self._unlimited
        seed, names = c.seed, self.names
        if cls <= NODATA:
            h = names.question(data, slot, key)[cls] ^ seed
        elif cls == REFERRAL:
            h = crc32(delegation(reply) or b"", SEEDS[REFERRAL]) ^ seed
        else:
            zone = names.zone_hashes[cls].get(slot)
            if zone is None:
                zone = names.zone_hash(cls, slot)
            h = zone ^ seed
        bucket = seed << 32 | h
        stream = self._streams.get(bucket)
        if stream is None:
            if len(self._streams) >= STREAM_LIMIT:
                self._streams.clear()
                self._forget()  # the memos hold streams
            stream = Stream(bucket, (h & self._mask) * WORDS, cls, cost, self._grants[cls],
                            c.block)
            self._streams[bucket] = stream
        return stream

    def _start(self, q: int, key: int, cls: int, block: str, data: bytes, reply: bytes,
               slot: int) -> None:
        """First limited reply of a stream (its bucket now flagged): log it, bounded."""
        if len(self.logged) >= MAX_LOGGED:
            self.unlogged += 1
            return
        text = f"{CLASS_WORDS[cls]}responses to {block}{self._subject(cls, data, reply, slot)}"
        self.logged[q] = (key, text, cls)
        would = "would " if self._log_only else ""
        log.warning("%slimit %s", would, text, extra={"fields": {
            "event": "rrl_limit", "block": block, "class": CLASS_NAMES[cls],
            "log_only": self._log_only}})

    def _subject(self, cls: int, data: bytes, reply: bytes, slot: int) -> str:
        end = qname_end(data)
        if cls in (ANSWER, NODATA) and end >= 0:
            qtype = int.from_bytes(data[end + 1:end + 3], "big")
            name = owner(self.snapshot, self.stats, data, slot) or name_text(data[12:end + 1])
            return f" for {name} IN" + (
                f" {_qtype(qtype)}" if cls == ANSWER else "")
        if cls == REFERRAL:
            return f" for {name_text(delegation(reply) or b'')}"
        zone = self.stats.keys[slot][0] if slot < len(self.stats.keys) else ""
        return f" for {zone or '(names not ours)'}"

    def sweep(self, now: float) -> None:
        """Log the streams that stopped being limited (bucket full again, or reused)."""
        self._next_sweep = now + SWEEP_EVERY
        if self.snapshot is not None:
            generation = self.snapshot().generation
            if generation != self._generation:  # names may have come or gone: wildcards
                self._forget()
                self.names.clear()
                self._generation = generation
        if self.unlogged:
            log.warning("%d more stream(s) %slimited, not logged one by one (%d are)",
                        self.unlogged, "would be " if self._log_only else "", len(self.logged),
                        extra={"fields": {"event": "rrl_unlogged", "count": self.unlogged}})
            self.unlogged = 0
        for q, (key, text, cls) in list(self.logged.items()):
            held, tat = self._keys[q], self._tats[q + 1]
            if held == key and tat > now:
                continue
            if held == key:
                self._words[2 * q + 5] &= ~LOGGED
            del self.logged[q]
            log.warning("%sstop limiting %s", "would " if self._log_only else "", text,
                        extra={"fields": {"event": "rrl_stop", "class": CLASS_NAMES[cls]}})


def _qtype(qtype: int) -> str:
    try:
        return RRType(qtype).name
    except ValueError:
        return f"TYPE{qtype}"



def open_limiter(settings: RrlSettings, stats: QueryStats,
                 snapshot: Callable[[], Snapshot] | None, fd: int | None = None) -> RateLimiter:
    """A limiter over a new shared table, or over the one another process made (``fd``)."""
    table = (Table.create(settings.table_size) if fd is None
             else Table.attach(settings.table_size, fd))
    return RateLimiter(settings, table, stats, snapshot)
