"""What a reply is counted under: the hash of its class key (BIND's qname, zone, owner).

``RateLimiter`` hashes a reply's class key with the client's block to find
its stream.  The class keys (``account``'s table): a positive answer's qname
and qtype, or its wildcard's owner and qtype (a wildcard answer; BIND counts
it under the owner, so a random-subdomain flood against ``*.zone`` is one
class); NODATA's qname or owner alone; a zone origin for NXDOMAIN and
errors.  Hashes are CRC-32, the same in every process (``hash()`` is salted
per process).  All memos are bounded and emptied when the snapshot changes.

A wildcard answer made from a template (``dns.template``) comes with its
owner: the handler's key is then ``(key, qend, wildcard)``, ``wildcard`` the
template's ``"<owner> <qtype>"`` (``dns.stages.Key``), so a new name under
a wildcard costs no walk of the zone's names; any other path finds the owner
by walking up from the qname (:func:`owner`).
"""

from __future__ import annotations

from collections.abc import Callable
from zlib import crc32

from dnsfail.dns.query import labels_to_text
from dnsfail.dns.stages import Key
from dnsfail.dns.stats import QueryStats
from dnsfail.dns.template import qname_text
from dnsfail.rrl.account import CLASS_NAMES, NODATA, qname_end
from dnsfail.state import Snapshot

#: Questions whose hashes are memoised (by the lower-cased qname's wire form and qtype:
#: at most 257 octets, so at most ~25 MiB); emptied when full.
QUESTION_MEMO = 1 << 16
#: Wildcard owners (``"<owner> <qtype>"`` of a template) whose hashes are memoised: as
#: many as the zones have wildcards and qtypes asked; emptied when full.
WILDCARD_MEMO = 1 << 12
#: Per-class seeds, so that one name in two classes makes two keys.
SEEDS = (0, 0x5BD1E995, 0x1B873593, 0x7FEB352D, 0x68E31DA4)


class ClassKeys:
    """The class key hashes of one process, memoised."""

    __slots__ = ("folded", "snapshot", "stats", "wildcards", "zone_hashes", "zones")

    def __init__(self, stats: QueryStats, snapshot: Callable[[], Snapshot] | None) -> None:
        self.stats = stats
        self.snapshot = snapshot
        self.zones: list[bytes] = []
        #: Hashes of the zone (NXDOMAIN, error classes) by class and QueryStats slot.
        self.zone_hashes: tuple[dict[int, int], ...] = tuple({} for _ in CLASS_NAMES)
        #: Question hashes (qname and qtype, qname) by the lower-cased qname's wire form
        #: and qtype.
        self.folded: dict[bytes, tuple[int, int]] = {}
        #: The same by a template's wildcard (``"<owner> <qtype>"``).
        self.wildcards: dict[str, tuple[int, int]] = {}

    def clear(self) -> None:
        """Forget what a snapshot's names decided (wildcard owners)."""
        self.folded.clear()
        self.wildcards.clear()

    def question(self, data: bytes, slot: int, key: Key = None) -> tuple[int, int]:
        """The hashes of a query's question: (qname and qtype, for answers; qname alone,
        for NODATA), the qname lower-cased, or replaced by the wildcard owner that
        synthesises it."""
        if isinstance(key, tuple):
            if len(key) == 3:
                return self.wildcard(key[2])
            scanned, qend = key[0], key[1]
            end = qend - 5
            folded = scanned[:end - 9]  # the lower-cased qname's wire form and the qtype
            wire = folded[:-2]
        else:
            end = qname_end(data)
            wire = data[12:end + 1].lower()
            folded = wire + data[end + 1:end + 3]
        question = self.folded.get(folded)
        if question is None:
            found = owner(self.snapshot, self.stats, data, slot, end, wire)
            name = found.encode() if found is not None else wire
            question = (crc32(name + data[end + 1:end + 3]), crc32(name, SEEDS[NODATA]))
            if len(self.folded) >= QUESTION_MEMO:
                self.folded.clear()
            self.folded[folded] = question
        return question

    def wildcard(self, wildcard: str) -> tuple[int, int]:
        """:meth:`question` for a template's wildcard (``"<owner> <qtype>"``): the same
        hashes as the walk up from the qname gives."""
        question = self.wildcards.get(wildcard)
        if question is None:
            text, _, qtype = wildcard.rpartition(" ")
            name = text.encode()
            question = (crc32(name + int(qtype).to_bytes(2, "big")),
                        crc32(name, SEEDS[NODATA]))
            if len(self.wildcards) >= WILDCARD_MEMO:
                self.wildcards.clear()
            self.wildcards[wildcard] = question
        return question

    def zone_hash(self, cls: int, slot: int) -> int:
        """The hash of a QueryStats slot's zone origin for class ``cls`` (NXDOMAIN, error),
        memoised (not for a slot the stats do not know yet: it may name a zone later)."""
        zones, keys = self.zones, self.stats.keys
        while len(zones) < len(keys):
            zones.append(keys[len(zones)][0].encode())
        h = crc32(zones[slot] if slot < len(zones) else b"", SEEDS[cls])
        if slot < len(zones):
            self.zone_hashes[cls][slot] = h
        return h


def _qname(data: bytes, end: int, wire: bytes | None) -> str:
    """The text of the qname ending at ``end`` (``wire``: its lower-cased wire form)."""
    name = qname_text(wire if wire is not None else data[12:end + 1].lower())
    if name is not None:
        return name
    labels, i = [], 12  # a label needs escapes: the general conversion
    while i < end:
        labels.append(data[i + 1:i + 1 + data[i]])
        i += data[i] + 1
    return labels_to_text(labels)


def owner(snapshot: Callable[[], Snapshot] | None, stats: QueryStats, data: bytes, slot: int,
          end: int | None = None, wire: bytes | None = None) -> str | None:
    """The wildcard owner (``*.`` + closest encloser, RFC 4592 3.3.1) a qname the zone
    does not hold was answered from; None for a name the zone holds.  ``end`` and
    ``wire`` (the qname's end and its lower-cased wire form) when the caller has them."""
    if snapshot is None or slot >= len(stats.keys):
        return None
    zone = snapshot().zones.get(stats.keys[slot][0])
    if end is None:
        end = qname_end(data)
    if zone is None or end < 0:
        return None
    name, names = _qname(data, end, wire), zone.names
    if name in names:
        return None
    # labels_to_text writes a dot inside a label as \046: every "." separates labels
    while name != ".":
        name = name.partition(".")[2] or "."
        if name in names:
            return "*." + name
    return None
