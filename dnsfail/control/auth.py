"""Who may use the control API: the exposure rule at start, the bearer token on each request.

Loopback-only by default.  Binding any other address requires a bearer
token (:func:`check_exposure`, at start), and a token, once configured, is
required on every endpoint but ``/healthz`` and ``/readyz`` (load balancers
and kubelets probe those without secrets, and they reveal nothing).  The
token is compared with ``hmac.compare_digest``; a refused request changes
nothing and is logged (:func:`auth`, a middleware), boundedly: the first
refusal from an address at once, then at most one line per address per
``REFUSAL_LOG_INTERVAL`` carrying the count of those not logged, and at most
``REFUSAL_LINES_PER_INTERVAL`` lines in all (:class:`RefusalLog`), so a
peer with a wrong token, or a scanner, cannot fill the disk.  Wrong tokens
are also counted per source (``control.logins``): past
``MAX_LOGIN_FAILURES`` in ``LOGIN_WINDOW`` the source's requests get 429,
its token unchecked, until the window has passed (a guesser gets twenty
tries a minute).

A browser cannot send a bearer header, so the status page logs in once
(``control.page``: the token in a POSTed form) and gets a session cookie:
a random id kept here (:class:`Sessions`, at most ``MAX_SESSIONS``, each
for ``SESSION_TTL``), never the token itself.  A session is good for
reading only: ``GET`` and ``HEAD``.  Every change (drain, undrain, reload)
still needs the bearer token, so a forged cross-site request can change
nothing (the cookie is also ``SameSite=Strict``).

Reading the token is ``control.token`` (stdlib only, shared with the
client).  This module imports nothing from ``serve``.
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import json
import logging
import math
import secrets
import time
from collections.abc import Callable

from aiohttp import web

from dnsfail.control.guard import RouteHandler
from dnsfail.control.logins import LoginLimit
from dnsfail.control.token import ControlError

log = logging.getLogger(__name__)

#: Reachable without the token: liveness and readiness carry no information worth a secret;
#: the page's shell, its script and style, and the login form hold no data (the page itself
#: checks the session and shows the login form without one).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/login", "/logout", "/static/page.js",
                        "/static/page.css", "/favicon.ico"})

TOKEN: web.AppKey[str | None] = web.AppKey("token")

#: The status page's session cookie.
COOKIE = "dnsfail_session"
#: Browser sessions kept at once; a new login past it ends the oldest.
MAX_SESSIONS = 64
#: Seconds a session lasts from its login (a working day).
SESSION_TTL = 12 * 3600.0
#: Methods a session cookie allows: reading only.
READ_METHODS = frozenset({"GET", "HEAD"})


class Sessions:
    """Random session ids, each with its expiry (monotonic), oldest first; bounded."""

    def __init__(self, limit: int = MAX_SESSIONS, ttl: float = SESSION_TTL) -> None:
        self.limit = limit
        self.ttl = ttl
        self.ids: collections.OrderedDict[str, float] = collections.OrderedDict()

    def issue(self) -> str:
        now = time.monotonic()
        while self.ids and (len(self.ids) >= self.limit or next(iter(self.ids.values())) < now):
            self.ids.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        self.ids[sid] = now + self.ttl
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        expiry = self.ids.get(sid)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self.ids[sid]
            return False
        return True

    def end(self, sid: str | None) -> None:
        if sid:
            self.ids.pop(sid, None)


SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions")

#: Seconds between two logged refusals from one address: a misconfigured peer pulling twice a
#: second writes one line a minute (with the count of the others), not 7,200 an hour.
REFUSAL_LOG_INTERVAL = 60.0
#: Refusal lines logged per interval over all addresses: many addresses (an IPv6 scanner)
#: cannot flood the log either; past it, refusals are only counted (next line says how many).
REFUSAL_LINES_PER_INTERVAL = 30
#: Addresses whose logging window is remembered; past it the oldest is forgotten (its next
#: refusal is then logged as a first one).  Bounds the memory a spray of sources can take.
MAX_REFUSAL_SOURCES = 1024


class RefusalLog:
    """Which refusals to log: per address once per interval, with the count held back.

    :meth:`note` says whether to log this refusal now and, if so, how many refusals
    from that address (and, past the global cap, from any address) went unlogged since
    the last line.  Pure bookkeeping over an injected clock; bounded in entries.
    """

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL,
                 lines: int = REFUSAL_LINES_PER_INTERVAL, sources: int = MAX_REFUSAL_SOURCES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.lines, self.sources, self.clock = interval, lines, sources, clock
        #: Address -> [when its last line was logged, refusals not logged since].
        self.by_source: collections.OrderedDict[str, list[float]] = collections.OrderedDict()
        self.window_start = -float("inf")
        self.window_lines = 0
        #: Refusals not logged because of the global cap, reported with the next line.
        self.capped = 0

    def note(self, source: str) -> tuple[bool, int, int]:
        """``(log it, unlogged from this source, unlogged past the cap)`` for one refusal."""
        now = self.clock()
        entry = self.by_source.get(source)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False, 0, 0
        if now - self.window_start >= self.interval:
            self.window_start, self.window_lines = now, 0
        if self.window_lines >= self.lines:
            if entry is not None:  # its own next line reports it
                entry[1] += 1
            else:
                self.capped += 1
            return False, 0, 0
        self.window_lines += 1
        held = int(entry[1]) if entry is not None else 0
        capped, self.capped = self.capped, 0
        self.by_source[source] = [now, 0]
        self.by_source.move_to_end(source)
        while len(self.by_source) > self.sources:
            self.by_source.popitem(last=False)
        return True, held, capped


REFUSALS: web.AppKey[RefusalLog] = web.AppKey("refusals")
#: Failed token checks per source (``control.logins``): the login form's and the bearer's.
LOGINS: web.AppKey[LoginLimit] = web.AppKey("logins")


def has_session(request: web.Request) -> bool:
    return request.app[SESSIONS].valid(request.cookies.get(COOKIE))


def token_matches(token: str, given: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 or ::1 literals; any other name is not trusted."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve the control API beyond loopback without a token."""
    if token is None and not is_loopback(host):
        raise ControlError(
            f"control API on {host} is reachable beyond this host: it needs a bearer token "
            "(--control-token-file FILE or DNSFAIL_CONTROL_TOKEN), or bind it to 127.0.0.1"
        )


def peer(request: web.Request) -> str:
    return request.remote or "?"


@web.middleware
async def auth(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    token = request.app[TOKEN]
    if token is None or request.path in OPEN_PATHS:
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and bool(given.strip())
    logins = request.app.get(LOGINS)
    wait = logins.retry_after(peer(request)) if bearer and logins is not None else 0.0
    if bearer and not wait:
        if token_matches(token, given):
            if logins is not None:
                logins.succeeded(peer(request))
            return await handler(request)
        if logins is not None:
            logins.failed(peer(request))
    if request.method in READ_METHODS and has_session(request):
        return await handler(request)
    if wait:
        log_refusal(request, "too many failed token checks from this address")
        return too_many(wait, json.dumps({"error": "too many failed token checks from this "
                                          f"address: try again in {math.ceil(wait)} s"}) + "\n",
                        "application/json")
    why = "no bearer token" if not given else "wrong bearer token"
    log_refusal(request, why)
    return web.Response(
        status=401, text=json.dumps({"error": f"unauthorized: {why}"}) + "\n",
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="dnsfail"'},
    )


def too_many(wait: float, text: str, content_type: str,
             headers: dict[str, str] | None = None) -> web.Response:
    """429 with ``Retry-After`` (RFC 6585 section 4): the source failed too many checks."""
    return web.Response(status=429, text=text, content_type=content_type,
                        headers={**(headers or {}), "Retry-After": str(math.ceil(wait))})


def log_refusal(request: web.Request, why: str, what: str | None = None) -> None:
    """Log a refused request, boundedly (:class:`RefusalLog`); ``what``: default method, path."""
    refusals = request.app.get(REFUSALS)
    held = capped = 0
    if refusals is not None:
        show, held, capped = refusals.note(peer(request))
        if not show:
            return
    notes = []
    if held:
        notes.append(f"{held} more from this address not logged")
    if capped:
        notes.append(f"{capped} from other addresses not logged")
    tail = f" ({'; '.join(notes)})" if notes else (
        f" (logged at most once per {REFUSAL_LOG_INTERVAL:g}s per address)")
    log.warning("control: refused %s from %s: %s%s",
                what or f"{request.method} {request.path}", peer(request), why, tail,
                extra={"fields": {"event": "control_refused", "method": request.method,
                                  "path": request.path, "client": peer(request),
                                  "suppressed": held, "suppressed_other": capped}})
