"""Who may use the control API: the exposure rule at start, the bearer token on each request.

Loopback-only by default.  Binding any other address requires a bearer
token (:func:`check_exposure`, at start), and a token, once configured, is
required on every endpoint but ``/healthz`` and ``/readyz`` (load balancers
and kubelets probe those without secrets, and they reveal nothing).  The
token is compared with ``hmac.compare_digest``; a refused request changes
nothing and is logged (:func:`auth`, a middleware).

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
import secrets
import time

from aiohttp import web

from dnsfail.control.guard import RouteHandler
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
    if scheme.lower() == "bearer" and token_matches(token, given):
        return await handler(request)
    if request.method in READ_METHODS and has_session(request):
        return await handler(request)
    why = "no bearer token" if not given else "wrong bearer token"
    log.warning("control: refused %s %s from %s: %s", request.method, request.path,
                peer(request), why,
                extra={"fields": {"event": "control_refused", "method": request.method,
                                  "path": request.path, "client": peer(request)}})
    return web.Response(
        status=401, text=json.dumps({"error": f"unauthorized: {why}"}) + "\n",
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="dnsfail"'},
    )
