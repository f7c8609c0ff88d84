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

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dnsfail.errors import DnsfailError
from dnsfail.explain import explain
from dnsfail.health import Health, TargetHealth
from dnsfail.metrics import CONTENT_TYPE, effective_state, value_statuses
from dnsfail.model import RRType, Status
from dnsfail.overrides import (
    MAX_REASON,
    Override,
    OverrideError,
    parse_duration,
    parse_selector,
)

if TYPE_CHECKING:
    from dnsfail.app import Daemon

log = logging.getLogger(__name__)

#: Reachable without the token: liveness and readiness carry no information worth a secret.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
#: Largest request body accepted (a drain is ~200 bytes).
MAX_BODY = 64 * 1024

DAEMON: web.AppKey[Daemon] = web.AppKey("daemon")
TOKEN: web.AppKey[str | None] = web.AppKey("token")

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
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"body is not JSON: {exc}") from None
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
    await request.read()
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


def make_app(daemon: Daemon, token: str | None) -> web.Application:
    app = web.Application(middlewares=[_errors, _auth], client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app[TOKEN] = token
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/status", get_status)
    app.router.add_post("/v1/drain", drain)
    app.router.add_post("/v1/undrain", undrain)
    app.router.add_post("/v1/reload", reload)
    app.router.add_get("/v1/explain", get_explain)
    app.router.add_get("/metrics", metrics)
    return app


class ControlServer:
    """The control API's runner and listening site, owned by the daemon."""

    def __init__(self, daemon: Daemon, host: str, port: int, token: str | None) -> None:
        self.runner = web.AppRunner(make_app(daemon, token), access_log=None,
                                    handle_signals=False)
        self.host, self.port = host, port

    async def start(self) -> tuple[str, int]:
        await self.runner.setup()
        try:
            site = web.TCPSite(self.runner, self.host, self.port, shutdown_timeout=1.0,
                               reuse_address=True)
            await site.start()
        except BaseException:
            await self.runner.cleanup()
            raise
        sockets = [s for server in self.runner.sites for s in _sockets(server)]
        bound = sockets[0].getsockname()[1] if sockets else self.port
        return self.host, bound

    async def stop(self) -> None:
        await self.runner.cleanup()


def _sockets(site: web.BaseSite) -> list[Any]:
    server = getattr(site, "_server", None)
    return list(getattr(server, "sockets", None) or [])
