"""Signed replies from a zone's NSEC chain (flood denial, ``flood``), for ``fast``.

In flood denial a nonexistent name gets NXDOMAIN with the SOA and its RRSIG
(``fast``'s template) and the chain's proof (``chain.Chain.proof``: RFC 4035
section 3.1.3.2), and a wildcard expansion gets, after its RRset and RRSIG,
the chain NSEC covering its next closer name (RFC 4035 section 3.1.3.3), in
place of compact denial's per-name NSEC: no new signature.  The NSECs' owners
are uncompressed, each RRSIG's owner a pointer to its NSEC's.  What follows the
question depends only on the template, the proof, the question's length and
the OPT record, so ``Tails`` keeps it: a reply is its header, the query's own
question and a kept tail.

``ChainPlan`` goes further for a random-subdomain flood, as ``dns.template.Plan``
does unsigned: for a new first label under a parent already denied from the
chain, no name text, zone search or shape is made.

Part of the signer's pure side: no I/O.
"""

from __future__ import annotations

from dnsfail.dns.query import HEADER_LEN
from dnsfail.dns.stats import QueryStats
from dnsfail.dns.template import Template
from dnsfail.dnssec.answer import SignedZone
from dnsfail.dnssec.chain import Chain, Key, text_key
from dnsfail.dnssec.flood import Flood
from dnsfail.dnssec.sign import Window
from dnsfail.model import Rcode, Zone

#: Chain reply tails kept per snapshot and window (emptied when full): one per template,
#: gap of the chain a flood lands in, question length and OPT, some 500 octets each.
TAIL_LIMIT = 8192
#: ``ChainPlan``s kept per snapshot and window (emptied when full): one per parent name,
#: qtype and EDNS facts a chain-mode flood uses.
PLAN_LIMIT = 4096
#: Names past this offset are not compression targets (``wire._put_name``).
_POINTER_LIMIT = 0x4000

_TailKey = tuple[str, tuple[str, int], tuple[int, ...], int, int]


class Tails:
    """What follows the question in chain replies, by zone, template, proof, question
    length and OPT (``TAIL_LIMIT``); ``opts`` are ``fast``'s OPT records by CO | NSID."""

    __slots__ = ("memo", "opts")

    def __init__(self, opts: tuple[bytes, ...]) -> None:
        self.opts = opts
        self.memo: dict[_TailKey, tuple[bytes, int]] = {}

    def get(self, zone: Zone, signed: SignedZone, chain: Chain, template: Template,
            proof: tuple[int, ...], qend: int, window: Window, opt: int,
            form: tuple[str, int] = ("", 0)) -> tuple[bytes, int] | None:
        """The tail and the count of records after the template's (``form``: a
        wildcard's source and qtype; ("", 0) for NXDOMAIN, ("", 1) a wildcard's NODATA)."""
        qlen = qend - HEADER_LEN - 4
        key = (zone.origin, form, proof, qlen, opt)
        found = self.memo.get(key)
        if found is None:
            found = _tail(template.body(qlen), qend, chain, proof, signed, window,
                          self.opts[opt])
            if found is None:
                return None
            if len(self.memo) >= TAIL_LIMIT:
                self.memo = {}
            self.memo[key] = found
        return found


def chained_nxdomain(tails: Tails, template: Template, data: bytes, qname: str, qend: int,
                     zone: Zone, signed: SignedZone, chain: Chain, qtype: int, window: Window,
                     limit: int, opt: int, stats: QueryStats) -> tuple[bytes, int] | None:
    """NXDOMAIN for ``qname`` (lower case, no escapes) from the chain, with its counter
    slot; None where the chain has no proof or the reply exceeds ``limit``."""
    proof = chain.proof(text_key(qname))
    if proof is None:
        return None
    found = tails.get(zone, signed, chain, template, proof, qend, window, opt)
    return _finish(template, data, qend, found, 0, limit, zone, qtype, Rcode.NXDOMAIN, stats)


def chained_wildcard(tails: Tails, template: Template, data: bytes, closer: str, qend: int,
                     zone: Zone, signed: SignedZone, chain: Chain, source: str, qtype: int,
                     window: Window, limit: int, opt: int, stats: QueryStats
                     ) -> tuple[bytes, int] | None:
    """A wildcard expansion from ``source``'s template whose next closer name ``closer``
    is denied by the chain NSEC covering it (RFC 4035 section 3.1.3.3)."""
    key = text_key(closer)
    i = chain.covering(key)
    if i is None or chain.keys[i] == key:
        return None
    found = tails.get(zone, signed, chain, template, (i,), qend, window, opt, (source, qtype))
    # the wildcard template's heads count the NSEC and its RRSIGs as 1 + index
    return _finish(template, data, qend, found, 1, limit, zone, qtype, Rcode.NOERROR, stats)


def chained_nodata(tails: Tails, template: Template, data: bytes, qname: str, qend: int,
                   zone: Zone, signed: SignedZone, chain: Chain, qtype: int, window: Window,
                   limit: int, opt: int, stats: QueryStats) -> tuple[bytes, int] | None:
    """NODATA for ``qname``, which a wildcard covers without ``qtype``, from the chain
    (RFC 4035 section 3.1.3.4), with its counter slot; None as ``chained_nxdomain``."""
    proof = chain.wildcard_nodata(text_key(qname))
    if proof is None:
        return None
    found = tails.get(zone, signed, chain, template, proof, qend, window, opt, ("", 1))
    return _finish(template, data, qend, found, 0, limit, zone, qtype, Rcode.NOERROR, stats)


def _finish(template: Template, data: bytes, qend: int, found: tuple[bytes, int] | None,
            counted: int, limit: int, zone: Zone, qtype: int, rcode: Rcode, stats: QueryStats
            ) -> tuple[bytes, int] | None:
    """The reply of a chain answer: the query's header with the template's counts for the
    ``found`` tail's records (``counted`` of them already in the template's own count), its
    question, the tail; with its counter slot, or None past ``limit`` (the full path then
    truncates)."""
    if found is None:
        return None
    reply = b"".join((data[:2], template.heads[(data[2] & 1) | (data[3] & 0x10) >> 3
                                               | (found[1] - counted) << 2],
                      data[HEADER_LEN:qend], found[0]))
    if len(reply) > limit:
        return None
    slot = template.slots.get(qtype)
    if slot is None:
        slot = template.slots[qtype] = stats.slot(zone.origin, qtype, rcode)
    return reply, slot


class ChainPlan:
    """A chain NXDOMAIN for every query whose scanned key after its first label is one
    key: a random-subdomain flood in chain mode asks new first labels under one parent.

    Made from a query ``fast`` answered from the chain, it holds what its siblings
    share: the zone, its chain and NXDOMAIN template, the parent's canonical key and
    text, the counter slot, the reply size limit and OPT.  A new first label of
    letters, digits, ``-`` and ``_`` is a nonexistent name unless the name exists or is
    a cut or a name the SOA writes (``ZoneIndex.stops``): the parent's closest encloser,
    which ``fast`` found without a wildcard child, is the new name's too.  Used only in
    chain mode (``Flood.new_name``, which counts the name, says so: otherwise every plan
    is dropped); kept per snapshot and window (``fast.SignedTemplates``), at most
    ``PLAN_LIMIT``.
    """

    __slots__ = ("chain", "flood", "limit", "opt", "parent", "plans", "signed", "slot",
                 "stops", "suffix", "tails", "template", "window", "zone")

    def __init__(self, plans: dict[bytes, ChainPlan], tails: Tails, flood: Flood, zone: Zone,
                 signed: SignedZone, chain: Chain, template: Template, qname: str,
                 window: Window, limit: int, opt: int, slot: int, stops: frozenset[str]
                 ) -> None:
        self.plans, self.tails, self.flood = plans, tails, flood
        self.zone, self.signed, self.chain, self.window = zone, signed, chain, window
        self.template = template
        parent = qname[qname.index(".") + 1 :]
        self.suffix = "." + parent
        self.parent: Key = text_key(parent)
        self.stops = stops
        self.limit, self.opt, self.slot = limit, opt, slot

    @classmethod
    def remember(cls, plans: dict[bytes, ChainPlan], key: bytes, co: bool, tails: Tails,
                 flood: Flood | None, zone: Zone, signed: SignedZone, chain: Chain,
                 template: Template, qname: str, window: Window, limit: int, opt: int,
                 slot: int, stops: frozenset[str]) -> None:
        """Keep a plan for the siblings of the scanned query ``key`` (with CO ``co``)."""
        if flood is None:
            return
        if len(plans) >= PLAN_LIMIT:
            plans.clear()
        plans[key[key[0] + 1 :] + (b"O" if co else b"-")] = cls(
            plans, tails, flood, zone, signed, chain, template, qname, window, limit, opt,
            slot, stops)

    def answer(self, data: bytes, key: bytes, qend: int) -> bytes | None:
        """The reply to a scanned query of this plan's key, or None (the general path)."""
        label = key[1 : 1 + key[0]]
        if not label.translate(None, b"-_").isalnum():
            return None  # the general path knows what escapes and wildcards mean
        text = label.decode("ascii")
        name = text + self.suffix
        zone = self.zone
        if name in self.stops or name in zone.names:
            return None
        if self.flood.new_name(zone) is None:
            self.plans.clear()  # back to compact denial (this name is counted twice)
            return None
        proof = self.chain.proof((*self.parent, text))
        if proof is None:
            return None
        found = self.tails.get(zone, self.signed, self.chain, self.template, proof, qend,
                               self.window, self.opt)
        if found is None:
            return None
        reply = b"".join((data[:2], self.template.heads[(data[2] & 1) | (data[3] & 0x10) >> 3
                                                        | found[1] << 2],
                          data[HEADER_LEN:qend], found[0]))
        return reply if len(reply) <= self.limit else None


def _tail(body: bytes, qend: int, chain: Chain, proof: tuple[int, ...], signed: SignedZone,
          window: Window, opt: bytes) -> tuple[bytes, int] | None:
    """What follows a question ending at ``qend``: the template's ``body``, the proof's
    NSECs and RRSIGs, ``opt``; and the count of records after the template's.  None if a
    pointer would not reach (a reply past 16 KiB)."""
    at = qend + len(body)
    parts = [body]
    records = 0
    for i in proof:
        record = chain.records[i]
        back = (0xC000 | at).to_bytes(2, "big")
        parts.append(record)
        at += len(record)
        for sig in chain.signatures(i, signed.signer, window):
            parts += (back, sig)
            at += 2 + len(sig)
            records += 1
        records += 1
        if at >= _POINTER_LIMIT:
            return None
    parts.append(opt)
    return b"".join(parts), records
