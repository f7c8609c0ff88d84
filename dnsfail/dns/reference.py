"""The reference renderer: ``wire.render`` done through dnslib, for the tests only.

The only module that imports dnslib.  ``wire.render`` packs replies by hand
(dnslib objects cost three quarters of a cache miss); ``render_reference``
is the dnslib renderer it replaced, kept as the oracle that
tests/dns/test_wire.py holds the hand-written packer to, byte for byte.
Nothing on the serving path imports this module: it imports ``wire`` and
``model``, and is imported by tests alone.

dnslib traps the hand-written packer avoids: ``DNSRecord.reply()`` sets RA,
so replies have a bare header (an authoritative server never offers
recursion, RFC 1035 section 4.1.1); ``truncate()`` drops the question, so
truncation is done by hand and keeps it (RFC 2181 section 9); its name
compression is case-sensitive, so every name is rendered in lower case; and
past 16 KiB its compression pointers go wrong (see ``render_reference``).
"""

from __future__ import annotations

import dnslib

from dnsfail.dns.query import OPTION_ECS, OPTION_NSID, UDP_PAYLOAD, Edns, labels_to_text
from dnsfail.dns.wire import encode_ecs, unescape_label
from dnsfail.model import (
    AAAA,
    CAA,
    CNAME,
    HINFO,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Message,
    RRClass,
    RRset,
)


def name_to_text(label: dnslib.DNSLabel) -> str:
    """Lower-case, absolute text form; odd octets escaped as \\DDD so they never match."""
    return labels_to_text(label.label)



def _rdata(rdata: object) -> dnslib.RD:
    match rdata:
        case A(address):
            return dnslib.A(address)
        case AAAA(address):
            return dnslib.AAAA(address)
        case NS(target):
            return dnslib.NS(target)
        case CNAME(target):
            return dnslib.CNAME(target)
        case PTR(target):
            return dnslib.PTR(target)
        case MX(preference, exchange):
            return dnslib.MX(exchange, preference)
        case TXT(strings):
            return dnslib.TXT(list(strings))
        case SRV(priority, weight, port, target):
            return dnslib.SRV(priority, weight, port, target)
        case CAA(flags, tag, value):
            return dnslib.CAA(flags, tag, value)
        case SOA(mname, rname, serial, refresh, retry, expire, minimum):
            return dnslib.SOA(mname, rname, (serial, refresh, retry, expire, minimum))
        case HINFO(cpu, os):
            return dnslib.RD(bytes((len(cpu),)) + cpu + bytes((len(os),)) + os)
    raise TypeError(f"no wire form for {rdata!r}")


def text_to_label(name: str) -> dnslib.DNSLabel:
    """Inverse of ``name_to_text``: dnslib's own parser ignores ``\\DDD`` escapes."""
    if name == ".":
        return dnslib.DNSLabel(())
    labels = []
    for part in name.rstrip(".").split("."):
        if "\\" not in part:
            labels.append(part.encode("ascii"))
            continue
        labels.append(unescape_label(part))
    return dnslib.DNSLabel(tuple(labels))


def _rrs(rrset: RRset, rclass: int) -> list[dnslib.RR]:
    owner = text_to_label(rrset.name)
    rtype = int(rrset.rtype)
    return [dnslib.RR(owner, rtype, rclass, rrset.ttl, _rdata(rd)) for rd in rrset.rdatas]


def render_reference(
    question: tuple[str, int, int] | None,
    message: Message,
    *,
    edns: Edns | None,
    limit: int,
    opcode: int = 0,
    ecs_scope: int | None = None,
    nsid: bytes = b"",
) -> bytes:
    """``render`` through dnslib objects, as it was done before: for tests only.

    ``render`` gives the same bytes for every input except these, where
    dnslib 0.9.26 is wrong and ``render`` is right:

    * Past 16 KiB of message, dnslib keeps compressing against names it wrote
      there, and masks their offsets to the 14 bits a pointer has (RFC 1035
      section 4.1.4): the pointer lands on the wrong octets.
    * Rdata names (targets, SOA names) are read by ``dnslib.DNSLabel``, which
      turns ``\\046`` into a label break and octets above 127 into IDNA
      ``xn--`` labels, and rejects repeated trailing dots; ``render`` reads
      every name as ``text_to_label`` does.  zonefile.load only admits targets of
      letters, digits, ``-`` and ``_``, for which both agree.
    * A name with an empty label (``"a..b."``, ``".."``) is packed as a
      premature end of name, wrecking the rest of the message; ``render``
      raises.  An empty owner name is packed as two zero octets; ``render``
      packs the root, as dnslib does for an empty target.
    * Addresses: dnslib cannot read IPv4-mapped IPv6 text in dotted form
      (``::ffff:192.0.2.1``, which Python 3.13's ``ipaddress`` writes), and
      takes some malformed text (``01.2.3.4``, ``1::2::3``); ``render``
      reads addresses with ``ipaddress``.
    * A CAA tag outside ASCII gets its length in characters, not octets.
    """
    rclass = question[2] if question else RRClass.IN
    rcode = int(message.rcode)
    header = dnslib.DNSHeader(id=0, qr=1, opcode=opcode, aa=int(message.aa), ra=0, rd=0,
                              rcode=rcode & 0x0F)
    record = dnslib.DNSRecord(header)
    if question is not None:
        record.add_question(
            dnslib.DNSQuestion(text_to_label(question[0]), question[1], question[2])
        )
    for rrset in message.answer:
        record.add_answer(*_rrs(rrset, rclass))
    for rrset in message.authority:
        record.add_auth(*_rrs(rrset, rclass))
    opt: dnslib.RR | None = None
    if edns is not None:
        options = []
        if edns.ecs is not None and ecs_scope is not None:
            options.append(dnslib.EDNSOption(OPTION_ECS, encode_ecs(edns.ecs, ecs_scope)))
        if edns.nsid and nsid:
            options.append(dnslib.EDNSOption(OPTION_NSID, nsid))
        opt = dnslib.EDNS0(udp_len=UDP_PAYLOAD, ext_rcode=rcode >> 4, version=0,
                           flags="do" if edns.do else "", opts=options)
    full = _pack(record, [rr for s in message.additional for rr in _rrs(s, rclass)], opt)
    if len(full) <= limit:
        return full
    if not message.glue_required:
        lean = _pack(record, [], opt)
        if len(lean) <= limit:
            return lean
    record.rr = []
    record.auth = []
    record.header.tc = 1
    return _pack(record, [], opt)


def _pack(record: dnslib.DNSRecord, additional: list[dnslib.RR], opt: dnslib.RR | None) -> bytes:
    record.ar = additional + ([opt] if opt is not None else [])
    return bytes(record.pack())
