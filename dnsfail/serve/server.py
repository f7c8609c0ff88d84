"""UDP and TCP listeners: bytes in, bytes out, nothing else.

UDP reads the socket directly from a reader callback and drains it until it
would block (bounded per wake-up so TCP and probes still get turns): one
wake-up answers a burst of queries, which is where most of the speed of a
Python DNS server is won or lost; at a steady moderate rate it waits a
millisecond after a drain that found little, so that bursts form
(``serve.pacing``).  Where it builds, a compiled drain
(``serve._datagrams``, C) reads and sends up to 32 datagrams per system call
and answers exact-bytes cache hits itself; everything else still goes to the
handler, and the pure-Python drain stays (``--udp-drain python`` chooses it).
TCP follows RFC 7766: two-octet length
framing (section 8), several pipelined queries per connection answered in
order (section 6.2.1), an idle timeout (section 6.2.3) and the limits of
section 10: connections per source and in all, decided at accept
(``TcpAcceptor``, ``serve.admission``); at the limit the connection idle the
longest makes room.  With ``--workers`` the processes share one listening
socket and spread connections by a shared count (``serve.spread``).  Every
limit is per process.  A client that trickles bytes never extends its own
idle timer, and one that does not read its replies gets no more answers
once they back up, holds at most INPUT_LIMIT + OUTPUT_LIMIT octets here and
TCP_SEND_BUFFER in the kernel, and is reset at its idle timeout: neither can
hold the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import cast

from dnsfail.addresses import source_of
from dnsfail.dns.handler import ExactSource
from dnsfail.dns.stats import SAMPLE_EVERY
from dnsfail.logs import ErrorLog
from dnsfail.serve import pacing
from dnsfail.serve.admission import (
    CONNECTION_LIMIT,
    EVICTED,
    PER_SOURCE_LIMIT,
    Admission,
)
from dnsfail.serve.spread import ACCEPT_DEFER, ACCEPT_RECHECK, Shares

try:
    from dnsfail.serve import _datagrams
except ImportError:  # not built (no compiler at install, not Linux): the pure-Python drain
    _datagrams = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
#: The handler never raises; if a bug makes it, one line per kind, never a traceback per packet.
_errors = ErrorLog(log)

#: Datagrams answered per reader wake-up before yielding to the event loop.
UDP_BATCH = 256
SOCKET_BUFFER = 4 * 1024 * 1024

#: ``handle(message, tcp, client_ip)`` -> reply or None.
Handle = Callable[[bytes, bool, str], "bytes | None"]


#: ``--udp-drain``: the compiled drain where it was built, or either by name.
UDP_DRAINS = ("auto", "compiled", "python")


def compiled_built() -> bool:
    """Whether ``serve._datagrams`` was built at install (a C compiler and Python's
    headers were there, on Linux)."""
    return _datagrams is not None


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
    """Answers datagrams on one socket from the event loop's reader callback.

    At a steady moderate rate it waits ``delay`` after a drain that found little
    (``serve.pacing``), so that one wake-up answers several queries; the reader is
    off the event loop meanwhile, and a timer (owned here, cancelled by ``stop``)
    drains again.
    """

    def __init__(self, sock: socket.socket, handle: Handle, delay: float = pacing.DEFAULT_DELAY,
                 exact: ExactSource | None = None, drain: str = "auto") -> None:  # fmt: skip
        self.sock = sock
        self.handle = handle
        self.dropped_sends = 0
        self.pacer = pacing.Pacer(delay, time.monotonic())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._timer: asyncio.TimerHandle | None = None
        #: The compiled drain, or None for the pure-Python one (``UDP_DRAINS``).
        self.compiled: _datagrams.Datagrams | None = None
        if drain == "compiled" and _datagrams is None:
            raise RuntimeError("the compiled UDP drain was not built at install")
        if drain != "python" and _datagrams is not None:
            snapshot, counts, timer, plain = (exact if exact is not None
                                              else (None, [], _no_timer, None))
            plain_counts, plain_slot = plain if plain is not None else (None, 0)
            self.compiled = _datagrams.Datagrams(sock.fileno(), handle, snapshot, counts,
                                                 timer, _report, SAMPLE_EVERY,
                                                 plain_counts, plain_slot)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)
        self._reading = True

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sock.fileno() >= 0:
            if self._reading:
                loop.remove_reader(self.sock.fileno())
                self._reading = False
            self.sock.close()

    def _wake(self) -> None:
        self._timer = None
        if self.sock.fileno() >= 0:
            self._readable()

    def _readable(self) -> None:
        answered = self._drain()
        loop = self._loop
        if loop is None:
            return
        if self.pacer.after(answered, time.monotonic()):
            if self._reading:
                loop.remove_reader(self.sock.fileno())
                self._reading = False
            self._timer = loop.call_later(self.pacer.delay, self._wake)
        elif not self._reading:
            loop.add_reader(self.sock.fileno(), self._readable)
            self._reading = True

    def _drain(self) -> int:
        """Answer what the socket holds, up to UDP_BATCH datagrams; how many were read."""
        if self.compiled is not None:
            read, dropped, failed = self.compiled.drain(UDP_BATCH)
            self.dropped_sends += dropped
            if failed:
                log.debug("udp send failed for %d replies", failed)
            return read
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handle = self.handle
        for done in range(UDP_BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return done
            except OSError as exc:  # e.g. a queued ICMP error; the socket is still fine
                log.debug("udp receive error: %s", exc)
                continue
            try:
                reply = handle(data, False, addr[0])
            except Exception as exc:  # the handler never raises; this guards the listener anyway
                _errors.report(exc, f"in the UDP listener on a {len(data)}-byte datagram")
                continue
            if reply is None:
                continue
            try:
                sendto(reply, addr)
            except (BlockingIOError, InterruptedError):
                self.dropped_sends += 1
            except OSError as exc:
                log.debug("udp send to %s failed: %s", addr, exc)
        return UDP_BATCH


def _no_timer(seconds: float) -> None:
    """The latency sampler of a listener whose drain answers no hit itself."""


def _report(exc: BaseException, size: int) -> None:
    """A handler bug seen by the compiled drain: one log line per kind, as in ``_drain``."""
    _errors.report(exc, f"in the UDP listener on a {size}-byte datagram")


#: RFC 1035 section 4.2.2: a two-octet length prefix, so no message is longer than this.
MAX_MESSAGE = 65535
#: Unanswered input a connection may hold: one maximum-size message and its length prefix,
#: plus a margin for the start of the next one.  More than that only builds up while the
#: client's replies back up unread (reading is paused then, so it is what the last read
#: brought beyond what could be answered): such a client is aborted, not buffered for.
INPUT_LIMIT = 2 + MAX_MESSAGE + 4096
#: Write-buffer marks (asyncio ``set_write_buffer_limits``): above HIGH the transport calls
#: ``pause_writing`` and no further message is answered; below LOW answering resumes.  The
#: kernel's socket buffer comes first, so this is what the process holds beyond it.
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024
#: SO_SNDBUF of the TCP listeners, which accepted connections inherit (Linux doubles it for
#: its bookkeeping).  Without it autotuning lets each connection whose client does not read
#: pin up to net.ipv4.tcp_wmem's maximum (often 4 MiB) of kernel memory: 100 such clients
#: held 382 MiB.  Enough for DNS: a maximum-size reply per round trip.
TCP_SEND_BUFFER = 64 * 1024
#: Unsent output a connection may hold: the high mark, the reply that crossed it and two
#: more maximum-size replies.  Answering stops at WRITE_HIGH, so this is a guard against a
#: transport whose flow control comes late or never; a connection over it is aborted.
OUTPUT_LIMIT = WRITE_HIGH + 3 * (2 + MAX_MESSAGE)
#: Messages one connection has answered per turn of the event loop; the rest of what one
#: read brought waits for the next turn (as UDP_BATCH for datagrams), reading paused
#: meanwhile.  A read can bring 256 KiB, 130,000 empty frames: answered in one go, one
#: connection held the loop for over a second.
TCP_BATCH = 64
#: Why the server ends a connection: the labels of ``dnsfail_tcp_closed_total``.
#: ``idle``: the RFC 7766 section 6.2.3 idle timeout, nothing left unsent (a FIN);
#: ``stalled``: the idle timeout with replies unsent, the client not reading (a reset);
#: ``input_limit`` / ``output_limit``: over INPUT_LIMIT / OUTPUT_LIMIT (a reset);
#: ``connection_limit``: closed at accept, ``max_connections`` open and none idle (a FIN);
#: ``per_source_limit``: closed at accept, its source holds ``max_per_source`` (a FIN);
#: ``evicted``: idle the longest when ``max_connections`` were open and one more came (a FIN);
#: ``malformed``: a message that gets no reply (shorter than a header, or a response: QR
#: set, RFC 1035 section 4.1.1); no DNS client sends one, so the stream is not DNS (a reset).
CLOSE_REASONS = ("idle", "stalled", "input_limit", "output_limit", CONNECTION_LIMIT,
                 PER_SOURCE_LIMIT, EVICTED, "malformed")
#: Default of ``--tcp-max-connections``: open connections per process.
TCP_MAX_CONNECTIONS = 1000
#: Default of ``--tcp-max-per-source``: connections per process from one source (an IPv4
#: address, an IPv6 /64: ``addresses.source_of``).  A resolver needs a few (Unbound opens
#: at most ``outgoing-num-tcp``, 10, per thread); 64 leaves room for a farm of them behind
#: one address and for ``dnsperf -m tcp -c 64``, and still takes 16 sources to fill a
#: table of 1,000.
TCP_MAX_PER_SOURCE = 64
#: Seconds between two log lines about one of the limits (per reason): a flood of connects
#: is counted in metrics, and must not flood the log.
LIMIT_LOG_EVERY = 10.0
#: Pause after accept() failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
#: ENOMEM), as asyncio's own servers do: retrying at once would spin.
ACCEPT_RETRY = 1.0
#: Connections accepted per wake-up of a listening socket before yielding to the loop.
ACCEPT_BATCH = 16
_LINGER_RESET = struct.pack("ii", 1, 0)
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class TcpLimits:
    """The settings, admission table and counters shared by every connection of one process.

    ``shares``, with ``--workers``, is the table of connection counts the
    processes share (``serve.spread``): every change of ``open`` is written
    there for the siblings' accept throttle.
    """

    def __init__(self, idle_timeout: float = 10.0, max_connections: int = TCP_MAX_CONNECTIONS,
                 max_per_source: int = TCP_MAX_PER_SOURCE) -> None:
        self.idle_timeout = idle_timeout
        self.table: Admission[TcpConnection] = Admission(max_connections, max_per_source,
                                                         TcpConnection.idle)
        #: Connections the server ended, by reason (CLOSE_REASONS); cumulative.
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        #: When each limit was last logged (time.monotonic), see LIMIT_LOG_EVERY.
        self.logged: dict[str, float] = {}
        self.shares: Shares | None = None
        #: Connections this process left to a sibling for a moment (``serve.spread``).
        self.deferred = 0

    @property
    def max_connections(self) -> int:
        return self.table.max_connections

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        self.table.max_connections = value

    @property
    def max_per_source(self) -> int:
        return self.table.max_per_source

    @property
    def open(self) -> int:
        return len(self.table)

    def add(self, connection: TcpConnection, source: str) -> None:
        self.table.add(connection, source)
        self._changed()

    def remove(self, connection: TcpConnection) -> None:
        if self.table.remove(connection):
            self._changed()

    def share(self, shares: Shares | None) -> None:
        """Count this process's connections in ``shares`` from now on (None: close them)."""
        if self.shares is not None:
            self.shares.close()
        self.shares = shares
        self._changed()

    def _changed(self) -> None:
        if self.shares is not None:
            self.shares.set(len(self.table))

    def count(self, reason: str, client: str) -> None:
        """One connection refused or evicted for ``reason``; logged at most every 10 s."""
        self.closed[reason] += 1
        now = time.monotonic()
        if now - self.logged.get(reason, -LIMIT_LOG_EVERY) < LIMIT_LOG_EVERY:
            return
        self.logged[reason] = now
        so_far = self.closed[reason]
        if reason == CONNECTION_LIMIT:
            log.warning("tcp connection limit %d reached and none idle; closing new "
                        "connections (%d so far)", self.max_connections, so_far)
        elif reason == PER_SOURCE_LIMIT:
            log.warning("tcp per-source limit %d reached by %s; closing its new connections "
                        "(%d so far)", self.max_per_source, source_of(client), so_far)
        else:
            log.warning("tcp connection limit %d reached; closing the longest idle "
                        "connections to make room (%d so far)", self.max_connections, so_far)


class TcpConnection(asyncio.Protocol):
    """One TCP client: frames, answers in order, times out when idle.

    Memory per connection is bounded whatever the client does: answering
    stops while the transport's write buffer is over WRITE_HIGH (reading is
    paused too, and the messages already read wait, at most INPUT_LIMIT
    octets of them), and a client that does not read is idle under RFC 7766
    section 6.2.3: answers earn no time, so the idle timer still runs, and it
    resets the connection rather than closing it, since a close would wait for
    the unsent replies forever.  Input is kept in a bytearray consumed from
    the front, so a message delivered one octet at a time costs linear time.
    """

    def __init__(self, handle: Handle, limits: TcpLimits, client: str = "") -> None:
        self.handle = handle
        self.limits = limits
        #: Input not yet answered: a partial message, or whole ones waiting while paused.
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        #: Set by connection_made; ``active``: when the last whole message was answered.
        self.loop: asyncio.AbstractEventLoop
        self.active = 0.0
        self.counted = False
        self.paused = False
        #: The next turn's answering, scheduled when one turn answered TCP_BATCH messages.
        self.pending: asyncio.Handle | None = None
        self.client = client
        #: Evicted before its transport was made: closed as soon as it is.
        self.evicted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not derive from asyncio.Transport, so no isinstance check.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if not self.client:
            peer = transport.get_extra_info("peername")
            self.client = peer[0] if peer else ""
        if self.evicted:  # made room for a later one while its transport was being made
            transport.close()
            return
        if not self.counted:  # admitted by TcpAcceptor, or made without one (tests)
            self.counted = True
            self.limits.add(self, source_of(self.client))
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self._arm()

    def idle(self) -> bool:
        """Closing now loses nothing: no reply unsent, nothing read unanswered.

        A partial message does not count (RFC 7766 section 6.2.3: only whole
        ones earn time); one whose replies back up unread is busy, and its
        idle timer resets it anyway.  Two states hold a slot with nothing to
        lose and are idle too: accepted in the same batch as the newcomer, its
        transport not made yet (nothing read from it: with a loaded CPU a
        silent client and the next ones all wait in the backlog together), and
        closing with nothing unsent (the client's FIN read, ``connection_lost``
        due on the next turn of the loop).
        """
        transport = self.transport
        if transport is None:
            return True
        if transport.get_write_buffer_size():
            return False
        return transport.is_closing() or (self.pending is None and not self.paused)

    def evict(self) -> None:
        """Closed to make room (``Admission`` has already forgotten it): a FIN, nothing lost.

        One already closing is only forgotten: it was counted when its close
        began (or its client ended it), not evicted.
        """
        self.counted = False
        transport = self.transport
        if transport is None:
            self.evicted = True
            self.limits.count(EVICTED, self.client)
        elif not transport.is_closing():
            self.limits.count(EVICTED, self.client)
            transport.close()

    def _arm(self) -> None:
        """Start the idle timer: one per connection, not one per answer.

        Answering only notes the time (``active``); when the timer fires
        early it is set again for ``active`` + the timeout.
        """
        loop = self.loop = asyncio.get_running_loop()
        self.active = loop.time()
        self.timer = loop.call_at(self.active + self.limits.idle_timeout, self._idle)

    def _idle(self) -> None:
        transport = self.transport
        if transport is None:
            return
        deadline = self.active + self.limits.idle_timeout
        if deadline > self.loop.time():  # answered since the timer was set
            self.timer = self.loop.call_at(deadline, self._idle)
            return
        if self.paused or transport.get_write_buffer_size():
            self._abort("stalled")
        else:
            self.limits.closed["idle"] += 1
            transport.close()

    def _abort(self, reason: str) -> None:
        """End the connection now, unsent data dropped, with a reset (SO_LINGER 0).

        A plain close would leave the replies the client does not read in the
        kernel's send buffer, retried against a zero window; a reset frees it.
        """
        transport = self.transport
        if transport is None:
            return
        self.limits.closed[reason] += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.buffer = bytearray()
        transport.abort()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.pending is not None:  # delivered though reading was paused
            self.buffer += data
            if len(self.buffer) > INPUT_LIMIT:
                self._abort("input_limit")
        elif self.buffer:
            self.buffer += data
            self._answer(transport, self.buffer)
        else:  # the common case: whole messages, answered from the read itself
            self._answer(transport, data)

    def _answer(self, transport: asyncio.Transport, buffer: bytes | bytearray) -> None:
        """Answer the whole messages in ``buffer`` (the read, or ``self.buffer``), in order.

        Until output backs up, and at most TCP_BATCH per call: the rest waits
        for the next turn of the loop (``_next_turn``), so one connection's
        stream never holds it.  Replies go out together, one write per
        WRITE_HIGH octets of them (a system call per reply cost more than
        the framing), so flow control still stops a client that does not
        read within OUTPUT_LIMIT.  What is left (a partial message, or whole
        ones while paused) stays in ``self.buffer``.
        """
        copy = buffer is self.buffer  # a bytearray slice must become bytes for the handler
        handle, client = self.handle, self.client
        size = len(buffer)
        start = 0
        answered = 0
        out: list[bytes] = []
        unsent = 0
        while not self.paused and size - start >= 2:
            end = start + 2 + (buffer[start] << 8 | buffer[start + 1])
            if size < end:
                break
            if answered == TCP_BATCH:
                transport.pause_reading()
                self.pending = self.loop.call_soon(self._next_turn)
                break
            message = buffer[start + 2 : end]
            start = end
            answered += 1
            reply = handle(bytes(message) if copy else message, True, client)  # type: ignore[arg-type]
            if reply is None:
                if out:
                    transport.write(b"".join(out))
                self._abort("malformed")
                return
            out.append(len(reply).to_bytes(2, "big"))
            out.append(reply)
            unsent += 2 + len(reply)
            if unsent >= WRITE_HIGH:
                if not self._write(transport, out):
                    return
                out, unsent = [], 0
        if out and not self._write(transport, out):
            return
        if start:
            self.active = self.loop.time()  # only whole messages earn time, RFC 7766 6.2.3
            self.limits.table.touch(self)
        if copy:
            del self.buffer[:start]  # O(1) in CPython: a bytearray advances its start
        elif start < size:
            self.buffer = bytearray(buffer[start:])
        if self.pending is None and len(self.buffer) > INPUT_LIMIT:
            self._abort("input_limit")

    def _write(self, transport: asyncio.Transport, out: list[bytes]) -> bool:
        """Send the replies gathered; False if that put the connection over OUTPUT_LIMIT."""
        transport.write(b"".join(out))
        if transport.get_write_buffer_size() > OUTPUT_LIMIT:
            self._abort("output_limit")
            return False
        return True

    def _next_turn(self) -> None:
        """Answer what the last turn left, then read again unless output backs up."""
        self.pending = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._answer(transport, self.buffer)
        if not self.paused and self.pending is None and not transport.is_closing():
            transport.resume_reading()

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.pending is not None:
            return  # the next turn answers what waited, and resumes reading
        self._answer(transport, self.buffer)  # the messages that waited
        if not self.paused and self.pending is None and not transport.is_closing():
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.counted:
            self.limits.remove(self)
            self.counted = False
        self.buffer = bytearray()
        self.transport = None


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket, non-blocking; its SO_SNDBUF is what connections inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SEND_BUFFER)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class TcpAcceptor:
    """Accepts from one listening socket: admits (``serve.admission``), then serves.

    Accepting here rather than in ``loop.create_server`` decides who gets a
    slot before a transport exists: a refused connection costs an accept and
    a close.  With ``limits.shares`` (``--workers``) a process holding more
    than its share leaves the next connection to a sibling for a moment
    (``serve.spread``).
    """

    def __init__(self, sock: socket.socket, handle: Handle, limits: TcpLimits) -> None:
        self.sock = sock
        self.handle = handle
        self.limits = limits
        self.loop: asyncio.AbstractEventLoop | None = None
        #: A pause: a connection left to siblings (ACCEPT_DEFER) or out of descriptors.
        self.timer: asyncio.TimerHandle | None = None
        #: Seconds the connection left to siblings has waited so far.
        self.waited = 0.0
        #: Transports being made for accepted sockets (kept so the tasks are not collected).
        self.connecting: set[asyncio.Task[object]] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        if self.limits.shares is not None:
            self.limits.shares.set(self.limits.open)
        loop.add_reader(self.sock.fileno(), self._readable)

    def stop(self) -> None:
        """Stop accepting and close this process's descriptor of the socket."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.loop is not None and self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        self._accept(force=False)

    def _accept(self, force: bool) -> None:
        shares = self.limits.shares
        for _ in range(ACCEPT_BATCH):
            if not force and shares is not None and shares.over():
                self.limits.deferred += 1
                self.waited = 0.0
                self._pause(ACCEPT_RECHECK)
                return
            force = False
            try:
                sock, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    _errors.report(exc, "accepting a TCP connection (pausing accepts for 1s)")
                    self._pause(ACCEPT_RETRY)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            self._admit(sock, address[0])

    def _pause(self, seconds: float) -> None:
        assert self.loop is not None
        self.loop.remove_reader(self.sock.fileno())
        self.waited += seconds
        self.timer = self.loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        """After a pause: listen again, taking what still waits if siblings left it too long.

        While this process holds more than its share it looks again every
        ACCEPT_RECHECK: a sibling may have taken connections meanwhile (it is
        then this one's turn), or been pausing itself when the connection came.
        """
        self.timer = None
        assert self.loop is not None
        if self.sock.fileno() < 0:
            return
        shares = self.limits.shares
        if shares is not None and self.waited < ACCEPT_DEFER and shares.over():
            self.waited += ACCEPT_RECHECK
            self.timer = self.loop.call_later(ACCEPT_RECHECK, self._resume)
            return
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self._accept(force=shares is not None and self.waited >= ACCEPT_DEFER)

    def _admit(self, sock: socket.socket, client: str) -> None:
        limits = self.limits
        source = source_of(client)
        refused, victim = limits.table.admit(source)
        if refused is not None:
            limits.count(refused, client)
            sock.close()  # nothing was sent: a plain close, no reset needed
            return
        if victim is not None:
            victim.evict()
        sock.setblocking(False)
        connection = TcpConnection(self.handle, limits, client)
        connection.counted = True
        limits.add(connection, source)
        assert self.loop is not None
        task: asyncio.Task[object] = self.loop.create_task(self._serve(sock, connection))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _serve(self, sock: socket.socket, connection: TcpConnection) -> object:
        assert self.loop is not None
        try:
            return await self.loop.connect_accepted_socket(lambda: connection, sock)
        except OSError as exc:  # the client left before its transport was made
            log.debug("tcp connection from %s lost at accept: %s", connection.client, exc)
            sock.close()
            if connection.counted:
                connection.counted = False
                self.limits.remove(connection)
            return None
