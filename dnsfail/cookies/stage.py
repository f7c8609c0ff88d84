"""The cookie stage after the lookup (``dns.stages.Cookies``): policy and counters.

What each query gets, by what its COOKIE option holds (RFC 7873 section 5.2):

* no OPT or no COOKIE (5.2.1): the reply as if cookies did not exist, but
  for the size cap;
* a malformed option (5.2.2: a length other than 8 or 16 to 40): FORMERR,
  with our OPT and no cookie (BIND, Knot and NSD do the same);
* a client cookie only (5.2.3), or one with a server cookie that is not a
  valid one of ours (5.2.4: expired, from another secret, another address,
  another implementation): the normal reply with a fresh server cookie, as
  BIND, NSD and gdnsd answer by default.  The client learns its cookie from
  any reply, so one round trip later it is proven;
* a valid server cookie (5.2.5): the normal reply with the same server
  cookie, or a fresh one once it is half an hour old (RFC 9018 section 4.3);
  the client is exempt from rate limiting and from the size cap.

Two cases answer BADCOOKIE (rcode 23) with a fresh server cookie and no
records: a query without a question whose server cookie is invalid (RFC 7873
section 5.4; with a client cookie only or a valid one it is answered NOERROR
with the cookie), and, as Knot does, a query with a client cookie that the
rate limiter would slip: BADCOOKIE carries the cookie that exempts the
client's retry, which a real resolver sends at once over UDP, where a
truncated reply would send it to TCP.

The size cap (gdnsd's ``max_nocookie_response``): a UDP reply larger than
``size_cap`` octets to a client without a valid server cookie goes out
truncated (TC=1, question and OPT only, the fresh cookie included), so a
spoofed source gets at most ``size_cap`` octets, and a real client retries
over TCP or, having learnt its cookie from the truncated reply, next time over
UDP in full.  A reply that the added cookie pushes past the client's own UDP
limit (RFC 6891 section 6.2.5) is truncated the same way.

The replies the caches hold never carry a cookie: the option is added here,
to each reply as it leaves, from the query's own option.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping

from dnsfail.cookies import cookie
from dnsfail.cookies.cookie import Found, judge, read_cookie, server_cookie, well_formed
from dnsfail.cookies.reply import built, cookie_option, find_opt, with_option
from dnsfail.cookies.settings import Secrets
from dnsfail.dns.query import CLASSIC_UDP_LIMIT, UDP_PAYLOAD
from dnsfail.dns.replycache import EXACT_QUERY_LIMIT, client_address
from dnsfail.dns.stages import (
    CLIENT_COOKIE,
    INVALID_COOKIE,
    MALFORMED_COOKIE,
    NO_COOKIE,
    VALID_COOKIE,
    Key,
)
from dnsfail.dns.wire import truncated
from dnsfail.model import Rcode

#: The extended rcode BADCOOKIE (RFC 7873 section 8).
BADCOOKIE = 23
#: Counter names, by index: the five query states (the ``*_COOKIE`` constants of
#: ``dns.stages``), then BADCOOKIE replies sent and replies truncated by the size cap.
COUNTERS = ("none", "client_only", "valid", "malformed", "invalid", "badcookie", "capped")
_BADCOOKIE_SENT, _CAPPED = 5, 6
_UNPROVEN = (CLIENT_COOKIE, INVALID_COOKIE)

#: Queries whose judgement (and, standing alone, whose reply) is remembered for the rest
#: of the second, before each memo is emptied: a bound on memory (a key is at most
#: ``EXACT_QUERY_LIMIT`` octets, a reply remembered at most ``UDP_PAYLOAD``: larger ones,
#: over TCP, are not remembered; a few megabytes in all) that a flood of distinct cookies
#: cannot pass.
RECENT_LIMIT = 4096

#: What ``check`` found, kept for ``finish`` on the same message: the query, the option,
#: and the COOKIE option to send.
_Memo = tuple[bytes, Found, bytes]
#: Queries (their bytes after the ID, the handler's ``Key`` of an exact-bytes hit) known to
#: hold no COOKIE option though the octets 00 0a occur in them (an ECS address in 10/8, which
#: the quick test takes for a possible option): the test without a parse.  Emptied when
#: full: at most this many keys of at most ``EXACT_QUERY_LIMIT`` octets.
PLAIN_LIMIT = 1 << 12
#: The octets that begin a COOKIE option (RFC 7873 section 4): a query without them, past
#: its header, holds none.
_COOKIE_CODE = b"\x00\x0a"


def summed(stage: CookieStage | None, others: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """``stage``'s counters plus ``others`` (workers' reports); empty when there is no stage."""
    if stage is None:
        return {}
    out = stage.counters()
    for counts in others:
        for name, count in counts.items():
            out[name] = out.get(name, 0) + count
    return out


def _empty_opt(reply: bytes) -> int | None:
    """Where the OPT of ``reply`` starts when it is an empty OPT at the end, found without
    walking the records: a reply of ours to an EDNS query has an OPT, last (wire.render),
    whose options only echo the query's ECS and NSID; the caller knows it had neither."""
    n = len(reply)
    if n >= 23 and (reply[10] or reply[11]) and reply[n - 11 : n - 8] == b"\x00\x00\x29" \
            and reply[n - 2 :] == b"\x00\x00":
        return n - 11
    return None


@functools.lru_cache(maxsize=65536)
def packed_address(client: str) -> bytes:
    """The Client-IP of RFC 9018 section 4.4: 4 octets for IPv4 (an IPv4-mapped IPv6
    address included), 16 for IPv6; empty for a client with no address (tests, explain)."""
    address = client_address(client)
    return address.packed if address is not None else b""


class CookieStage:
    """DNS Cookies and the size cap, as ``dns.stages.Stages`` calls them; and, called
    itself, the whole ``After`` when no limiter runs (``Stages(cookies=stage)`` in one call).

    ``clock`` gives the time in seconds (the cookies' timestamps); tests
    pass their own.  ``counts`` are plain ints by ``COUNTERS``, read by the
    metrics at scrape time.  What a query's option is judged to be, and the
    reply it gets from the same lookup reply, are remembered for the rest of
    the second (``RECENT_LIMIT``): a resolver repeating a question with its
    cookie sends the same octets but for the ID, and the same second makes the
    same cookie, so the memo gives exactly what the work would.
    """

    def __init__(self, secrets: Secrets, *, answer: bool = True, size_cap: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        #: False (``--no-cookies``): every query is taken as without a cookie, so only
        #: the size cap acts, on every UDP reply.
        self.answer = answer
        self.keys = secrets.keys
        self.size_cap = size_cap
        self.clock = clock
        self.counts = [0] * len(COUNTERS)
        self._memo: _Memo | None = None
        #: Exact-bytes keys of queries that hold no COOKIE option (``PLAIN_LIMIT``).
        self._plain: set[Key] = set()
        self._recent: dict[tuple[bytes, str], tuple[int, Found, bytes, int]] = {}
        #: What ``__call__`` sent for the rest of the second, by query (but its ID), client and
        #: transport: the lookup's reply it was made from, the counters it moved, the reply.
        self._sent: dict[tuple[bytes, str, bool], tuple[int, bytes, tuple[int, ...], bytes]] = {}

    def counters(self) -> dict[str, int]:
        return dict(zip(COUNTERS, self.counts, strict=True))

    def plain_pass(self) -> tuple[list[int], int] | None:
        """Where a query with no ``00 0a`` past its header is counted when this stage lets
        its reply through unchanged (``__call__``'s first test), for a compiled drain that
        answers such a query's exact hit itself; None when the size cap may change it."""
        return (self.counts, NO_COOKIE) if self.answer and not self.size_cap else None

    def __call__(self, data: bytes, reply: bytes, tcp: bool, client: str,
                 slot: int, key: Key = None) -> bytes | None:
        # no COOKIE option can be there, or it is known that none is
        if not self.answer or data.find(_COOKIE_CODE, 12) < 0 or key in self._plain:
            self.counts[NO_COOKIE] += 1
            return self._cap(reply) if self.size_cap and not tcp else reply
        memo = (data[2:], client, tcp)
        now = int(self.clock())
        sent = self._sent.get(memo)
        if sent is not None and sent[0] == now and sent[1] == reply[2:]:
            for index in sent[2]:
                self.counts[index] += 1
            return data[:2] + sent[3]
        before = list(self.counts)
        state = self.check(data, client)
        if state == NO_COOKIE and type(key) is bytes and len(key) <= EXACT_QUERY_LIMIT:
            if len(self._plain) >= PLAIN_LIMIT:
                self._plain.clear()
            self._plain.add(key)
            return self._cap(reply) if self.size_cap and not tcp else reply
        out: bytes | None = reply
        if state == MALFORMED_COOKIE:
            out = self.malformed(data, reply)
        if out is not None:
            out = self.finish(data, out, state, tcp, client, False)
        if out is not None and len(data) <= EXACT_QUERY_LIMIT and len(out) <= UDP_PAYLOAD:
            if len(self._sent) >= RECENT_LIMIT:
                self._sent.clear()
            bumped = tuple(i for i, count in enumerate(self.counts) if count != before[i])
            self._sent[memo] = (now, reply[2:], bumped, out[2:])
        return out

    def _judge(self, data: bytes, client: str) -> tuple[int, Found | None, bytes]:
        """The query's state, its option, and the COOKIE option a reply carries."""
        now = int(self.clock())
        key = (data[2:], client)
        recent = self._recent.get(key)
        if recent is not None and recent[3] == now:
            return recent[0], recent[1], recent[2]
        found = read_cookie(data)
        if found is None:
            return NO_COOKIE, None, b""
        option = found[0]
        if not well_formed(option):
            return MALFORMED_COOKIE, found, b""
        ip = packed_address(client)
        ours = option[:8]
        state, send = CLIENT_COOKIE, b""
        if len(option) > 8:
            verdict = judge(self.keys, ours, option[8:], ip, now)
            state = VALID_COOKIE if verdict else INVALID_COOKIE
            if verdict == cookie.VALID:
                send = option[8:]
        if not send:
            send = server_cookie(self.keys[0], ours, ip, now)
        made = cookie_option(ours, send)
        if len(data) <= EXACT_QUERY_LIMIT:
            if len(self._recent) >= RECENT_LIMIT:
                self._recent.clear()
            self._recent[key] = (state, found, made, now)
        return state, found, made

    def check(self, data: bytes, client: str) -> int:
        if not self.answer or data.find(_COOKIE_CODE, 12) < 0:
            self.counts[NO_COOKIE] += 1
            return NO_COOKIE
        state, found, option = self._judge(data, client)
        self._memo = (data, found, option) if found is not None else None
        self.counts[state] += 1
        return state

    def malformed(self, data: bytes, reply: bytes) -> bytes | None:
        """FORMERR for a malformed COOKIE option (RFC 7873 section 5.2.2): the question
        and our OPT, no cookie."""
        found = read_cookie(data)
        if found is None:
            return reply
        return built(data, found[1], Rcode.FORMERR, found[3], b"")

    def _cap(self, reply: bytes) -> bytes:
        """A UDP reply to a client without a valid cookie, truncated if over the cap."""
        if len(reply) > self.size_cap:
            cut = truncated(reply, find_opt(reply))
            if cut is not None:
                self.counts[_CAPPED] += 1
                return cut
        return reply

    def finish(self, data: bytes, reply: bytes, state: int, tcp: bool, client: str,
               slipped: bool) -> bytes:
        if state in (NO_COOKIE, MALFORMED_COOKIE):
            return self._cap(reply) if self.size_cap and not tcp else reply
        memo = self._memo
        if memo is None or memo[0] is not data:
            _, found, option = self._judge(data, client)
            if found is None:
                return reply
        else:
            found, option = memo[1], memo[2]
        qend, payload, do = found[1], found[2], found[3]
        if qend == 12:  # no question: a query for a cookie (RFC 7873 section 5.4)
            if state == INVALID_COOKIE:
                self.counts[_BADCOOKIE_SENT] += 1
                return built(data, 12, BADCOOKIE, do, option)
            return built(data, 12, Rcode.NOERROR, do, option)
        if slipped and not tcp and state in _UNPROVEN:
            self.counts[_BADCOOKIE_SENT] += 1
            return built(data, qend, BADCOOKIE, do, option)
        opt = _empty_opt(reply) if not found[4] else None
        if opt is None:
            opt = find_opt(reply)
            if opt is None:  # answered without an OPT (FORMERR before EDNS was read)
                return reply
        out = with_option(reply, opt, option)
        if tcp:
            return out
        limit = min(max(payload, CLASSIC_UDP_LIMIT), UDP_PAYLOAD)
        capped = state != VALID_COOKIE and 0 < self.size_cap < limit
        if capped:
            limit = self.size_cap
        if len(out) <= limit:
            return out
        cut = truncated(out, opt)
        if cut is None:
            return out
        if capped:
            self.counts[_CAPPED] += 1
        return cut
