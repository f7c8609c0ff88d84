"""The reply cache: one snapshot's prepared replies, their keys, limits and policy.

Answers are a pure function of the snapshot and the question, so each
``state.Snapshot`` carries one ``ReplyCache`` and a new snapshot starts with
an empty one: no invalidation logic.  Four caches, fastest first:

* exact bytes: a UDP query's bytes after its ID (``data[2:]``) -> the finished
  reply but for its ID.  A resolver repeating a question sends the same bytes
  but for the ID, so the answer costs one lookup and one concatenation.
  ``ReplyCache.get`` *is* this dict's ``get`` (an attribute, rebound when a
  generation starts), so the handler reaches it with no lookup more than a
  plain dict would cost.
* key: ``question_key``'s key -> a reply independent of ID, RD/CD and letter
  case, which ``wire.personalize`` gives the query's.
* block: a question whose answer depends on the packet's source address ->
  its ``ClientBlocks``, replies by the address block that decided them.
* splice: an ECS query's reply kept by block, and given another network's
  address of the same block by splicing it in (``ecs_block``, ``echo``).

Every reply is stored with its slot in the handler's query counters
(``dns.stats.QueryStats``), so a hit costs one list increment.

No flood can grow or flush them: each keeps two generations of at most
``EXACT_LIMIT`` / ``KEYED_LIMIT`` entries, a hit in the previous one moving
the entry into the current one (so what clients repeat stays), and exact
bytes are admitted on their second sight only (``DOORKEEPER_SLOTS``), so new
letter cases and networks seen once cost nothing.  New nonexistent and
wildcard names never reach them (``dns.template``).

Nothing here stalls the event loop: a new generation is a swap of references,
never a copy, and the generation it pushes out is released ``RELEASE_STEP``
entries at a time by the inserts that follow (``Retired``), not in one go;
its emptied dict is where the generation after next starts.
(Copying 50,000 entries and freeing the 150,000 objects of the old generation
took 2-10 ms of CPU in one query, and the young copy cost the next two garbage
collections as much again.)

Part of the core: it imports ``dns.query`` (the constants of the wire) and
``model``, no I/O, nothing from ``state``, ``steering`` or the handler.
"""

from __future__ import annotations

import functools
import ipaddress
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from typing import Any

from dnsfail.dns.query import (
    CLASSIC_UDP_LIMIT,
    HEADER_LEN,
    OPTION_ECS,
    OPTION_NSID,
    TCP_LIMIT,
    UDP_PAYLOAD,
    Query,
)
from dnsfail.dns.wire import heads
from dnsfail.model import Message

#: Exact-bytes replies kept per generation.  The cache keeps two generations: when the
#: current one is full it becomes the previous one and a new one starts, and a hit in the
#: previous one moves the entry into the current one.  A question asked at least once per
#: generation therefore never leaves, however many other questions come between (no
#: empty-at-limit), and the cache never holds more than twice this.
EXACT_LIMIT = 50_000
#: Keyed replies (and questions' ``ClientBlocks``) kept per generation, with the same
#: two-generation policy as ``EXACT_LIMIT``.
KEYED_LIMIT = 50_000
#: Address blocks added over all ``ClientBlocks`` in a generation before the keyed cache
#: moves to a new one: ECS from many networks in many GeoIP blocks must not make the
#: keyed cache's few entries hold millions of blocks.
BLOCKS_LIMIT = 100_000
#: Slots of the exact-bytes cache's doorkeeper: a query's bytes are kept only when seen a
#: second time while still in their slot (TinyLFU's doorkeeper), so a flood of distinct
#: names, letter cases or subnets, each seen once, adds nothing to the cache.  At 10,000
#: new questions a second, a question repeated within a second finds its slot intact 86%
#: of the time.  An array of hashes: 8 octets a slot.
DOORKEEPER_SLOTS = 1 << 16
#: ``Fold``s kept per generation of ``keyed`` (emptied with it): one per question and kind
#: of query answered by key or by splice, so a number the questions asked fix, not their
#: letter cases or networks.
FOLD_LIMIT = 50_000
#: Block replies one ``Fold`` keeps split for splicing: a question's blocks hold a few
#: distinct replies (one per pool and health state); past it, each splice splits again.
FOLD_PARTS = 64
#: Largest query whose exact bytes are remembered: real queries are a few hundred octets,
#: and a key of up to 64 KiB each would let unique padded queries hold gigabytes in a
#: cache of ``EXACT_LIMIT`` entries.
EXACT_QUERY_LIMIT = 512
#: Entries of a retired generation released per insert into a cache.  Freeing a whole
#: generation at once (50,000 replies, or 100,000 address blocks: 150,000 objects or more,
#: scattered in memory) held the event loop 3-8 ms; at this rate a generation is gone
#: after an eighth of the inserts that fill the next one, so at most one retired
#: generation per cache is ever held (``RETIRED_LIMIT``), and an insert pays about 0.3 us
#: for it.
RELEASE_STEP = 8
#: Entries waiting in retired generations past which they are freed at once: a
#: generation of each cache and a question's blocks, which ``RELEASE_STEP`` never lets
#: pile up; a guard, so that the memory held stays bounded whatever happens.
RETIRED_LIMIT = EXACT_LIMIT + KEYED_LIMIT + 2 * BLOCKS_LIMIT

#: A prepared reply and its slot in ``QueryStats.counts``.
Entry = tuple[bytes, int]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65536)
def client_address(client: str) -> Address | None:
    """The packet source as geo.decide sees it (an IPv4-mapped IPv6 address is IPv4).

    Memoised: a resolver asks again and again, and parsing an address costs
    more than the rest of a cached per-client answer.
    """
    address: Address | None
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address


_DOOR_MASK = DOORKEEPER_SLOTS - 1
_TCP_LIMIT = TCP_LIMIT.to_bytes(2, "big")
_UDP_LOW = CLASSIC_UDP_LIMIT.to_bytes(2, "big")
_UDP_HIGH = UDP_PAYLOAD.to_bytes(2, "big")

# --- the key ----------------------------------------------------------------------------


def question_key(data: bytes, tcp: bool) -> tuple[bytes, int] | None:
    """Return ``(cache_key, question_end)`` for a plain query, or None.

    A plain query has QR=0, OPCODE=0, one question, no answer or authority
    records, no compression in the question and at most one OPT record of
    version 0.  Anything else returns None and goes the slow way, so a wrong
    guess here can only cost speed, never correctness.  The key holds
    everything the reply depends on: the lower-cased qname, qtype and qclass,
    the transport, and the EDNS facts that change the reply's bytes, including
    the ECS option itself: the reply echoes its family, source prefix and
    address, and the client's location is decided by it alone (RFC 7871
    section 7.2.1), so one ECS option always gets the same reply bytes.
    It reads the header and question with byte slicing, no parser: this is
    what keeps a repeated question cheap.
    """
    n = len(data)
    if n < 17 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None
    i = HEADER_LEN
    try:
        length = data[i]
        while length:
            if length > 63:
                return None
            i += length + 1
            length = data[i]
    except IndexError:
        return None
    qend = i + 5
    if qend > n:
        return None
    transport = b"T" if tcp else b"U"
    arcount = data[11] | data[10] << 8
    if arcount == 0:
        if qend != n:
            return None
        return data[HEADER_LEN : i + 1].lower() + data[i + 1 : qend] + transport, qend
    if arcount != 1 or n < qend + 11 or data[qend : qend + 3] != b"\x00\x00\x29":
        return None
    rdlen = data[qend + 9] << 8 | data[qend + 10]
    if qend + 11 + rdlen != n or data[qend + 6]:  # EDNS version other than 0
        return None
    j = qend + 11
    nsid = ecs = b""
    while j < n:  # none in most queries; a cookie (RFC 7873) in many
        if j + 4 > n:
            return None
        code = data[j] << 8 | data[j + 1]
        end = j + 4 + (data[j + 2] << 8 | data[j + 3])
        if code == OPTION_ECS:
            if ecs:
                return None  # two ECS options: let the full parser judge
            ecs = b"C" + data[j + 4 : end]
        elif code == OPTION_NSID:
            nsid = b"N"
        j = end
    if j != n:
        return None
    if tcp:
        limit = _TCP_LIMIT
    else:  # the payload size clamped to [CLASSIC_UDP_LIMIT, UDP_PAYLOAD], as two octets
        limit = data[qend + 3 : qend + 5]
        if limit < _UDP_LOW:
            limit = _UDP_LOW
        elif limit > _UDP_HIGH:
            limit = _UDP_HIGH
    do = b"D" if data[qend + 7] & 0x80 else b"E"
    return b"".join((data[HEADER_LEN : i + 1].lower(), data[i + 1 : qend], transport, limit, do,
                     nsid, ecs)), qend


def key_edns(key: bytes, at: int) -> tuple[bool, int, bool, bool, bytes]:
    """The EDNS facts a ``question_key`` key ends with, read from ``at`` (just past the
    qname, qtype, qclass and transport): whether the query had an OPT record, the UDP
    size limit, DO, whether NSID was asked, and the ECS option's data (empty if none)."""
    if len(key) == at:
        return False, CLASSIC_UDP_LIMIT, False, False, b""
    limit = key[at] << 8 | key[at + 1]
    do = key[at + 2] == 0x44  # "D"
    nsid = key[at + 3 : at + 4] == b"N"
    at += 3 + nsid
    return True, limit, do, nsid, key[at + 1 :]


def ecs_sound(option: bytes) -> bool:
    """Whether ``query.parse_query`` accepts this ECS option's data (RFC 7871 section
    7.1.1): then it is also, octet for octet, what the reply echoes with scope 0."""
    if len(option) < 4 or option[0] or option[3]:
        return False
    family, source = option[1], option[2]
    if family not in (1, 2) or source > (32 if family == 1 else 128):
        return False
    if len(option) != 4 + (source + 7) // 8:
        return False
    return not (source & 7 and option[-1] & (0xFF >> (source & 7)))


# --- the data ---------------------------------------------------------------------------


class ClientBlocks:
    """One question's replies that depend on the client, by the address block that decided them.

    Without ECS, a geo or subnet answer depends on the packet's source
    address, but only through the rule it lands on: ``geo.decide`` computes the
    largest block around the address in which every address gets the same
    decision (the ECS scope it would claim, RFC 7871 section 7.2.1).  Keyed by
    that block, one reply serves every resolver in it, not just one address,
    so a new resolver of a known network is a cache hit.  Blocks are per
    address family: a scope says nothing about the other family.
    """

    __slots__ = ("ends", "entries", "found", "starts")

    def __init__(self) -> None:
        self.entries: dict[tuple[int, int, int], Entry] = {}
        #: Per family (index 0 IPv4, 1 IPv6): the blocks' first addresses in order, and
        #: in the same order their ends (past the last address) and entries.
        self.starts: tuple[list[int], list[int]] = ([], [])
        self.ends: tuple[list[int], list[int]] = ([], [])
        self.found: tuple[list[Entry], list[Entry]] = ([], [])

    def find(self, address: Address) -> Entry | None:
        return self.find_value(address.version, int(address))

    def find_value(self, version: int, value: int) -> Entry | None:
        """``find`` for the address ``value`` of IP ``version`` (4 or 6), as an integer.

        Blocks of one question never overlap (each is where one decision holds,
        ``geo.decide``, and a larger block in which every address gets the same
        decision would have been found instead of a smaller one inside it), so the
        block that holds ``value`` is the last one starting at or before it: one
        bisection, whatever the number of blocks and prefix lengths.  (Were two to
        overlap, a miss here costs only the full path.)
        """
        side = 1 if version == 6 else 0
        at = bisect_right(self.starts[side], value) - 1
        if at >= 0 and value < self.ends[side][at]:
            return self.found[side][at]
        return None

    def add(self, address: Address, prefix: int, entry: Entry) -> None:
        bits = address.max_prefixlen
        prefix = max(0, min(prefix, bits))
        key = (address.version, prefix, int(address) >> (bits - prefix))
        side = 1 if address.version == 6 else 0
        start = key[2] << (bits - prefix)
        starts = self.starts[side]
        at = bisect_left(starts, start)
        if key in self.entries:
            while self.ends[side][at] != start + (1 << (bits - prefix)):
                at += 1  # a block starting here too (only were blocks to overlap)
            self.found[side][at] = entry
        else:
            starts.insert(at, start)
            self.ends[side].insert(at, start + (1 << (bits - prefix)))
            self.found[side].insert(at, entry)
        self.entries[key] = entry

    def __len__(self) -> int:
        return len(self.entries)


class Fold:
    """A known question in one kind of query, found by its octets folded to lower case.

    A resolver that randomises the letter case (0x20) or sends each client's own ECS
    network asks one question in ever new octets.  ``Folds.fold`` finds it by the
    query's octets after the flags, lower-cased, and for ECS without the address
    octets at the end (``cut`` of them): one slice, one ``bytes.lower`` (ASCII letters
    only, as DNS compares names, RFC 4343 section 3) and one lookup instead of a scan.
    Lower-casing also folds octets that are not letters of the name (qtype, the OPT
    record, the ECS option's head), so ``after`` holds those exactly and is compared
    when it holds a letter.  ``entry`` is the keyed reply to personalise, or ``blocks``
    the question's ``ClientBlocks`` that an ECS network's block is found in (then the
    address is spliced in, as ``ReplyCache.splice`` does).  ``scanned`` is the ``question_key`` of
    the query it was made from (``Handler.key``: the stages read its question).
    """

    __slots__ = ("after", "back", "blocks", "body", "cut", "entry", "heads", "lettered", "mask",
                 "parts", "qend", "scanned", "shift", "side", "size", "slot")

    def __init__(self, data: bytes, scanned: tuple[bytes, int], cut: int,
                 entry: Entry | None, blocks: ClientBlocks | None) -> None:
        self.size = len(data)
        self.qend = scanned[1]
        self.after = data[self.qend - 4 : self.size - cut]
        #: Whether ``after`` holds an octet that ``lower`` folds with another (a letter):
        #: without one, an equal folded key means equal octets and ``after`` is not read.
        self.lettered = self.after.lower() != self.after.upper()
        self.cut = cut
        self.scanned = scanned
        self.entry = entry
        self.blocks = blocks
        #: For ``entry``: its header octets 2-11 by RD | CD >> 3, what follows the
        #: question, and its slot (``wire.personalize`` made ahead).
        reply = entry[0] if entry is not None else bytes(HEADER_LEN)
        self.heads = heads(reply)
        self.body = reply[self.qend :]
        self.slot = entry[1] if entry is not None else 0
        #: ``split`` replies of ``blocks`` by their octets (``FOLD_PARTS``).
        self.parts: dict[bytes, tuple[bytes, ...]] = {}
        #: The address family's index in ``ClientBlocks`` (0 IPv4, 1 IPv6).
        self.side = 0
        self.shift = self.mask = self.back = 0

    def split(self, reply: bytes) -> tuple[bytes, ...]:
        """A block's ``reply`` in the parts a splice puts around the query's octets: the
        header octets 2-11 by RD | CD >> 3, the records up to the ECS address, and what
        follows it; memoised for at most ``FOLD_PARTS`` replies."""
        start = len(reply) - self.back
        parts = (*heads(reply), reply[self.qend : start], reply[start + self.cut :])
        if len(self.parts) < FOLD_PARTS:
            self.parts[reply] = parts
        return parts

    def ecs(self, family: int, source: int, nsid: int) -> None:
        """Set what a splice needs: the address's family and prefix, and the length of the
        NSID option after it in the reply (0 for none)."""
        width = 4 if family == 1 else 16
        self.side = 0 if family == 1 else 1
        self.shift = 8 * (width - self.cut)
        self.mask = 0xFF >> (source & 7) if source & 7 else 0
        self.back = nsid + self.cut


class Folds:
    """A snapshot's ``Fold``s by folded octets (``ReplyCache.folds``), emptied with each
    generation of the keyed cache, so that no fold holds on to replies it let go."""

    __slots__ = ("cuts", "folded")

    def __init__(self) -> None:
        self.folded: dict[bytes, Fold] = {}
        #: The numbers of ECS address octets cut off the keys (0: none), last found first.
        self.cuts: list[int] = []

    def __len__(self) -> int:
        return len(self.folded)

    def clear(self) -> None:
        self.folded = {}

    def fold(self, data: bytes) -> tuple[bytes, int, tuple[bytes, int]] | None:
        """The reply to a UDP query of a known ``Fold``: its reply, slot and key; or None.

        Personalised to the query (ID, RD, CD, letter case) and, for ECS, with the
        query's address spliced into the reply of its block: the bytes ``question_key``
        and the keyed cache or ``splice`` would give, without the scan."""
        n = len(data)
        folded = self.folded
        cuts = self.cuts
        fold = folded.get(data[4 : n - cuts[0]].lower()) if cuts else None
        if fold is None:
            for at in range(1, len(cuts)):
                fold = folded.get(data[4 : n - cuts[at]].lower())
                if fold is not None:  # one place forward: the cuts most found first
                    cuts[at - 1], cuts[at] = cuts[at], cuts[at - 1]
                    break
        if (fold is None or fold.size != n or data[2] & 0xF8
                or (fold.lettered and data[fold.qend - 4 : n - fold.cut] != fold.after)):
            return None
        qend = fold.qend
        if fold.entry is not None:
            return b"".join((data[:2], fold.heads[(data[2] & 1) | (data[3] & 0x10) >> 3],
                             data[HEADER_LEN:qend], fold.body)), fold.slot, fold.scanned
        blocks = fold.blocks
        cut = fold.cut
        if blocks is None or data[n - 1] & fold.mask:
            return None  # bits past SOURCE PREFIX-LENGTH: FORMERR, from the full path
        # ``blocks.find_value`` inline: one bisection
        value = int.from_bytes(data[n - cut :], "big") << fold.shift
        side = fold.side
        at = bisect_right(blocks.starts[side], value) - 1
        if at < 0 or value >= blocks.ends[side][at]:
            return None
        found = blocks.found[side][at]
        parts = fold.parts.get(found[0])
        if parts is None:
            parts = fold.split(found[0])
        return b"".join((data[:2], parts[(data[2] & 1) | (data[3] & 0x10) >> 3],
                         data[HEADER_LEN:qend], parts[4], data[n - cut :], parts[5])
                        ), found[1], fold.scanned

    def remember(self, data: bytes, scanned: tuple[bytes, int], entry: Entry | None,
                 blocks: ClientBlocks | None, nsid: int = 0) -> None:
        """Keep a ``Fold`` for the question of this UDP query, answered by ``entry`` (a
        keyed reply, the query without ECS) or from ``blocks`` (its ECS option last, its
        address spliced into a reply of its question's ``ClientBlocks``; ``nsid`` the
        length of the NSID option the reply ends with).
        Only for a query that holds nothing but the question, an OPT record and ECS and
        NSID options (a COOKIE option, new on every query of some clients, would make a
        fold per query).  At most ``FOLD_LIMIT``, then they start again."""
        key, qend = scanned
        n = len(data)
        if n > EXACT_QUERY_LIMIT:
            return
        at = qend - HEADER_LEN + 1
        if len(key) == at:
            if n != qend or entry is None:
                return
            cut = 0
        else:
            asked = key[at + 3 : at + 4] == b"N"
            ecs = key[at + 4 + asked :]
            if n != qend + 11 + 4 * asked + (4 + len(ecs) if ecs else 0):
                return
            cut = len(ecs) - 4 if ecs else 0
            if (blocks is None) == bool(ecs) or (ecs and (
                    cut < 1 or data[n - cut - 8 : n - cut] != b"\x00\x08"
                    + (4 + cut).to_bytes(2, "big") + ecs[:4])):
                return  # an ECS reply kept per network, or an option after the ECS one
        if len(self.folded) >= FOLD_LIMIT:
            self.folded = {}
        fold = Fold(data, scanned, cut, entry, blocks)
        if blocks is not None:
            fold.ecs(data[n - cut - 3], data[n - cut - 2], nsid)
        self.folded[data[4 : n - cut].lower()] = fold
        if cut not in self.cuts:
            self.cuts.append(cut)


class Retired(list[dict[Any, Any]]):
    """What the caches pushed out (generations, a question's blocks), freed a few entries
    at a time: ``release`` is called by every insert while it is not empty."""

    __slots__ = ()

    def retire(self, part: dict[Any, Any]) -> None:
        """Hand ``part`` over to be released.  If what is still being released is over
        ``RETIRED_LIMIT`` (inserts outran ``RELEASE_STEP``, which no traffic does) it is
        freed at once, so that the memory held stays bounded."""
        if not part:
            return
        if sum(len(held) for held in self) > RETIRED_LIMIT:
            for held in self:
                held.clear()  # a spare dict (ReplyCache.spare_exact) must be empty too
            self.clear()
        self.append(part)

    def release(self) -> None:
        """Free up to ``RELEASE_STEP`` entries; a question's ``ClientBlocks`` is released a
        step at a time too (it may hold 100,000 blocks)."""
        for _ in range(RELEASE_STEP):
            part = self[-1]
            if not part:
                self.pop()
                if not self:
                    return
                continue
            value = part.popitem()[1]
            if isinstance(value, ClientBlocks) and len(value.entries) > RELEASE_STEP:
                self.append(value.entries)
                value.entries = {}


class ReplyCache:
    """One snapshot's prepared replies: ``exact`` the exact-bytes cache, ``keyed`` the rest.

    ``exact`` maps a UDP query's bytes after the ID to ``(reply[2:], slot)``,
    and ``get`` is its ``get``; ``len``, ``in`` and iteration are its own.
    ``keyed`` maps a ``question_key`` key to an ``Entry``, or to the
    question's ``ClientBlocks`` when the reply depends on the client.  A memo,
    not state, bounded whatever is asked: each cache keeps a current and a
    previous generation (``EXACT_LIMIT``, ``KEYED_LIMIT``), and exact bytes
    are admitted on their second sight only (``DOORKEEPER_SLOTS``).  An entry
    is in one generation at a time (a recall moves it), so what a retired
    generation holds is nobody else's.
    """

    __slots__ = ("blocks", "door", "exact", "folds", "get", "keyed", "keyed_previous",
                 "previous", "retired", "spare_exact", "spare_keyed")

    def __init__(self) -> None:
        self.exact: dict[bytes, Entry] = {}
        #: ``exact.get``, bound once per generation: the handler's first lookup.
        self.get = self.exact.get
        self.keyed: dict[bytes, Entry | ClientBlocks] = {}
        #: The previous generations (see ``EXACT_LIMIT``).
        self.previous: dict[bytes, Entry] = {}
        self.keyed_previous: dict[bytes, Entry | ClientBlocks] = {}
        #: Blocks added in this generation of ``keyed`` (``BLOCKS_LIMIT``).
        self.blocks = 0
        self.door: array[int] | None = None
        self.folds = Folds()
        #: Generations pushed out, being released ``RELEASE_STEP`` entries per insert.
        self.retired = Retired()
        #: The dict each cache's next generation starts in: the one retired last, emptied
        #: by ``Retired.release``.  Reused, not new, so that it is an old object to the garbage
        #: collector (a young dict of thousands of entries cost the next collections of the
        #: young generations 2-5 ms each), and already sized (no rehash while it fills).
        self.spare_exact: dict[bytes, Entry] = {}
        self.spare_keyed: dict[bytes, Entry | ClientBlocks] = {}

    def __len__(self) -> int:
        return len(self.exact)

    def __contains__(self, tail: object) -> bool:
        return tail in self.exact

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.exact)

    # --- policy: what is kept, under which key ------------------------------------------

    def recall_exact(self, tail: bytes) -> Entry | None:
        """An exact-bytes entry of the previous generation, moved into the current one."""
        ready = self.previous.pop(tail, None)
        if ready is not None:
            self._keep_exact(tail, ready)
        return ready

    def recall(self, key: bytes) -> Entry | ClientBlocks | None:
        """A keyed entry of the previous generation, moved into the current one."""
        found = self.keyed_previous.pop(key, None)
        if found is not None:
            self._keyed_room()
            self.keyed[key] = found
        return found

    def remember_exact(self, data: bytes, reply: bytes, slot: int,
                       tail: bytes | None = None) -> None:
        """Keep ``reply`` for this exact query (ID aside) if these bytes were seen before: it
        already carries the query's flags and letter case, so the next identical query
        needs only its ID.  Seen once, the bytes only take their doorkeeper slot.  ``tail``
        is ``data[2:]`` when the caller has it (its hash is then computed already)."""
        if len(data) > EXACT_QUERY_LIMIT:
            return
        if tail is None:
            tail = data[2:]
        door = self.door
        if door is None:
            door = self.door = array("q", bytes(8 * DOORKEEPER_SLOTS))
        mark = hash(tail)
        at = mark & _DOOR_MASK
        if door[at] != mark:
            door[at] = mark
            return
        self._keep_exact(tail, (reply[2:], slot))

    def _keep_exact(self, tail: bytes, entry: Entry) -> None:
        if self.retired:
            self.retired.release()
        exact = self.exact
        if len(exact) >= EXACT_LIMIT:
            fresh, self.spare_exact = self.spare_exact, self.previous
            fresh.clear()  # empty already, unless inserts outran RELEASE_STEP
            self.retired.retire(self.previous)
            self.previous = exact
            exact = self.exact = fresh
            self.get = exact.get
        exact[tail] = entry

    def _keyed_room(self) -> None:
        """Start a new generation of ``keyed`` if the current one is full."""
        if self.retired:
            self.retired.release()
        if len(self.keyed) >= KEYED_LIMIT or self.blocks >= BLOCKS_LIMIT:
            fresh, self.spare_keyed = self.spare_keyed, self.keyed_previous
            fresh.clear()  # as in _keep_exact
            self.retired.retire(self.keyed_previous)
            self.keyed_previous, self.keyed, self.blocks = self.keyed, fresh, 0
            self.folds.clear()  # no fold holds on to a generation the cache let go

    def remember_entry(self, key: bytes, entry: Entry) -> None:
        self._keyed_room()
        self.keyed[key] = entry

    def remember_block(self, key: bytes, address: Address, scope: int, entry: Entry) -> None:
        """Keep ``entry`` for every client in ``address``/``scope`` (see ClientBlocks)."""
        self._keyed_room()
        keyed = self.keyed
        blocks = keyed.get(key)
        if not isinstance(blocks, ClientBlocks) or len(blocks) >= BLOCKS_LIMIT:
            if isinstance(blocks, ClientBlocks):
                self.retired.retire(blocks.entries)
            blocks = keyed[key] = ClientBlocks()  # one question's blocks carried over
        blocks.add(address, scope, entry)
        self.blocks += 1

    def remember(
        self, key: bytes, query: Query, message: Message, client: str, entry: Entry
    ) -> bool:
        """Cache a reply under what it depends on; True if it is kept per client block.

        An answer that does not depend on the client is the same for all.
        One that does was decided by the ECS option when the query had one,
        and the option's bytes are already in the key; otherwise by the
        packet's source address, through the block of addresses that all
        get the same decision (``message.scope``, computed by geo.decide for
        the client's own address family), so it is kept in the question's
        ClientBlocks under that block.  (Not by ``scope == 0`` alone: the
        scope is per address family, so an IPv6 client can get scope 0 from
        rules that steer IPv4 clients.)
        """
        has_ecs = query.edns is not None and query.edns.ecs is not None
        if not message.client_dependent or has_ecs:
            self.remember_entry(key, entry)
            return False
        address = client_address(client)
        if address is not None:
            self.remember_block(key, address, message.scope, entry)
        return True

    def remember_fold(self, data: bytes, scanned: tuple[bytes, int], entry: Entry | None,
                      nsid: bytes = b"") -> None:
        """``Folds.remember`` of a UDP query answered by ``entry`` (a keyed reply) or, for
        None, by a splice from its question's ``ClientBlocks`` (``splice``, ``nsid`` as
        it had)."""
        blocks = None
        if entry is None:
            key, at = scanned[0], scanned[1] - HEADER_LEN + 1
            ecs = key[at + 4 + (key[at + 3 : at + 4] == b"N") :] if len(key) > at else b""
            found = self.keyed.get(key[: len(key) - len(ecs) - 1] + b"c" + ecs[1:3])
            if not (ecs and isinstance(found, ClientBlocks)):
                return
            blocks = found
        self.folds.remember(data, scanned, entry, blocks, 4 + len(nsid) if nsid else 0)

    # --- the splice cache: ECS replies by block ------------------------------------------

    @staticmethod
    def ecs_block(query: Query, scanned: tuple[bytes, int] | None
                  ) -> tuple[bytes, Address, bytes] | None:
        """For a query with ECS: (key of its ClientBlocks, ECS address, option bytes echoed).

        A reply to an ECS query echoes the option (RFC 7871 section 7.2.1), so
        its bytes differ per client network; but the decision, and the scope,
        are the same for every network inside the block the scope names (see
        geo.decide).  Replies are therefore also kept by block, per family and
        SOURCE PREFIX-LENGTH (which fix the option's length), and a new network
        in a known block costs a parse and a splice of its address, not a
        decision and a render.
        """
        ecs = query.edns.ecs if query.edns is not None else None
        if scanned is None or ecs is None or not ecs.source_prefix:
            return None
        address = ecs.network.network_address
        echoed = address.packed[: (ecs.source_prefix + 7) // 8]
        option = b"C" + bytes((0, ecs.family, ecs.source_prefix, 0)) + echoed
        if not scanned[0].endswith(option):
            return None
        key = scanned[0][: -len(option)] + b"c" + bytes((ecs.family, ecs.source_prefix))
        return key, address, echoed

    def splice(self, key: bytes, ecs: bytes, nsid: bytes, data: bytes = b"", qend: int = 0
               ) -> Entry | None:
        """The reply to an ECS query whose network is new but whose block is known, made
        without parsing: the block's reply (``ecs_block``) with this query's address
        spliced in, or None.  ``ecs`` is the query's option data (``key_edns``), ``nsid``
        what the reply's NSID option holds (empty when there is none).  Given the query
        ``data`` (and its question's end ``qend``), the reply is also ``wire.personalize``d
        to it, in the same concatenation."""
        n = len(ecs)
        if n < 5 or ecs[0] or ecs[3]:
            return None  # no ECS, SOURCE PREFIX-LENGTH 0 (never kept by block), or malformed
        family, source = ecs[1], ecs[2]
        if family == 1:
            width = 4
        elif family == 2:
            width = 16
        else:
            return None
        # ``ecs_sound`` inline: the address octets SOURCE PREFIX-LENGTH needs, no more, and
        # no bits set past it (RFC 7871 section 7.1.1); a malformed one gets FORMERR.
        if (source > 8 * width or n != 4 + (source + 7) // 8
                or (source & 7 and ecs[-1] & (0xFF >> (source & 7)))):
            return None
        block_key = key[: len(key) - n - 1] + b"c" + ecs[1:3]
        found = self.keyed.get(block_key)
        if found is None and self.keyed_previous and block_key in self.keyed_previous:
            found = self.recall(block_key)
        if not isinstance(found, ClientBlocks):
            return None
        echoed = ecs[4:]
        value = int.from_bytes(echoed, "big") << 8 * (width + 4 - n)
        entry = found.find_value(4 if family == 1 else 6, value)
        if entry is None:
            return None
        reply = entry[0]
        start = len(reply) - (4 + len(nsid) if nsid else 0) - n + 4
        if not data:
            return reply[:start] + echoed + reply[start + n - 4 :], entry[1]
        # ``wire.personalize`` of the spliced reply (the option is past the question)
        return b"".join((
            data[:2],
            bytes(((reply[2] & 0xFE) | (data[2] & 0x01), (reply[3] & 0xEF) | (data[3] & 0x10))),
            reply[4:HEADER_LEN], data[HEADER_LEN:qend], reply[qend:start], echoed,
            reply[start + n - 4 :],
        )), entry[1]


def echo_start(reply: bytes, query: Query, echoed: bytes, nsid: bytes) -> int | None:
    """Where the echoed ECS address starts in ``reply``; None if it is not where expected.

    The option is the OPT record's first, and only NSID (ours: ``nsid``) may
    follow it (wire.render), so the address ends where the NSID option
    begins; the option's code, length, family and source prefix must precede it.
    """
    edns = query.edns
    if edns is None or edns.ecs is None:
        return None
    tail = 4 + len(nsid) if edns.nsid and nsid else 0
    start = len(reply) - tail - len(echoed)
    head = (OPTION_ECS.to_bytes(2, "big") + (4 + len(echoed)).to_bytes(2, "big")
            + bytes((0, edns.ecs.family, edns.ecs.source_prefix)))
    return start if reply[start - 8 : start - 1] == head else None

def echo(reply: bytes, query: Query, echoed: bytes, nsid: bytes) -> bytes:
    """``reply`` (kept for another network of the same block) echoing this query's ECS
    address; the same length, so nothing else in the message moves."""
    start = echo_start(reply, query, echoed, nsid)
    assert start is not None, "only replies with the option in place are kept by block"
    return reply[:start] + echoed + reply[start + len(echoed) :]
