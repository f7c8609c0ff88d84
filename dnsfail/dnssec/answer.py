"""A resolver's ``Message`` made into its signed form, with compact denial (RFC 9824).

``signed_answer`` takes what ``dns.resolver`` decided for a DO query of a
signed zone and returns the reply a validator needs (RFC 4035 section 3.1):

* every authoritative RRset (answer, and additional data other than referral
  glue) followed by its RRSIG; a wildcard expansion signed over its source
  (labels field of ``*.<closest encloser>``, RFC 4034 3.1.3) and, in the
  authority section, the proof that the next closer name does not exist
  (RFC 4035 3.1.3.3): an RFC 4470 minimally covering NSEC, owner just before
  the next closer name and next name just after it (``covering_nsec``);
* negative answers: the SOA and its RRSIG, and one NSEC at the name asked (or
  the last name of a CNAME chain) with next name ``\\000.<name>`` (RFC 9824
  section 3): for a name that does not exist its types are RRSIG NSEC NXNAME
  and the rcode is NOERROR, NXDOMAIN when the query set CO (section 5); for
  NODATA the types are those that exist at the name, truthfully: static data,
  dynamic records whatever their health (a record whose pools are all down
  still exists), DNSKEY/CDS/CDNSKEY at the apex, the wildcard's types for a
  name it covers;
* referrals: the NS RRset and glue unsigned (the child owns them), then the
  delegation's DS RRset and its RRSIG where the zone holds one (a secure
  delegation), else a signed NSEC at the delegation point without DS, proving
  it insecure (RFC 4035 3.1.4); a DS question at the cut is answered from this
  side, the parent's (RFC 4035 3.1.4.1);
* the DNSKEY, CDS and CDNSKEY RRsets at the apex (RFC 7344 section 4), signed.

Why minimally covering NSEC for wildcards, rather than answering as if the name
existed: the Labels field then says what the data is (a wildcard expansion),
as a pre-signed zone would, and validators cache nothing wrong from the proof;
PowerDNS and Knot answer the same way.  The NSEC's owner is the next closer
name with its first label's last octet decremented and ``\\255`` appended
(RFC 4470 section 3's predecessor in its short form), the next name the
label with ``\\000`` appended: no name of a zone we load sorts between them
but one whose label ends in a ``\\255`` or ``\\000`` octet.

Pure: the signatures come from ``sign.Signer``, itself pure but for its clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnsfail.dnssec.keys import Key
from dnsfail.dnssec.records import ds, name_wire, nsec
from dnsfail.dnssec.sign import Signer, Window
from dnsfail.model import (
    CNAME,
    Message,
    Opaque,
    Rcode,
    RRset,
    RRType,
    Zone,
    parent_names,
)

#: TTL of DNSKEY, CDS and CDNSKEY (an hour, as Knot and BIND default the DNSKEY TTL).
DNSKEY_TTL = 3600
#: Types that exist at every name we answer for in a signed zone.
_ALWAYS = frozenset({RRType.RRSIG, RRType.NSEC})
_APEX = frozenset({RRType.DNSKEY, RRType.CDS, RRType.CDNSKEY})
_CUT = frozenset({RRType.NS, RRType.RRSIG, RRType.NSEC})
_DS = frozenset({RRType.DS})
#: The types of a name that does not exist (RFC 9824 section 3).
NXNAME_TYPES = frozenset({RRType.RRSIG, RRType.NSEC, RRType.NXNAME})
#: Types answered from the keys at the apex, with or without DO.
KEY_TYPES = _APEX
#: The types a dynamic (health-checked) record can have (``model.DynamicRecord``).
_DYNAMIC_TYPES = (RRType.A, RRType.AAAA)


@dataclass(frozen=True)
class SignedZone:
    """One zone's keys, signer and apex key RRsets."""

    origin: str
    signer: Signer
    dnskey: RRset
    cds: RRset
    cdnskey: RRset

    def apex(self, qtype: int) -> RRset:
        if qtype == RRType.DNSKEY:
            return self.dnskey
        return self.cds if qtype == RRType.CDS else self.cdnskey


def signed_zone(origin: str, keys: tuple[Key, ...], signer: Signer | None = None) -> SignedZone:
    """The apex RRsets for ``keys`` (every key published, CDS/CDNSKEY for each, RFC 8078)."""
    signer = signer or Signer(origin, keys)
    keyset = tuple(Opaque(k.rdata) for k in keys)
    cds = tuple(Opaque(ds(origin, k.rdata, k.algorithm)) for k in keys)
    return SignedZone(origin, signer, RRset(origin, RRType.DNSKEY, DNSKEY_TTL, keyset),
                      RRset(origin, RRType.CDS, DNSKEY_TTL, cds),
                      RRset(origin, RRType.CDNSKEY, DNSKEY_TTL, keyset))


def closest_encloser(zone: Zone, name: str) -> str:
    """The closest existing ancestor of a name that does not exist (RFC 4592 2.2.1)."""
    for encloser in parent_names(name):
        if encloser in zone.names:
            return encloser
    return zone.origin


def wildcard_source(zone: Zone, name: str) -> str | None:
    """The ``*.<encloser>`` a record at ``name`` came from, or None if ``name`` exists."""
    if name in zone.names:
        return None
    encloser = closest_encloser(zone, name)
    return "*." + encloser if encloser != "." else "*."


def types_at(zone: Zone, name: str, *, alias: bool = True) -> frozenset[int]:
    """The types that exist at ``name`` (or at the wildcard covering it): the truthful
    NSEC bitmap (RFC 4034 section 4.1.2)."""
    if name in zone.cuts:  # RFC 4035 2.3: the parent's NS and DS, not the glue at the cut
        cut = zone.nodes.get(name) or {}
        return _CUT | (_DS if RRType.DS in cut else frozenset())
    owner = name if name in zone.names else wildcard_source(zone, name) or name
    node = zone.nodes.get(owner)
    types = set(node) if node is not None else set()
    for rtype in _DYNAMIC_TYPES:
        if (owner, rtype) in zone.dynamic:
            types.add(rtype)
    if name == zone.origin:
        types |= _APEX
        if alias and zone.alias is not None:
            target = zone.alias.rdatas[0]
            assert isinstance(target, CNAME)
            found = types_at(zone, target.target, alias=False)
            types |= {t for t in (RRType.A, RRType.AAAA) if t in found}
    if not types:  # an empty non-terminal: nothing but the NSEC and its signature
        return _ALWAYS
    return frozenset(types | _ALWAYS)


def _next_closer(name: str, encloser: str) -> str:
    labels = name.rstrip(".").split(".")
    depth = 0 if encloser == "." else encloser.rstrip(".").count(".") + 1
    return ".".join(labels[len(labels) - depth - 1 :]) + "."


def _predecessor_label(label: str, room: bool = True) -> str:
    """A label just before ``label`` in canonical order (RFC 4470 section 3, short form);
    without ``room`` (a name of 255 octets) no \\255 is appended, so the name still fits."""
    from dnsfail.dns.wire import unescape_label

    raw = unescape_label(label)
    if raw[-1] == 0:
        shorter = raw[:-1]
    else:
        # Canonical names are lower case (RFC 4034 6.2): below "[" comes "@", not "Z".
        octet = raw[-1] - 1 if raw[-1] != 0x5B else 0x40
        shorter = (raw[:-1] + bytes((octet,)) + b"\xff"[:room])[:63]
    return "".join(chr(c) if 0x21 <= c <= 0x7E and c not in (0x2E, 0x5C) else f"\\{c:03d}"
                   for c in shorter)


def _label_text(raw: bytes) -> str:
    return "".join(chr(c) if 0x21 <= c <= 0x7E and c not in (0x2E, 0x5C) else f"\\{c:03d}"
                   for c in raw)


def after_subtree(name: str) -> str:
    """The first name after ``name`` and every name below it (RFC 4470 section 3, RFC 4471
    section 3.1.2): the first label with a \\000 octet appended; when that does not fit
    (a 63-octet label, or a name of 255 octets) its last octet incremented instead, in
    canonical order (upper case sorts as lower, so after ``@`` comes ``[``), a \\255
    dropped and carried into the octet before it, an emptied label dropped and carried
    into its parent.  (Not ``\\000.<name>``: a next name below the name denied would
    make validators take the name itself for the closest encloser, BIND's
    ``dns_nsec_noexistnodata``.)"""
    from dnsfail.dns.wire import unescape_label

    first, _, rest = name.partition(".")
    raw = unescape_label(first)
    if len(raw) < 63 and len(name_wire(name)) < 255:
        return f"{first}\\000.{rest}"
    raw = raw.rstrip(b"\xff")
    if not raw:
        return after_subtree(rest) if rest not in ("", ".") else name
    octet = raw[-1] + 1 if raw[-1] != 0x40 else 0x5B
    return f"{_label_text(raw[:-1] + bytes((octet,)))}.{rest}"


def covering_nsec(zone: Zone, name: str, ttl: int) -> RRset:
    """An NSEC covering the next closer name of ``name`` and nothing else (RFC 4470)."""
    encloser = closest_encloser(zone, name)
    closer = _next_closer(name, encloser)
    first, _, rest = closer.partition(".")
    before = _predecessor_label(first, len(name_wire(closer)) < 255)
    owner = f"{before}.{rest}" if before else rest
    return RRset(owner, RRType.NSEC, ttl, (Opaque(nsec(after_subtree(closer), _ALWAYS)),))


def nsec_at(name: str, types: frozenset[int], ttl: int) -> RRset:
    """The compact NSEC at ``name``: next name ``\\000.<name>`` (RFC 9824 section 3), or,
    for a name of 254 or 255 octets where that does not fit (and which has no names
    below it), the name that follows it (``after_subtree``, RFC 4471 section 3.1.2)."""
    following = "\\000." + name if len(name_wire(name)) <= 253 else after_subtree(name)
    return RRset(name, RRType.NSEC, ttl, (Opaque(nsec(following, types)),))


def _final_name(qname: str, answer: tuple[RRset, ...]) -> str:
    if answer and answer[-1].rtype == RRType.CNAME:
        target = answer[-1].rdatas[0]
        assert isinstance(target, CNAME)
        return target.target
    return qname


def key_answer(signed: SignedZone, qtype: int, do: bool, window: Window) -> Message:
    """DNSKEY, CDS or CDNSKEY at the apex, signed when DO is set."""
    rrset = signed.apex(qtype)
    answer = (rrset, signed.signer.sign(rrset, window)) if do else (rrset,)
    return Message(Rcode.NOERROR, True, answer)


#: Flood denial's NXDOMAIN proof for a name from the zone's NSEC chain (its NSECs and
#: RRSIGs, ``chain.Chain.proof_rrsets``), or None for compact denial (``flood``).
Denial = Callable[[str], "tuple[RRset, ...] | None"]


def signed_answer(signed: SignedZone, zone: Zone, qname: str, qtype: int, message: Message,
                  co: bool, window: Window, denial: Denial | None = None) -> Message:
    """``message`` (the resolver's answer to qname/qtype) with signatures and denial;
    ``denial`` asked first for a name that does not exist."""
    if message.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
        return message
    sign = signed.signer.sign
    ttl = zone.negative_ttl
    answer: list[RRset] = []
    authority: list[RRset] = []
    for rrset in message.answer:
        source = wildcard_source(zone, rrset.name)
        answer += (rrset, sign(rrset, window, source))
        if source is not None:
            proof = covering_nsec(zone, rrset.name, ttl)
            if proof not in authority:
                authority += (proof, sign(proof, window))
    referral = any(r.rtype == RRType.NS for r in message.authority)
    rcode = message.rcode
    if referral:
        for rrset in message.authority:
            ds_rrset = zone.nodes.get(rrset.name, {}).get(RRType.DS)
            if ds_rrset is not None:  # a secure delegation: the DS, signed (RFC 4035 3.1.4)
                authority += (rrset, ds_rrset, sign(ds_rrset, window))
            else:
                proof = nsec_at(rrset.name, types_at(zone, rrset.name), ttl)
                authority += (rrset, proof, sign(proof, window))
        return Message(rcode, message.aa, tuple(answer), tuple(authority), message.additional,
                       message.glue_required, message.cacheable, message.scope,
                       message.client_dependent)
    if message.authority:  # negative: the SOA, then the compact NSEC
        final = _final_name(qname, message.answer)
        # flood denial: RFC 4035 3.1.3.2 from the zone's NSEC chain, rcode NXDOMAIN
        chained = denial(final) if denial is not None and rcode == Rcode.NXDOMAIN else None
        proofs: tuple[RRset, ...] = chained or ()
        if chained is None:
            if rcode == Rcode.NXDOMAIN:
                proof = nsec_at(final, NXNAME_TYPES, ttl)
                rcode = Rcode.NXDOMAIN if co else Rcode.NOERROR
            else:
                proof = nsec_at(final, types_at(zone, final), ttl)
            proofs = (proof, sign(proof, window))
        if chained is None and qtype == RRType.NSEC and final == qname \
                and rcode == Rcode.NOERROR:
            # The NSEC at the name is the answer to a question for it, also for a name
            # that does not exist (without CO the lie says it does): in AUTHORITY its
            # bitmap, listing NSEC, would contradict the NODATA it is meant to prove.
            answer += proofs
        else:
            for rrset in message.authority:
                authority += (rrset, sign(rrset, window))
            authority += proofs
    additional: list[RRset] = []
    for rrset in message.additional:
        additional += (rrset, sign(rrset, window, wildcard_source(zone, rrset.name)))
    return Message(rcode, message.aa, tuple(answer), tuple(authority), tuple(additional),
                   message.glue_required, message.cacheable, message.scope,
                   message.client_dependent)
