"""DNS over TCP with raw sockets (RFC 7766): framing, pipelining, idle timeout, limits."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import pytest

from ..conftest import DATA, DnsfailProcess
from .conftest import (
    API_ADDRESSES,
    assert_answers_api,
    closed_after,
    frame,
    query_wire,
    recv_framed,
    tcp_connect,
)


def answer_addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def ask(sock: socket.socket, qname: str = "api.gw.test.", qtype: str = "A",
        **kwargs: object) -> dns.message.Message:
    query, wire = query_wire(qname, qtype, **kwargs)
    sock.sendall(frame(wire))
    reply = dns.message.from_wire(recv_framed(sock))
    assert query.is_response(reply)
    return reply


def test_two_octet_framing(test_server: DnsfailProcess) -> None:
    with tcp_connect(test_server) as sock:
        query, wire = query_wire("api.gw.test.", "A")
        sock.sendall(frame(wire))
        length = int.from_bytes(sock.recv(2, socket.MSG_WAITALL), "big")
        body = sock.recv(length, socket.MSG_WAITALL)
        assert len(body) == length
        reply = dns.message.from_wire(body, ignore_trailing=False)
        assert reply.id == query.id
        assert reply.flags & dns.flags.AA
        assert answer_addresses(reply) == API_ADDRESSES
        # The connection stays open for more queries (RFC 7766 section 6.2.1).
        assert ask(sock, "gw.test.", "MX").answer[0][0].to_text() == "10 mx.gw.test."


def test_large_reply_is_whole(test_server: DnsfailProcess) -> None:
    with tcp_connect(test_server) as sock:
        reply = ask(sock, "big.gw.test.", "TXT", use_edns=False)
        assert not reply.flags & dns.flags.TC
        assert len(reply.answer[0]) == 8


def test_pipelined_queries_answered_in_order(test_server: DnsfailProcess) -> None:
    names = [("api.gw.test.", "A"), ("nope.gw.test.", "A"), ("x.wild.gw.test.", "TXT")]
    queries = [query_wire(n, t)[0] for n, t in names]
    for i, query in enumerate(queries):
        query.id = 1000 + i
    with tcp_connect(test_server) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries))  # one write
        replies = [dns.message.from_wire(recv_framed(sock)) for _ in queries]
    assert [r.id for r in replies] == [1000, 1001, 1002]
    for query, reply in zip(queries, replies, strict=True):
        assert query.is_response(reply)
    assert answer_addresses(replies[0]) == API_ADDRESSES
    assert replies[1].rcode() == dns.rcode.NXDOMAIN
    assert replies[2].answer[0][0].to_text() == '"wildcard"'


def test_query_split_into_single_octets(test_server: DnsfailProcess) -> None:
    query, wire = query_wire("api.gw.test.", "A")
    with tcp_connect(test_server) as sock:
        for octet in frame(wire):
            sock.send(bytes((octet,)))
            time.sleep(0.002)  # separate segments, so the server sees separate reads
        reply = dns.message.from_wire(recv_framed(sock))
    assert query.is_response(reply)
    assert answer_addresses(reply) == API_ADDRESSES


def test_silent_client_does_not_block_others(test_server: DnsfailProcess) -> None:
    with tcp_connect(test_server) as silent, tcp_connect(test_server) as partial:
        partial.sendall(b"\x00\x40\x12")  # a length and one octet of a message, then nothing
        start = time.monotonic()
        with tcp_connect(test_server, timeout=1.0) as other:
            assert answer_addresses(ask(other)) == API_ADDRESSES
        assert time.monotonic() - start < 0.5
        assert_answers_api(test_server)
        silent.settimeout(0.05)
        with pytest.raises(TimeoutError):
            silent.recv(1)  # nothing was sent to it, and it is still open


# --- servers with their own settings -------------------------------------------------


def test_idle_timeout_closes_silent_connections(spawn: Callable[..., DnsfailProcess]) -> None:
    server = spawn([str(DATA / "zones"), "--tcp-idle-timeout", "1"]).wait_ready()
    with tcp_connect(server) as silent, tcp_connect(server) as served:
        assert answer_addresses(ask(served)) == API_ADDRESSES
        elapsed = closed_after(silent, timeout=3.0)
        assert elapsed is not None, "a silent connection outlived --tcp-idle-timeout 1 by 2 s"
        assert elapsed < 3.0
        # The one that asked is closed too, once it has been idle for a second.
        assert closed_after(served, timeout=2.0) is not None


def test_trickling_does_not_extend_idle_timeout(spawn: Callable[..., DnsfailProcess]) -> None:
    """RFC 7766 6.2.3: only complete messages earn more time; a slow drip cannot hold a slot."""
    server = spawn([str(DATA / "zones"), "--tcp-idle-timeout", "1"]).wait_ready()
    _, wire = query_wire("api.gw.test.", "A")
    framed = frame(wire)
    with tcp_connect(server) as sock:
        assert answer_addresses(ask(sock)) == API_ADDRESSES  # the last complete message
        sock.settimeout(0.25)
        start = time.monotonic()
        closed = False
        for octet in framed[:-1]:  # never completes the message
            try:
                sock.send(bytes((octet,)))
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            if time.monotonic() - start > 3.0:
                break
        assert closed, "a connection that never completes a message was kept open"
        assert time.monotonic() - start < 2.5


def test_connection_limit(spawn: Callable[..., DnsfailProcess]) -> None:
    server = spawn([str(DATA / "zones"), "--tcp-max-connections", "3"]).wait_ready()
    held = [tcp_connect(server) for _ in range(3)]
    try:
        for sock in held:  # each one is accepted and counted
            assert answer_addresses(ask(sock)) == API_ADDRESSES
        with tcp_connect(server) as fourth:
            elapsed = closed_after(fourth, timeout=2.0)
            assert elapsed is not None, "a 4th connection was kept beyond --tcp-max-connections 3"
            assert elapsed < 1.0
        server.wait_for_log("tcp connection limit 3 reached")
        # UDP is not affected by TCP connections.
        assert_answers_api(server)
        held.pop().close()
        deadline = time.monotonic() + 3.0
        while True:
            try:
                with tcp_connect(server) as fresh:
                    assert answer_addresses(ask(fresh)) == API_ADDRESSES
                break
            except (EOFError, ConnectionResetError, BrokenPipeError):
                assert time.monotonic() < deadline, "a freed slot was never reused"
                time.sleep(0.05)
        # The ones still held keep working.
        for sock in held:
            assert answer_addresses(ask(sock)) == API_ADDRESSES
    finally:
        for sock in held:
            sock.close()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 cannot be bound here")
def test_ipv6_listen(spawn: Callable[..., DnsfailProcess]) -> None:
    server = spawn([str(DATA / "zones"), "--identity", "ns-v6"], host="::1").wait_ready()
    assert "::1" in server.wait_for_log("listening on")
    assert_answers_api(server)
    assert_answers_api(server, tcp=True)
    with tcp_connect(server) as sock:
        reply = ask(sock, "id.server.", "TXT", rdclass="CH")
    assert [s for rd in reply.answer[0] for s in rd.strings] == [b"ns-v6"]
