"""Octet lengths on the wire of names, rdata and RRsets, from model values (no dnslib).

``check`` must refuse what the server cannot send: rdata longer than
RDLENGTH can say (65,535 octets, RFC 1035 section 3.2.1), and an RRset that
cannot fit one DNS message even over TCP (65,535 octets, RFC 1035 section
4.2.2).  Names are counted uncompressed, owners as a compression pointer:
an upper bound of what any packer writes.  Names themselves (255 octets,
labels of 63, RFC 1035 section 2.3.4) are checked where zonefile.names parses them.
"""

from __future__ import annotations

from collections.abc import Sequence

from dnsfail.model import AAAA, CAA, CNAME, HINFO, MX, NS, PTR, SOA, SRV, TXT, A, Opaque, Rdata

__all__ = ["MAX_MESSAGE", "MAX_RDATA", "RRSET_BUDGET", "name_length", "rdata_length",
           "rrset_length"]

#: RDLENGTH is 16 bits (RFC 1035 section 3.2.1).
MAX_RDATA = 65535
#: A DNS message over TCP has a 16-bit length (RFC 1035 section 4.2.2).
MAX_MESSAGE = 65535
#: The header (12) and the longest question (a 255-octet name, type, class): what any reply
#: carries besides its records.
_FIXED = 12 + 255 + 4
#: Octets one RRset may use: it must fit a reply alone, whatever the question.
RRSET_BUDGET = MAX_MESSAGE - _FIXED
#: Each record besides its rdata: a compressed owner (2), TYPE, CLASS, TTL, RDLENGTH (10).
RR_OVERHEAD = 2 + 10


def name_length(name: str) -> int:
    """Wire length of an absolute name in text without escapes (``a.b.`` -> 5)."""
    return 1 if name == "." else len(name) + 1


def rdata_length(rdata: Rdata) -> int:
    """RDLENGTH of ``rdata``, names uncompressed (RFC 1035 section 3.3; RFC 8659 for CAA)."""
    match rdata:
        case A():
            return 4
        case AAAA():
            return 16
        case NS(target) | CNAME(target) | PTR(target):
            return name_length(target)
        case MX(_, exchange):
            return 2 + name_length(exchange)
        case SRV(_, _, _, target):
            return 6 + name_length(target)
        case TXT(strings):
            return sum(1 + len(s) for s in strings)
        case CAA(_, tag, value):
            return 2 + len(tag.encode()) + len(value.encode())
        case SOA(mname, rname):
            return name_length(mname) + name_length(rname) + 20
        case HINFO(cpu, os):
            return 2 + len(cpu) + len(os)
        case Opaque(data):
            return len(data)
    raise TypeError(f"no wire length for {type(rdata).__name__}")


def rrset_length(rdatas: Sequence[Rdata]) -> int:
    """Octets the records of one RRset take in a reply (owners compressed)."""
    return sum(RR_OVERHEAD + rdata_length(rdata) for rdata in rdatas)
