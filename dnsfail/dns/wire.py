"""DNS wire format: packing replies by hand (no dnslib).

The way in is ``dnsfail.dns.query`` (``parse_query``), which reads queries
by hand, in linear time, because dnslib's parser can be made to spend
seconds on one packet; this module only writes.

One way out: ``render`` packs a ``Message`` into bytes that are *independent of
the query's ID, RD/CD bits and letter case*; ``personalize`` then patches
those in.  A cached reply and a freshly rendered one are therefore the same
bytes, by construction.  ``render`` packs by hand, without dnslib, because
dnslib objects cost three quarters of a cache miss; ``dns.reference`` keeps
the dnslib renderer it replaced, so that tests hold the two byte-identical.

Part of the core: no I/O, and no dnslib (``dns.reference`` is its one importer).
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from dnsfail.dns.query import (
    HEADER_LEN,
    OPTION_ECS,
    OPTION_NSID,
    TCP_LIMIT,
    UDP_PAYLOAD,
    ClientSubnet,
    Edns,
    Refuse,
)
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
    Opaque,
    RRClass,
    RRset,
    RRType,
)


def personalize(reply: bytes, query: bytes, qend: int) -> bytes:
    """Give a prepared reply the query's ID, RD and CD bits and the question's letter case.

    RFC 1035 section 4.1.1 copies ID and RD; CD is copied as RFC 6840
    section 5.9 asks; the question is echoed octet for octet so that
    resolvers using 0x20 randomisation (draft-vixie-dnsext-dns0x20) accept it.
    """
    return b"".join(
        (
            query[0:2],
            bytes(((reply[2] & 0xFE) | (query[2] & 0x01), (reply[3] & 0xEF) | (query[3] & 0x10))),
            reply[4:HEADER_LEN],
            query[HEADER_LEN:qend],
            reply[qend:],
        )
    )


def skip_name(data: bytes, i: int) -> int:
    """Offset just past the (possibly compressed) name at ``i`` of a sound message."""
    while True:
        length = data[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2
        i += length + 1


def truncated(reply: bytes, opt: int | None) -> bytes | None:
    """``reply`` cut to its header, question and OPT, with TC set, so that the client asks
    again over TCP (RFC 1035 section 4.2.1, RFC 7766 section 5); None if its question
    cannot be read."""
    try:
        qdcount = reply[4] << 8 | reply[5]
        qend = skip_name(reply, 12) + 4 if qdcount == 1 else 12
        if qend > len(reply) or qdcount > 1:
            return None
    except IndexError:
        return None
    tail = reply[opt:] if opt is not None else b""
    return b"".join((reply[:2], bytes((reply[2] | 0x02, reply[3])), reply[4:6],
                     b"\x00\x00\x00\x00\x00", b"\x01" if tail else b"\x00",
                     reply[12:qend], tail))


def encode_ecs(ecs: ClientSubnet, scope: int) -> bytes:
    """The ECS option to echo: the client's family, source and address, our scope."""
    nbytes = (ecs.source_prefix + 7) // 8
    address = ecs.network.network_address.packed[:nbytes]
    return bytes((0, ecs.family, ecs.source_prefix, scope)) + address


# --- rendering -----------------------------------------------------------------------
#
# Replies are packed by hand: building and packing dnslib objects cost ~110 us, three
# quarters of a cache miss, which every new name, random-subdomain flood and 0x20 query
# pays.  The output is byte-identical to dnslib's (``reference.render_reference``, checked
# by a property test), so that which of the two made a cached reply can never matter.  That
# means copying dnslib's choices where the RFCs leave one: which names are compressed
# (owners and the names in NS, CNAME, PTR, MX and SOA rdata, the types RFC 3597 section 4
# allows, but not SRV's target, RFC 2782), that compression matches labels
# case-sensitively and never points at the root, and the record order.  Where dnslib is
# wrong we are right instead, and ``reference.render_reference`` lists each case.

#: A compression table: the wire form of a name's suffix (length-prefixed labels, no
#: terminating zero; a case-sensitive key, as dnslib's) -> its offset in the message.
_Table = dict[bytes, int]
#: A name ready to pack: each suffix's table key with its first label's wire form, and the
#: whole name uncompressed.
_Name = tuple[tuple[tuple[bytes, bytes], ...], bytes]

_HEADER = struct.Struct("!HHHHHH")
#: QTYPE and QCLASS (RFC 1035 section 4.1.2).
_QUESTION_TAIL = struct.Struct("!HH")
#: OPTION-CODE and OPTION-LENGTH (RFC 6891 section 6.1.2).
_OPTION_HEAD = struct.Struct("!HH")
#: TYPE, CLASS and TTL of a resource record (RFC 1035 section 4.1.3); RDLENGTH follows.
_RR_HEAD = struct.Struct("!HHI")
_SRV_HEAD = struct.Struct("!HHH")
_SOA_TAIL = struct.Struct("!IIIII")
#: A compression pointer holds a 14-bit offset (RFC 1035 section 4.1.4).
_POINTER_LIMIT = 0x4000
_ROOT: _Name = ((), b"\x00")
_TC = 0x0200
#: Rdata types without names: their wire form is the same wherever they go.
_FLAT = (A, AAAA, TXT, CAA, HINFO)


def unescape_label(part: str) -> bytes:
    """One label of name text whose octets may be written ``\\DDD`` (see ``name_to_text``)."""
    out = bytearray()
    i = 0
    while i < len(part):
        if part[i] == "\\":
            out.append(int(part[i + 1 : i + 4]))
            i += 4
        else:
            out.append(ord(part[i]))
            i += 1
    return bytes(out)


@functools.lru_cache(maxsize=8192)
def _name(text: str) -> _Name:
    """``text`` (absolute or not, ``\\DDD`` escapes) prepared for ``_put_name``.

    Read as ``text_to_label`` reads it; rejects what RFC 1035 section 2.3.4
    forbids: labels over 63 octets, names over 255, and empty labels, which
    dnslib would write as a premature end of the name.  ``""`` is the root,
    as dnslib reads it.  Cached: zone names recur in every reply.
    """
    if text in ("", "."):
        return _ROOT
    labels = [
        part.encode("ascii") if "\\" not in part else unescape_label(part)
        for part in text.rstrip(".").split(".")
    ]
    if not all(0 < len(label) < 64 for label in labels):
        raise ValueError(f"empty label or label over 63 octets in {text!r}")
    wires = [bytes((len(label),)) + label for label in labels]
    whole = b"".join(wires) + b"\x00"
    if len(whole) > 255:
        raise ValueError(f"name over 255 octets: {text!r}")
    return tuple((b"".join(wires[i:]), wires[i]) for i in range(len(wires))), whole


def _put_name(buf: bytearray, table: _Table, name: _Name) -> None:
    """Append ``name``, compressed against ``table``, and add its new suffixes to it.

    A suffix seen before becomes a pointer (RFC 1035 section 4.1.4); a
    suffix is only remembered where a pointer can reach it, below 16 KiB.
    """
    for key, label in name[0]:
        offset = table.get(key)
        if offset is not None:
            buf += (0xC000 | offset).to_bytes(2, "big")
            return
        here = len(buf)
        if here < _POINTER_LIMIT:
            table[key] = here
        buf += label
    buf.append(0)


@functools.lru_cache(maxsize=8192)
def _flat_rdata(rdata: A | AAAA | TXT | CAA | HINFO) -> bytes:
    """RDLENGTH and RDATA of a record without names, which pack the same anywhere.

    Addresses are read by ``ipaddress``; the model holds them in normal form
    (zonefile.load), for which that and dnslib agree.
    """
    match rdata:
        case A(address):
            data = ipaddress.IPv4Address(address).packed
        case AAAA(address):
            data = ipaddress.IPv6Address(address).packed
        case TXT(strings):
            # Character-strings of up to 255 octets (RFC 1035 section 3.3.14).
            data = b"".join(bytes((len(s),)) + s for s in strings)
        case CAA(flags, tag, value):
            # RFC 8659 section 4.1: flags, tag length, tag, value to the end.
            raw = tag.encode()
            data = bytes((flags, len(raw))) + raw + value.encode()
        case HINFO(cpu, os):
            data = bytes((len(cpu),)) + cpu + bytes((len(os),)) + os
    return len(data).to_bytes(2, "big") + data


def _put_rrsets(buf: bytearray, table: _Table, rrsets: tuple[RRset, ...], rclass: int) -> int:
    """Append every record of ``rrsets``; return how many there were."""
    count = 0
    for rrset in rrsets:
        owner = _name(rrset.name)
        head = _RR_HEAD.pack(rrset.rtype, rclass, rrset.ttl)
        for rdata in rrset.rdatas:
            _put_name(buf, table, owner)
            buf += head
            if isinstance(rdata, _FLAT):
                buf += _flat_rdata(rdata)
                continue
            at = len(buf)
            buf += b"\x00\x00"
            match rdata:
                case NS(target) | CNAME(target) | PTR(target):
                    _put_name(buf, table, _name(target))
                case MX(preference, exchange):
                    buf += preference.to_bytes(2, "big")
                    _put_name(buf, table, _name(exchange))
                case SRV(priority, weight, port, target):
                    # Never compressed (RFC 2782, "Target"), so no pointer target either.
                    buf += _SRV_HEAD.pack(priority, weight, port)
                    buf += _name(target)[1]
                case SOA(mname, rname, serial, refresh, retry, expire, minimum):
                    _put_name(buf, table, _name(mname))
                    _put_name(buf, table, _name(rname))
                    buf += _SOA_TAIL.pack(serial, refresh, retry, expire, minimum)
                case Opaque(raw):  # DNSSEC records: names in them are never compressed
                    buf += raw
            buf[at : at + 2] = (len(buf) - at - 2).to_bytes(2, "big")
        count += len(rrset.rdatas)
    return count


def _opt(edns: Edns, rcode: int, ecs_scope: int | None, nsid: bytes, compact: bool = False
         ) -> bytes:
    """Our OPT record (RFC 6891 section 6.1.2): root owner, our payload size, the upper
    eight bits of the rcode, DO echoed (RFC 3225 section 3), then the ECS option echoed
    with our scope (RFC 7871 section 7.2.1) and NSID if asked (RFC 5001 section 2.3)."""
    options = b""
    if edns.ecs is not None and ecs_scope is not None:
        data = encode_ecs(edns.ecs, ecs_scope)
        options += _OPTION_HEAD.pack(OPTION_ECS, len(data)) + data
    if edns.nsid and nsid:
        options += _OPTION_HEAD.pack(OPTION_NSID, len(nsid)) + nsid
    extended = rcode >> 4
    if not 0 <= extended <= 255:
        raise ValueError(f"rcode {rcode} does not fit in 12 bits")
    ttl = extended << 24 | (0x8000 if edns.do else 0) | (0x4000 if compact else 0)
    return b"\x00" + _RR_HEAD.pack(RRType.OPT, UDP_PAYLOAD, ttl) + len(options).to_bytes(
        2, "big"
    ) + options


def render(
    question: tuple[str, int, int] | None,
    message: Message,
    *,
    edns: Edns | None,
    limit: int,
    opcode: int = 0,
    ecs_scope: int | None = None,
    nsid: bytes = b"",
    compact: bool = False,
) -> bytes:
    """Pack a reply with ID 0, RD and CD clear and names in lower case, as the model has them.

    ``personalize`` adds the query's ID, RD, CD and letter case.  ``compact`` sets the
    CO flag in the OPT record (RFC 9824 section 5), for signed replies to a CO query.  QR is set,
    RA is not (an authoritative server offers no recursion, RFC 1035 section
    4.1.1).  When the reply exceeds ``limit`` the optional additional records
    are dropped; if it still does not fit (or required glue would be lost) it
    is sent with TC set, its question kept and its OPT kept (RFC 1035 section
    4.2.1, RFC 2181 section 9, RFC 6891 section 7), so that the resolver
    retries over TCP (RFC 7766 section 5).  Byte for byte what
    ``reference.render_reference`` gives, but for the dnslib bugs it lists.
    """
    rclass = question[2] if question else RRClass.IN
    rcode = int(message.rcode)
    flags = 0x8000 | (opcode << 11) & 0x7800 | (0x0400 if message.aa else 0) | rcode & 0x0F
    table: _Table = {}
    buf = bytearray(HEADER_LEN)
    qdcount = 0
    if question is not None:
        _put_name(buf, table, _name(question[0]))
        buf += _QUESTION_TAIL.pack(question[1], question[2])
        qdcount = 1
    qend = len(buf)
    ancount = _put_rrsets(buf, table, message.answer, rclass)
    nscount = _put_rrsets(buf, table, message.authority, rclass)
    lean = len(buf)
    arcount = _put_rrsets(buf, table, message.additional, rclass)
    opt = b"" if edns is None else _opt(edns, rcode, ecs_scope, nsid, compact)
    optcount = 0 if edns is None else 1
    if len(buf) + len(opt) <= limit:
        buf[:HEADER_LEN] = _HEADER.pack(0, flags, qdcount, ancount, nscount, arcount + optcount)
        buf += opt
        return bytes(buf)
    if not message.glue_required and lean + len(opt) <= limit:
        header = _HEADER.pack(0, flags, qdcount, ancount, nscount, optcount)
        return header + buf[HEADER_LEN:lean] + opt
    header = _HEADER.pack(0, flags | _TC, qdcount, 0, 0, optcount)
    return header + buf[HEADER_LEN:qend] + opt


def render_refusal(refusal: Refuse) -> bytes:
    """The reply for a ``Refuse``: its rcode, no data, question and OPT echoed when known."""
    return render(refusal.question, Message(refusal.rcode, False), edns=refusal.edns,
                  limit=TCP_LIMIT, opcode=refusal.opcode)


def heads(reply: bytes) -> tuple[bytes, ...]:
    """``reply``'s header octets 2-11 for each RD | CD >> 3 of a query (0-3): what
    ``personalize`` writes after the ID, made ahead for replies answered many times."""
    return tuple(bytes(((reply[2] & 0xFE) | (i & 1), (reply[3] & 0xEF) | (i & 2) << 3))
                 + reply[4:HEADER_LEN] for i in range(4))


def with_id(reply: bytes, query_id: int, rd_cd: bytes) -> bytes:
    """Patch ID and copied flag bits into a reply whose question could not be spliced."""
    return b"".join((
        query_id.to_bytes(2, "big"),
        bytes(((reply[2] & 0xFE) | (rd_cd[0] & 0x01), (reply[3] & 0xEF) | (rd_cd[1] & 0x10))),
        reply[4:],
    ))
