"""The status page at ``/``: plain HTML, CSS and JavaScript from package data, read-only.

``GET /`` is the page (``static/index.html``; ``static/page.js`` fills it
from ``/v1/status`` and ``/v1/events`` and keeps it live with the event
stream), or, when a token is configured and the browser has no session,
the login form.  ``POST /login`` takes the token from the form body (never
a URL, never logged), and answers with a session cookie (``HttpOnly``,
``SameSite=Strict``, ``Secure`` over TLS) holding a random id that
``control.auth.Sessions`` keeps, never the token; the session can only
read.  ``POST /logout`` ends it.  Without a token (loopback only, as
``control.auth`` rules) the page needs no login.

Every page carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style, no frames,
no form posting elsewhere.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from dnsfail.control.auth import (
    COOKIE,
    LOGINS,
    SESSION_TTL,
    SESSIONS,
    TOKEN,
    has_session,
    log_refusal,
    peer,
    token_matches,
    too_many,
)

log = logging.getLogger(__name__)

#: ``same-origin`` referrers, not ``no-referrer``: with the latter a browser's form POST says
#: ``Origin: null``, and the login's cross-origin check could not tell it from a forged one.
#: No inline code, nothing from elsewhere, no framing (clickjacking), forms post here only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store"}
#: Longest login body (a token is at most a few hundred octets).
MAX_LOGIN_BODY = 4096
#: Seconds a login request has to deliver its body.
LOGIN_BODY_TIMEOUT = 10.0

_TYPES = {"page.js": "text/javascript", "page.css": "text/css"}


def _static(name: str) -> str:
    return resources.files("dnsfail.control").joinpath("static", name).read_text("utf-8")


class Files:
    """The page's files, read once at start."""

    def __init__(self) -> None:
        self.index = _static("index.html")
        self.login = _static("login.html")
        self.assets = {name: _static(name) for name in _TYPES}


FILES: web.AppKey[Files] = web.AppKey("files")


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=HEADERS)


def _login_page(request: web.Request, message: str = "", status: int = 200) -> web.Response:
    return _html(request.app[FILES].login.replace("{message}", html.escape(message)), status)


async def index(request: web.Request) -> web.Response:
    token = request.app[TOKEN]
    if token is not None and not has_session(request):
        return _login_page(request)
    page = request.app[FILES].index.replace("{logout}", "" if token is not None else "hidden")
    return _html(page)


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    text = request.app[FILES].assets.get(name)
    if text is None:
        raise web.HTTPNotFound()
    return web.Response(text=text, content_type=_TYPES[name], charset="utf-8",
                        headers={**HEADERS, "Cache-Control": "no-cache"})


def _same_origin(request: web.Request) -> bool:
    """A browser's POST names its page's origin: it must be this server (login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # an unbalanced [, a bad IPv6 literal, a name NFKC would change
        return False
    return netloc.lower() == request.host.lower()


async def login(request: web.Request) -> web.Response:
    token = request.app[TOKEN]
    if token is None:
        return _see_home()
    if not _same_origin(request):
        log_refusal(request, "cross-origin form", "login")
        return _login_page(request, "cross-origin login refused", 403)
    logins = request.app.get(LOGINS)
    wait = logins.retry_after(peer(request)) if logins is not None else 0.0
    if wait:
        log_refusal(request, "too many failed logins from this address", "login")
        message = f"too many failed logins from this address: try again in {math.ceil(wait)} s"
        page = request.app[FILES].login.replace("{message}", html.escape(message))
        return too_many(wait, page, "text/html", HEADERS)
    if (request.content_length or 0) > MAX_LOGIN_BODY:
        return _login_page(request, "request too large", 413)
    try:
        async with asyncio.timeout(LOGIN_BODY_TIMEOUT):
            raw = await request.content.read(MAX_LOGIN_BODY + 1)
    except TimeoutError:
        return _login_page(request, "request body too slow", 408)
    given = parse_qs(raw[:MAX_LOGIN_BODY].decode("utf-8", "replace")).get("token", [""])[0]
    if not token_matches(token, given):
        if logins is not None:
            logins.failed(peer(request))
        log_refusal(request, "no token" if not given else "wrong token", "login")
        return _login_page(request, "wrong token", 401)
    if logins is not None:
        logins.succeeded(peer(request))
    sid = request.app[SESSIONS].issue()
    log.info("control: status page login from %s", peer(request))
    resp = _see_home()
    resp.set_cookie(COOKIE, sid, max_age=int(SESSION_TTL), path="/", httponly=True,
                    samesite="Strict", secure=request.secure)
    return resp


async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].end(request.cookies.get(COOKIE))
    resp = _see_home()
    resp.del_cookie(COOKIE, path="/")
    return resp


def _see_home() -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": "/"})


async def favicon(request: web.Request) -> web.Response:
    """None: an empty answer instead of a refused request in the log on every page load."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


def add_routes(app: web.Application) -> None:
    app[FILES] = Files()
    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/favicon.ico", favicon)
