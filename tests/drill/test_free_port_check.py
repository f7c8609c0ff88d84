"""The drill's free-port check: TIME-WAIT leftovers of earlier probes do not block a rerun."""

from __future__ import annotations

import socket

import pytest

from dnsfail.drill.drill import Drill, DrillFailed

HOST = "127.0.0.31"


def time_wait_on(host: str) -> int:
    """A port of ``host`` whose only socket is in TIME-WAIT: the accepted side closed first
    (as a site does after answering a probe), and nothing listens any more.  The listener
    has SO_REUSEADDR, as asyncio's (so aiohttp's, ``dnsfail site``'s) does: Linux lets a
    bind share the port with a TIME-WAIT socket only when both sides set it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        port: int = listener.getsockname()[1]
        client = socket.create_connection((host, port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: it keeps the TIME-WAIT
        client.recv(1)
        client.close()
    return port


def test_a_port_in_time_wait_counts_as_free() -> None:
    port = time_wait_on(HOST)
    with socket.socket() as plain, pytest.raises(OSError, match="in use"):  # the old check
        plain.bind((HOST, port))
    Drill._free(HOST, port, "site eu")


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(DrillFailed, match=f"{HOST}:{port} is not free"):
            Drill._free(HOST, port, "site eu")


def test_a_bound_udp_port_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        with pytest.raises(DrillFailed, match="ns1 DNS"):
            Drill._free(HOST, port, "ns1 DNS", udp=True)
