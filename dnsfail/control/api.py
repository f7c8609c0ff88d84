"""The control API: health, status, drains, reload, explain and metrics over HTTP.

It runs on the DNS event loop (aiohttp ``AppRunner`` under our own listener,
started and stopped by the daemon), so it reads the same snapshot the
answers use and changes state through the same single writer, the store.
No handler awaits anything but its own request body and the server's
reload (which reads files off the loop): nothing here can stall DNS.

It talks to the server only through a :class:`~dnsfail.control.port.ControlPort`
and never imports ``serve``.  Who may call it is ``control.auth``; the
connection cap and head deadline are ``control.guard``; the status document
is ``control.status``.  Bodies are JSON objects with known keys only;
anything else is a 400 that says what is wrong.

Endpoints::

    GET  /healthz            200 while the process runs
    GET  /readyz             200 once zones are loaded and the first probe round is over
    GET  /v1/status          zones, reload result, every target (state, real state,
                             overrides, last probe, transitions), every override
    POST /v1/drain           {"target", "for", "reason", "state"?: "down"|"up", "by"?,
                             "force"?: true to drain even if a record is left with no
                             healthy pool value (else 409 naming the records)}
    POST /v1/undrain         {"target"}
    POST /v1/reload          all-or-nothing zone reload; 422 with the problems if rejected
    GET  /v1/explain         ?name=&type=&client=&ecs=  (text, as ``dnsfail explain``;
                             &format=json: {"text", "server"}, for ``explain --server``)
    GET  /metrics            Prometheus text format
    GET  /v1/events          ?after=ID&limit=N: transitions, drains, reloads (control.events)
    GET  /v1/events/stream   the same, live: server-sent events, Last-Event-ID resumes
    GET  /                   the status page (control.page); POST /login, /logout
    GET  /v1/cluster/votes   this instance's peer message (``--peer`` only; cluster.messages)
    POST /v1/cluster/push    a peer's message, pushed on a change (``--peer`` only)
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import logging
import sys
import unicodedata
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dnsfail.addresses import CONTROL_HEAD_TIMEOUT, CONTROL_MAX_CONNECTIONS
from dnsfail.control import page
from dnsfail.control.auth import (
    LOGINS,
    REFUSALS,
    SESSIONS,
    TOKEN,
    RefusalLog,
    Sessions,
    auth,
    peer,
)
from dnsfail.control.events import STREAMS, add_routes
from dnsfail.control.guard import GUARDS, Guard, Limits, RouteHandler, deadline
from dnsfail.control.logins import LoginLimit
from dnsfail.control.metrics import CONTENT_TYPE
from dnsfail.control.port import ControlPort, cluster_of
from dnsfail.control.status import status
from dnsfail.dns.explain import explain
from dnsfail.errors import DnsfailError
from dnsfail.logs import iso
from dnsfail.model import RRType, Status
from dnsfail.steering.overrides import (
    MAX_REASON,
    OverrideError,
    parse_duration,
    parse_selector,
)
from dnsfail.steering.stranded import WouldStrand

log = logging.getLogger(__name__)

#: Largest request body accepted (a drain is ~200 bytes).
MAX_BODY = 64 * 1024

PORT: web.AppKey[ControlPort] = web.AppKey("port")
#: Seconds a request has to deliver its body (at most MAX_BODY octets): the head timeout.
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout")


# --- helpers -------------------------------------------------------------------------------


def _json(data: object, status: int = 200) -> web.Response:
    # Compact: the indenting encoder is pure Python, 4x slower on a large status (issue 11).
    return web.Response(text=json.dumps(data, default=str) + "\n", status=status,
                        content_type="application/json")


def _error(status: int, reason: str, **extra: object) -> web.Response:
    return _json({"error": reason, **extra}, status)


@web.middleware
async def _errors(request: web.Request, handler: RouteHandler) -> web.StreamResponse:
    """Every error as JSON with a reason, including aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json" and exc.text:
            return web.Response(status=exc.status, text=exc.text,
                                content_type="application/json")
        return _error(exc.status, exc.reason, path=request.path)


async def _body(request: web.Request, required: set[str], optional: set[str]) -> dict[str, Any]:
    """The request's JSON object, with exactly known keys; HTTPBadRequest with the reason."""
    raw = await _read(request)
    try:
        data = json.loads(raw, object_pairs_hook=_unique_keys) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise _bad("body is nested too deeply") from None
    except ValueError as exc:  # a duplicate key, or an integer past int_max_str_digits
        raise _bad(f"body is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad("body must be a JSON object, e.g. "
                   '{"target": "192.0.2.10", "for": "30m", "reason": "maintenance"}')
    missing = sorted(required - data.keys())
    unknown = sorted(data.keys() - required - optional)
    if missing:
        raise _bad(f"missing field(s): {', '.join(missing)}")
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise _bad(f"unknown field(s): {', '.join(unknown)} (allowed: {allowed})")
    return data


async def _read(request: web.Request) -> bytes:
    """The body, if it arrives in time (a trickled body must not hold a connection slot)."""
    timeout = request.app[BODY_TIMEOUT]
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=json.dumps({"error": f"body not received within {timeout:g}s"}) + "\n",
            content_type="application/json") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: last-wins would hide the first value."""
    out = dict(pairs)
    if len(out) != len(pairs):
        counts = collections.Counter(key for key, _ in pairs)
        twice = sorted(key for key, n in counts.items() if n > 1)
        raise ValueError(f"duplicate key(s): {', '.join(repr(k) for k in twice)}")
    return out


#: RFC 1035 section 2.3.4: a name is at most 255 octets on the wire, a label at most 63.
MAX_NAME = 255
MAX_LABEL = 63


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a query name (RFC 1035 section 2.3.4), or None."""
    if name == ".":
        return None
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    octets = [len(label.encode("utf-8", "surrogateescape")) for label in labels]
    if 0 in octets:
        return "has an empty label"
    if max(octets) > MAX_LABEL:
        return f"has a label longer than {MAX_LABEL} octets"
    if sum(octets) + len(octets) + 1 > MAX_NAME:
        return f"is longer than {MAX_NAME} octets"
    return None


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": reason}) + "\n",
                              content_type="application/json")


#: Unicode categories refused in reasons and names: they go into logs and terminals, where a
#: lone surrogate cannot be encoded and a direction override or line separator forges text.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _text_field(data: dict[str, Any], key: str, limit: int = MAX_REASON) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise _bad(f"{key} is longer than {limit} characters")
    if any(ord(c) < 32 or unicodedata.category(c) in _UNPRINTABLE for c in value):
        raise _bad(f"{key} must not contain control characters, nor format, separator or "
                   "surrogate characters")
    return value


# --- handlers ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    port = request.app[PORT]
    body: dict[str, Any] = {"ready": port.ready, "zones": len(port.zones) if port.store else 0,
                            "first_probe_round": port.first_round}
    if (cluster := cluster_of(port)) is not None:
        facts = cluster.status()
        body["cluster"] = {"degraded": facts["degraded"],
                           "degraded_since": facts["degraded_since"],
                           "heard": facts["heard"], "configured": facts["configured"]}
    return _json(body, 200 if port.ready else 503)


async def get_status(request: web.Request) -> web.Response:
    return _json(status(request.app[PORT]))


async def drain(request: web.Request) -> web.Response:
    port = request.app[PORT]
    data = await _body(request, {"target", "for", "reason"}, {"state", "by", "force"})
    if not isinstance(data["target"], str):
        raise _bad("target must be a string")
    reason = _text_field(data, "reason")
    if not reason:
        raise _bad("reason must not be empty: say why, for whoever reads the status next")
    by = _text_field(data, "by", 200) or peer(request)
    state_text = data.get("state", "down")
    if state_text not in ("down", "up"):
        raise _bad(f"state must be 'down' or 'up', not {state_text!r}")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise _bad("force must be true or false")
    try:
        selector = parse_selector(data["target"])
        seconds = parse_duration(data["for"])
        result = await port.drains.drain(selector, Status(state_text), seconds, reason, by,
                                         force)
    except WouldStrand as exc:  # 409: the request is fine, the state forbids it unforced
        return _error(409, str(exc), records=exc.records, server=port.about())
    except OverrideError as exc:
        raise _bad(str(exc)) from None
    except OSError as exc:
        return _error(500, f"could not save the state file, nothing changed: {exc}")
    return _json({**result, "server": port.about()})


async def undrain(request: web.Request) -> web.Response:
    port = request.app[PORT]
    data = await _body(request, {"target"}, {"by"})
    if not isinstance(data["target"], str):
        raise _bad("target must be a string")
    by = _text_field(data, "by", 200) or peer(request)
    try:
        selector = parse_selector(data["target"])
        result = await port.drains.undrain(selector, by)
    except OverrideError as exc:
        raise _bad(str(exc)) from None
    except OSError as exc:
        return _error(500, f"could not save the state file, nothing changed: {exc}")
    if not result["removed"]:
        return _error(404, f"no override for {selector.text}",
                      active=[o.selector for o in port.overrides], server=port.about())
    return _json({**result, "server": port.about()})


async def reload(request: web.Request) -> web.Response:
    port = request.app[PORT]
    await _read(request)
    reloads = port.reloads
    problems = await reloads.reload(trigger=f"control API ({peer(request)})")
    body = {"ok": not problems, "problems": problems, "reload": reloads.last_reload,
            "config_generation": reloads.config_generation, "server": port.about()}
    return _json(body, 422 if problems else 200)


async def get_explain(request: web.Request) -> web.Response:
    port = request.app[PORT]
    q = request.query
    name = q.get("name", "").strip()
    if not name:
        raise _bad("name is required: /v1/explain?name=api.example.com&type=A&client=IP")
    problem = _name_problem(name)
    if problem is not None:
        raise _bad(f"name {name[:80]!r}{'...' if len(name) > 80 else ''} {problem} "
                   "(RFC 1035 section 2.3.4)")
    qtype = q.get("type", "A").strip().upper()
    if qtype not in RRType.__members__:
        raise _bad(f"type {qtype!r} is not one of {', '.join(RRType.__members__)}")
    client = q.get("client", "").strip()
    if client:
        try:
            ipaddress.ip_address(client)
        except ValueError:
            raise _bad(f"client {client!r} is not an IP address") from None
    ecs = q.get("ecs", "").strip() or None
    if ecs is not None:
        try:
            ipaddress.ip_network(ecs, strict=False)
        except ValueError:
            raise _bad(f"ecs {ecs!r} is not a subnet like 192.0.2.0/24") from None
    assert port.handler is not None
    assert port.store is not None
    try:
        cluster = cluster_of(port)
        text = explain(port.handler, port.store.snapshot, name, qtype, client, ecs,
                       votes=cluster.explain if cluster is not None else None)
    except (DnsfailError, ValueError) as exc:
        raise _bad(f"cannot explain {name!r}: {exc}") from None
    lines = [f"override {o.selector} {o.state.name} until {iso(o.expires)}: {o.reason}"
             for o in port.overrides]
    if lines:
        text += "\noperator overrides in force (shown above as status):\n  " + "\n  ".join(lines)
    if q.get("format") == "json":
        return _json({"text": text, "server": port.about()})
    return web.Response(text=text + "\n", content_type="text/plain")


#: Largest pushed peer message (a pull's reply is bounded by the puller: cluster.exchange).
MAX_PEER_MESSAGE = 1024 * 1024


async def cluster_votes(request: web.Request) -> web.Response:
    cluster = cluster_of(request.app[PORT])
    if cluster is None:
        return _error(404, "not clustered: this instance runs without --peer")
    return _json(cluster.message(request.query.get("drains_digest")))


async def cluster_push(request: web.Request) -> web.Response:
    cluster = cluster_of(request.app[PORT])
    if cluster is None:
        return _error(404, "not clustered: this instance runs without --peer")
    timeout = request.app[BODY_TIMEOUT]
    try:
        async with asyncio.timeout(timeout):
            raw = await request.content.read(MAX_PEER_MESSAGE + 1)
            while len(raw) <= MAX_PEER_MESSAGE and (more := await request.content.read(
                    MAX_PEER_MESSAGE + 1 - len(raw))):
                raw += more
    except TimeoutError:
        return _error(408, f"body not received within {timeout:g}s")
    if len(raw) > MAX_PEER_MESSAGE:
        return _error(413, f"peer message larger than {MAX_PEER_MESSAGE} octets")
    why = await cluster.receive(raw)
    if why is not None:
        return _error(409, why)
    return _json({"ok": True})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[PORT].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def make_app(port: ControlPort, token: str | None, guards: Limits,
             body_timeout: float = CONTROL_HEAD_TIMEOUT) -> web.Application:
    """The routes over ``port``; ``guards``: the listener's connections (see control.guard)."""
    app = web.Application(middlewares=[_errors, deadline, auth], client_max_size=MAX_BODY)
    app[PORT] = port
    app[TOKEN] = token
    app[SESSIONS] = Sessions()
    app[REFUSALS] = RefusalLog()
    app[LOGINS] = LoginLimit()
    app[GUARDS] = guards
    app[BODY_TIMEOUT] = body_timeout
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/status", get_status)
    app.router.add_post("/v1/drain", drain)
    app.router.add_post("/v1/undrain", undrain)
    app.router.add_post("/v1/reload", reload)
    app.router.add_get("/v1/explain", get_explain)
    app.router.add_get("/metrics", metrics)
    add_routes(app, port.events)
    page.add_routes(app)
    app.router.add_get("/v1/cluster/votes", cluster_votes)
    app.router.add_post("/v1/cluster/push", cluster_push)
    return app


class ControlServer:
    """The control API's runner and listener, owned by the daemon.

    The listener is ours (``loop.create_server`` with ``guard.Guard``), not
    aiohttp's ``TCPSite``, so that connections are capped and timed.
    """

    def __init__(self, port: ControlPort, host: str, port_number: int, token: str | None, *,
                 max_connections: int = CONTROL_MAX_CONNECTIONS,
                 head_timeout: float = CONTROL_HEAD_TIMEOUT) -> None:
        #: Open connections, the cap and the head deadline, and what they closed.
        self.limits = Limits(max_connections, head_timeout)
        app = make_app(port, token, self.limits, head_timeout)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0, logger=_HTTP_LOG)
        self.host, self.port = host, port_number
        self.listener: asyncio.Server | None = None
        #: The address listened on, once started (the port the kernel chose for 0).
        self.bound: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        await self.runner.setup()
        factory = self.runner.server
        assert factory is not None
        loop = asyncio.get_running_loop()
        try:
            self.listener = await loop.create_server(lambda: Guard(self.limits, factory),
                                                     self.host, self.port, reuse_address=True)
        except BaseException:
            await self.runner.cleanup()
            raise
        sockets = list(self.listener.sockets)
        bound = sockets[0].getsockname()[1] if sockets else self.port
        self.bound = (self.host, bound)
        return self.host, bound

    async def stop(self) -> None:
        self.runner.app[STREAMS].close_all()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.limits.abort_idle()
        await self.runner.cleanup()


class _HttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log without tracebacks: a malformed request is one debug line.

    aiohttp logs a request it cannot parse (and a handler's error) with
    ``logger.exception``; any client could flood the log with tracebacks
    that way, without a token (issue 11).  Our handlers turn their own
    errors into responses, so what reaches here is the peer's doing.
    """

    def exception(self, msg: object, *args: object, exc_info: object = True,
                  **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        text = str(msg) % args if args else str(msg)
        # The peer's malformed HTTP is debug; anything else is our bug: one ERROR line.
        level = logging.DEBUG if isinstance(exc, HttpProcessingError) else logging.ERROR
        self.logger.log(level, "control API: %s: %s", text,
                        f"{type(exc).__name__}: {exc}" if exc is not None else "?")


_HTTP_LOG = _HttpLog(logging.getLogger("dnsfail.control.api.http"), {})
