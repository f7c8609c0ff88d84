"""Cookies and the rate limiter as the handler's whole ``After``, in one call.

``dns.stages.Stages(cookies, limiter)`` is the general composition: the
cookie check, the limiter, the cookie finish, each a call.  An unattacked
server mostly answers UDP queries without a COOKIE option, for which
``check`` says NO_COOKIE and ``finish`` does nothing but the size cap: this
``After`` counts that, asks the limiter and applies the cap itself, and
hands everything else (TCP, a query that holds a COOKIE option) to
``Stages``, so the replies and counters are the same either way (the tests
pin it).  The handler's ``key`` (``dns.stages.Key``) keys the limiter's
memos; a reply whose stream holds credit (``rrl.limiter.Stream``) is decided
here inline, two dict lookups and a decrement, without calling the limiter.
"""

from __future__ import annotations

from dnsfail.cookies.cookie import read_cookie
from dnsfail.cookies.stage import CookieStage
from dnsfail.dns.stages import DROP, NO_COOKIE, After, Key, Stages
from dnsfail.rrl.limiter import RateLimiter

#: Queries (their bytes after the ID, as the exact-bytes cache holds them) known to hold no
#: COOKIE option though the octets 00 0a occur in them (an ECS address in 10/8, which
#: ``CookieStage.check``'s quick test takes for a possible option): the test without a
#: parse.  Emptied when full: at most this many keys of at most ``EXACT_QUERY_LIMIT``
#: octets.
PLAIN_MEMO = 1 << 12


class Guard:
    """``Stages(cookies, limiter)`` in one call for a UDP query without a COOKIE option."""

    __slots__ = ("_account", "_answer", "_clients", "_cookies", "_counts", "_plain",
                 "_size_cap", "_slip", "_stages")

    def __init__(self, cookies: CookieStage | None, limiter: RateLimiter) -> None:
        self._stages = Stages(cookies=cookies, limiter=limiter)
        self._cookies = cookies
        self._counts = cookies.counts if cookies is not None else None
        self._answer = cookies is not None and cookies.answer
        self._size_cap = cookies.size_cap if cookies is not None else 0
        self._account, self._slip = limiter.account, limiter.slip
        self._clients = limiter._clients
        self._plain: set[bytes] = set()

    def after(self, data: bytes, reply: bytes, tcp: bool, client: str, slot: int,
              key: Key = None) -> bytes | None:
        """``dns.stages.After``."""
        if tcp:
            return self._stages(data, reply, tcp, client, slot, key)
        if self._answer and data.find(b"\x00\x0a", 12) >= 0:  # as CookieStage.check
            plain = self._plain
            if not isinstance(key, bytes) or key not in plain:
                if read_cookie(data) is not None:
                    return self._stages(data, reply, tcp, client, slot, key)
                if isinstance(key, bytes):
                    if len(plain) >= PLAIN_MEMO:
                        plain.clear()
                    plain.add(key)
        counts = self._counts
        if counts is not None:
            counts[NO_COOKIE] += 1
        # ``RateLimiter.decide`` inline: a stream with credit is two lookups and a decrement
        c, stream = self._clients.get(client), None
        if c is not None and key is not None:
            if reply[3] & 0x0F:  # ``limiter.memo_key`` inline
                stream = c.memo.get(slot)
            elif type(key) is bytes:
                stream = c.memo.get(key)
            else:
                stream = c.memo.get(key[2] if len(key) == 3
                                    else key[0][:key[1] - 14])  # type: ignore[index]
            if stream is not None and stream.credit:
                stream.credit -= 1
                if self._size_cap and self._cookies is not None:
                    return self._cookies.finish(data, reply, NO_COOKIE, False, client, False)
                return reply
        decision = self._account(data, reply, client, slot, key, stream)
        if decision:
            if decision == DROP:
                return None
            reply = self._slip(data, reply)
        if self._size_cap and self._cookies is not None:
            return self._cookies.finish(data, reply, NO_COOKIE, False, client, bool(decision))
        return reply


def guarded(cookies: CookieStage | None, limiter: RateLimiter) -> After:
    """The handler's ``After`` for ``cookies`` (None: off) and ``limiter``."""
    return Guard(cookies, limiter).after
