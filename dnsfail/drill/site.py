"""``dnsfail site``: a stand-in gateway site with a health endpoint, for local drills.

It answers ``GET /health`` with 200 (or the status given) and any other path
with a line naming the site, so a failure drill can run on one machine:
start a few sites on 127.0.0.x, serve the example zone, stop a site with
Ctrl-C and watch dig's answers change.  Not used by the server itself.

The health status can change while the site runs, for a drill of "HTTP 503"
without a restart: ``POST /_status`` with the new status as the body (``503``
or ``{"status": 503}``), which ``dnsfail site HOST:PORT --set 503`` sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import urllib.error
import urllib.request

from aiohttp import web

#: Largest ``POST /_status`` body, and largest reply ``--set`` reads: a status code
#: needs a few octets.
MAX_STATUS_BODY = 1024
#: The statuses a site may be set to: HTTP's status-code range (RFC 9110 section 15).
STATUS_RANGE = range(100, 600)


def parse_status(raw: bytes) -> int:
    """The status a ``POST /_status`` body sets (``503`` or ``{"status": 503}``);
    ValueError with the reason."""
    try:
        value = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("body must be a status code, e.g. 503 or {\"status\": 503}") from None
    if isinstance(value, dict):
        value = value.get("status")
    if not isinstance(value, int) or isinstance(value, bool) or value not in STATUS_RANGE:
        raise ValueError(f"status must be an integer {STATUS_RANGE.start}-"
                         f"{STATUS_RANGE.stop - 1}, not {str(value)[:40]!r}")
    return value


def make_app(name: str, status: int) -> web.Application:
    current = [status]

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=current[0], text=f"{name} {current[0]}\n")

    async def set_status(request: web.Request) -> web.Response:
        try:
            current[0] = parse_status(await request.read())
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        print(f"site {name}: /health now answers {current[0]}", flush=True)
        return web.json_response({"site": name, "status": current[0]})

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"gateway site {name}\n")

    app = web.Application(client_max_size=MAX_STATUS_BODY)
    app.router.add_get("/health", health)
    app.router.add_post("/_status", set_status)
    app.router.add_get("/{tail:.*}", hello)
    return app


def set_remote_status(host: str, port: int, status: int, timeout: float = 5.0) -> str:
    """Tell the site running at ``host:port`` to answer ``status``; its reply, or
    OSError/ValueError with the reason."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    req = urllib.request.Request(f"http://{where}/_status", data=json.dumps(status).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read(MAX_STATUS_BODY + 1)
    except urllib.error.HTTPError as exc:
        text = exc.read(MAX_STATUS_BODY).decode(errors="replace")
        raise ValueError(f"site at {where} refused: {text}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise OSError(f"no site at {where}: {getattr(exc, 'reason', exc)}") from None
    try:
        body = json.loads(raw) if len(raw) <= MAX_STATUS_BODY else None
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("site"), str) \
            or not isinstance(body.get("status"), int):
        raise ValueError(f"{where} answered, but is not a dnsfail site")
    return f"site {body['site']} at {where}: /health now answers {body['status']}"


async def serve_site(host: str, port: int, name: str, status: int) -> None:
    """Serve until SIGINT/SIGTERM."""
    runner = web.AppRunner(make_app(name, status), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"site {name} on http://{host}:{port}/health answering {status}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
