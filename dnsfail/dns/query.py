"""Reading a query off the wire, by hand, in time linear in its length.

``parse_query`` reads what decides the answer, header, the one question and
at most one OPT record (RFC 1035 section 4.1, RFC 6891 section 6.1), into a
``Query``, or raises a ``WireError`` subclass that says how to answer.  (The
reply cache's key is read apart, by ``dns.replycache.question_key``.)

``parse_query`` replaced dnslib's general parser, which reads every section
and follows compression pointers recursively without a bound: one 12.8 KB
query whose answer section was a chain of pointers held the event loop for
seconds.  A query has no business carrying records in its answer section, so
the counts are checked before anything else is read, and nothing past the
question and one additional record is ever looked at.  Each name costs at most
``NAME_LIMIT`` octets of labels and ``POINTER_HOPS`` pointers, each of which
must point strictly backwards; the OPT record's options cost one step per
option, at most RDLENGTH / 4.  No dnslib here.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from dnsfail.errors import WireError
from dnsfail.model import Rcode, RRType

#: Our UDP payload size, the DNS Flag Day 2020 value that avoids fragmentation.
UDP_PAYLOAD = 1232
#: Without EDNS a UDP reply may not exceed 512 octets (RFC 1035 section 4.2.1).
CLASSIC_UDP_LIMIT = 512
TCP_LIMIT = 65535
HEADER_LEN = 12
OPTION_NSID = 3
OPTION_ECS = 8
#: A name takes at most 255 octets on the wire, labels included (RFC 1035 section 2.3.4).
NAME_LIMIT = 255
#: Compression pointers followed in one name.  Each must point before the labels it
#: ends (so there are no loops), and a 255-octet name has at most 127 labels, so a
#: sound name never needs more; the bound keeps a chain of bare pointers from costing
#: more than a name.
POINTER_HOPS = 127

#: QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT (RFC 1035 section 4.1.1).
_COUNTS = struct.Struct("!HHHH")
#: TYPE, CLASS, TTL, RDLENGTH of a resource record (RFC 1035 section 4.1.3).
_RR_FIXED = struct.Struct("!HHIH")
_TYPE_CLASS = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """A decoded EDNS Client Subnet option (RFC 7871 section 6)."""

    family: int
    source_prefix: int
    scope_prefix: int
    network: ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Edns:
    payload: int
    version: int
    do: bool
    ecs: ClientSubnet | None = None
    #: The client asked for our name server identifier (RFC 5001 section 2.3).
    nsid: bool = False
    #: Compact Answers OK, the EDNS flag after DO (RFC 9824 section 5): only signed replies
    #: (``dnsfail.dnssec``) act on it.
    co: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """The parts of a query that decide its answer; names lower case, absolute."""

    id: int
    qname: str
    qtype: int
    qclass: int
    edns: Edns | None

    def udp_limit(self) -> int:
        """Largest UDP reply the client accepts, capped at ours (RFC 6891 section 6.2.5)."""
        if self.edns is None:
            return CLASSIC_UDP_LIMIT
        return min(max(self.edns.payload, CLASSIC_UDP_LIMIT), UDP_PAYLOAD)


class Drop(WireError):
    """Not worth a reply: shorter than a header, or a response (QR set), RFC 1035 4.1.1."""


class Refuse(WireError):
    """Answer with an error rcode and no data, echoing what we could read.

    ``rcode`` is the rcode to send; ``query_id`` and ``opcode`` come from the
    header; ``question`` is present when the question section was readable.
    """

    def __init__(
        self,
        rcode: Rcode,
        reason: str,
        *,
        query_id: int,
        opcode: int = 0,
        question: tuple[str, int, int] | None = None,
        edns: Edns | None = None,
    ) -> None:
        super().__init__(reason)
        self.rcode = rcode
        self.query_id = query_id
        self.opcode = opcode
        self.question = question
        self.edns = edns


class _Malformed(Exception):
    """Why the octets are not a sound message; ``parse_query`` turns it into FORMERR."""


# --- the question, by offset -----------------------------------------------------


def question_end(data: bytes) -> int | None:
    """Offset just past the question of an uncompressed single-question message."""
    i = HEADER_LEN
    try:
        while data[i]:
            if data[i] > 63:
                return None
            i += data[i] + 1
    except IndexError:
        return None
    return i + 5 if i + 5 <= len(data) else None


def labels_to_text(labels: tuple[bytes, ...] | list[bytes]) -> str:
    """Lower-case, absolute text form; odd octets escaped as \\DDD so they never match."""
    parts = []
    for raw in labels:
        low = raw.lower()
        if all(0x21 <= c <= 0x7E and c not in (0x2E, 0x5C) for c in low):
            parts.append(low.decode("ascii"))
        else:
            parts.append("".join(
                chr(c) if 0x21 <= c <= 0x7E and c not in (0x2E, 0x5C) else f"\\{c:03d}"
                for c in low
            ))
    return ".".join(parts) + "." if parts else "."


# --- the parser -------------------------------------------------------------------


def parse_query(data: bytes) -> Query:
    """Parse a query, or raise ``Drop`` / ``Refuse`` saying how to answer it.

    Drop for less than a header or QR set.  NOTIMP for opcodes other than
    QUERY, echoing the question (and OPT) when they can be read.  FORMERR,
    decided from the header before anything else is read, for QDCOUNT other
    than 1 (RFC 9619), for records in the answer or authority section (but
    the client's SOA of an IXFR, RFC 1995 section 3) and for more than one
    additional record (a query has at most its OPT, RFC 6891 section 6.1.1);
    then for anything unreadable (RFC 1035 section 4.1.1), an OPT not owned
    by the root, a malformed ECS option (RFC 7871 section 7.1.1) or octets
    past the last record.  BADVERS for EDNS versions above 0 (RFC 6891
    section 6.1.3), whose options are not interpreted.  An additional record
    other than OPT (a TSIG we do not check) is ignored.
    """
    if len(data) < HEADER_LEN:
        raise Drop("shorter than a DNS header")
    query_id = data[0] << 8 | data[1]
    if data[2] & 0x80:
        raise Drop("QR set: a response, not a query")
    opcode = (data[2] >> 3) & 0x0F
    qdcount, ancount, nscount, arcount = _COUNTS.unpack_from(data, 4)
    if opcode != 0:
        readable = _readable(data, qdcount, ancount, nscount, arcount)
        raise Refuse(Rcode.NOTIMP, f"opcode {opcode}", query_id=query_id, opcode=opcode,
                     question=readable[0], edns=readable[1])
    if qdcount != 1:
        raise Refuse(Rcode.FORMERR, f"QDCOUNT {qdcount}", query_id=query_id)
    try:
        question, at = _question(data)
    except _Malformed as exc:
        raise Refuse(Rcode.FORMERR, str(exc), query_id=query_id) from None
    try:
        if ancount or nscount > (question[1] == RRType.IXFR) or arcount > 1:
            raise _Malformed(f"ANCOUNT {ancount}, NSCOUNT {nscount}, ARCOUNT {arcount}")
        if nscount:
            at = _record(data, at)[5]
        edns = None
        if arcount:
            edns, at = _edns(data, at)
        if at != len(data):
            raise _Malformed(f"{len(data) - at} octets past the last record")
    except _Malformed as exc:
        raise Refuse(Rcode.FORMERR, str(exc), query_id=query_id, question=question) from None
    if edns is not None and edns.version > 0:
        raise Refuse(Rcode.BADVERS, f"EDNS version {edns.version}", query_id=query_id,
                     question=question, edns=Edns(edns.payload, 0, edns.do))
    qname, qtype, qclass = question
    return Query(query_id, qname, qtype, qclass, edns)


def _readable(
    data: bytes, qdcount: int, ancount: int, nscount: int, arcount: int
) -> tuple[tuple[str, int, int] | None, Edns | None]:
    """What a NOTIMP reply can echo: the question, and the OPT when it follows it alone."""
    if qdcount != 1:
        return None, None
    try:
        question, at = _question(data)
    except _Malformed:
        return None, None
    if ancount or nscount or arcount != 1:
        return question, None
    try:
        return question, _edns(data, at)[0]
    except _Malformed:
        return question, None


def _question(data: bytes) -> tuple[tuple[str, int, int], int]:
    """The question right after the header (RFC 1035 section 4.1.2), and where it ends."""
    labels, at = read_name(data, HEADER_LEN)
    if at + 4 > len(data):
        raise _Malformed("question cut short")
    qtype, qclass = _TYPE_CLASS.unpack_from(data, at)
    return (labels_to_text(labels), qtype, qclass), at + 4


def read_name(data: bytes, at: int) -> tuple[list[bytes], int]:
    """The labels of the name at ``at`` and the offset just past it (RFC 1035 section 4.1.4).

    A pointer must point into the message after the header and before the
    labels it ends, so every hop goes strictly backwards: a name in a query's
    question can therefore never be compressed, there being nothing before
    it.  Labels of the types RFC 6891 section 5 retired (0x40, 0x80) are
    malformed.  At most ``NAME_LIMIT`` octets and ``POINTER_HOPS`` pointers
    are read, whatever the message holds.
    """
    n = len(data)
    labels: list[bytes] = []
    octets = 1  # the root label
    end = 0  # just past the first pointer, once one is met
    run = at  # where the labels now being read start: pointers must point before this
    hops = 0
    i = at
    while True:
        if i >= n:
            raise _Malformed("name runs past the end of the message")
        length = data[i]
        if length == 0:
            return labels, end or i + 1
        if length & 0xC0 == 0xC0:
            if i + 1 >= n:
                raise _Malformed("name runs past the end of the message")
            target = (length & 0x3F) << 8 | data[i + 1]
            hops += 1
            if not HEADER_LEN <= target < run or hops > POINTER_HOPS:
                raise _Malformed("compression pointer not to an earlier name")
            end = end or i + 2
            i = run = target
            continue
        if length > 63:
            raise _Malformed(f"label type 0x{length & 0xC0:02x}")
        octets += length + 1
        if octets > NAME_LIMIT:
            raise _Malformed("name over 255 octets")
        if i + 1 + length > n:
            raise _Malformed("name runs past the end of the message")
        labels.append(data[i + 1 : i + 1 + length])
        i += length + 1


def _record(data: bytes, at: int) -> tuple[list[bytes], int, int, int, int, int]:
    """Owner labels, TYPE, CLASS, TTL, RDATA start and end of the record at ``at`` (RFC 1035
    section 4.1.3); its RDATA must lie inside the message."""
    owner, at = read_name(data, at)
    if at + 10 > len(data):
        raise _Malformed("resource record cut short")
    rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, at)
    end = at + 10 + rdlength
    if end > len(data):
        raise _Malformed("RDLENGTH runs past the end of the message")
    return owner, rtype, rclass, ttl, at + 10, end


def _edns(data: bytes, at: int) -> tuple[Edns | None, int]:
    """The OPT record at ``at`` (RFC 6891 section 6.1.2), or None for another type; and
    where the record ends.  ECS and NSID are the options we act on; of several ECS options
    the first counts, as BIND has it."""
    owner, rtype, payload, ttl, j, end = _record(data, at)
    if rtype != RRType.OPT:
        return None, end
    if owner:
        raise _Malformed("OPT record not owned by the root")
    version = (ttl >> 16) & 0xFF
    ecs: ClientSubnet | None = None
    seen_ecs = nsid = False
    while j < end:
        if j + 4 > end:
            raise _Malformed("EDNS option cut short")
        code = data[j] << 8 | data[j + 1]
        start, j = j + 4, j + 4 + (data[j + 2] << 8 | data[j + 3])
        if j > end:
            raise _Malformed("EDNS option runs past RDLENGTH")
        if version:
            continue  # options of a version we do not speak mean nothing to us
        if code == OPTION_ECS and not seen_ecs:
            ecs, seen_ecs = _client_subnet(data[start:j]), True
        elif code == OPTION_NSID:
            nsid = True
    return Edns(payload, version, bool(ttl & 0x8000), ecs, nsid, bool(ttl & 0x4000)), end


def decode_ecs(
    data: bytes, query_id: int = 0, opcode: int = 0, question: tuple[str, int, int] | None = None
) -> ClientSubnet:
    """Decode an ECS option; malformed ones get FORMERR (RFC 7871 section 7.1.1)."""
    try:
        return _client_subnet(data)
    except _Malformed as exc:
        raise Refuse(Rcode.FORMERR, str(exc), query_id=query_id, opcode=opcode,
                     question=question) from None


def _client_subnet(data: bytes) -> ClientSubnet:
    def bad(why: str) -> _Malformed:
        return _Malformed(f"bad ECS option: {why}")

    if len(data) < 4:
        raise bad("too short")
    family = data[0] << 8 | data[1]
    source, scope = data[2], data[3]
    address = data[4:]
    width = {1: 4, 2: 16}.get(family)
    if width is None:
        raise bad(f"unknown family {family}")
    if source > width * 8 or scope != 0:
        raise bad("prefix length out of range or SCOPE set in a query")
    if len(address) != (source + 7) // 8:
        raise bad("address length does not match SOURCE PREFIX-LENGTH")
    padded = address + bytes(width - len(address))
    ip = ipaddress.ip_address(padded)
    network = ipaddress.ip_network(f"{ip}/{source}", strict=False)
    if network.network_address != ip:
        raise bad("address bits set beyond SOURCE PREFIX-LENGTH")
    return ClientSubnet(family, source, scope, network)
