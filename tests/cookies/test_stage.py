"""The cookie stage in the handler, without sockets: what each kind of query gets back."""

from __future__ import annotations

from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsfail.cookies.cookie import LIFETIME, REFRESH_AFTER, server_cookie
from dnsfail.cookies.settings import Secrets
from dnsfail.cookies.stage import BADCOOKIE, CookieStage, packed_address
from dnsfail.dns.handler import Handler
from dnsfail.dns.query import UDP_PAYLOAD
from dnsfail.dns.stages import DROP, SLIP, Stages
from dnsfail.model import Zone
from dnsfail.state import Store
from dnsfail.zonefile import load_zones
from tests.dns.test_handler import ZONES
from tests.dns.test_stages import Recorder

SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
OLD = bytes.fromhex("dd3bdf9344b678b185a6f5cb60fca715")
CLIENT = bytes.fromhex("2464c4abcf10c957")
NOW = 1559731985
ALICE, BOB = "192.0.2.1", "2001:db8::2"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def handler(*keys: bytes, cap: int = 0, limiter: Recorder | None = None,
            answer: bool = True, clock: Clock | None = None) -> tuple[Handler, CookieStage]:
    store = Store(ZONES)
    stage = CookieStage(Secrets(keys or (SECRET,)), answer=answer, size_cap=cap,
                        clock=clock or Clock())
    # Without a limiter the stage stands alone, as the daemon runs it.
    after = stage if limiter is None else Stages(cookies=stage, limiter=limiter)
    return Handler(lambda: store.snapshot, after=after), stage


def ask(h: Handler, cookie: bytes | None, *, name: str = "api.gw.test.", qtype: str = "A",
        client: str = ALICE, tcp: bool = False, payload: int = 1232
        ) -> dns.message.Message:
    options = [] if cookie is None else [dns.edns.GenericOption(10, cookie)]
    query = dns.message.make_query(name, qtype, use_edns=0, payload=payload, options=options)
    reply = h.handle(query.to_wire(), tcp, client)
    assert reply is not None
    assert h.stats.internal_errors == 0
    return dns.message.from_wire(reply)


def cookie_of(reply: dns.message.Message) -> bytes | None:
    for option in reply.options:
        if option.otype == 10:
            return option.to_wire()
    return None


def made(client: str = ALICE, at: int = NOW, secret: bytes = SECRET) -> bytes:
    return CLIENT + server_cookie(secret, CLIENT, packed_address(client), at)


def test_a_client_cookie_gets_a_server_cookie() -> None:
    h, stage = handler()
    plain = ask(h, None)
    reply = ask(h, CLIENT)
    assert cookie_of(reply) == made()
    assert reply.answer == plain.answer
    assert cookie_of(plain) is None
    assert stage.counters()["client_only"] == 1
    assert stage.counters()["none"] == 1


def test_a_valid_cookie_comes_back_unchanged_until_half_an_hour() -> None:
    clock = Clock()
    h, stage = handler(clock=clock)
    sent = made()
    clock.now = NOW + REFRESH_AFTER
    assert cookie_of(ask(h, sent)) == sent
    clock.now = NOW + REFRESH_AFTER + 1
    assert cookie_of(ask(h, sent)) == made(at=NOW + REFRESH_AFTER + 1)
    assert stage.counters()["valid"] == 2


@pytest.mark.parametrize(("why", "sent", "later"), [
    ("expired", made(), LIFETIME + 1),
    ("another address", made(client="192.0.2.2"), 0),
    ("another secret", made(secret=bytes(16)), 0),
    ("another implementation", CLIENT + bytes(8), 0),
])
def test_an_invalid_cookie_gets_the_answer_and_a_fresh_cookie(why: str, sent: bytes,
                                                              later: int) -> None:
    h, stage = handler(clock=Clock(NOW + later))
    reply = ask(h, sent)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer
    assert cookie_of(reply) == made(at=NOW + later)
    assert stage.counters()["invalid"] == 1


def test_rollover_accepts_the_previous_secret_and_renews() -> None:
    h, stage = handler(SECRET, OLD)
    reply = ask(h, made(secret=OLD))
    assert cookie_of(reply) == made(secret=SECRET)
    assert stage.counters()["valid"] == 1


@pytest.mark.parametrize("length", [0, 1, 7, 9, 12, 15, 41, 100])
def test_malformed_options_get_formerr(length: int) -> None:
    h, stage = handler()
    reply = ask(h, bytes(range(length)))
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.edns == 0
    assert cookie_of(reply) is None
    assert reply.question[0].name.to_text() == "api.gw.test."
    assert not reply.answer
    assert stage.counters()["malformed"] == 1


def empty_question(cookie: bytes) -> bytes:
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(10, cookie)])
    query.question = []
    return query.to_wire()


@pytest.mark.parametrize(("sent", "rcode"), [
    (CLIENT, dns.rcode.NOERROR), (made(), dns.rcode.NOERROR),
    (made(secret=bytes(16)), BADCOOKIE),
])
def test_a_query_without_question_learns_its_cookie(sent: bytes, rcode: int) -> None:
    h, _ = handler()
    raw = h.handle(empty_question(sent), False, ALICE)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert reply.rcode() == rcode
    assert not reply.question
    assert cookie_of(reply) == made()


def test_a_slipped_client_with_a_cookie_gets_badcookie() -> None:
    limiter = Recorder(SLIP)
    h, stage = handler(limiter=limiter)
    badcookie = ask(h, CLIENT)
    assert badcookie.rcode() == BADCOOKIE
    assert cookie_of(badcookie) == made()
    assert not badcookie.answer
    slipped = ask(h, None)
    assert slipped.flags & dns.flags.TC
    proven = ask(h, made())  # exempt from the limiter
    assert proven.answer
    assert len(limiter.seen) == 2
    assert stage.counters()["badcookie"] == 1


def test_a_dropped_client_with_a_cookie_is_dropped() -> None:
    h, _ = handler(limiter=Recorder(DROP))
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(10, CLIENT)])
    assert h.handle(query.to_wire(), False, ALICE) is None


@pytest.mark.parametrize(("cookie", "tcp", "truncated"), [
    (None, False, True), (CLIENT, False, True), (made(secret=bytes(16)), False, True),
    (made(), False, False), (None, True, False), (CLIENT, True, False),
])
def test_the_size_cap_spares_proven_clients_and_tcp(cookie: bytes | None, tcp: bool,
                                                   truncated: bool) -> None:
    h, stage = handler(cap=128)
    reply = ask(h, cookie, name="gw.test.", qtype="NS", tcp=tcp)  # 166 octets uncapped
    assert bool(reply.flags & dns.flags.TC) is truncated
    assert bool(reply.answer) is not truncated
    if cookie is not None:
        assert cookie_of(reply) == made()
    assert stage.counters()["capped"] == int(truncated)


def test_small_replies_pass_the_cap() -> None:
    h, stage = handler(cap=128)
    assert ask(h, None).answer  # api.gw.test A: 72 octets
    assert stage.counters()["capped"] == 0


def test_without_cookies_the_cap_takes_everyone() -> None:
    h, stage = handler(cap=128, answer=False)
    reply = ask(h, made(), name="gw.test.", qtype="NS")
    assert reply.flags & dns.flags.TC
    assert cookie_of(reply) is None
    assert stage.counters()["capped"] == 1


def sized_zone(directory: Path, *lengths: int) -> dict[str, Zone]:
    """size.test, whose t.size.test TXT holds strings of ``lengths`` octets."""
    strings = "".join(f"  - {'a' * n}\n" for n in lengths)
    (directory / "size.test.yaml").write_text(
        "'':\n  type: NS\n  value: ns1.size.test.\nns1:\n  type: A\n  value: 192.0.2.53\n"
        f"t:\n  type: TXT\n  values:\n{strings}")
    return load_zones([str(directory)])


def test_a_cookie_that_overflows_the_clients_limit_truncates(tmp_path: Path) -> None:
    store = Store(sized_zone(tmp_path, 200, 230))
    h = Handler(lambda: store.snapshot,
                after=Stages(cookies=CookieStage(Secrets((SECRET,)), clock=Clock())))
    plain = ask(h, None, name="t.size.test.", qtype="TXT", payload=512)
    assert plain.answer
    assert len(plain.to_wire()) + 28 > 512  # fits alone, not with a cookie
    reply = ask(h, CLIENT, name="t.size.test.", qtype="TXT", payload=512)
    assert reply.flags & dns.flags.TC
    assert cookie_of(reply) == made()
    assert ask(h, CLIENT, name="t.size.test.", qtype="TXT", tcp=True).answer


def test_the_memo_of_sent_replies_holds_no_large_tcp_reply(tmp_path: Path) -> None:
    """The per-second memo of what was sent is bounded by RECENT_LIMIT entries of at most
    UDP size: a TCP client varying its cookie over a 30 KB answer used to make the stage
    keep two copies of each reply (4,096 queries held 486 MiB)."""
    stage = CookieStage(Secrets((SECRET,)), clock=Clock())
    store = Store(sized_zone(tmp_path, *range(10, 250)))
    h = Handler(lambda: store.snapshot, after=stage)
    for i in range(200):
        reply = ask(h, i.to_bytes(8, "big"), name="t.size.test.", qtype="TXT", tcp=True)
        assert len(reply.to_wire()) > 30_000
    held = sum(len(sent[1]) + len(sent[3]) for sent in stage._sent.values())
    assert held <= 200 * 2 * UDP_PAYLOAD


def test_cookies_never_leak_between_clients_through_the_caches() -> None:
    h, _ = handler()
    for _ in range(3):  # the first fills the caches; the next two are hits
        alice = ask(h, CLIENT, client=ALICE)
        bob = ask(h, CLIENT, client=BOB)  # the same octets from another address
        carol = ask(h, None, client=BOB)
        assert cookie_of(alice) == made(ALICE)
        assert cookie_of(bob) == made(BOB)
        assert cookie_of(alice) != cookie_of(bob)
        assert cookie_of(carol) is None
    assert len(h.snapshot().replies) >= 1  # the exact-bytes cache was used


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64), st.sampled_from(["api.gw.test.", "gw.test.", "nope.gw.test."]),
       st.booleans(), st.sampled_from([0, 128, 512]))
def test_any_option_octets_never_raise(option: bytes, name: str, tcp: bool, cap: int) -> None:
    h, _ = handler(cap=cap, limiter=Recorder(SLIP))
    query = dns.message.make_query(name, "NS", use_edns=0,
                                   options=[dns.edns.GenericOption(10, option)])
    for _ in range(2):
        reply = h.handle(query.to_wire(), tcp, ALICE)
        assert reply is not None
        assert h.stats.internal_errors == 0
        dns.message.from_wire(reply)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_message_never_raises(data: bytes) -> None:
    h, _ = handler(cap=128, limiter=Recorder(SLIP))
    h.handle(data, False, ALICE)
    h.handle(b"\x00\x00" + data[2:], True, BOB)
    assert h.stats.internal_errors == 0


def test_malformed_queries_are_limited_as_errors() -> None:
    """The FORMERR of a malformed option goes to the limiter, so a flood of them is limited."""
    limiter = Recorder(DROP)
    h, _ = handler(limiter=limiter)
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(10, bytes(3))])
    assert h.handle(query.to_wire(), False, ALICE) is None
    assert limiter.seen == [(ALICE, h.slot)]


def alone_and_composed(cap: int = 0, clock: Clock | None = None) -> tuple[Handler, Handler]:
    """The stage as the handler's whole After, and the same inside Stages: they must agree."""
    out = []
    for wrap in (False, True):
        store = Store(ZONES)
        stage = CookieStage(Secrets((SECRET, OLD)), size_cap=cap, clock=clock or Clock())
        after = Stages(cookies=stage) if wrap else stage
        out.append(Handler(lambda store=store: store.snapshot, identity="ns1", after=after))
    return out[0], out[1]


options = st.lists(st.one_of(
    st.tuples(st.just(10), st.sampled_from([CLIENT, made(), made(secret=OLD), bytes(24)])),
    st.tuples(st.just(10), st.binary(max_size=42)),
    st.tuples(st.just(3), st.just(b"")),  # NSID: the reply's OPT carries our identity
    st.tuples(st.just(8), st.sampled_from([bytes.fromhex("00011800c00002"),
                                           bytes.fromhex("00020000"),
                                           # in 10/8: the octets 00 0a, no COOKIE option
                                           bytes.fromhex("000118000a0102"),
                                           bytes.fromhex("000110000a0a")])),  # ECS
), max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options, st.sampled_from(["api.gw.test.", "gw.test.", "nope.gw.test.", "geo.gw.test."]),
       st.sampled_from(["A", "NS", "TXT"]), st.booleans(), st.sampled_from([0, 128]))
def test_the_stage_alone_answers_as_composed(opts: list[tuple[int, bytes]], name: str,
                                             qtype: str, tcp: bool, cap: int) -> None:
    clock = Clock()
    alone, composed = alone_and_composed(cap, clock)
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232, options=[
        dns.edns.GenericOption(code, data) for code, data in opts])
    data = query.to_wire()
    for _ in range(4):  # a miss, then the caches (an exact hit from the third) and the memos
        clock.now += 1  # a new second: past the memo of sent replies, to the plain memo
        got = alone.handle(data, tcp, ALICE)
        assert got == composed.handle(data, tcp, ALICE)
        assert alone.after.counts == composed.after.cookies.counts  # type: ignore[union-attr]
        assert got is not None
        reply = dns.message.from_wire(got)
        cookies = [o for code, o in opts if code == 10]
        if cookies and len(cookies[0]) in (8, *range(16, 41)) and reply.opt is not None:
            assert cookie_of(reply) is not None
            assert cookie_of(reply)[:8] == cookies[0][:8]  # type: ignore[index]
    assert alone.stats.internal_errors == 0


def test_cookies_beside_echoed_options() -> None:
    h, _ = handler()
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0, options=[
        dns.edns.GenericOption(3, b""), dns.edns.GenericOption(10, CLIENT),
        dns.edns.GenericOption(8, bytes.fromhex("00011800c00002"))])
    for _ in range(2):
        raw = h.handle(query.to_wire(), False, ALICE)
        assert raw is not None
        reply = dns.message.from_wire(raw)
        assert {o.otype for o in reply.options} == {3, 8, 10}
        assert cookie_of(reply) == made()


def test_a_crafted_ecs_address_cannot_pass_for_an_empty_opt() -> None:
    """An ECS address whose last 11 octets look like an empty OPT ends our reply: the cookie
    still goes into the real OPT."""
    address = bytes.fromhex("20010db8000000290000ffffffff0000")
    assert address[5:8] == b"\x00\x00\x29"
    ecs = dns.edns.GenericOption(8, bytes((0, 2, 128, 0)) + address)
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0, options=[
        dns.edns.GenericOption(10, CLIENT), ecs])
    h, _ = handler()
    raw = h.handle(query.to_wire(), False, ALICE)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert cookie_of(reply) == made()
    assert {o.otype for o in reply.options} == {8, 10}


def test_repeats_within_a_second_are_counted_each() -> None:
    h, stage = handler()
    for _ in range(3):
        assert cookie_of(ask(h, CLIENT)) == made()
        assert cookie_of(ask(h, bytes(5))) is None  # malformed
    assert stage.counters()["client_only"] == 3
    assert stage.counters()["malformed"] == 3


def test_a_new_lookup_reply_is_not_answered_from_the_memo() -> None:
    """The same query in the same second, answered from a new snapshot (a drain, a reload):
    what leaves is made from the new reply."""
    h, stage = handler()
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(10, CLIENT)])
    data = query.to_wire()
    before = h.lookup(data, False, ALICE)
    changed = dns.message.from_wire(before)
    changed.answer = changed.answer[:0]
    after = changed.to_wire()
    assert before is not None
    first = stage(data, before, False, ALICE, 0)
    second = stage(data, after, False, ALICE, 0)
    assert first is not None
    assert second is not None
    assert dns.message.from_wire(first).answer
    assert not dns.message.from_wire(second).answer
    assert cookie_of(dns.message.from_wire(second)) == made()


@pytest.mark.parametrize(("answer", "cap", "passes"), [
    (True, 0, True),  # the default: a query without a COOKIE option passes unchanged
    (True, 512, False),  # the size cap may truncate it
    (False, 512, False),  # --no-cookies with the cap: every UDP reply may be capped
])  # fmt: skip
def test_plain_pass_only_where_the_stage_leaves_a_cookieless_reply_alone(
        answer: bool, cap: int, passes: bool) -> None:
    stage = CookieStage(Secrets((SECRET,)), answer=answer, size_cap=cap)
    plain = stage.plain_pass()
    assert (plain is not None) == passes
    if plain is not None:  # the counter __call__ moves for such a query
        counts, slot = plain
        assert counts is stage.counts
        data = dns.message.make_query("api.gw.test.", "A").to_wire()
        reply = b"\x00\x00" + bytes(10)
        assert stage(data, reply, False, "192.0.2.1", 0) is reply
        assert counts[slot] == 1
        assert sum(counts) == 1
