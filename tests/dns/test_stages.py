"""stages.py and the handler's hook: every reply, hit or miss, passes the stages once."""

from __future__ import annotations

import dns.message
import dns.rcode
import pytest

from dnsfail.dns.handler import Handler
from dnsfail.dns.stages import DROP, PASS, SLIP, VALID_COOKIE, Stages
from dnsfail.state import Store
from tests.dns.test_handler import ZONES


class Recorder:
    """A limiter that records what it saw and answers a fixed decision."""

    def __init__(self, decision: int) -> None:
        self.decision = decision
        self.seen: list[tuple[str, int]] = []

    def decide(self, data: bytes, reply: bytes, client: str, slot: int) -> int:
        self.seen.append((client, slot))
        return self.decision

    def slip(self, data: bytes, reply: bytes) -> bytes:
        return reply[:2] + bytes([reply[2] | 0x02]) + reply[3:]


class Valid:
    """Cookies that call every client proven."""

    def check(self, data: bytes, client: str) -> int:
        return VALID_COOKIE

    def malformed(self, data: bytes, reply: bytes) -> bytes | None:
        raise AssertionError("not malformed")

    def finish(self, data: bytes, reply: bytes, state: int, tcp: bool, client: str,
               slipped: bool) -> bytes:
        return reply


def query(name: str) -> bytes:
    return dns.message.make_query(name, "A").to_wire()


@pytest.mark.parametrize(("decision", "sent"), [(PASS, "reply"), (SLIP, "tc"), (DROP, None)])
def test_every_path_passes_the_limiter(decision: int, sent: str | None) -> None:
    store = Store(ZONES)
    limiter = Recorder(decision)
    handler = Handler(lambda: store.snapshot, after=Stages(limiter=limiter))
    names = ["api.gw.test.", "api.gw.test.", "API.gw.TEST.", "nope.gw.test."]
    for name in names:  # a miss, an exact hit, a keyed hit, a NXDOMAIN
        reply = handler.handle(query(name), False, "127.0.0.9")
        if sent is None:
            assert reply is None
            continue
        assert reply is not None
        assert bool(dns.message.from_wire(reply).flags & 0x0200) == (sent == "tc")
    slots = [slot for _, slot in limiter.seen]
    assert len(slots) == 4
    assert slots[0] == slots[1] == slots[2] != slots[3]
    assert handler.stats.keys[slots[3]][2] == dns.rcode.to_text(dns.rcode.NXDOMAIN)


def test_tcp_and_valid_cookies_are_exempt() -> None:
    store = Store(ZONES)
    limiter = Recorder(DROP)
    tcp = Handler(lambda: store.snapshot, after=Stages(limiter=limiter))
    assert tcp.handle(query("api.gw.test."), True, "127.0.0.9") is not None
    proven = Handler(lambda: store.snapshot, after=Stages(cookies=Valid(), limiter=limiter))
    assert proven.handle(query("api.gw.test."), False, "127.0.0.9") is not None
    assert limiter.seen == []


def test_without_stages_handle_is_lookup() -> None:
    store = Store(ZONES)
    handler = Handler(lambda: store.snapshot)
    assert handler.handle == handler.lookup
