"""The reply cache: one snapshot's prepared replies, their keys, limits and policy.

Answers are a pure function of the snapshot and the question, so each
``state.Snapshot`` carries one ``ReplyCache`` and a new snapshot starts with
an empty one: no invalidation logic.  Four caches, fastest first:

* exact bytes: a UDP query's bytes after its ID (``data[2:]``) -> the finished
  reply but for its ID.  A resolver repeating a question sends the same bytes
  but for the ID, so the answer costs one lookup and one concatenation.  The
  ``ReplyCache`` *is* this dict, so the handler reaches it with no attribute
  lookup more than a plain dict would cost.
* key: ``question_key``'s key -> a reply independent of ID, RD/CD and letter
  case, which ``wire.personalize`` gives the query's.
* block: a question whose answer depends on the packet's source address ->
  its ``ClientBlocks``, replies by the address block that decided them.
* splice: an ECS query's reply kept by block, and given another network's
  address of the same block by splicing it in (``ecs_block``, ``echo``).

Every reply is stored with its slot in the handler's query counters
(``dns.stats.QueryStats``), so a hit costs one list increment.

Part of the core: it imports ``dns.query`` (the constants of the wire) and
``model``, no I/O, nothing from ``state``, ``steering`` or the handler.
"""

from __future__ import annotations

import functools
import ipaddress

from dnsfail.dns.query import (
    CLASSIC_UDP_LIMIT,
    HEADER_LEN,
    OPTION_ECS,
    OPTION_NSID,
    TCP_LIMIT,
    UDP_PAYLOAD,
    Query,
)
from dnsfail.model import Message

#: Replies kept per cache (each of exact and keyed, and each question's blocks) before
#: it is emptied and refilled.
CACHE_LIMIT = 50_000
#: Largest query whose exact bytes are remembered: real queries are a few hundred octets,
#: and a key of up to 64 KiB each would let unique padded queries hold gigabytes in a
#: cache of ``CACHE_LIMIT`` entries.
EXACT_QUERY_LIMIT = 512

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
    key = data[HEADER_LEN : i + 1].lower() + data[i + 1 : qend]
    arcount = data[11] | data[10] << 8
    if arcount == 0:
        return (key + transport, qend) if qend == n else None
    if arcount != 1 or n < qend + 11 or data[qend : qend + 3] != b"\x00\x00\x29":
        return None
    rdlen = data[qend + 9] << 8 | data[qend + 10]
    if qend + 11 + rdlen != n or data[qend + 6]:  # EDNS version other than 0
        return None
    j = qend + 11
    nsid = ecs = b""
    while j < n:
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
    payload = data[qend + 3] << 8 | data[qend + 4]
    limit = TCP_LIMIT if tcp else min(max(payload, CLASSIC_UDP_LIMIT), UDP_PAYLOAD)
    do = b"D" if data[qend + 7] & 0x80 else b"E"
    return key + transport + limit.to_bytes(2, "big") + do + nsid + ecs, qend


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

    __slots__ = ("entries", "prefixes")

    def __init__(self) -> None:
        #: Prefix lengths in use, per IP version, longest first (the most specific wins,
        #: though blocks of one question never overlap: each is where one decision holds).
        self.prefixes: dict[int, list[int]] = {4: [], 6: []}
        self.entries: dict[tuple[int, int, int], Entry] = {}

    def find(self, address: Address) -> Entry | None:
        value, bits = int(address), address.max_prefixlen
        for prefix in self.prefixes[address.version]:
            entry = self.entries.get((address.version, prefix, value >> (bits - prefix)))
            if entry is not None:
                return entry
        return None

    def add(self, address: Address, prefix: int, entry: Entry) -> None:
        bits = address.max_prefixlen
        prefix = max(0, min(prefix, bits))
        prefixes = self.prefixes[address.version]
        if prefix not in prefixes:
            prefixes.append(prefix)
            prefixes.sort(reverse=True)
        self.entries[(address.version, prefix, int(address) >> (bits - prefix))] = entry

    def __len__(self) -> int:
        return len(self.entries)


class ReplyCache(dict[bytes, Entry]):
    """One snapshot's prepared replies: itself the exact-bytes cache, ``keyed`` the rest.

    As a dict it maps a UDP query's bytes after the ID to ``(reply[2:], slot)``.
    ``keyed`` maps a ``question_key`` key to an ``Entry``, or to the
    question's ``ClientBlocks`` when the reply depends on the client.  A memo,
    not state: emptied whole when full.
    """

    __slots__ = ("keyed",)

    def __init__(self) -> None:
        super().__init__()
        self.keyed: dict[bytes, Entry | ClientBlocks] = {}

    # --- policy: what is kept, under which key ------------------------------------------

    def remember_exact(self, data: bytes, reply: bytes, slot: int) -> None:
        """Keep ``reply`` for this exact query (ID aside): it already carries the query's
        flags and letter case, so the next identical query needs only its ID."""
        if len(data) > EXACT_QUERY_LIMIT:
            return
        if len(self) >= CACHE_LIMIT:
            self.clear()
        self[data[2:]] = (reply[2:], slot)

    def remember_entry(self, key: bytes, entry: Entry) -> None:
        keyed = self.keyed
        if len(keyed) >= CACHE_LIMIT:
            keyed.clear()
        keyed[key] = entry

    def remember_block(self, key: bytes, address: Address, scope: int, entry: Entry) -> None:
        """Keep ``entry`` for every client in ``address``/``scope`` (see ClientBlocks)."""
        keyed = self.keyed
        if len(keyed) >= CACHE_LIMIT:
            keyed.clear()
        blocks = keyed.get(key)
        if not isinstance(blocks, ClientBlocks) or len(blocks) >= CACHE_LIMIT:
            blocks = keyed[key] = ClientBlocks()
        blocks.add(address, scope, entry)

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

    @staticmethod
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

    @staticmethod
    def echo(reply: bytes, query: Query, echoed: bytes, nsid: bytes) -> bytes:
        """``reply`` (kept for another network of the same block) echoing this query's ECS
        address; the same length, so nothing else in the message moves."""
        start = ReplyCache.echo_start(reply, query, echoed, nsid)
        assert start is not None, "only replies with the option in place are kept by block"
        return reply[:start] + echoed + reply[start + len(echoed) :]
