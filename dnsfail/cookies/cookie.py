"""The pure logic of DNS Cookies: the COOKIE option of a query, and RFC 9018 server cookies.

A COOKIE option (RFC 7873 section 4) holds an 8-octet client cookie, then
optionally a server cookie of 8 to 32 octets; any other length is malformed
(section 5.2.2).  Our server cookies are RFC 9018's, so that every server of
an NS set or anycast group that shares the secret accepts the others' (section 4)::

    Version (1) | Reserved (3) | Timestamp (4) | Hash (8)
    Hash = SipHash-2-4(Client Cookie | Version | Reserved | Timestamp | Client-IP,
                       Server Secret)

A cookie is valid for ``LIFETIME`` seconds after its timestamp and
``SKEW`` before it (section 4.3: the servers' clocks differ), and is
replaced by a fresh one once it is ``REFRESH_AFTER`` seconds old.

No I/O, no clock: the caller passes ``now``.
"""

from __future__ import annotations

import hmac

from dnsfail.cookies.siphash import siphash24

#: The EDNS option code of COOKIE (RFC 7873 section 8).
OPTION_COOKIE = 10
#: A client cookie is exactly 8 octets (RFC 7873 section 4.1).
CLIENT_LEN = 8
#: A server cookie is 8 to 32 octets (RFC 7873 section 4.2), so a COOKIE option is 8
#: (client cookie only) or 16 to 40 octets long; anything else is malformed (5.2.2).
SERVER_MIN, SERVER_MAX = 8, 32
#: The length of an RFC 9018 server cookie: version, reserved, timestamp, hash.
SERVER_LEN = 16
#: RFC 9018 section 4.2: the only version defined.
VERSION = 1
#: Seconds a server cookie stays valid after its timestamp (RFC 9018 section 4.3: one hour).
LIFETIME = 3600
#: Seconds a timestamp may lie in the future, for the clocks of an NS set that differ
#: (RFC 9018 section 4.3: five minutes).
SKEW = 300
#: Age in seconds past which a valid cookie is replaced by a fresh one (RFC 9018 section
#: 4.3: half an hour), so a client that keeps asking never sees its cookie expire.
REFRESH_AFTER = 1800
#: Version and reserved octets of the cookies we make.
_HEAD_RESERVED = bytes((VERSION, 0, 0, 0))

#: How ``judge`` finds a server cookie.
INVALID, VALID, RENEW = 0, 1, 2

#: What ``read_cookie`` finds: the option's data, where the question ends, the OPT's
#: UDP payload size, whether DO is set, and whether the query has an option the reply
#: echoes (ECS, NSID: then the reply's OPT is not empty).
Found = tuple[bytes, int, int, bool, bool]
#: The options a reply of ours echoes (dns.query.OPTION_NSID, OPTION_ECS).
_ECHOED = (3, 8)


def read_cookie(data: bytes) -> Found | None:
    """The first COOKIE option of a plain query (RFC 7873 section 5.2), or None.

    Plain: one question (or none, RFC 7873 section 5.4) written without
    compression, no answer or authority records and exactly one additional
    record, an OPT of EDNS version 0 (options of other versions mean nothing,
    RFC 6891 section 6.1.3) whose RDATA ends the message.  A query that is
    not plain gets its answer (FORMERR, BADVERS) from the parser, without a
    cookie.  Later COOKIE options are ignored, as BIND does.  Never raises:
    any octets at all give an answer in time linear in their length.
    """
    n = len(data)
    if n < 23 or data[10] or data[11] != 1 or data[6:10] != b"\x00\x00\x00\x00":
        return None
    qdcount = data[4] << 8 | data[5]
    if qdcount == 0:
        qend = 12
    elif qdcount == 1:
        i = 12
        while True:
            length = data[i] if i < n else 0xFF
            if length == 0:
                break
            if length > 63:
                return None
            i += length + 1
        qend = i + 5
    else:
        return None
    at = qend + 11
    if at > n or data[qend : qend + 3] != b"\x00\x00\x29" or data[qend + 6]:
        return None
    if at + (data[qend + 9] << 8 | data[qend + 10]) != n:
        return None
    j = at
    cookie: bytes | None = None
    echoed = False
    while j + 4 <= n:
        code = data[j] << 8 | data[j + 1]
        end = j + 4 + (data[j + 2] << 8 | data[j + 3])
        if end > n:
            return None
        if code == OPTION_COOKIE:
            if cookie is None:
                cookie = data[j + 4 : end]
        elif code in _ECHOED:
            echoed = True
        j = end
    if cookie is None:
        return None
    payload = data[qend + 3] << 8 | data[qend + 4]
    return cookie, qend, payload, bool(data[qend + 7] & 0x80), echoed


def well_formed(option: bytes) -> bool:
    """Whether a COOKIE option's length is one RFC 7873 section 5.2.2 allows (8, 16-40)."""
    n = len(option)
    return n == CLIENT_LEN or CLIENT_LEN + SERVER_MIN <= n <= CLIENT_LEN + SERVER_MAX


def server_cookie(secret: bytes, client: bytes, ip: bytes, now: int) -> bytes:
    """Our server cookie for ``client`` (its 8-octet cookie) at address ``ip`` (4 or 16
    octets) at time ``now``: RFC 9018 section 4, reserved octets zero."""
    head = _HEAD_RESERVED + (now & 0xFFFFFFFF).to_bytes(4, "big")
    return head + siphash24(secret, client + head + ip)


def age(timestamp: int, now: int) -> int:
    """Seconds from ``timestamp`` to ``now``, negative when it lies ahead, in serial number
    arithmetic (RFC 1982) as RFC 9018 section 4.3 asks: the 32-bit timestamp wraps in 2106."""
    delta = (now - timestamp) & 0xFFFFFFFF
    return delta - 0x1_0000_0000 if delta & 0x8000_0000 else delta


def judge(secrets: tuple[bytes, ...], client: bytes, server: bytes, ip: bytes,
          now: int) -> int:
    """INVALID, VALID (send it back as it is) or RENEW (valid; send a fresh one).

    Valid: an RFC 9018 version 1 cookie, no more than ``LIFETIME`` seconds
    old nor ``SKEW`` ahead, whose hash, over the reserved octets as received
    (RFC 9018 appendix A.3), one of ``secrets`` made.  Renewed once older
    than ``REFRESH_AFTER``, or made by a secret other than the first (the
    active one, after a rollover), or with reserved octets set.  The hash is
    compared in constant time.
    """
    if len(server) != SERVER_LEN or server[0] != VERSION:
        return INVALID
    seconds = age(int.from_bytes(server[4:8], "big"), now)
    if not -SKEW <= seconds <= LIFETIME:
        return INVALID
    message = client + server[:8] + ip
    mac = server[8:]
    for index, secret in enumerate(secrets):
        if hmac.compare_digest(siphash24(secret, message), mac):
            if index or seconds > REFRESH_AFTER or server[1:4] != b"\x00\x00\x00":
                return RENEW
            return VALID
    return INVALID
