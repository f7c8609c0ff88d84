"""Canonical wire forms and the DNSSEC record types, by hand (RFC 4034).

* ``name_wire``: a name's uncompressed wire form, lower case (RFC 4034 6.2);
* ``rdata_wire``: any rdata of ours in canonical form: names uncompressed and
  lower case (the model holds them so), as RFC 4034 section 6.2 asks;
* ``dnskey``/``ds``/``rrsig``/``nsec``: the rdata of the DNSSEC types, and
  ``key_tag`` (RFC 4034 Appendix B), ``type_bitmap`` (RFC 4034 section 4.1.2).

Pure: no I/O, no crypto.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import struct

from dnsfail.dns.wire import unescape_label
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
    Opaque,
    Rdata,
)

DNSKEY_FLAGS_CSK = 257  # ZONE | SEP: a combined signing key (RFC 4034 2.1.1, RFC 3757)
PROTOCOL = 3
DIGEST_SHA256 = 2
_RRSIG_HEAD = struct.Struct("!HBBIIIH")
_SOA_TAIL = struct.Struct("!IIIII")


@functools.lru_cache(maxsize=65536)
def name_wire(text: str) -> bytes:
    """``text`` (absolute, ``\\DDD`` escapes allowed) as uncompressed lower-case wire."""
    if text in ("", "."):
        return b"\x00"
    out = bytearray()
    for part in text.rstrip(".").split("."):
        label = part.encode("ascii") if "\\" not in part else unescape_label(part)
        out.append(len(label))
        out += label.lower()
    out.append(0)
    return bytes(out)


def label_count(name: str) -> int:
    """Labels of ``name`` not counting the root nor a leading ``*`` (RFC 4034 3.1.3)."""
    if name in ("", "."):
        return 0
    labels = name.rstrip(".").count(".") + 1
    return labels - 1 if name.startswith("*.") else labels


@functools.lru_cache(maxsize=16384)
def rdata_wire(rdata: Rdata) -> bytes:
    """The canonical RDATA of ``rdata`` (RFC 4034 section 6.2), without RDLENGTH."""
    match rdata:
        case A(address):
            return ipaddress.IPv4Address(address).packed
        case AAAA(address):
            return ipaddress.IPv6Address(address).packed
        case NS(target) | CNAME(target) | PTR(target):
            return name_wire(target)
        case MX(preference, exchange):
            return preference.to_bytes(2, "big") + name_wire(exchange)
        case SRV(priority, weight, port, target):
            return struct.pack("!HHH", priority, weight, port) + name_wire(target)
        case SOA(mname, rname, serial, refresh, retry, expire, minimum):
            return (name_wire(mname) + name_wire(rname)
                    + _SOA_TAIL.pack(serial, refresh, retry, expire, minimum))
        case TXT(strings):
            return b"".join(bytes((len(s),)) + s for s in strings)
        case CAA(flags, tag, value):
            raw = tag.encode()
            return bytes((flags, len(raw))) + raw + value.encode()
        case HINFO(cpu, os):
            return bytes((len(cpu),)) + cpu + bytes((len(os),)) + os
        case Opaque(data):
            return data
    raise TypeError(f"no wire form for {rdata!r}")


def dnskey(flags: int, algorithm: int, public: bytes) -> bytes:
    """DNSKEY RDATA (RFC 4034 section 2.1); CDNSKEY has the same (RFC 7344 section 3.2)."""
    return struct.pack("!HBB", flags, PROTOCOL, algorithm) + public


def key_tag(rdata: bytes) -> int:
    """The key tag of a DNSKEY RDATA (RFC 4034 Appendix B)."""
    acc = 0
    for i, octet in enumerate(rdata):
        acc += octet if i & 1 else octet << 8
    acc += (acc >> 16) & 0xFFFF
    return acc & 0xFFFF


def ds(owner: str, key_rdata: bytes, algorithm: int) -> bytes:
    """DS RDATA, SHA-256 digest (RFC 4034 section 5.1.4, RFC 4509); CDS the same."""
    digest = hashlib.sha256(name_wire(owner) + key_rdata).digest()
    return struct.pack("!HBB", key_tag(key_rdata), algorithm, DIGEST_SHA256) + digest


def rrsig_head(covered: int, algorithm: int, labels: int, original_ttl: int,
               expiration: int, inception: int, tag: int, signer: str) -> bytes:
    """RRSIG RDATA up to the signature (RFC 4034 section 3.1): what is signed first."""
    return _RRSIG_HEAD.pack(covered, algorithm, labels, original_ttl, expiration & 0xFFFFFFFF,
                            inception & 0xFFFFFFFF, tag) + name_wire(signer)


def type_bitmap(types: frozenset[int] | set[int]) -> bytes:
    """The Type Bit Maps field (RFC 4034 section 4.1.2): windows in order, trailing
    zero octets left off."""
    out = bytearray()
    windows: dict[int, bytearray] = {}
    for rtype in sorted(types):
        window, low = divmod(rtype, 256)
        bits = windows.setdefault(window, bytearray(32))
        bits[low // 8] |= 0x80 >> (low % 8)
    for window in sorted(windows):
        bits = windows[window].rstrip(b"\x00")
        out += bytes((window, len(bits))) + bits
    return bytes(out)


def nsec(next_name: str, types: frozenset[int] | set[int]) -> bytes:
    """NSEC RDATA (RFC 4034 section 4.1): next owner name, uncompressed, and the types."""
    return name_wire(next_name) + type_bitmap(types)
