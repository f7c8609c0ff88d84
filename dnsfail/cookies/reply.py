"""The reply's bytes, changed after the lookup: the COOKIE option added, and the replies
built from the query alone (FORMERR, BADCOOKIE, the empty-question reply).  Truncation is
``dns.wire.truncated``, shared with the rate limiter's slip.

The reply caches hold what the lookup renders, which never carries a
cookie; these functions add the client's cookie on the way out, so one
client's server cookie can never reach another from a cache.  They take
replies of ours (``dns.wire.render``: the OPT record is the last one) and
return None, never raise, when a reply is not laid out as expected.
"""

from __future__ import annotations

import struct

from dnsfail.cookies.cookie import OPTION_COOKIE
from dnsfail.dns.query import UDP_PAYLOAD
from dnsfail.dns.wire import skip_name

#: QR set, then what a reply copies from its query's flags: OPCODE and RD (RFC 1035
#: section 4.1.1); CD (RFC 6840 section 5.9) in the second octet.
_QR, _OPCODE_RD, _CD = 0x80, 0x79, 0x10
#: The OPT record's fixed part: root owner, TYPE 41, our payload size; TTL and RDLENGTH
#: (the extended rcode's upper eight bits and DO) follow (RFC 6891 section 6.1.2).
_OPT_HEAD = b"\x00\x00\x29" + UDP_PAYLOAD.to_bytes(2, "big")
_TTL_RDLEN = struct.Struct("!IH")


def cookie_option(client: bytes, server: bytes) -> bytes:
    """The COOKIE option carrying ``client`` and ``server`` (RFC 7873 section 4)."""
    return struct.pack("!HH", OPTION_COOKIE, len(client) + len(server)) + client + server


def find_opt(reply: bytes) -> int | None:
    """Where the OPT record of ``reply`` starts, when it is the last record, else None."""
    try:
        qdcount = reply[4] << 8 | reply[5]
        records = (reply[6] << 8 | reply[7]) + (reply[8] << 8 | reply[9]) + (
            reply[10] << 8 | reply[11])
        if not records:
            return None
        i = 12
        for _ in range(qdcount):
            i = skip_name(reply, i) + 4
        for _ in range(records - 1):
            i = skip_name(reply, i) + 10
            i += reply[i - 2] << 8 | reply[i - 1]
        if (reply[i : i + 3] == b"\x00\x00\x29"
                and i + 11 + (reply[i + 9] << 8 | reply[i + 10]) == len(reply)):
            return i
    except IndexError:
        pass
    return None


def with_option(reply: bytes, opt: int, option: bytes) -> bytes:
    """``reply`` with ``option`` appended to its OPT record at ``opt``, RDLENGTH fixed."""
    rdlength = (reply[opt + 9] << 8 | reply[opt + 10]) + len(option)
    return reply[: opt + 9] + rdlength.to_bytes(2, "big") + reply[opt + 11 :] + option


def built(data: bytes, qend: int, rcode: int, do: bool, options: bytes) -> bytes:
    """A reply with no records made from the query ``data`` alone: its ID, OPCODE, RD and
    CD, its question (``data[12:qend]``, none when ``qend`` is 12), ``rcode`` (the upper
    bits in the OPT, RFC 6891 section 6.1.3) and an OPT of ours with ``options``."""
    header = b"".join((data[:2], bytes((_QR | data[2] & _OPCODE_RD, data[3] & _CD | rcode & 0xF)),
                       b"\x00\x01" if qend > 12 else b"\x00\x00", b"\x00\x00\x00\x00\x00\x01"))
    ttl = (rcode >> 4) << 24 | (0x8000 if do else 0)
    return header + data[12:qend] + _OPT_HEAD + _TTL_RDLEN.pack(ttl, len(options)) + options
