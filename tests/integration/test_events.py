"""The event history and its live stream through a real ``dnsfail serve``.

The zone's sites are listening sockets this test owns; closing one takes
its target DOWN (connection refused) within ``fall`` x ``interval`` = 2 s.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import free_port
from .ctl_server import SITES, Ctl, wait_for, zone_text


@pytest.fixture
def own_sites(tmp_path: Path) -> Iterator[tuple[Path, int, dict[str, socket.socket]]]:
    port = free_port(SITES[0])
    socks = {}
    for host in SITES:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(64)
        socks[host] = s
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "ctl.test.yaml").write_text(zone_text(port))
    yield zones, port, socks
    for s in socks.values():
        s.close()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver (stdlib HTTP server in a thread): the bodies it was sent."""
    got: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token", got
    server.shutdown()
    server.server_close()


def events(ctl: Ctl, after: int = 0) -> list[dict[str, object]]:
    code, body = ctl.get(f"/v1/events?after={after}")
    assert code == 200
    return list(body["events"])


def test_transitions_drains_and_reloads_are_events(
        start: Callable[..., Ctl], own_sites: tuple[Path, int, dict[str, socket.socket]],
        receiver: tuple[str, list[dict[str, Any]]]) -> None:
    zones, port, socks = own_sites
    url, posted = receiver
    ctl = start("--webhook", url, "--webhook-events", "transition,reload", zones=zones)
    assert events(ctl) == []  # targets coming up at start are no news
    stream = urllib.request.urlopen(ctl.base + "/v1/events/stream", timeout=10)
    assert stream.headers.get_content_type() == "text/event-stream"

    killed = f"{SITES[0]}:{port}"
    socks.pop(SITES[0]).close()
    wait_for(lambda: any(e.get("target") == killed for e in events(ctl)), 10, "transition")
    # Only the killed target's (a live one may flap on a loaded machine: 0.5 s timeouts).
    [down] = [e for e in events(ctl) if e.get("target") == killed]
    assert (down["target"], down["from"], down["to"]) == (f"{SITES[0]}:{port}", "up", "down")
    assert down["detail"] == "connection refused"
    assert down["used_by"] == ["api.ctl.test pool eu"]

    assert ctl.post("/v1/drain", {"target": SITES[1], "for": "5m", "reason": "patch"})[0] == 200
    assert ctl.post("/v1/undrain", {"target": SITES[1]})[0] == 200
    (zones / "ctl.test.yaml").write_text("api: {type: A, value: not-an-address}\n")
    assert ctl.post("/v1/reload", {})[0] == 422
    got = [e for e in events(ctl, after=int(str(down["id"]))) if e["kind"] != "transition"]
    assert [e["kind"] for e in got] == ["drain", "undrain", "reload"]
    assert (got[0]["selector"], got[0]["reason"], got[0]["records"]) == (
        SITES[1], "patch", ["api.ctl.test."])
    assert got[2]["ok"] is False
    assert got[2]["problems"]

    # The stream, opened before all this, saw the same events in the same order.
    seen: list[tuple[str, str]] = []
    kind = ""
    while len(seen) < 4:
        line = stream.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            if kind != "transition" or data["target"] == killed:
                seen.append((kind, data["id"]))
    stream.close()
    assert seen == [(e["kind"], e["id"]) for e in [down, *got]]

    # The webhook got the transition and the reload (not the drains: --webhook-events).
    mine = [down["id"], got[2]["id"]]
    wait_for(lambda: [p["event"]["id"] for p in posted if p["event"]["id"] in mine] == mine, 10,
             "webhook deliveries")
    assert {p["event"]["kind"] for p in posted} <= {"transition", "reload"}
    posted[:] = [p for p in posted if p["event"]["id"] in mine]
    assert posted[0]["text"].endswith("is DOWN (was up): connection refused; serves "
                                      "api.ctl.test pool eu")
    [hook] = ctl.get("/v1/status")[1]["webhooks"]
    assert (hook["url"], hook["failed"]) == (f"{url.split('/hook')[0]}/...", 0)
    assert hook["sent"] >= 2
    assert "secret-token" not in ctl.server.log


def test_a_bad_webhook_url_is_refused_at_start(start: Callable[..., Ctl]) -> None:
    ctl = start("--webhook", "ftp://example.net/hidden-token", wait=False)
    assert ctl.server.proc.wait(timeout=30) == 2
    assert "not an http:// or https:// URL" in ctl.server.log
    assert "hidden-token" not in ctl.server.log
