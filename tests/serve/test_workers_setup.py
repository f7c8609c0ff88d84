"""Worker processes spawned before the zones load, then set up over their channel.

``serve --workers N`` spawns the workers as it starts, so that their interpreter start
and imports overlap the main process's parse; once the listening sockets are bound it
sends each its setup (settings, and the sockets' descriptors by SCM_RIGHTS), then the
snapshot.  Here: the setup message over a real socketpair; a worker spawned by
``Workers`` with no socket, fed later, answering on a socket only it reads; and real
``python -m dnsfail serve --workers 2`` processes, whose worker exists while the zone
is still being parsed, and is gone when a bad zone stops the start.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import pytest

from dnsfail.model import RRType
from dnsfail.serve.channel import (
    MAX_PASSED_FDS,
    attach,
    bulk_pair,
    encode_parts,
    receive,
    receive_setup,
    setup_message,
    write_frame,
)
from dnsfail.serve.wiring import load_store
from dnsfail.serve.workers import Launch, Publish, Workers, WorkerSettings
from dnsfail.zonefile import parse_zone

from ..conftest import DATA, DnsfailProcess

#: Records of the zone whose parse the early worker must beat (about half a second).
RECORDS = 100_000


# --- the setup message ------------------------------------------------------------------------

def test_the_setup_carries_the_sockets_themselves() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.create_server(("127.0.0.1", 0))
    table = os.memfd_create("shares")
    main, worker = socket.socketpair()
    try:
        message, fds = setup_message({"identity": "x", "shares": [table, 3], "rrl_fd": None},
                                     [(udp.fileno(), False), (tcp.fileno(), True)], [table])
        assert socket.send_fds(main, [message], fds) == len(message)
        main.sendall(b"next frame")  # what follows the setup is left on the channel
        spec = receive_setup(worker)
        assert spec is not None
        assert spec["identity"] == "x"
        (udp_fd, udp_stream), (tcp_fd, tcp_stream) = spec["sockets"]
        assert (udp_stream, tcp_stream) == (False, True)
        assert not {udp_fd, tcp_fd} & set(fds)  # new descriptors, the same sockets:
        with socket.socket(fileno=udp_fd) as got_udp, socket.socket(fileno=tcp_fd) as got_tcp:
            assert got_udp.getsockname() == udp.getsockname()
            assert got_tcp.getsockname() == tcp.getsockname()
        assert spec["shares"][1] == 3
        assert os.fstat(spec["shares"][0]).st_ino == os.fstat(table).st_ino
        os.close(spec["shares"][0])
        assert worker.recv(100) == b"next frame"
    finally:
        for s in (udp, tcp, main, worker):
            s.close()
        os.close(table)


@pytest.mark.parametrize("raw", [
    pytest.param(b"", id="closed-at-once"),
    pytest.param(b"\x00\x00", id="closed-in-the-head"),
    pytest.param(struct.pack("!I", 100) + b"{}", id="closed-in-the-body"),
    pytest.param(struct.pack("!I", 1 << 30), id="oversized"),
    pytest.param(struct.pack("!I", 5) + b"nope!", id="not-json"),
    pytest.param(struct.pack("!I", 28) + b'{"sockets": [true], "shared": 0}'[:28], id="cut"),
    pytest.param(struct.pack("!I", 32) + b'{"sockets": [true], "shared": 0}', id="fds-missing"),
])
def test_a_setup_that_is_not_whole_is_none(raw: bytes) -> None:
    main, worker = socket.socketpair()
    with main, worker:
        main.sendall(raw)
        main.shutdown(socket.SHUT_WR)
        assert receive_setup(worker) is None


def test_attach_maps_descriptors_in_order() -> None:
    setup = {"sockets": [False, True], "shared": 2, "shares": [99, 4], "rrl_fd": 98}
    spec = attach(setup, [10, 11, 12, 13])
    assert spec["sockets"] == [(10, False), (11, True)]
    assert (spec["shares"], spec["rrl_fd"]) == ([12, 4], 13)
    assert attach({**setup, "shared": 1, "shares": None}, [10, 11, 12])["rrl_fd"] == 12
    with pytest.raises(ValueError, match="setup names 4 descriptors, 3 came"):
        attach(setup, [10, 11, 12])


def test_too_many_sockets_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="more than"):
        setup_message({}, [(3, False)] * (MAX_PASSED_FDS + 1), [])


# --- the bulk socket: a zone's packed buffers beside the channel ------------------------------

def _zone_text(records: int) -> str:
    lines = ["'':", "  type: NS", "  value: ns1.big.test.", "ns1:", "  type: A",
             "  value: 192.0.2.1"]
    for i in range(records):
        lines += [f"h{i:06d}:", "  type: A", f"  value: 198.18.{i // 250 % 250}.{i % 250 + 1}"]
    return "\n".join(lines) + "\n"


async def _channel() -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                              asyncio.StreamReader, asyncio.StreamWriter]:
    a, b = socket.socketpair()
    reader_a, writer_a = await asyncio.open_unix_connection(sock=a)
    reader_b, writer_b = await asyncio.open_unix_connection(sock=b)
    return reader_a, writer_a, reader_b, writer_b


async def test_packed_buffers_cross_on_the_bulk_socket_in_order() -> None:
    zone = parse_zone(_zone_text(20_000), "big.test.yaml", "big.test.", serial=1)
    first, second = Publish(1, ("big.test.",), {"big.test.": zone}, {}), Publish(2, (), {}, {})
    parts = encode_parts(first)
    assert len(parts) > 2, "the packed store travels out of band"
    _, sender, reader, receiver = await _channel()
    bulk_out, bulk_in = bulk_pair()
    try:
        await asyncio.wait_for(write_frame(sender, parts, bulk_out), 10)
        await write_frame(sender, encode_parts(second), bulk_out)
        got = await asyncio.wait_for(receive(reader, bulk_in), 10)
        assert isinstance(got, Publish)
        node = got.changed["big.test."].nodes["h019999.big.test."]
        assert node[RRType.A] == zone.nodes["h019999.big.test."][RRType.A]
        assert got.changed["big.test."].record_count == zone.record_count
        after = await asyncio.wait_for(receive(reader, bulk_in), 10)
        assert isinstance(after, Publish)
        assert after.generation == 2
        # A buffer announced on the channel but cut off on the bulk socket: closed.
        sender.write(b"".join(parts[:3]))
        bulk_out.sendall(bytes(memoryview(parts[3])[:1000]))
        bulk_out.close()
        assert await asyncio.wait_for(receive(reader, bulk_in), 10) is None
    finally:
        for writer in (sender, receiver):
            writer.close()
        bulk_out.close()
        bulk_in.close()


# --- Workers: spawned first, fed later ----------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _sockets_of(pid: int) -> int:
    """Distinct sockets ``pid`` holds: a worker reads its setup from a dup of its channel's
    fd (two fds, one socket), made once its imports are done, which may be before or after
    the test looks."""
    fds = Path(f"/proc/{pid}/fd")
    return len({link for link in map(os.readlink, fds.iterdir()) if link.startswith("socket:")})


async def _until(check: Callable[[], bool], seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not in time")


async def test_a_worker_spawned_before_the_zones_load_answers_once_fed() -> None:
    workers = Workers(1, Launch(log_level="warning"))
    workers.spawn()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.create_server(("127.0.0.1", 0))
    try:
        worker = workers.workers[0]
        await _until(lambda: worker.process is not None)
        assert worker.process is not None
        pid = worker.process.pid
        await asyncio.sleep(0.3)
        assert _alive(pid)
        assert _sockets_of(pid) == 2, "waiting with only its channel and bulk socket"
        store = await asyncio.to_thread(load_store, [str(DATA / "zones")], geoip=False)
        workers.configure([(udp.fileno(), False), (tcp.fileno(), True)],
                          WorkerSettings("early", None, None, 5.0, 100, "warning", "text"))
        await workers.start(store.snapshot)
        assert worker.ready.is_set()
        assert worker.applied == store.snapshot.generation
        # Only the worker reads these sockets (this process never does): it answers.
        port = udp.getsockname()[1]
        query = dns.message.make_query("ns1.gw.test.", "A")
        udp_reply = await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", port=port,
                                            timeout=5)
        tcp_reply = await asyncio.to_thread(dns.query.tcp, query, "127.0.0.1",
                                            port=tcp.getsockname()[1], timeout=5)
        assert udp_reply.answer
        assert udp_reply.answer == tcp_reply.answer
    finally:
        await workers.stop()
        udp.close()
        tcp.close()
    assert not _alive(pid)


async def test_a_worker_never_configured_is_stopped() -> None:
    workers = Workers(2, Launch(log_level="warning"))
    workers.spawn()
    await _until(lambda: all(w.process is not None for w in workers.workers))
    pids = [w.process.pid for w in workers.workers if w.process is not None]
    assert len(pids) == 2
    started = time.monotonic()
    await workers.stop()
    assert time.monotonic() - started < 5, "killed, not waited for"
    assert not any(_alive(pid) for pid in pids)
    assert not workers.tasks


# --- serve --workers 2 ------------------------------------------------------------------------

def _big_zone(directory: Path, bad: bool = False) -> Path:
    directory.mkdir()
    (directory / "big.test.yaml").write_text(_zone_text(RECORDS))
    if bad:
        (directory / "bad.test.yaml").write_text("www:\n  type: A\n  value: not-an-address\n")
    return directory


def _tagged(tag: str) -> list[int]:
    """Processes whose environment holds ``tag`` (a server and the workers it started)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "environ").read_bytes() and _alive(int(entry.name)):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def _first_worker(server: DnsfailProcess, loaded: str) -> tuple[int, bool]:
    """The first worker process of ``server`` seen, and whether ``loaded`` was logged then."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.proc.poll() is None:
        logged = loaded in server.log
        children = _children(server.proc.pid)
        if children:
            return children[0], logged
        time.sleep(0.005)
    raise AssertionError(f"no worker process seen; log:\n{server.log}")


def test_serve_spawns_its_worker_while_the_zones_are_parsed(tmp_path: Path) -> None:
    zones = _big_zone(tmp_path / "zones")
    server = DnsfailProcess([str(zones), "--workers", "2"])
    try:
        pid, loaded = _first_worker(server, "records, serial")
        assert not loaded, "the worker started only after the zones loaded"
        server.wait_for_log("worker 1 (pid", timeout=60)
        server.wait_for_log("listening on", timeout=30)
        reply = server.query("h099999.big.test.")
        assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["198.18.149.250"]
        assert _alive(pid)
        assert "Traceback" not in server.log
    finally:
        server.stop()
    assert not _alive(pid)


def test_a_bad_zone_at_start_leaves_no_worker_behind(tmp_path: Path) -> None:
    zones = _big_zone(tmp_path / "zones", bad=True)
    tag = str(uuid.uuid4())
    server = DnsfailProcess([str(zones), "--workers", "2"], env={"DNSFAIL_TEST_TAG": tag})
    try:
        pid, _ = _first_worker(server, "records, serial")
        assert server.proc.wait(60) == 1
        server.stop()
        assert "problem(s) in the zone files" in server.log, server.log
        assert "not-an-address" in server.log
        assert "Traceback" not in server.log
        deadline = time.monotonic() + 10
        while (_alive(pid) or _tagged(tag)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), "the early worker outlived the failed start"
        assert not _tagged(tag), "a process of the failed start lingers"
    finally:
        server.stop()
