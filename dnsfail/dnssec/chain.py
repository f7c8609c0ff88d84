"""A zone's traditional NSEC chain (RFC 4034 section 4), for flood denial (``flood``).

Compact denial (RFC 9824) costs one new signature per new nonexistent name;
a chain of the zone's own names, signed once per validity window, denies any
number of names with signatures already made.  ``Chain`` holds one zone
object's chain:

* owners: every name that exists in the zone (static and dynamic names,
  wildcard owners, the apex, delegation points), nothing below a delegation
  (RFC 4035 section 2.3: glue is not authoritative), no empty non-terminal
  (it owns no RRset: it is covered by the NSEC before it, whose next name is
  below it, RFC 4035 section 3.1.3.2's "empty non-terminal" case);
* canonical order (RFC 4034 section 6.1): by labels from the root, each
  label's lower-case octets compared as unsigned numbers, a name before its
  children; the last NSEC's next name is the apex;
* truthful type bitmaps (``answer.types_at``: a dynamic type even while all
  its pools are down, DNSKEY/CDS/CDNSKEY at the apex, RRSIG and NSEC
  everywhere); at a delegation point NS, DS where the zone holds one, RRSIG
  and NSEC, and not the glue that may sit at the cut (RFC 4035 section 2.3);
* TTL ``zone.negative_ttl``, as the compact NSEC's (RFC 4034 section 4, RFC
  2308 section 3).

``proof`` gives the NXDOMAIN proof of RFC 4035 section 3.1.3.2: the NSEC
covering the name and the NSEC covering the wildcard at its closest encloser
(one record if the same), the encloser being what a validator derives from
the covering NSEC (the longer common ancestor of the name with its owner and
with its next name).  ``covering`` is the NSEC whose owner sorts before a name
and whose next name after it: the next closer name's proof of a wildcard
answer (RFC 4035 section 3.1.3.3).  ``record`` gives an NSEC's wire form and
its RRSIGs, signed on first use and kept for the window, so a chain costs at
most one signature per owner (per key) per window.

Zones of more than ``CHAIN_NAME_LIMIT`` names build no chain (``build``
returns None) and stay with compact denial.

Pure: signatures come from ``sign.Signer``.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable

from dnsfail.dnssec.answer import types_at
from dnsfail.dnssec.records import label_count, name_wire, type_bitmap
from dnsfail.dnssec.sign import Signer, Window
from dnsfail.model import Opaque, RRset, RRType, Zone

#: Zones with more owners than this build no chain (they stay with compact denial): the
#: chain is built in the answering process the first time a flood needs it, about 17 us
#: and 600 octets an owner (5,000 owners: some 80 ms once per zone object and process,
#: 3 MB, measured on a loaded 2-core VM), and a zone of a million packed addresses would
#: stall the answering process for seconds.
CHAIN_NAME_LIMIT = 5_000
_RR = struct.Struct("!HHIH")
_DYNAMIC_TYPES = (RRType.A, RRType.AAAA)
_WILDCARD = "*"
#: ``Chain.sources`` entries kept (emptied when full): one per gap and encloser depth met.
_SOURCE_MEMO = 65536
_uncached_wire = name_wire.__wrapped__

#: A name's labels from the root, each its lower-case octets as a latin-1 string (one
#: character per octet, so strings compare as the octets do): tuples of these sort in
#: canonical order (RFC 4034 section 6.1), and a name whose text needs no escapes has
#: its own text's labels as its key (``text_key``).
Key = tuple[str, ...]


def canonical_key(wire: bytes) -> Key:
    """The ``Key`` of a lower-case uncompressed wire name."""
    labels = []
    i = 0
    length = wire[0]
    while length:
        labels.append(wire[i + 1 : i + 1 + length].decode("latin-1"))
        i += length + 1
        length = wire[i]
    labels.reverse()
    return tuple(labels)


def text_key(qname: str) -> Key:
    """The ``Key`` of a lower-case absolute name whose text holds no escapes (what
    ``dns.template.qname_text`` gives): its labels, reversed."""
    return tuple(qname.split(".")[-2::-1])


def _below_cut(zone: Zone, name: str) -> bool:
    """Whether a proper ancestor of ``name`` below the apex is a delegation point."""
    cuts, origin = zone.cuts, zone.origin
    rest = name
    while rest != origin and "." in rest[:-1]:
        rest = rest[rest.index(".") + 1 :] or "."
        if rest in cuts:
            return True
    return False


def owners(zone: Zone) -> Iterable[str]:
    """The names that own an NSEC in ``zone``'s chain (see the module doc), unordered:
    the owners of RRsets (``zone.nodes`` holds no empty non-terminal; its packed part
    is listed without decoding a record) and of dynamic records, and the apex."""
    for name in {zone.origin, *zone.nodes, *(name for name, _rtype in zone.dynamic)}:
        if name == zone.origin or not _below_cut(zone, name):
            yield name


def chain_types(zone: Zone, name: str) -> frozenset[int]:
    """The NSEC type bitmap's types at an owner of the chain (``answer.types_at``: at a
    delegation point NS, DS if any, RRSIG, NSEC)."""
    return types_at(zone, name)


def size_hint(zone: Zone) -> int:
    """An upper bound on the chain's length that costs no walk of the names: owners with
    data (in the dict and the packed store), dynamic records and the apex."""
    return len(zone.nodes) + len(zone.dynamic) + 1


class Chain:
    """One zone object's NSEC chain in canonical order, and its RRSIGs for one window."""

    __slots__ = ("keys", "labels", "names", "rdatas", "records", "shared", "sigs", "sources",
                 "ttl", "window", "wires", "zone")

    def __init__(self, zone: Zone, names: Iterable[str]) -> None:
        self.zone = zone
        ordered = sorted((canonical_key(w), n, w) for n, w in
                         ((n, _uncached_wire(n)) for n in names))
        self.keys: list[Key] = [k for k, _, _ in ordered]
        self.names = [n for _, n, _ in ordered]
        #: The labels each owner shares with its next name: every name the NSEC covers
        #: shares at least these (``proof`` looks further only past them).
        self.shared = [_common(k, self.keys[(i + 1) % len(ordered)])
                       for i, k in enumerate(self.keys)]
        #: ``proof``'s wildcard NSEC by (covering NSEC, encloser labels), bounded by
        #: ``_SOURCE_MEMO``.
        self.sources: dict[tuple[int, int], int | None] = {}
        #: Each owner's uncompressed lower-case wire name and label count (RFC 4034 3.1.3).
        self.wires = [w for _, _, w in ordered]
        self.labels = [label_count(n) for n in self.names]
        self.ttl = zone.negative_ttl
        bitmaps: dict[frozenset[int], bytes] = {}
        self.rdatas: list[bytes] = []
        for i, name in enumerate(self.names):
            types = chain_types(zone, name)
            bitmap = bitmaps.get(types)
            if bitmap is None:
                bitmap = bitmaps[types] = type_bitmap(types)
            self.rdatas.append(self.wires[(i + 1) % len(ordered)] + bitmap)
        #: Each NSEC record as octets (uncompressed owner, type, class, TTL, RDATA).
        self.records = [w + _RR.pack(RRType.NSEC, 1, self.ttl, len(r)) + r
                        for w, r in zip(self.wires, self.rdatas, strict=True)]
        #: The RRSIG records (without owner: a pointer goes before each) by index, for
        #: ``window``; emptied when the window moves.
        self.sigs: dict[int, tuple[bytes, ...]] = {}
        self.window: Window = (0, 0)

    def __len__(self) -> int:
        return len(self.keys)

    def covering(self, key: Key) -> int | None:
        """The index of the NSEC whose owner sorts at or before ``key`` and whose next name
        after it (the last wraps to the apex), or None if ``key`` is not below the apex."""
        i = bisect.bisect_right(self.keys, key) - 1
        return i if i >= 0 else None

    def proof(self, key: Key) -> tuple[int, ...] | None:
        """The NXDOMAIN proof of RFC 4035 section 3.1.3.2 for the name of ``key``: the
        NSEC covering it, then the NSEC covering ``*.<closest encloser>`` unless the same;
        None when the chain says the name or that wildcard exists (the zone has changed
        under the caller: compact denial answers)."""
        keys = self.keys
        i = bisect.bisect_right(keys, key) - 1
        if i < 0 or keys[i] == key:
            return None
        # The closest encloser, as a validator derives it: the longer common ancestor with
        # the owner or the next name, both at least ``shared[i]`` labels (RFC 4035 5.4).
        encloser = self.shared[i]
        owner, following = keys[i], keys[(i + 1) % len(keys)]
        while encloser < len(key) and (
                (encloser < len(owner) and owner[encloser] == key[encloser])
                or (encloser < len(following) and following[encloser] == key[encloser])):
            encloser += 1
        memo = (i, encloser)
        j = self.sources.get(memo, -1)
        if j == -1:
            source = (*key[:encloser], _WILDCARD)
            j = bisect.bisect_right(keys, source) - 1
            if j < 0 or keys[j] == source:
                j = None
            if len(self.sources) >= _SOURCE_MEMO:
                self.sources = {}
            self.sources[memo] = j
        if j is None:
            return None
        return (i,) if j == i else (i, j)

    def wildcard_nodata(self, key: Key) -> tuple[int, ...] | None:
        """The NODATA proof of RFC 4035 section 3.1.3.4 for a name a wildcard covers that
        lacks the type asked: the NSEC covering the name (hence its next closer name,
        which sorts between the same two owners) and the NSEC at ``*.<closest
        encloser>``, whose bitmap the caller knows lacks the type; None if the chain
        holds no such wildcard."""
        keys = self.keys
        i = bisect.bisect_right(keys, key) - 1
        if i < 0 or keys[i] == key:
            return None
        owner, following = keys[i], keys[(i + 1) % len(keys)]
        encloser = max(_common(key, owner), _common(key, following))
        source = (*key[:encloser], _WILDCARD)
        j = bisect.bisect_right(keys, source) - 1
        if j < 0 or keys[j] != source:
            return None
        return (i,) if j == i else (i, j)

    def signatures(self, i: int, signer: Signer, window: Window) -> tuple[bytes, ...]:
        """The RRSIG records of NSEC ``i`` for ``window`` without their owner (one per key:
        type, class, TTL, RDLENGTH, RDATA), signed on first use in the window."""
        if window != self.window:
            self.sigs, self.window = {}, window
        found = self.sigs.get(i)
        if found is None:
            rdatas = signer.sign_wire(self.wires[i], self.labels[i], RRType.NSEC, self.ttl,
                                      self.rdatas[i], window)
            found = self.sigs[i] = tuple(_RR.pack(RRType.RRSIG, 1, self.ttl, len(s)) + s
                                         for s in rdatas)
        return found


    def proof_rrsets(self, name: str, signer: Signer, window: Window
                     ) -> tuple[RRset, ...] | None:
        """``proof`` of ``name`` (any text form) as the NSEC RRsets and their RRSIGs, for
        the full signed path (``answer.signed_answer``), or None as ``proof``."""
        found = self.proof(canonical_key(name_wire(name)))
        if found is None:
            return None
        out: list[RRset] = []
        for i in found:
            sigs = self.signatures(i, signer, window)
            out += (RRset(self.names[i], RRType.NSEC, self.ttl, (Opaque(self.rdatas[i]),)),
                    RRset(self.names[i], RRType.RRSIG, self.ttl,
                          tuple(Opaque(s[_RR.size :]) for s in sigs)))
        return tuple(out)


def _common(a: Key, b: Key) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def build(zone: Zone, limit: int = CHAIN_NAME_LIMIT) -> Chain | None:
    """``zone``'s chain, or None for a zone of more than ``limit`` names (one of more than
    twice that many records' owners is not walked at all: glue and the like make the
    count of owners only an upper bound)."""
    if size_hint(zone) > 2 * limit:
        return None
    names = list(owners(zone))
    if len(names) > limit:
        return None
    return Chain(zone, names)
