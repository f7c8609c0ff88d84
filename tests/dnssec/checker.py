"""A reply checker built on dnspython's DNSSEC module, for the unit tests (the integration
tests ask real validators: unbound and delv)."""

from __future__ import annotations

import dns.dnssec
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

from dnsfail.dnssec.answer import SignedZone

RRSIG = dns.rdatatype.RRSIG


def keyset(signed: SignedZone) -> dict[dns.name.Name, dns.rrset.RRset]:
    """The zone's DNSKEY RRset as dnspython validates with it."""
    import base64

    origin = dns.name.from_text(signed.origin)
    texts = [f"257 3 {k.algorithm} {base64.b64encode(k.rdata[4:]).decode()}"
             for k in signed.signer.keys]
    return {origin: dns.rrset.from_text_list(origin, 3600, "IN", "DNSKEY", texts)}


def unsigned(section: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    return [r for r in section if r.rdtype != RRSIG]


def signature_of(section: list[dns.rrset.RRset], rrset: dns.rrset.RRset
                 ) -> dns.rrset.RRset | None:
    for sig in section:
        if sig.rdtype == RRSIG and sig.name == rrset.name and sig.covers == rrset.rdtype:
            return sig
    return None


def validate(reply: dns.message.Message, signed: SignedZone, now: float | None = None,
             skip: frozenset[tuple[str, int]] = frozenset()) -> int:
    """Check every RRset that must be signed has a valid RRSIG; the count checked.
    ``skip``: (name, type) left unsigned on purpose (referral NS and glue)."""
    keys = keyset(signed)
    checked = 0
    for section in (reply.answer, reply.authority, reply.additional):
        for rrset in unsigned(section):
            if (str(rrset.name), rrset.rdtype) in skip:
                continue
            sig = signature_of(section, rrset)
            assert sig is not None, f"no RRSIG for {rrset.name} {rrset.rdtype!r}"
            dns.dnssec.validate(rrset, sig, keys, now=now)
            checked += 1
    return checked
