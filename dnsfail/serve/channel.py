"""The channel between the main process and a worker: length-prefixed pickles, a bulk
socket for big out-of-band buffers, and the setup message that passes the listening
sockets (``serve.workers``).

Frames: a head (the pickle's length, how many out-of-band buffers follow), the
pickled message, then each out-of-band buffer after its 8-octet length.  Zones'
packed stores are such buffers (PEP 574), sent from the store itself and received
into the worker's own buffers.  Their octets can go on a second socket pair
(``bulk_pair``), written and read by a thread on each side: 38 MB cross in about
15 ms there, against 150 ms through the event loop's stream, and neither loop
stops answering while they do.

The setup (``setup_message``) is the first message on a worker's channel: its
settings as JSON, with the listening sockets' and shared tables' descriptors as
SCM_RIGHTS ancillary data (unix(7)), so that a worker spawned before they were
bound, or restarted later, answers on the very same sockets.

Everything here passes between processes of the same program, never from the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import io
import json
import logging
import pickle
import socket
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from dnsfail.errors import DnsfailError

log = logging.getLogger(__name__)

#: A frame's head: the pickle's length and how many out-of-band buffers follow it.
_FRAME = struct.Struct("!II")
#: An out-of-band buffer's length, before its octets.
_BUFFER = struct.Struct("!Q")
#: Octets of a buffer read at a time: ``readexactly`` copies what it returns.
_RECEIVE_STEP = 1 << 20
#: Socket buffer of the bulk pair that carries out-of-band buffers, each way: fewer,
#: larger copies between the processes (4 MiB: 38 MB in 10 ms, 27 with the default).
BULK_BUFFER = 4 << 20
#: Most descriptors one setup message passes (Linux's SCM_MAX_FD): two a listen address,
#: plus the shared tables', so about 125 ``--listen`` addresses with ``--workers``.
MAX_PASSED_FDS = 253
#: Largest setup message (JSON settings, a few hundred octets): a longer head is not ours.
MAX_SETUP_SIZE = 1 << 20
#: A setup message's head: the JSON's length.
_SETUP = struct.Struct("!I")


# --- the channel: length-prefixed pickles -----------------------------------------------------

def _mapping_proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _reduce_mapping_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _mapping_proxy, (dict(proxy),)


def encode(message: object) -> bytes:
    """One frame (``encode_parts``) as one byte string."""
    return b"".join(encode_parts(message))


def encode_parts(message: object) -> list[bytes | memoryview]:
    """One frame: a head (the pickle's length, how many buffers follow), the pickled
    message, then each out-of-band buffer after its 8-octet length.

    Zones hold read-only mapping proxies, which pickle cannot store on its
    own; they travel as the dicts they wrap and are wrapped again on arrival.
    A packed store's blob and index are out-of-band buffers (PEP 574): sent
    from the store itself and received into the worker's own buffers, so a
    big zone is never copied into a pickle on either side (``zonefile.packed``).
    """
    buffers: list[pickle.PickleBuffer] = []
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5, buffer_callback=buffers.append)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[MappingProxyType] = _reduce_mapping_proxy
    pickler.dump(message)
    body = out.getvalue()
    parts: list[bytes | memoryview] = [_FRAME.pack(len(body), len(buffers)), body]
    for buffer in buffers:
        raw = buffer.raw()
        parts += [_BUFFER.pack(raw.nbytes), raw]
    return parts


async def receive(reader: asyncio.StreamReader,
                  bulk: socket.socket | None = None) -> object | None:
    """The next message, or None when the other end has closed the channel.

    With ``bulk`` (a blocking socket), the out-of-band buffers' octets are read
    from it, in a thread, straight into their own buffers (``write_frame``).
    """
    try:
        head = await reader.readexactly(_FRAME.size)
        size, count = _FRAME.unpack(head)
        body = await reader.readexactly(size)
        buffers = []
        for _ in range(count):
            (length,) = _BUFFER.unpack(await reader.readexactly(_BUFFER.size))
            if bulk is not None:
                buffers.append(await asyncio.to_thread(_receive_into, bulk, length))
                continue
            buffer = bytearray(length)
            for at in range(0, length, _RECEIVE_STEP):  # not a second copy of a big buffer
                buffer[at : at + _RECEIVE_STEP] = await reader.readexactly(
                    min(_RECEIVE_STEP, length - at))
            buffers.append(buffer)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message: object = pickle.loads(body, buffers=buffers)
    return message


# --- the setup: settings and listening sockets ---------------------------------------------

def setup_message(spec: Mapping[str, Any], sockets: Sequence[tuple[int, bool]],
                  shared: Sequence[int]) -> tuple[bytes, list[int]]:
    """The setup's octets and the descriptors that travel with them (SCM_RIGHTS): the
    listening ``sockets`` (descriptor, is TCP) in order, then the ``shared`` tables'.

    The descriptor numbers mean nothing in the worker, so the message says only
    what each passed descriptor is (``attach`` puts the worker's numbers back).
    """
    fds = [fd for fd, _ in sockets] + list(shared)
    if len(fds) > MAX_PASSED_FDS:
        raise DnsfailError(f"--workers: {len(sockets) // 2} listen addresses pass {len(fds)} "
                           f"sockets to each worker, more than {MAX_PASSED_FDS}")
    body = json.dumps({**spec, "sockets": [stream for _, stream in sockets],
                       "shared": len(shared)}).encode()
    return _SETUP.pack(len(body)) + body, fds


def attach(setup: Mapping[str, Any], fds: Sequence[int]) -> dict[str, Any]:
    """The worker's spec from a setup and the descriptors received with it, in the
    order ``setup_message`` sent them; raises ValueError when they do not match."""
    streams: list[bool] = setup["sockets"]
    shared = fds[len(streams):]
    if len(fds) != len(streams) + setup["shared"]:
        raise ValueError(f"setup names {len(streams) + setup['shared']} descriptors, "
                         f"{len(fds)} came")
    spec = {**setup, "sockets": list(zip(fds, streams, strict=False))}
    if spec.get("shares") is not None:
        spec["shares"] = [shared[0], spec["shares"][1]]
        shared = shared[1:]
    if spec.get("rrl_fd") is not None:
        spec["rrl_fd"] = shared[0]
    return spec


def receive_setup(channel: socket.socket) -> dict[str, Any] | None:
    """Block until the setup arrives (``setup_message``); None when the channel closes
    first (the main process failed to start, or went away)."""
    try:
        head, fds, _, _ = socket.recv_fds(channel, _SETUP.size, MAX_PASSED_FDS,
                                          socket.MSG_CMSG_CLOEXEC)
        head += _receive_exactly(channel, _SETUP.size - len(head)) if head else b""
        if len(head) < _SETUP.size:
            return None
        (size,) = _SETUP.unpack(head)
        if size > MAX_SETUP_SIZE:
            raise ValueError(f"setup of {size} octets")
        return attach(json.loads(_receive_exactly(channel, size)), fds)
    except ConnectionError:
        return None
    except ValueError as exc:  # not from our main process: nothing to answer with
        log.error("unusable setup: %s", exc)
        return None


def _receive_into(bulk: socket.socket, length: int) -> bytearray:
    """``length`` octets from ``bulk`` (blocking), read into one new buffer."""
    buffer = bytearray(length)
    view, at = memoryview(buffer), 0
    while at < length:
        got = bulk.recv_into(view[at:])
        if not got:
            raise ConnectionResetError("bulk channel closed in a buffer")
        at += got
    return buffer


def bulk_pair(timeout: float | None = None) -> tuple[socket.socket, socket.socket]:
    """A socket pair for out-of-band buffers, with ``BULK_BUFFER`` each way when allowed;
    the first end (the sender's) gives up after ``timeout`` seconds."""
    pair = socket.socketpair()
    for sock in pair:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, BULK_BUFFER)
    pair[0].settimeout(timeout)
    return pair


def _receive_exactly(channel: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = channel.recv(size - len(out))
        if not chunk:
            raise ConnectionResetError("channel closed in a setup message")
        out += chunk
    return bytes(out)


async def write_frame(writer: asyncio.StreamWriter, parts: list[bytes | memoryview],
                      bulk: socket.socket | None = None) -> None:
    """Write a frame (``encode_parts``).  With ``bulk`` (a blocking socket with a timeout),
    each out-of-band buffer's octets go there from a thread, after its length on the
    stream (``receive`` reads them so); the event loop only waits.

    Without, a step at a time, draining between: what the transport cannot send at
    once it copies into its buffer, so a big zone's blob is never copied there whole.
    """
    if bulk is not None:
        writer.write(b"".join(parts[:2]))
        for length, raw in zip(parts[2::2], parts[3::2], strict=True):
            writer.write(length)
            await writer.drain()
            await asyncio.to_thread(bulk.sendall, raw)
        await writer.drain()
        return
    for part in parts:
        view = memoryview(part)
        for at in range(0, len(view), _RECEIVE_STEP):
            writer.write(view[at : at + _RECEIVE_STEP])
            await writer.drain()
