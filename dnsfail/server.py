"""UDP and TCP listeners: bytes in, bytes out, nothing else.

UDP reads the socket directly from a reader callback and drains it until it
would block (bounded per wake-up so TCP and probes still get turns): one
wake-up answers a burst of queries, which is where most of the speed of a
Python DNS server is won or lost.  TCP follows RFC 7766: two-octet length
framing (section 8), several pipelined queries per connection answered in
order (section 6.2.1), an idle timeout (section 6.2.3) and a cap on
concurrent connections.  A client that trickles bytes never extends its own
idle timer, and a client that does not read its replies is paused, so
neither can hold the server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

log = logging.getLogger(__name__)

#: Datagrams answered per reader wake-up before yielding to the event loop.
UDP_BATCH = 256
SOCKET_BUFFER = 4 * 1024 * 1024

#: ``handle(message, tcp, client_ip)`` -> reply or None.
Handle = Callable[[bytes, bool, str], "bytes | None"]


def bind_udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpListener:
    """Answers datagrams on one socket from the event loop's reader callback."""

    def __init__(self, sock: socket.socket, handle: Handle) -> None:
        self.sock = sock
        self.handle = handle
        self.dropped_sends = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._readable)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock.fileno() >= 0:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handle = self.handle
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. a queued ICMP error; the socket is still fine
                log.debug("udp receive error: %s", exc)
                continue
            try:
                reply = handle(data, False, addr[0])
            except Exception:  # the handler never raises; this guards the listener anyway
                log.exception("handler raised")
                continue
            if reply is None:
                continue
            try:
                sendto(reply, addr)
            except (BlockingIOError, InterruptedError):
                self.dropped_sends += 1
            except OSError as exc:
                log.debug("udp send to %s failed: %s", addr, exc)


class TcpLimits:
    def __init__(self, idle_timeout: float = 10.0, max_connections: int = 1000) -> None:
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.open = 0


class TcpConnection(asyncio.Protocol):
    """One TCP client: frames, answers in order, times out when idle."""

    def __init__(self, handle: Handle, limits: TcpLimits) -> None:
        self.handle = handle
        self.limits = limits
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False
        self.client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not derive from asyncio.Transport, so no isinstance check.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        if self.limits.open >= self.limits.max_connections:
            log.warning("tcp connection limit %d reached; closing a new connection",
                        self.limits.max_connections)
            transport.abort()
            return
        self.limits.open += 1
        self.counted = True
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.limits.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        buffer = self.buffer + data
        answered = False
        while len(buffer) >= 2:
            length = buffer[0] << 8 | buffer[1]
            if len(buffer) < 2 + length:
                break
            message, buffer = buffer[2 : 2 + length], buffer[2 + length :]
            answered = True
            reply = self.handle(message, True, self.client)
            if reply is not None:
                transport.write(len(reply).to_bytes(2, "big") + reply)
        self.buffer = buffer
        if answered:
            self._arm()  # only complete messages earn more time, RFC 7766 section 6.2.3

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.limits.open -= 1
            self.counted = False
        self.transport = None


async def serve_tcp(
    host: str, port: int, handle: Handle, limits: TcpLimits
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return await loop.create_server(
        lambda: TcpConnection(handle, limits), host, port, family=family,
        reuse_address=True, backlog=1024, start_serving=False,
    )
