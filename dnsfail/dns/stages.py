"""The stages after the lookup: DNS Cookies, the UDP size cap, response-rate limiting.

Why after the lookup: the reply caches hold what the zones say, the same for
every client; what one client may receive (a server cookie made for its
address, a truncated reply because it never proved that address, nothing at
all because its block is over its rate) is decided per message, on cache
hits and misses alike, and never stored.

Order (RFC 7873 section 5.2, the BIND/Knot practice for RRL):

1. cookies ``check`` the query's COOKIE option: none, a client cookie only,
   a valid or an invalid server cookie, or malformed; a malformed one's reply
   becomes FORMERR (RFC 7873 5.2.2) before the limiter sees it, so that a
   flood of them is limited as errors;
2. a client that proved its address (a valid server cookie) or came over TCP
   is exempt from rate limiting; any other reply is put to the limiter, which
   passes it, slips it (sent truncated, so a real resolver retries over TCP)
   or drops it;
3. cookies ``finish`` what leaves: the server cookie added to a reply to a
   query with a client cookie, and the size cap applied to UDP replies of
   clients without a valid cookie.  A slipped reply to a client that sent a
   client cookie may become BADCOOKIE with a fresh cookie instead, as Knot
   answers (``finish`` is told ``slipped``).

While no limiter runs, ``cookies.stage.CookieStage`` is itself the whole
``After`` (the same replies as ``Stages(cookies=stage)``, in one call), and
with one ``rrl.limiter.RateLimiter.stage`` is (``Stages(cookies, limiter)``
in one call for a UDP query without a COOKIE option): ``Stages`` is the
general composition, and what those two fall back to.

The handler passes what its lookup found the reply by (:data:`Key`), so that
a stage's per-question memos need no slice, hash or parse of their own: the
query's bytes after the ID for an exact-bytes hit, else the case-folded
question key and the question's end, as ``replycache.question_key`` made
them (their hashes already computed by the cache lookups).

Part of the core: pure functions and protocols, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: Limiter decisions.
PASS, SLIP, DROP = 0, 1, 2
#: Cookie states of a query: no COOKIE option, a client cookie only, a valid server
#: cookie, a malformed option, a server cookie that is not a valid one of ours.
NO_COOKIE, CLIENT_COOKIE, VALID_COOKIE, MALFORMED_COOKIE, INVALID_COOKIE = 0, 1, 2, 3, 4
#: What the lookup found its reply by (``Handler.key``): the query's bytes after the ID (an
#: exact-bytes hit), ``replycache.question_key``'s ``(key, qend)`` (any other query it could
#: scan; ``(key, qend, wildcard)`` for a wildcard answer made from a template, ``wildcard``
#: its ``"<owner> <qtype>"``: what rate limiting counts it under), or None (not scanned:
#: the parser's path).
Key = bytes | tuple[bytes, int] | tuple[bytes, int, str] | None


class After(Protocol):
    """A stage after the lookup: the query, its reply and who sent it, to what is sent."""

    def __call__(self, data: bytes, reply: bytes, tcp: bool, client: str,
                 slot: int, key: Key = None) -> bytes | None: ...


class Cookies(Protocol):
    """DNS Cookies (RFC 7873, RFC 9018 server cookies) and the size cap."""

    def check(self, data: bytes, client: str) -> int:
        """The query's cookie state (one of the ``*_COOKIE`` constants)."""
        ...

    def malformed(self, data: bytes, reply: bytes) -> bytes | None:
        """The reply to a query with a malformed COOKIE option (FORMERR, RFC 7873 5.2.2),
        before the limiter; ``finish`` is still called with MALFORMED_COOKIE."""
        ...

    def finish(self, data: bytes, reply: bytes, state: int, tcp: bool, client: str,
               slipped: bool) -> bytes:
        """``reply`` as it leaves: with the server cookie, capped in size when unproven."""
        ...


class Limiter(Protocol):
    """Response-rate limiting by source block and response class."""

    def decide(self, data: bytes, reply: bytes, client: str, slot: int) -> int:
        """PASS, SLIP or DROP for ``reply`` to ``client``; ``slot`` is its QueryStats slot."""
        ...

    def slip(self, data: bytes, reply: bytes) -> bytes:
        """The truncated reply sent instead of a limited one (TC=1, no records)."""
        ...


@dataclass(frozen=True)
class Stages:
    """The composed ``After``: cookies and limiter, each optional."""

    cookies: Cookies | None = None
    limiter: Limiter | None = None

    def __call__(self, data: bytes, reply: bytes, tcp: bool, client: str,
                 slot: int, key: Key = None) -> bytes | None:
        cookies, limiter = self.cookies, self.limiter
        state = cookies.check(data, client) if cookies is not None else NO_COOKIE
        if state == MALFORMED_COOKIE and cookies is not None:
            formerr = cookies.malformed(data, reply)
            if formerr is None:
                return None
            reply = formerr
        slipped = False
        if limiter is not None and not tcp and state != VALID_COOKIE:
            decision = limiter.decide(data, reply, client, slot)
            if decision == DROP:
                return None
            if decision == SLIP:
                reply = limiter.slip(data, reply)
                slipped = True
        if cookies is not None:
            return cookies.finish(data, reply, state, tcp, client, slipped)
        return reply
