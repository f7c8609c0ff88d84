"""RRSIGs over canonical RRsets (RFC 4034 sections 3 and 6, RFC 4035 section 2.2).

``Signer.sign`` gives the RRSIG RRset of an RRset: one signature per key of the
zone, over the RRSIG RDATA (signature left out) and the RRset in canonical
form: owner and rdata names in lower case, uncompressed (RFC 4034 6.2), records
sorted by their RDATA octets and duplicates dropped (6.3), each with the
Original TTL, which is the TTL of the RRset as served.  A wildcard expansion is
signed over its source ``*.<closest encloser>`` with the Labels field of the
source (RFC 4034 3.1.3, RFC 4035 5.3.2), so one signature serves every name it
expands to.

The validity window (``window``) is computed from the clock alone, so every
instance computes the same one: inception is the current hour rounded down,
back-dated ``INCEPTION_BACKDATE`` (clients whose clocks run slow still accept
it); expiration is ``VALIDITY`` after inception.  The window moves every
``WINDOW_STEP``, so a signature served is always more than ``VALIDITY`` minus
two hours from expiring, far longer than any TTL we serve.

Signatures are kept by (owner, type, TTL, rdatas, window) in a bounded cache
that outlives snapshots: a health flip back to a set of addresses seen before,
a drain and its end, or a reload of unchanged data cost no new signature.

Pure but for the signature itself (``crypto``) and the clock it is given; the
``mangle`` hook exists for tests' negative controls only (a tampered signature
that validators must reject).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from dnsfail.dnssec.keys import Key
from dnsfail.dnssec.records import label_count, name_wire, rdata_wire, rrsig_head
from dnsfail.model import Opaque, RRClass, RRset, RRType

#: The window moves once an hour: inception is rounded down to it, so instances agree.
WINDOW_STEP = 3600
#: Inception is back-dated this much, for validators whose clocks run slow (RFC 6781 4.4.2).
INCEPTION_BACKDATE = 3600
#: Expiration is this long after inception (a week, as BIND's default signatures are
#: valid 30 days and Knot's 14: ours are re-made every hour, so a week is ample).
VALIDITY = 7 * 86400
#: Signatures kept per generation of the cache (two generations, as the reply cache:
#: what is still asked for is carried over, so the cache never holds more than twice
#: this, about 300 octets an entry).
SIGNATURE_LIMIT = 100_000

#: ``sign_wire``'s signatures of single names kept per generation (two generations): a
#: flood of new names is one signature each whatever this is; it bounds the memory a
#: flood leaves (about 330 octets an entry with one key, so at most some 33 MB).
NAME_SIGNATURE_LIMIT = 50_000
#: RRSIG heads kept (by type, labels, TTL and window: a few dozen in practice).
HEAD_LIMIT = 1024

Window = tuple[int, int]
_RECORD = struct.Struct("!HHIH")
_WINDOW = struct.Struct("!II")
_CacheKey = tuple[str, int, int, tuple[object, ...], Window]


def window_at(now: float) -> Window:
    """(inception, expiration) for the clock reading ``now`` (seconds since 1970)."""
    inception = int(now) // WINDOW_STEP * WINDOW_STEP - INCEPTION_BACKDATE
    return inception, inception + VALIDITY


def canonical_rrset(owner: str, rrset: RRset) -> bytes:
    """The records of ``rrset`` under ``owner`` in canonical form and order (RFC 4034 6.3)."""
    head = name_wire(owner) + rrset.rtype.to_bytes(2, "big") + RRClass.IN.to_bytes(2, "big") \
        + rrset.ttl.to_bytes(4, "big")
    datas = sorted({rdata_wire(rd) for rd in rrset.rdatas})
    return b"".join(head + len(d).to_bytes(2, "big") + d for d in datas)


class Signer:
    """Signs RRsets of one zone with its keys; ``clock`` is the wall clock."""

    def __init__(self, zone: str, keys: tuple[Key, ...], *,
                 clock: Callable[[], float] = time.time,
                 mangle: Callable[[bytes], bytes] | None = None) -> None:
        self.zone = zone
        self.keys = keys
        self.clock = clock
        self.mangle = mangle
        self._cache: dict[_CacheKey, tuple[Opaque, ...]] = {}
        self._previous: dict[_CacheKey, tuple[Opaque, ...]] = {}
        #: ``sign_wire``'s signatures by owner, record and window (octets: nothing for
        #: the garbage collector to walk), and the RRSIG heads by type, labels, TTL, window.
        self._names: dict[bytes, tuple[bytes, ...]] = {}
        self._names_previous: dict[bytes, tuple[bytes, ...]] = {}
        self._heads: dict[tuple[int, int, int, Window], tuple[bytes, ...]] = {}
        #: Signatures made (not found in the cache), for the bench and the tests.
        self.made = 0

    def window(self) -> Window:
        return window_at(self.clock())

    def sign(self, rrset: RRset, window: Window, source: str | None = None) -> RRset:
        """The RRSIG RRset covering ``rrset`` (its TTL the RRset's, RFC 4034 3); ``source``
        is the wildcard owner ``*.<encloser>`` when ``rrset`` is its expansion."""
        owner = source or rrset.name
        key = (owner, int(rrset.rtype), rrset.ttl, rrset.rdatas, window)
        found = self._cache.get(key) or self._previous.get(key)
        if found is None:
            found = self._make(owner, rrset.rtype, rrset.ttl, canonical_rrset(owner, rrset),
                               window)
        self._keep(key, found)
        return RRset(rrset.name, RRType.RRSIG, rrset.ttl, found)

    def sign_wire(self, owner_wire: bytes, labels: int, rtype: int, ttl: int, rdata: bytes,
                  window: Window) -> tuple[bytes, ...]:
        """The RRSIG RDATAs (one per key) of the one-record RRset given as octets:
        ``owner_wire`` its lower-case uncompressed owner of ``labels`` labels (RFC 4034
        3.1.3), ``rdata`` in canonical form.  ``fast``'s per-name NSEC: no model objects;
        kept in a cache of octets by owner, record and window (``NAME_SIGNATURE_LIMIT``),
        so a repeated name, in any letter case, is signed once per window."""
        record = _RECORD.pack(rtype, RRClass.IN, ttl, len(rdata)) + rdata
        key = owner_wire + record + _WINDOW.pack(*window)  # the owner ends at its root label
        found = self._names.get(key) or self._names_previous.get(key)
        if found is None:
            heads = self._heads.get((rtype, labels, ttl, window))
            if heads is None:
                heads = tuple(rrsig_head(rtype, k.algorithm, labels, ttl, window[1], window[0],
                                         k.tag, self.zone) for k in self.keys)
                if len(self._heads) >= HEAD_LIMIT:
                    self._heads = {}
                self._heads[(rtype, labels, ttl, window)] = heads
            data = owner_wire + record
            found = tuple(head + self._signature(k, head + data)
                          for k, head in zip(self.keys, heads, strict=True))
        if key not in self._names:
            if len(self._names) >= NAME_SIGNATURE_LIMIT:
                self._names_previous, self._names = self._names, {}
            self._names[key] = found
        return found

    def _signature(self, key: Key, data: bytes) -> bytes:
        signature = key.private.sign(data)
        if self.mangle is not None:
            signature = self.mangle(signature)
        self.made += 1
        return signature

    def _keep(self, key: _CacheKey, found: tuple[Opaque, ...]) -> None:
        if self._cache.get(key) is found:
            return
        if len(self._cache) >= SIGNATURE_LIMIT:
            self._previous, self._cache = self._cache, {}
        self._cache[key] = found

    def _make(self, owner: str, rtype: int, ttl: int, data: bytes, window: Window
              ) -> tuple[Opaque, ...]:
        """One signature per key over the RRSIG head and ``data``, the canonical RRset."""
        labels = label_count(owner)
        out = []
        for key in self.keys:
            head = rrsig_head(rtype, key.algorithm, labels, ttl, window[1],
                              window[0], key.tag, self.zone)
            out.append(Opaque(head + self._signature(key, head + data)))
        return tuple(out)
