"""The control API: health, status, drains, reload, explain and metrics over HTTP.

It runs on the DNS event loop (aiohttp ``AppRunner`` + ``TCPSite``, started
and stopped by ``Daemon``), so it reads the same snapshot the answers use
and changes state through the same single writer, the store.  No handler
awaits anything but its own request body and the daemon's reload (which
reads files off the loop): nothing here can stall DNS.

Security: loopback-only by default.  Binding any other address requires a
bearer token (``--control-token-file`` or ``DNSFAIL_CONTROL_TOKEN``), and a
token, once configured, is required on every endpoint but ``/healthz`` and
``/readyz`` (load balancers and kubelets probe those without secrets, and
they reveal nothing).  The token is compared with ``hmac.compare_digest``;
a refused request changes nothing and is logged.  Bodies are JSON objects
with known keys only; anything else is a 400 that says what is wrong.

Endpoints::

    GET  /healthz            200 while the process runs
    GET  /readyz             200 once zones are loaded and the first probe round is over
    GET  /v1/status          zones, reload result, every target (state, real state,
                             overrides, last probe, transitions), every override
    POST /v1/drain           {"target", "for", "reason", "state"?: "down"|"up", "by"?}
    POST /v1/undrain         {"target"}
    POST /v1/reload          all-or-nothing zone reload; 422 with the problems if rejected
    GET  /v1/explain         ?name=&type=&client=&ecs=  (text, as ``dnsfail explain``)
    GET  /metrics            Prometheus text format
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dnsfail.addresses import CONTROL_HEAD_TIMEOUT, CONTROL_MAX_CONNECTIONS
from dnsfail.control.metrics import CONTENT_TYPE, effective_state, value_statuses
from dnsfail.dns.explain import explain
from dnsfail.errors import DnsfailError
from dnsfail.model import RRType, Status
from dnsfail.steering.health import Health, TargetHealth
from dnsfail.steering.overrides import (
    MAX_REASON,
    Override,
    OverrideError,
    parse_duration,
    parse_selector,
)

if TYPE_CHECKING:
    from dnsfail.serve.app import Daemon

log = logging.getLogger(__name__)

#: Reachable without the token: liveness and readiness carry no information worth a secret.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
#: Largest request body accepted (a drain is ~200 bytes).
MAX_BODY = 64 * 1024
#: At most one log line per this many seconds about connections closed by the limits.
LIMIT_LOG_EVERY = 10.0

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
TOKEN: web.AppKey[str | None] = web.AppKey("token")
GUARDS: web.AppKey[dict[object, _Guard]] = web.AppKey("guards")
#: Seconds a request has to deliver its body (at most MAX_BODY octets): the head timeout.
BODY_TIMEOUT: web.AppKey[float] = web.AppKey("body_timeout")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlError(DnsfailError):
    """The control API cannot be started as configured (e.g. exposed without a token)."""


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


def read_token(path: str | None, env: str | None) -> str | None:
    """The token from ``path`` (first line, stripped) or else ``env``; None if neither."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise ControlError(f"control token file {path}: {exc.strerror or exc}") from None
        if not token:
            raise ControlError(f"control token file {path} is empty")
        return token
    if env is not None and env.strip():
        return env.strip()
    return None


# --- helpers -------------------------------------------------------------------------------


def _json(data: object, status: int = 200) -> web.Response:
    # Compact: the indenting encoder is pure Python, 4x slower on a large status (issue 11).
    return web.Response(text=json.dumps(data, default=str) + "\n", status=status,
                        content_type="application/json")


def _error(status: int, reason: str, **extra: object) -> web.Response:
    return _json({"error": reason, **extra}, status)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _client(request: web.Request) -> str:
    return request.remote or "?"


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
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


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN]
    if token is None or request.path in OPEN_PATHS:
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                          token.encode()):
        return await handler(request)
    why = "no bearer token" if not given else "wrong bearer token"
    log.warning("control: refused %s %s from %s: %s", request.method, request.path,
                _client(request), why,
                extra={"fields": {"event": "control_refused", "method": request.method,
                                  "path": request.path, "client": _client(request)}})
    return web.Response(
        status=401, text=json.dumps({"error": f"unauthorized: {why}"}) + "\n",
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="dnsfail"'},
    )


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


@web.middleware
async def _deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request head arrived: stop its connection's head timer until the reply is handed on."""
    guard = request.app[GUARDS].get(request.protocol)
    if guard is not None:
        guard.disarm()
    try:
        return await handler(request)
    finally:
        if guard is not None:
            guard.arm()


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


def _text_field(data: dict[str, Any], key: str, limit: int = MAX_REASON) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise _bad(f"{key} is longer than {limit} characters")
    if any(ord(c) < 32 for c in value):
        raise _bad(f"{key} must not contain control characters")
    return value


# --- views ---------------------------------------------------------------------------------


def override_json(o: Override, daemon: Daemon) -> dict[str, Any]:
    """An override as the API shows it, with how far its drain has come."""
    now = time.time()
    complete = daemon.drain_complete_at(o)
    return {
        **o.to_json(),
        "created_iso": _iso(o.created),
        "expires_iso": _iso(o.expires),
        "expires_in": max(0.0, round(o.expires - now, 3)),
        "complete_at": complete,
        "complete_at_iso": _iso(complete),
        "complete": complete <= now,
        "matches": len(daemon.override_matches(o)),
    }


def _health_json(h: TargetHealth | None) -> dict[str, Any]:
    if h is None or h.last is None:
        return {"last_probe": None, "transitions": 0, "since": None}
    # Probe times are monotonic; show them on the wall clock.
    offset = time.time() - time.monotonic()
    return {
        "last_probe": {
            "ok": h.last.ok, "detail": h.last.detail,
            "latency_ms": round(h.last.latency * 1000, 3),
            "at": round(h.last.at + offset, 3), "at_iso": _iso(h.last.at + offset),
        },
        "consecutive_successes": h.successes,
        "consecutive_failures": h.failures,
        "transitions": h.transitions,
        "since": round(h.since + offset, 3),
    }


def status(daemon: Daemon) -> dict[str, Any]:
    """Everything ``GET /v1/status`` and ``dnsfail status`` show."""
    store = daemon.store
    assert store is not None
    snap = store.snapshot
    statuses = value_statuses(snap.zones)
    configured = value_statuses(store.configured)
    zones = [
        {
            "zone": origin, "serial": zone.serial, "records": zone.record_count,
            "source": zone.source, "loaded_at": daemon.zone_loaded.get(origin),
            "loaded_at_iso": _iso(daemon.zone_loaded.get(origin)),
        }
        for origin, zone in sorted(store.configured.items())
    ]
    # Each override once, then shared by every target it touches (store.index): the view
    # costs what it shows, not targets x overrides x values (issue 11).
    shown = {o.selector: override_json(o, daemon) for o in store.overrides}
    touching = store.index.by_target
    targets = []
    for spec, users in sorted(store.targets.items(), key=lambda item: item[0].label):
        h = snap.health.get(spec)
        real = h.state if h is not None else Health.UNKNOWN
        forced_in_zone = configured.get(spec, set()) - {Status.OBEY}
        targets.append({
            "target": spec.label,
            "protocol": spec.protocol.value,
            "used_by": users,
            "state": effective_state(statuses.get(spec, set()), real),
            "real_state": real.value,
            "zone_status": sorted(s.value for s in forced_in_zone),
            "overrides": [shown[o.selector] for o in touching.get(spec, ())],
            **_health_json(h),
        })
    return {
        "identity": daemon.settings.identity,
        "ready": daemon.ready,
        "generation": snap.generation,
        "config_generation": daemon.config_generation,
        "reload": daemon.last_reload,
        "zones": zones,
        "targets": targets,
        "overrides": list(shown.values()),
        "state_file": str(daemon.state_path) if daemon.state_path is not None else None,
        "workers": daemon.workers.describe() if daemon.workers is not None else [],
    }


# --- handlers ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    body = {"ready": daemon.ready, "zones": len(daemon.zones) if daemon.store else 0,
            "first_probe_round": daemon.first_round}
    return _json(body, 200 if daemon.ready else 503)


async def get_status(request: web.Request) -> web.Response:
    return _json(status(request.app[DAEMON]))


async def drain(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    data = await _body(request, {"target", "for", "reason"}, {"state", "by"})
    if not isinstance(data["target"], str):
        raise _bad("target must be a string")
    reason = _text_field(data, "reason")
    if not reason:
        raise _bad("reason must not be empty: say why, for whoever reads the status next")
    by = _text_field(data, "by", 200) or _client(request)
    state_text = data.get("state", "down")
    if state_text not in ("down", "up"):
        raise _bad(f"state must be 'down' or 'up', not {state_text!r}")
    try:
        selector = parse_selector(data["target"])
        seconds = parse_duration(data["for"])
        result = await daemon.drain(selector, Status(state_text), seconds, reason, by)
    except OverrideError as exc:
        raise _bad(str(exc)) from None
    except OSError as exc:
        return _error(500, f"could not save the state file, nothing changed: {exc}")
    return _json(result)


async def undrain(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    data = await _body(request, {"target"}, {"by"})
    if not isinstance(data["target"], str):
        raise _bad("target must be a string")
    by = _text_field(data, "by", 200) or _client(request)
    try:
        selector = parse_selector(data["target"])
        result = await daemon.undrain(selector, by)
    except OverrideError as exc:
        raise _bad(str(exc)) from None
    except OSError as exc:
        return _error(500, f"could not save the state file, nothing changed: {exc}")
    if not result["removed"]:
        return _error(404, f"no override for {selector.text}",
                      active=[o.selector for o in daemon.overrides])
    return _json(result)


async def reload(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    await _read(request)
    problems = await daemon.reload(trigger=f"control API ({_client(request)})")
    body = {"ok": not problems, "problems": problems, "reload": daemon.last_reload,
            "config_generation": daemon.config_generation}
    return _json(body, 422 if problems else 200)


async def get_explain(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
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
    assert daemon.handler is not None
    assert daemon.store is not None
    try:
        text = explain(daemon.handler, daemon.store.snapshot, name, qtype, client, ecs)
    except (DnsfailError, ValueError) as exc:
        raise _bad(f"cannot explain {name!r}: {exc}") from None
    lines = [f"override {o.selector} {o.state.name} until {_iso(o.expires)}: {o.reason}"
             for o in daemon.overrides]
    if lines:
        text += "\noperator overrides in force (shown above as status):\n  " + "\n  ".join(lines)
    return web.Response(text=text + "\n", content_type="text/plain")


async def metrics(request: web.Request) -> web.Response:
    body = request.app[DAEMON].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def make_app(daemon: Daemon, token: str | None,
             body_timeout: float = CONTROL_HEAD_TIMEOUT) -> web.Application:
    app = web.Application(middlewares=[_errors, _deadline, _auth], client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app[TOKEN] = token
    app[GUARDS] = {}
    app[BODY_TIMEOUT] = body_timeout
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/status", get_status)
    app.router.add_post("/v1/drain", drain)
    app.router.add_post("/v1/undrain", undrain)
    app.router.add_post("/v1/reload", reload)
    app.router.add_get("/v1/explain", get_explain)
    app.router.add_get("/metrics", metrics)
    return app


class _Guard(asyncio.Protocol):
    """One control connection: aiohttp's protocol inside the connection cap and head deadline.

    aiohttp's ``RequestHandler`` has neither (issue 11), so the listener is
    created here with this wrapper as its protocol; it forwards every call
    to the handler and aborts the transport when the cap is full or the
    deadline passes.  The ``_deadline`` middleware tells it when a request
    head has arrived (the first point aiohttp hands us a request).
    """

    def __init__(self, owner: ControlServer) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.inner: asyncio.Protocol | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self.owner
        self.transport = cast(asyncio.Transport, transport)
        if len(owner.guards) >= owner.max_connections:
            owner.note("over_cap", f"over the cap of {owner.max_connections} connections")
            self.transport.abort()
            return
        factory = owner.runner.server
        assert factory is not None
        self.inner = inner = factory()
        owner.guards[inner] = self
        self.arm()
        inner.connection_made(transport)

    def arm(self) -> None:
        self.disarm()
        if self.transport is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.owner.head_timeout, self._expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.owner.note("head_timeout",
                            f"no complete request within {self.owner.head_timeout:g}s")
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.transport = None
        if self.inner is not None:
            self.owner.guards.pop(self.inner, None)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class ControlServer:
    """The control API's runner and listener, owned by the daemon.

    The listener is ours (``loop.create_server`` with :class:`_Guard`), not
    aiohttp's ``TCPSite``, so that connections are capped and timed.
    """

    def __init__(self, daemon: Daemon, host: str, port: int, token: str | None, *,
                 max_connections: int = CONTROL_MAX_CONNECTIONS,
                 head_timeout: float = CONTROL_HEAD_TIMEOUT) -> None:
        app = make_app(daemon, token, head_timeout)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0, logger=_HTTP_LOG)
        self.host, self.port = host, port
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        #: Open connections, by their aiohttp handler (what a request names as its protocol).
        self.guards: dict[object, _Guard] = app[GUARDS]
        #: Connections closed by each limit, for metrics: over_cap, head_timeout.
        self.closed: dict[str, int] = {"over_cap": 0, "head_timeout": 0}
        self._logged = 0.0
        self.listener: asyncio.Server | None = None

    def note(self, why: str, text: str) -> None:
        """Count a connection closed by a limit; one info line per LIMIT_LOG_EVERY at most."""
        self.closed[why] += 1
        now = time.monotonic()
        if now - self._logged >= LIMIT_LOG_EVERY:
            self._logged = now
            log.info("control API: closing connections: %s (so far: %d over the cap, %d "
                     "timed out)", text, self.closed["over_cap"], self.closed["head_timeout"],
                     extra={"fields": {"event": "control_limit", **self.closed}})

    async def start(self) -> tuple[str, int]:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        try:
            self.listener = await loop.create_server(lambda: _Guard(self), self.host,
                                                     self.port, reuse_address=True)
        except BaseException:
            await self.runner.cleanup()
            raise
        sockets = list(self.listener.sockets)
        bound = sockets[0].getsockname()[1] if sockets else self.port
        return self.host, bound

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for guard in list(self.guards.values()):
            if guard.transport is not None and guard.timer is not None:
                guard.transport.abort()  # idle: waiting for a head, nothing to finish
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
