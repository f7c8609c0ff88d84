"""Packed zone data: the plain address records of a big zone without a Python object each.

Owns ``PackedStore`` (owner -> one A or AAAA RRset, packed into one blob
with an open-addressing index), ``PackedBuilder`` (what the strict reader hands a
record of the commonest shape to while it reads, so that no per-record object is
ever made for it), and the two views the resolver reads a zone through:
``ZoneNodes`` (``Zone.nodes``) and ``ZoneNames`` (``Zone.names``), each the
zone's ordinary dict plus the packed store.

Why: a zone of 1,000,000 A records as ``RRset``/``A``/dict/mapping-proxy objects
is about a kilobyte per record, and pickling it to each ``--workers`` process
costs most of a minute.  Packed, a record is its owner's relative name and its
wire rdata (about 25 octets plus 8 of index), the blob pickles as two buffers,
and a lookup decodes the one RRset it finds (the reply caches keep repeats).

Only records that need no zone-wide judgement are packed: a key of lower-case
labels (no wildcard, no apex, no absolute name) holding one ``A`` or ``AAAA``
record of plain values, no ``octodns`` or ``dynamic`` keys.  Whatever else the
zone holds is built as before; ``load`` checks that no packed owner is also an
owner of the other records, and otherwise loads the whole file the general way,
so every problem is found and worded as it always was.

Imports ``model``, ``located`` (the reader's sink protocol), ``rdata`` (the IPv4
text rule) and ``records`` (the TTL rules); it must not import a reader, ``rules``,
``soa`` or ``load``.
"""

from __future__ import annotations

import ipaddress
import pickle
import re
import struct
import zlib
from array import array
from collections.abc import Iterator, Mapping, Sequence, Set
from types import MappingProxyType
from typing import SupportsIndex

from dnsfail.model import AAAA, A, RRset, RRType
from dnsfail.zonefile.located import SINK_DUPLICATE, SINK_LEFT, SINK_TAKEN
from dnsfail.zonefile.rdata import IPV4_TEXT_RE
from dnsfail.zonefile.records import DEFAULT_TTL, MAX_TTL

#: A key the builder takes: lower-case labels of 1..63 octets of ``[a-z0-9_-]``, relative.
_KEY_RE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
#: Most values of one packed RRset; a longer list goes the general way (which checks its size).
MAX_PACKED_VALUES = 64
#: Farthest an entry may sit from its home slot.  An index at most half full keeps its
#: runs short (a few slots), but a file can be written so that its names' crc32 collide
#: (crc32 is no keyed hash): past this, the builder gives up and the file is read the
#: general way (Python's dicts, whose hash is seeded per process).  So a lookup, which
#: may stop here too, never walks far, however the names were chosen.
MAX_PROBES = 64
#: Smallest index: a power of two, at most half full.
_MIN_SLOTS = 64
#: An RRset's head in the blob: type and TTL.
_HEAD = struct.Struct("!HI")
#: The types packed, and their rdata: A as its text after a length octet, AAAA as wire.
_TYPES = ("A", "AAAA")
_LENGTH = tuple(bytes((n,)) for n in range(256))
_SHORT_LENGTH = tuple(bytes((0, n)) for n in range(256))


def _ipv6(raw: bytes) -> AAAA:
    return AAAA(str(ipaddress.IPv6Address(raw)))


class PackedStore:
    """Relative owner name -> one packed A or AAAA RRset, or an empty non-terminal.

    The blob is a run of entries ``[key length][key][value length, 2 octets][value]``;
    a value is an RRset's type and TTL (``_HEAD``) and its rdatas back to back (see
    ``_TYPES``), or nothing for an empty non-terminal (RFC 4592 section 2.2.2).  ``slots`` holds
    1 + the offset of each live entry at ``crc32(key)`` (linear probing), 0 when free:
    ``crc32`` rather than ``hash`` so the index means the same in every process.
    Immutable once built (``PackedBuilder.store``).
    """

    __slots__ = ("data", "empty_non_terminals", "fingerprint", "origin", "owners", "records",
                 "slots", "suffix")

    def __init__(self, origin: str, data: bytes | bytearray, slots: array[int] | memoryview,
                 owners: int, empty_non_terminals: int, records: int,
                 fingerprint: int = 0) -> None:  # fmt: skip
        self.origin = origin
        self.suffix = "." + origin
        self.data = data
        self.slots = slots
        #: Names with an RRset, and empty non-terminals (which ``names`` holds, ``nodes`` not).
        self.owners = owners
        self.empty_non_terminals = empty_non_terminals
        #: Rdatas stored, for ``Zone.record_count``.
        self.records = records
        #: Sum of the owners' entry checksums, whatever their order: content that differs
        #: almost always differs here, so a reload need not compare a million entries.
        self.fingerprint = fingerprint

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[object, tuple[object, ...]]:
        # Two buffers and a few numbers: a million records pickle in milliseconds.  From
        # protocol 5 they are ``PickleBuffer``s, which a pickler with a ``buffer_callback``
        # (the workers' channel) leaves out of the pickle: sent as they are, received into
        # the buffers the store then uses, so neither side holds a copy (PEP 574).
        data: object = self.data
        slots: object = self.slots
        if int(protocol) >= 5:
            data, slots = pickle.PickleBuffer(self.data), pickle.PickleBuffer(self.slots)
        return _unpickled, (self.origin, data, slots, self.owners, self.empty_non_terminals,
                            self.records, self.fingerprint)  # fmt: skip

    def _value_at(self, name: str) -> int:
        """Offset of ``name``'s value length in ``data``, or -1 if it is not stored."""
        suffix = self.suffix
        if not self.owners + self.empty_non_terminals or not name.endswith(suffix):
            return -1
        key = name[: -len(suffix)].encode("ascii", "replace")
        return _find(self.data, self.slots, key)

    def rrsets(self, name: str) -> Mapping[RRType, RRset] | None:
        """``name``'s RRsets by type; None if it is not stored or an empty non-terminal."""
        suffix = self.suffix
        if not self.owners or not name.endswith(suffix):
            return None
        data = self.data
        at = _find(data, self.slots, name[: -len(suffix)].encode("ascii", "replace"))
        if at < 0 or (data[at] == 0 and data[at + 1] == 0):
            return None
        return _decode(name, data, at)

    def exists(self, name: str) -> bool:
        """Whether ``name`` is an owner or an empty non-terminal here."""
        suffix = self.suffix
        return name.endswith(suffix) and _find(
            self.data, self.slots, name[: -len(suffix)].encode("ascii", "replace")) >= 0

    def entries(self) -> Iterator[tuple[str, bytes]]:
        """(owner name, packed value) of every live entry (b"" for an empty non-terminal)."""
        data, origin = self.data, self.origin
        for slot in self.slots:
            if slot:
                at = slot - 1
                size = data[at]
                name = data[at + 1 : at + 1 + size].decode("ascii") + "." + origin
                at += 1 + size
                length = data[at] << 8 | data[at + 1]
                yield name, bytes(data[at + 2 : at + 2 + length])

    def holding(self, address: str) -> Iterator[str]:
        """Owners whose RRset may hold ``address`` (normal text): every one that does, found
        by a scan of the blob for its packed form, without decoding the others."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return
        needle = ip.packed if ip.version == 6 else _LENGTH[len(address)] + address.encode()
        if needle not in self.data:
            return
        for name, value in self.entries():
            if needle in value:
                yield name

    def same_content(self, other: PackedStore) -> bool:
        """Whether both hold the same entries, whatever the order they were read in."""
        if (self.origin, self.owners, self.empty_non_terminals, self.records,
                self.fingerprint) != (other.origin, other.owners, other.empty_non_terminals,
                                      other.records, other.fingerprint):  # fmt: skip
            return False
        if self.data == other.data:
            return True
        for name, value in self.entries():
            at = other._value_at(name)
            if at < 0:
                return False
            length = other.data[at] << 8 | other.data[at + 1]
            if other.data[at + 2 : at + 2 + length] != value:
                return False
        return True


def _unpickled(origin: str, data: bytes | bytearray, slots: array[int] | bytearray | memoryview,
               owners: int, empty_non_terminals: int, records: int,
               fingerprint: int) -> PackedStore:  # fmt: skip
    """A store from its pickle: ``slots`` as pickled, or its octets (``PickleBuffer``), read
    in place as the index's 32-bit slots."""
    if not isinstance(slots, array):
        slots = memoryview(slots).cast("B").cast("I")
    if not isinstance(data, bytes | bytearray):
        data = bytearray(data)
    return PackedStore(origin, data, slots, owners, empty_non_terminals, records, fingerprint)


def _find(data: bytes | bytearray, slots: Sequence[int], key: bytes) -> int:
    """Offset of ``key``'s value length in ``data``, or -1."""
    mask = len(slots) - 1
    slot = home = zlib.crc32(key) & mask
    size = len(key)
    while True:
        at = slots[slot]
        if not at:
            return -1
        if data[at - 1] == size and data.startswith(key, at):
            return at + size
        slot = (slot + 1) & mask
        if (slot - home) & mask > MAX_PROBES:
            return -1


#: ``_find`` for callers that hold a store's ``data`` and ``slots`` and a key already in
#: its form (``dns.template``'s miss path: one call, no ``name.endswith``, no encode).
find_key = _find

_TYPE_A, _TYPE_AAAA = RRType.A, RRType.AAAA


def _decode(name: str, data: bytes | bytearray, at: int) -> Mapping[RRType, RRset]:
    """The RRsets of the value whose length is at ``at``: the hot part of a lookup."""
    end = at + 2 + (data[at] << 8 | data[at + 1])
    rtype, ttl = _HEAD.unpack_from(data, at + 2)
    start = at + 8  # after the length and _HEAD
    if rtype == _TYPE_A:
        size = data[start]
        if start + 1 + size == end:  # the commonest: one address
            rdatas: tuple[A, ...] | tuple[AAAA, ...] = (
                A(data[start + 1 : end].decode("ascii")),
            )
        else:
            addresses: list[A] = []
            while start < end:
                size = data[start]
                addresses.append(A(data[start + 1 : start + 1 + size].decode("ascii")))
                start += 1 + size
            rdatas = tuple(addresses)
        return MappingProxyType({_TYPE_A: RRset(name, _TYPE_A, ttl, rdatas)})
    rdatas = tuple(_ipv6(bytes(data[i : i + 16])) for i in range(start, end, 16))
    return MappingProxyType({_TYPE_AAAA: RRset(name, _TYPE_AAAA, ttl, rdatas)})


class PackedBuilder:
    """Takes records from the strict reader as it reads them and packs them.

    ``take`` is called with the parts of a record in octoDNS's canonical layout
    (see ``strict.read_strict``) and says whether it took it: ``SINK_TAKEN``,
    ``SINK_LEFT`` (the general path reads it), or ``SINK_DUPLICATE`` (a key seen
    twice: the reader gives up, and ``load`` reads the whole file the general way).
    Everything per record is inline: it runs a million times for a big zone.
    """

    def __init__(self, origin: str, expected: int = 0) -> None:
        self.origin = origin
        self.suffix = "." + origin
        size = _MIN_SLOTS
        while size < 2 * expected:
            size *= 2
        self.slots = array("I", bytes(4 * size))
        self.data = bytearray(b"\0")  # offset 0 is never an entry: 0 marks a free slot
        self.used = 0
        self.owners = 0
        self.empty_non_terminals = 0
        self.records = 0
        self.fingerprint = 0
        #: An entry could not be placed within ``MAX_PROBES``: the store is not to be used.
        self.failed = False
        #: TTL text -> packed head of an A RRset (``_head``).
        self._a_heads: dict[str | None, bytes] = {}
        #: Longest one-label key whose name is surely short enough (255 octets, RFC 1035).
        self._one_label = min(63, 255 - len(origin) - 2)
        #: (type, TTL text) -> packed head, so a TTL is parsed once per file.
        self._heads: dict[tuple[str, str | None], bytes | None] = {}

    def _head(self, rtype: str, ttl_text: str | None) -> bytes | None:
        """The packed type and TTL, or None for a TTL the general path must judge."""
        ttl = DEFAULT_TTL if ttl_text is None else int(ttl_text)
        head = _HEAD.pack(RRType[rtype], ttl) if ttl <= MAX_TTL else None
        self._heads[rtype, ttl_text] = head
        return head

    def take_a(self, key: str, ttl_text: str | None, address: str) -> int:
        """``take`` of one A record the reader has checked (``located.Sink.take_a``).

        The commonest case (a new one-label key) is inline: this runs once per record.
        """
        head = self._a_heads.get(ttl_text)
        if head is None:
            head = self._head("A", ttl_text)
            if head is None or len(key) + len(self.origin) + 2 > 255:
                return SINK_LEFT
            self._a_heads[ttl_text] = head
        value = head + _LENGTH[len(address)] + address.encode("ascii")
        kb = key.encode("ascii")
        slots, data = self.slots, self.data
        if "." in key or len(key) > self._one_label or 2 * (self.used + 1) > len(slots):
            return self._counted(kb, value, 1)
        checksum = zlib.crc32(kb)
        mask = len(slots) - 1
        slot = home = checksum & mask
        size = len(kb)
        while at := slots[slot]:
            if data[at - 1] == size and data.startswith(kb, at):
                return self._counted(kb, value, 1)  # an empty non-terminal, or a duplicate
            slot = (slot + 1) & mask
            if (slot - home) & mask > MAX_PROBES:
                return self._counted(kb, value, 1)  # it gives up
        slots[slot] = len(data) + 1
        data += _LENGTH[size] + kb + _SHORT_LENGTH[len(value)] + value
        self.fingerprint += zlib.crc32(value, checksum)
        self.owners += 1
        self.used += 1
        self.records += 1
        return SINK_TAKEN

    def _counted(self, key: bytes, value: bytes, rdatas: int) -> int:
        if len(key) + len(self.origin) + 2 > 255:
            return SINK_LEFT
        taken = self._add(key, value)
        if taken == SINK_TAKEN:
            self.records += rdatas
        return taken

    def take(self, key: str, ttl_text: str | None, rtype: str, values: tuple[str, ...]) -> int:
        if len(key) + len(self.origin) + 2 > 255 or not _KEY_RE.fullmatch(key):
            return SINK_LEFT
        head = self._heads.get((rtype, ttl_text), b"")
        if head == b"":
            if rtype not in _TYPES:
                return SINK_LEFT
            head = self._head(rtype, ttl_text)
        if head is None:
            return SINK_LEFT
        if rtype == "A":
            # The text is the normal form already (``IPV4_TEXT_RE``): stored as it is read,
            # each value after its length, as a <character-string> is (RFC 1035 section 3.3).
            if len(values) == 1:
                text = values[0]
                if not IPV4_TEXT_RE.fullmatch(text):
                    return SINK_LEFT
                value = head + bytes((len(text),)) + text.encode("ascii")
            else:
                if (
                    len(values) > MAX_PACKED_VALUES
                    or len(set(values)) != len(values)
                    or not all(IPV4_TEXT_RE.fullmatch(text) for text in values)
                ):
                    return SINK_LEFT
                value = head + b"".join(bytes((len(t),)) + t.encode("ascii") for t in values)
        else:
            packed = _pack_ipv6(values)
            if packed is None:
                return SINK_LEFT
            value = head + packed
        taken = self._add(key.encode("ascii"), value)
        if taken == SINK_TAKEN:
            self.records += len(values)
        return taken

    def _add(self, key: bytes, value: bytes) -> int:
        data, slots = self.data, self.slots
        mask = len(slots) - 1
        checksum = zlib.crc32(key)
        slot = home = checksum & mask
        size = len(key)
        while at := slots[slot]:
            if data[at - 1] == size and data.startswith(key, at):
                if data[at + size] or data[at + size + 1]:
                    return SINK_DUPLICATE
                self.empty_non_terminals -= 1  # first seen as an ancestor, now an owner
                self.used -= 1
                break
            slot = (slot + 1) & mask
            if (slot - home) & mask > MAX_PROBES:
                self.failed = True
                return SINK_DUPLICATE
        slots[slot] = len(data) + 1
        data.append(size)
        data += key
        data += len(value).to_bytes(2, "big")
        data += value
        self.fingerprint += zlib.crc32(value, checksum)
        self.owners += 1
        self.used += 1
        if 2 * self.used > len(slots):
            self._grow()
        if b"." in key:
            self._ancestors(key)
        return SINK_DUPLICATE if self.failed else SINK_TAKEN

    def _ancestors(self, key: bytes) -> None:
        """The empty non-terminals between ``key`` and the apex (RFC 4592 section 2.2.2)."""
        rest = key
        while b"." in rest:
            rest = rest.split(b".", 1)[1]
            if _find(self.data, self.slots, rest) >= 0:
                return  # it, and so every name above it, is already known
            slots, mask = self.slots, len(self.slots) - 1
            slot = home = zlib.crc32(rest) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
                if (slot - home) & mask > MAX_PROBES:
                    self.failed = True
                    return
            slots[slot] = len(self.data) + 1
            self.data += b"%c%b\0\0" % (len(rest), rest)
            self.used += 1
            self.empty_non_terminals += 1
            if 2 * self.used > len(slots):
                self._grow()

    def _grow(self) -> None:
        old = [at for at in self.slots if at]
        self.slots = slots = array("I", bytes(8 * len(self.slots)))
        mask = len(slots) - 1
        data = self.data
        for at in old:
            size = data[at - 1]
            slot = home = zlib.crc32(data[at : at + size]) & mask
            while slots[slot]:
                slot = (slot + 1) & mask
                if (slot - home) & mask > MAX_PROBES:
                    self.failed = True
            slots[slot] = at

    def has_owner(self, name: str) -> bool:
        """Whether a record was taken for ``name`` (an absolute name)."""
        if not name.endswith(self.suffix):
            return False
        at = _find(self.data, self.slots, name[: -len(self.suffix)].encode("ascii", "replace"))
        return at >= 0 and bool(self.data[at] or self.data[at + 1])

    def store(self) -> PackedStore:
        """The store of what was taken; the builder must not be used after.

        The blob is handed over as it is, not copied to ``bytes``: a copy would be
        a second blob (28 MB for a million records) on top of the zone still being
        served while a reload builds its own.  Nothing writes to it after this."""
        data, self.data = self.data, bytearray(b"\0")
        return PackedStore(self.origin, data, self.slots, self.owners,
                           self.empty_non_terminals, self.records, self.fingerprint)  # fmt: skip


def _pack_ipv6(values: tuple[str, ...]) -> bytes | None:
    """The values' wire form, if each is valid, distinct and unpacks to the same text."""
    out = []
    for text in values:
        try:
            address = ipaddress.IPv6Address(text)
        except ValueError:
            return None
        if str(address) != str(ipaddress.ip_address(text)) or address.scope_id:
            return None
        out.append(address.packed)
    if len(set(out)) != len(out):
        return None
    # Unpacked, each must read back as the general path would write it (RFC 5952 text).
    if any(_ipv6(raw).address != str(ipaddress.ip_address(text))
           for raw, text in zip(out, values, strict=True)):  # fmt: skip
        return None
    return b"".join(out)


EMPTY_STORE = PackedBuilder(".").store()


class ZoneNodes(Mapping[str, Mapping[RRType, RRset]]):
    """``Zone.nodes``: owner -> RRsets by type, from the zone's dict and its packed store.

    No owner is in both (``load`` checks it).  Reads of the dict cost what they
    always did; a packed owner costs an index probe and the decoding of its RRset.
    """

    __slots__ = ("packed", "rest")

    def __init__(self, rest: Mapping[str, Mapping[RRType, RRset]],
                 packed: PackedStore = EMPTY_STORE) -> None:  # fmt: skip
        self.rest = rest
        self.packed = packed

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return ZoneNodes, (self.rest, self.packed)

    def get(self, name: str, default: object = None) -> Mapping[RRType, RRset] | None:  # type: ignore[override]
        node = self.rest.get(name)
        if node is not None:
            return node
        node = self.packed.rrsets(name)
        return node if node is not None else default  # type: ignore[return-value]

    def __getitem__(self, name: str) -> Mapping[RRType, RRset]:
        node = self.get(name)
        if node is None:
            raise KeyError(name)
        return node

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self.rest
        for name, value in self.packed.entries():
            if value:
                yield name

    def __len__(self) -> int:
        return len(self.rest) + self.packed.owners

    def holding(self, address: str) -> Iterator[tuple[str, Mapping[RRType, RRset]]]:
        """(owner, RRsets) of every dict owner, and of the packed owners that may hold
        ``address``: what a search for a static address must look at (``items()`` would
        decode every packed record)."""
        yield from self.rest.items()
        for name in self.packed.holding(address):
            yield name, self[name]

    def with_node(self, name: str, node: Mapping[RRType, RRset]) -> ZoneNodes:
        """A copy with ``name``'s RRsets (kept in the dict part) replaced by ``node``."""
        rest = dict(self.rest)
        rest[name] = node
        return ZoneNodes(MappingProxyType(rest), self.packed)



class ZoneNames(Set[str]):
    """``Zone.names``: every name that exists, empty non-terminals included."""

    __slots__ = ("packed", "rest")

    def __init__(self, rest: frozenset[str], packed: PackedStore = EMPTY_STORE) -> None:
        self.rest = rest
        self.packed = packed

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return ZoneNames, (self.rest, self.packed)

    def __contains__(self, name: object) -> bool:
        return name in self.rest or (isinstance(name, str) and self.packed.exists(name))

    def __iter__(self) -> Iterator[str]:
        yield from self.rest
        for name, _value in self.packed.entries():
            if name not in self.rest:
                yield name

    def __len__(self) -> int:
        return sum(1 for _name in self)
