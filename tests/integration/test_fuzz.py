"""Edited queries over real sockets: sound replies or none, in time, and the server lives on.

The same edits and rules as the in-process properties (tests/fuzz/mutate.py),
sent to a real ``dnsfail serve`` over UDP and TCP: a few hundred messages,
from a fixed seed so a failure can be replayed.
"""

from __future__ import annotations

import random
import socket
import time

from ..conftest import DnsfailProcess
from ..fuzz.mutate import SEEDS, check_reply, mutate
from .conftest import (
    assert_answers_api,
    closed_after,
    frame,
    recv_framed,
    tcp_connect,
    udp_exchange,
)

#: The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
UDP_MAX = 65507
#: Generous: a message costs well under a millisecond; this only catches a stall.
ROUND_TRIP_LIMIT = 1.0


def edited(rng: random.Random, count: int) -> list[bytes]:
    return [mutate(rng.choice(SEEDS), rng.randbytes(rng.randrange(0, 60))) for _ in range(count)]


def expects_reply(data: bytes) -> bool:
    return len(data) >= 12 and not data[2] & 0x80


def test_edited_queries_over_udp_and_tcp(test_server: DnsfailProcess) -> None:
    rng = random.Random(11)
    slowest = 0.0
    for data in edited(rng, 300):
        data = data[:UDP_MAX]
        if not expects_reply(data):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(data, (test_server.host, test_server.port))
            continue
        started = time.monotonic()
        reply = udp_exchange(test_server, data, timeout=ROUND_TRIP_LIMIT + 1)
        slowest = max(slowest, time.monotonic() - started)
        assert reply is not None, f"no UDP reply to {data[:64].hex()}"
        check_reply(data, reply, tcp=False)
    sock = tcp_connect(test_server, timeout=ROUND_TRIP_LIMIT + 1)
    try:
        for data in edited(rng, 200):
            started = time.monotonic()
            sock.sendall(frame(data))
            if not expects_reply(data):
                # No client sends a response or a fragment of a header: the server resets.
                assert closed_after(sock, ROUND_TRIP_LIMIT + 1) is not None
                sock.close()
                sock = tcp_connect(test_server, timeout=ROUND_TRIP_LIMIT + 1)
                continue
            reply = recv_framed(sock)
            slowest = max(slowest, time.monotonic() - started)
            check_reply(data, reply, tcp=True)
    finally:
        sock.close()
    assert slowest < ROUND_TRIP_LIMIT, slowest
    assert_answers_api(test_server)
    assert_answers_api(test_server, tcp=True)
    assert "Traceback" not in test_server.log
    assert " ERROR " not in test_server.log, test_server.log
