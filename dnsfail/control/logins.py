"""Failed token checks, counted per source: past the limit a source's attempts are refused.

A wrong token in the status page's login form, or a wrong bearer token on
an API request, is a failure of its source (an IPv4 address, or an IPv6
/64: one host can use any address of its /64 at will).  After
``MAX_LOGIN_FAILURES`` failures within ``LOGIN_WINDOW`` seconds of its
first, every further attempt from that source is refused unchecked (HTTP
429 with ``Retry-After``) until the window has passed: guessing the token
costs a minute per ``MAX_LOGIN_FAILURES`` guesses, and the refused ones
cost no comparison.  A right token from a source ends its count.  The
table holds at most ``MAX_LOGIN_SOURCES`` sources, the least recently
failed dropped first, so a spray of sources cannot grow memory.

Pure bookkeeping over an injected clock; no I/O.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from dnsfail.addresses import source_of

#: Failed token checks one source may make within LOGIN_WINDOW; past it, refused unchecked.
#: Twenty covers a person's typos, a script's retries and a peer started with an old token
#: (one pull a second locks it out for the rest of the minute, not for good); a guesser gets
#: twenty guesses a minute, against a token of 128 bits or more.
MAX_LOGIN_FAILURES = 20
#: Seconds from a source's first failure in which its failures are counted (and for which it
#: is then refused).
LOGIN_WINDOW = 60.0
#: Sources whose failures are remembered; past it the least recently failed is forgotten.
#: Bounds the memory a spray of addresses can take (~200 bytes each).
MAX_LOGIN_SOURCES = 4096
class LoginLimit:
    """Failures per source within a window; :meth:`retry_after` > 0: refuse unchecked."""

    def __init__(self, failures: int = MAX_LOGIN_FAILURES, window: float = LOGIN_WINDOW,
                 sources: int = MAX_LOGIN_SOURCES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.window, self.sources, self.clock = failures, window, sources, clock
        #: Source -> [start of its window, failures in it], least recently failed first.
        self.by_source: collections.OrderedDict[str, list[float]] = collections.OrderedDict()
        #: Attempts refused unchecked, for status and tests.
        self.refused = 0

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0.0: now); counts a refusal if > 0."""
        entry = self.by_source.get(source_of(address))
        if entry is None or entry[1] < self.failures:
            return 0.0
        left = entry[0] + self.window - self.clock()
        if left <= 0:
            return 0.0
        self.refused += 1
        return left

    def failed(self, address: str) -> None:
        key = source_of(address)
        now = self.clock()
        entry = self.by_source.get(key)
        if entry is None or now - entry[0] >= self.window:
            self.by_source[key] = [now, 1]
        else:
            entry[1] += 1
        self.by_source.move_to_end(key)
        while len(self.by_source) > self.sources:
            self.by_source.popitem(last=False)

    def succeeded(self, address: str) -> None:
        if self.by_source:
            self.by_source.pop(source_of(address), None)
