"""Who may use the control API: the exposure rule at start, the bearer token on each request.

Loopback-only by default.  Binding any other address requires a bearer
token (:func:`check_exposure`, at start), and a token, once configured, is
required on every endpoint but ``/healthz`` and ``/readyz`` (load balancers
and kubelets probe those without secrets, and they reveal nothing).  The
token is compared with ``hmac.compare_digest``; a refused request changes
nothing and is logged (:func:`auth`, a middleware).

Reading the token is ``control.token`` (stdlib only, shared with the
client).  This module imports nothing from ``serve``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging

from aiohttp import web

from dnsfail.control.guard import RouteHandler
from dnsfail.control.token import ControlError

log = logging.getLogger(__name__)

#: Reachable without the token: liveness and readiness carry no information worth a secret.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})

TOKEN: web.AppKey[str | None] = web.AppKey("token")


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
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                          token.encode()):
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
