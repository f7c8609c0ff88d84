"""Listen addresses: ``HOST:PORT`` parsing and the default DNS and control addresses; and
the source a client address counts against (TCP per-source limits, failed logins).

Why a module of its own: the command line builds its parser (defaults and
help texts) from these, and ``dnsfail check`` must not pay for importing the
server, aiohttp and the control API just to read them: those imports cost
more than half a second, a third of checking a 100,000-record zone.
"""

from __future__ import annotations

import ipaddress

#: Unprivileged, so ``dnsfail serve`` runs without root (gdnsd and PowerDNS default to 53).
DEFAULT_LISTEN = ("127.0.0.1", 5300)
DEFAULT_CONTROL = ("127.0.0.1", 8053)
#: Control API connections open at once; one more is closed as soon as it is accepted.  Each
#: costs a file descriptor, and idle ones cost the attacker nothing: 1,100 of them once
#: took every descriptor, and every probe failed with EMFILE (issue 11).
CONTROL_MAX_CONNECTIONS = 256
#: Seconds a connection has to deliver a complete request head, from its accept and again
#: after each response (aiohttp has no such deadline: headers that never end held a
#: connection forever).  Then it is aborted (RST), not closed gracefully: a peer that does
#: not read would keep a graceful close waiting on its unsent buffer.
CONTROL_HEAD_TIMEOUT = 10.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` to a pair; ValueError with the reason otherwise."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT or [IPV6]:PORT")
    return host, int(port)


#: IPv6 clients are counted per /64: the smallest prefix a site or a host is given (RFC 6177;
#: SLAAC needs a /64), so one host can take any address in it at will; counting per address
#: would let it multiply its cap by 2**64.  A /56 (BIND RRL's default) would lump together
#: the unrelated customers an ISP numbers from one /56.  IPv4 is counted per address.
IPV6_SOURCE_PREFIX = 64


def source_of(address: str) -> str:
    """The source a client address counts against: itself (IPv4), or its /64 (IPv6).

    An IPv4-mapped IPv6 address counts as the IPv4 address; a scope
    (``fe80::1%eth0``) is dropped; text that is no address counts as itself.
    """
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        prefix = ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False)
        return str(prefix)
    return str(ip)
