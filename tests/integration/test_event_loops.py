"""The same answers on uvloop and on the standard asyncio loop, over UDP and TCP.

uvloop's transports are not subclasses of asyncio's, so code that checks
transport types works on one loop and resets every connection on the other.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.flags
import dns.rcode
import pytest

from ..conftest import DATA, DnsfailProcess


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[DnsfailProcess]:
    env = {"DNSFAIL_NO_UVLOOP": "1"} if request.param == "asyncio" else {}
    proc = DnsfailProcess([str(DATA / "zones")], env=env).wait_ready()
    yield proc
    proc.stop()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers_on_both_loops(server: DnsfailProcess, tcp: bool) -> None:
    reply = server.query("api.gw.test.", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert {rr.address for rr in reply.answer[0]} == {"192.0.2.10", "192.0.2.11"}


def test_truncated_udp_then_tcp_on_both_loops(server: DnsfailProcess) -> None:
    assert server.query("big.gw.test.", "TXT").flags & dns.flags.TC
    whole = server.query("big.gw.test.", "TXT", tcp=True)
    assert not whole.flags & dns.flags.TC
    assert len(whole.answer[0]) == 8
