"""``dnsfail site``: a stand-in gateway site with a health endpoint, for local drills.

It answers ``GET /health`` with 200 (or the status given) and any other path
with a line naming the site, so a failure drill can run on one machine:
start a few sites on 127.0.0.x, serve the example zone, stop a site with
Ctrl-C and watch dig's answers change.  Not used by the server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import web


def make_app(name: str, status: int) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.Response(status=status, text=f"{name} {status}\n")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"gateway site {name}\n")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/{tail:.*}", hello)
    return app


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
