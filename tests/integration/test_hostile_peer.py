"""A peer (with the token) that sends the largest drain set on every pull, each record newer
than the last: the instance takes it without writing a line per record or stalling its loop
for long (cluster.exchange.DECODE_INLINE, cluster.drains.DRAIN_LOG_LINES, the selector cache
of steering.overrides)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator

import dns.message
import dns.query
import pytest

from dnsfail.cluster.drains import DRAIN_LOG_LINES
from dnsfail.cluster.messages import MAX_MESSAGE

from .ctl_server import QNAME, TOKEN, Ctl

#: About the most that fits in MAX_MESSAGE with short fields.
DRAINS = 6000


def message(seq: int) -> bytes:
    created = time.time() - 1 + seq * 1e-3  # newer on every pull: every record wins
    drains = [{"selector": f"10.{i // 256}.{i % 256}.1", "state": "down", "reason": "r",
               "by": "b", "created": created, "expires": created + 3000, "origin": "evil"}
              for i in range(DRAINS)]
    body = {"dnsfail_cluster": 1, "instance": "evil", "boot": "1-a", "seq": seq,
            "epoch": "e", "degraded": False, "sent_at": time.time(), "votes": [],
            "drains_digest": f"d{seq}", "peers": [], "drains": drains}
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert 64 * 1024 < len(raw) <= MAX_MESSAGE
    return raw


@pytest.fixture
def hostile_peer() -> Iterator[tuple[str, list[int]]]:
    pulls: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            pulls.append(len(pulls) + 1)
            raw = message(len(pulls))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pulls
    server.shutdown()
    server.server_close()


def test_a_flood_of_replicated_drains_is_logged_boundedly(
        start: Callable[..., Ctl], hostile_peer: tuple[str, list[int]]) -> None:
    url, pulls = hostile_peer
    ctl = start("--peer", url, "--peer-interval", "0.5", token=TOKEN)
    query = dns.message.make_query(QNAME, "A")
    port = int(ctl.server.port)
    worst = 0.0
    deadline = time.monotonic() + 30
    while len(pulls) < 4 and time.monotonic() < deadline:
        t = time.perf_counter()
        dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
        worst = max(worst, time.perf_counter() - t)
        time.sleep(0.01)
    assert len(pulls) >= 4, "the peer was not pulled"
    print(f"slowest DNS answer during the flood: {worst * 1000:.0f} ms")
    code, status = ctl.get("/v1/status")
    assert code == 200
    assert len(status["overrides"]) == DRAINS
    merges = ctl.server.log.count("more drain record(s) from peers not logged")
    assert merges >= 2
    per_record = ctl.server.log.count("drain from evil:")
    assert per_record <= DRAIN_LOG_LINES * (merges + 1)  # not DRAINS per merge
    assert "Traceback" not in ctl.server.log
