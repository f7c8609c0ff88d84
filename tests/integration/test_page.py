"""The status page's HTTP side through a real server: login, the session cookie, CSP, limits.

The browser itself is tests/integration/test_browser.py; here a plain HTTP client checks
what a browser relies on: the token only in a POSTed form, a cookie that is not the token
and can only read, a strict Content-Security-Policy on every page.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

import pytest

from dnsfail.control.auth import Sessions
from dnsfail.control.logins import LOGIN_WINDOW, MAX_LOGIN_FAILURES
from dnsfail.control.page import CSP

from .ctl_server import TOKEN, Ctl


def call(ctl: Ctl, method: str, path: str, body: str | None = None,
         headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", ctl.port, timeout=10)
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def body_of(ctl: Ctl, path: str, cookie: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", ctl.port, timeout=10)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text


def test_login_gives_a_read_only_session_cookie(start: Callable[..., Ctl]) -> None:
    ctl = start(token=TOKEN)
    code, page = body_of(ctl, "/")
    assert code == 200
    assert 'action="/login"' in page  # the login form, no data
    assert "api.ctl.test" not in page
    for asset in ("/static/page.js", "/static/page.css"):
        assert body_of(ctl, asset)[0] == 200

    wrong = call(ctl, "POST", "/login", "token=nope")
    assert wrong.status == 401
    assert wrong.getheader("Set-Cookie") is None
    forged = call(ctl, "POST", "/login", f"token={TOKEN}",
                  {"Origin": "http://evil.example"})
    assert forged.status == 403
    assert forged.getheader("Set-Cookie") is None

    ok = call(ctl, "POST", "/login", f"token={TOKEN}",
              {"Origin": f"http://127.0.0.1:{ctl.port}"})
    assert (ok.status, ok.getheader("Location")) == (303, "/")
    cookie_header = ok.getheader("Set-Cookie") or ""
    attributes = {a.strip().split("=")[0].lower() for a in cookie_header.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "SameSite=Strict" in cookie_header
    cookie = cookie_header.split(";")[0]
    assert TOKEN not in cookie
    assert ok.getheader("Content-Security-Policy") == CSP

    code, page = body_of(ctl, "/", cookie)
    assert code == 200
    assert 'src="/static/page.js"' in page
    assert "<script>" not in page  # nothing inline: the CSP forbids it
    assert body_of(ctl, "/v1/status", cookie)[0] == 200
    assert body_of(ctl, "/v1/events", cookie)[0] == 200
    # Reading only: a change still needs the bearer token.
    drain = call(ctl, "POST", "/v1/drain", '{"target": "127.0.0.61", "for": "1m", "reason": "x"}',
                 {"Cookie": cookie, "Content-Type": "application/json"})
    assert drain.status == 401
    assert call(ctl, "POST", "/logout", "", {"Cookie": cookie}).status == 303
    assert body_of(ctl, "/v1/status", cookie)[0] == 401
    assert TOKEN not in ctl.server.log
    assert "refused login from 127.0.0.1: wrong token" in ctl.server.log


def test_without_a_token_loopback_needs_no_login(start: Callable[..., Ctl]) -> None:
    ctl = start()
    code, page = body_of(ctl, "/")
    assert code == 200
    assert 'src="/static/page.js"' in page
    assert '<form id="logout" method="post" action="/logout" hidden>' in page
    resp = call(ctl, "GET", "/")
    csp = resp.getheader("Content-Security-Policy") or ""
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp


@pytest.mark.parametrize("n", [1, 3])
def test_sessions_are_bounded_and_expire(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions(limit=2, ttl=60)
    ids = [sessions.issue() for _ in range(n)]
    assert len(sessions.ids) == min(n, 2)
    assert sessions.valid(ids[-1])
    assert sessions.valid(ids[0]) is (n <= 2)  # the oldest made room
    assert not sessions.valid("forged")
    assert not sessions.valid(None)
    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert not sessions.valid(ids[-1])


@pytest.mark.parametrize("origin", ["http://[::1", "http://a]b", "http://[zz]:1",
                                    "http://\u2100"])
def test_a_malformed_origin_is_refused_not_a_traceback(start: Callable[..., Ctl],
                                                       origin: str) -> None:
    """urlsplit raises ValueError on these (an unbalanced bracket, a bad IPv6 literal, a
    name that changes under NFKC): the login is refused as cross-origin, not a 500."""
    ctl = start(token=TOKEN)
    conn = http.client.HTTPConnection("127.0.0.1", ctl.port, timeout=10)
    conn.putrequest("POST", "/login")
    conn.putheader("Origin", origin.encode("utf-8"))
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    body = f"token={TOKEN}".encode()
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 403
    assert resp.getheader("Set-Cookie") is None
    assert "Traceback" not in ctl.server.log


def test_failed_logins_are_limited_per_source_and_logged_boundedly(
        start: Callable[..., Ctl]) -> None:
    """A token guesser gets MAX_LOGIN_FAILURES tries, then 429 for the rest of the window,
    through the form and the bearer header alike, even with the right token; the log gets
    one line, not one per guess."""
    ctl = start(token=TOKEN)
    for i in range(MAX_LOGIN_FAILURES):
        assert call(ctl, "POST", "/login", f"token=guess{i}").status == 401
    for body in ("token=guess", f"token={TOKEN}"):
        locked = call(ctl, "POST", "/login", body)
        assert locked.status == 429
        assert 0 < int(locked.getheader("Retry-After") or 0) <= LOGIN_WINDOW
        assert locked.getheader("Set-Cookie") is None
    code, _ = ctl.call("GET", "/v1/status", token="wrong")
    assert code == 429
    code, _ = ctl.call("GET", "/v1/status")  # the right bearer, from the same source
    assert code == 429
    assert ctl.call("GET", "/healthz")[0] == 200  # open paths are not held back
    assert ctl.server.log.count("refused login from 127.0.0.1") == 1
    assert "Traceback" not in ctl.server.log
