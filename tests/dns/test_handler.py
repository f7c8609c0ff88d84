"""handler.py without sockets: never raises, and the cached path equals the full path."""

from __future__ import annotations

import ipaddress
import logging
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.model import Message, Rcode, Zone
from dnsfail.state import Store
from dnsfail.zonefile import load_zones
from tests.conftest import DATA
from tests.dns.test_wire import MALFORMED
from tests.fuzz.mutate import SEEDS, captured, check_reply, mutate

ZONES = load_zones([str(DATA / "zones")])


def fresh_handler(zones: dict[str, Zone] = ZONES) -> tuple[Handler, Store]:
    store = Store(zones)
    return Handler(lambda: store.snapshot, identity="unit"), store


NAMES = [
    "api.gw.test.", "gw.test.", "www.gw.test.", "chain1.gw.test.", "x.wild.gw.test.",
    "a.b.wild.gw.test.", "host.team.gw.test.", "team.gw.test.", "nope.gw.test.",
    "ent.gw.test.", "big.gw.test.", "example.org.", "dangling.gw.test.", "loop1.gw.test.",
    "foo.cn.gw.test.", "_api._tcp.gw.test.", "ns2.gw.test.", "id.server.",
]
TYPES = ["A", "AAAA", "NS", "MX", "TXT", "SRV", "CAA", "PTR", "CNAME", "SOA", "ANY", "DS",
         "AXFR", "HTTPS", "TYPE999"]


def flip_case(name: str, mask: int) -> str:
    return "".join(c.upper() if mask >> (i % 60) & 1 else c for i, c in enumerate(name))


queries = st.builds(
    lambda name, rdtype, mask, edns, payload, do, rd, cd, qid, ch: (
        name, rdtype, mask, edns, payload, do, rd, cd, qid, ch
    ),
    st.sampled_from(NAMES), st.sampled_from(TYPES), st.integers(0, 2**60),
    st.sampled_from([-1, 0]), st.sampled_from([512, 1232, 1400, 4096, 100]), st.booleans(),
    st.booleans(), st.booleans(), st.integers(0, 65535), st.booleans(),
)


def build(spec: tuple[str, str, int, int, int, bool, bool, bool, int, bool]) -> bytes:
    name, rdtype, mask, edns, payload, do, rd, cd, qid, ch = spec
    message = dns.message.make_query(
        flip_case(name, mask), rdtype, rdclass="CH" if ch else "IN", use_edns=edns,
        payload=payload, want_dnssec=do,
    )
    message.id = qid
    message.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return message.to_wire()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(queries, st.booleans())
def test_cached_reply_is_byte_identical_to_full_path(spec: tuple, tcp: bool) -> None:  # type: ignore[type-arg]
    data = build(spec)
    handler, _store = fresh_handler()
    with captured() as records:
        first = handler.handle(data, tcp)
        second = handler.handle(data, tcp)
    records.check()
    no_bug(handler, first)
    assert first is not None
    assert first == second
    # The same question in other letter case and ID hits the same cache entry.
    other = build((spec[0], spec[1], ~spec[2], *spec[3:8], spec[8] ^ 0xFFFF, spec[9]))
    from_cache = handler.handle(other, tcp)
    from_fresh = fresh_handler()[0].handle(other, tcp)
    assert from_cache == from_fresh
    # The very same bytes with another ID: over UDP, the exact-bytes cache answers.
    again = bytes((other[0] ^ 0x5A, other[1])) + other[2:]
    assert handler.handle(again, tcp) == fresh_handler()[0].handle(again, tcp)


#: The only questions these tests' zones answer SERVFAIL: the CNAME loop of gw.test.
LOOP = (b"\x05loop1\x02gw\x04test\x00", b"\x05loop2\x02gw\x04test\x00")


def no_bug(handler: Handler, reply: bytes | None) -> None:
    """``handle`` answers every exception SERVFAIL, so "it did not raise" proves nothing:
    no internal error may have been counted, and a SERVFAIL must be the CNAME loop's."""
    assert handler.stats.internal_errors == 0, "answering raised (see the log)"
    if reply is not None and len(reply) >= 4 and reply[3] & 0x0F == Rcode.SERVFAIL:
        assert reply[12 : 12 + len(LOOP[0])].lower() in LOOP, "SERVFAIL for a sound name"


def exchange(handler: Handler, data: bytes, tcp: bool, client: str = "192.0.2.7") -> float:
    """Hand ``data`` to the handler and check the reply, its rcode and the log; the seconds it
    took."""
    with captured() as records:
        started = time.perf_counter()
        reply = handler.handle(data, tcp, client)
        took = time.perf_counter() - started
    check_reply(data, reply, tcp)
    records.check()
    no_bug(handler, reply)
    return took


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=700), st.booleans())
@example(SEEDS[0], False)  # random bytes are seldom a query: one that reaches the resolver
@example(SEEDS[4], True)
def test_any_bytes_never_raise_and_replies_are_well_formed(data: bytes, tcp: bool) -> None:
    exchange(fresh_handler()[0], data, tcp)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(queries, st.binary(max_size=40), st.integers(12, 80))
def test_mutated_queries_never_raise(spec: tuple, junk: bytes, at: int) -> None:  # type: ignore[type-arg]
    data = build(spec)
    mutated = data[:at] + junk + data[at + len(junk):]
    exchange(fresh_handler()[0], mutated, False)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.binary(max_size=120), st.booleans())
def test_edited_queries_get_sound_replies_or_none(seed: bytes, program: bytes, tcp: bool) -> None:
    """Sound queries edited as issue 11's attacks were made (tests/fuzz/mutate.py): counts,
    truncation, pointer chains of up to 64 KB, extra OPTs, bad ECS.  Each message is
    answered twice (the second may come from a cache) within a generous time bound."""
    handler = fresh_handler()[0]
    data = mutate(seed, program)
    for _ in range(2):
        took = exchange(handler, data, tcp)
        assert took < 0.25, f"{len(data)} octets took {took * 1000:.1f} ms"


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "aa"),
    [
        ("api.gw.test.", "A", dns.rcode.NOERROR, True),
        ("example.org.", "A", dns.rcode.REFUSED, False),
        ("nope.gw.test.", "A", dns.rcode.NXDOMAIN, True),
        ("gw.test.", "AXFR", dns.rcode.REFUSED, False),
        ("host.team.gw.test.", "A", dns.rcode.NOERROR, False),
    ],
)
def test_rcode_and_aa(qname: str, qtype: str, rcode: int, aa: bool) -> None:
    handler, _ = fresh_handler()
    reply = handler.handle(dns.message.make_query(qname, qtype).to_wire())
    assert reply is not None
    message = dns.message.from_wire(reply)
    assert message.rcode() == rcode
    assert bool(message.flags & dns.flags.AA) is aa


def test_a_reload_gets_a_fresh_cache() -> None:
    handler, store = fresh_handler()
    data = dns.message.make_query("api.gw.test.", "A").to_wire()
    handler.handle(data)
    assert store.snapshot.replies.keyed
    store.replace_zones({})
    reply = handler.handle(data)
    assert reply is not None
    assert dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("ask_nsid", [True, False])
def test_nsid_is_answered_only_when_asked(ask_nsid: bool) -> None:
    """RFC 5001 section 2.3: NSID goes only to clients that send the (empty) option."""
    handler, _ = fresh_handler()
    options = [dns.edns.GenericOption(dns.edns.NSID, b"")] if ask_nsid else []
    data = dns.message.make_query("api.gw.test.", "A", use_edns=0, options=options).to_wire()
    for _ in range(2):  # the second reply comes from the cache
        reply = handler.handle(data)
        assert reply is not None
        got = [o for o in dns.message.from_wire(reply).options if o.otype == dns.edns.NSID]
        assert [o.to_wire() for o in got] == ([b"unit"] if ask_nsid else [])


GEO_ZONE = """\
'':
  type: NS
  value: ns1.geo.test.
api:
  dynamic:
    pools:
      a: {values: [{status: up, value: 192.0.2.1}]}
      b: {values: [{status: up, value: 192.0.2.2}]}
      c: {values: [{status: up, value: 192.0.2.3}]}
    rules:
    - pool: a
      subnets: [10.1.0.0/16, '2001:db8:1::/48']
    - pool: b
      subnets: [10.0.0.0/8]
    - pool: c
  type: A
  values: [192.0.2.99]
cname:
  type: CNAME
  value: api.geo.test.
v4only:
  dynamic:
    pools:
      a: {values: [{status: up, value: 192.0.2.1}]}
      c: {values: [{status: up, value: 192.0.2.3}]}
    rules:
    - pool: a
      subnets: [10.1.0.0/16]
    - pool: c
  type: A
  values: [192.0.2.99]
"""

clients = st.one_of(
    st.builds(lambda n: f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", st.integers(0, 2**24)),
    st.sampled_from(["10.1.2.3", "10.9.9.9", "192.0.2.200", "2001:db8:1::5", "2001:db8:2::5"]),
)
ecs_options = st.one_of(
    st.none(),
    st.builds(lambda c, p: (c, p), st.sampled_from(["10.1.2.0", "10.200.0.0", "192.0.2.0"]),
              st.sampled_from([0, 8, 16, 24])),
    # Many networks in few blocks: the ECS block cache splices each one's address in.
    st.builds(lambda n, p: (str(ipaddress.ip_network((n << 8, p), strict=False)
                                .network_address), p),
              st.sampled_from([0x0A0102, 0x0A0163, 0x0A01FF, 0x0A0900, 0x0A09F0, 0xC00002]),
              st.sampled_from([20, 24, 32])),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(clients, ecs_options, st.sampled_from(["api", "cname", "v4only"])),
                min_size=1, max_size=12))
def test_client_dependent_answers_from_the_cache_equal_fresh_ones(
    asks: list[tuple[str, tuple[str, int] | None, str]],
) -> None:
    from dnsfail.zonefile import parse_zone

    zones = {"geo.test.": parse_zone(GEO_ZONE, "geo.test.yaml", "geo.test.", serial=1)}
    cached, _ = fresh_handler(zones)
    for client, ecs, name in asks + asks:  # the second pass is answered from the cache
        options = []
        if ecs is not None:
            address, prefix = ecs
            network = f"{address}/{prefix}" if prefix else "0.0.0.0/0"
            options.append(dns.edns.ECSOption.from_text(network))
        data = dns.message.make_query(f"{name}.geo.test.", "A", use_edns=0,
                                      options=options).to_wire()
        fresh = fresh_handler(zones)[0]
        expected = fresh.handle(data, False, client)
        no_bug(fresh, expected)
        assert cached.handle(data, False, client) == expected
    no_bug(cached, None)


def test_client_answers_are_shared_by_the_block_that_decided_them() -> None:
    """Without ECS, a new resolver in a known block is answered from the cache."""
    from dnsfail.dns.replycache import ClientBlocks
    from dnsfail.zonefile import parse_zone

    zones = {"geo.test.": parse_zone(GEO_ZONE, "geo.test.yaml", "geo.test.", serial=1)}
    handler, store = fresh_handler(zones)
    data = dns.message.make_query("api.geo.test.", "A").to_wire()

    def blocks() -> ClientBlocks:
        [found] = [v for v in store.snapshot.replies.keyed.values() if isinstance(v, ClientBlocks)]
        return found

    def answer(client: str) -> list[str]:
        reply = dns.message.from_wire(handler.handle(data, False, client) or b"")
        return [rd.address for rrset in reply.answer for rd in rrset]

    assert answer("10.1.2.3") == ["192.0.2.1"]  # rule a: 10.1.0.0/16
    assert answer("10.1.200.7") == ["192.0.2.1"]
    assert len(blocks()) == 1, "one block, 10.1.0.0/16, serves both resolvers"
    assert answer("10.9.9.9") == ["192.0.2.2"]  # rule b: 10.0.0.0/8 outside 10.1/16
    assert answer("10.1.0.1") == ["192.0.2.1"]
    assert answer("::ffff:10.1.4.4") == ["192.0.2.1"], "an IPv4-mapped source is IPv4"
    assert answer("2001:db8:1::5") == ["192.0.2.1"]
    assert answer("2001:db8:9::5") == ["192.0.2.3"]
    assert answer("192.0.2.200") == ["192.0.2.3"]
    # 10.1.0.0/16 (rule a); 10.8.0.0/13 (inside 10/8, clear of 10.1/16: rule b);
    # 128.0.0.0/1 (clear of 10/8: the catch-all); and two IPv6 blocks.
    assert {(v, p) for v, p, _ in blocks().entries if v == 4} == {(4, 16), (4, 13), (4, 1)}
    assert len(blocks()) == 5
    assert answer("") == ["192.0.2.3"], "no address: answered, never cached"
    assert len(blocks()) == 5


class Broken(Handler):
    """A handler with a bug in its decision: a stand-in for one not found yet."""

    def answer(self, *args: object, **kwargs: object) -> Message:
        raise RuntimeError("boom\n2030-01-01 00:00:00 INFO dnsfail: a forged line")


def test_internal_errors_log_one_line_per_kind_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A packet that finds a bug can be sent at line rate: one line per 10 s, no traceback,
    each counted; the traceback only at DEBUG."""
    store = Store(ZONES)
    handler = Broken(lambda: store.snapshot)
    now = [100.0]
    handler.errors.clock = lambda: now[0]
    caplog.set_level(logging.INFO)

    def ask(i: int) -> None:
        # Below the delegation: a referral, which takes the full path (a new nonexistent
        # name would be answered from a template, without the decision that has the bug).
        reply = handler.handle(dns.message.make_query(f"n{i}.team.gw.test.", "A").to_wire())
        assert reply is not None
        assert dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL

    for i in range(50):
        ask(i)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert not any(r.exc_info for r in caplog.records)
    line = errors[0].getMessage()
    assert "RuntimeError" in line
    assert "test_handler.py" in line
    assert "in answer" in line
    assert "\n" not in line, "the message is quoted: it cannot forge log lines"
    assert handler.stats.internal_errors == 50
    caplog.clear()
    now[0] += 10
    caplog.set_level(logging.DEBUG, logger="dnsfail.dns.handler")
    ask(50)
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "(49 more since the last report)" in error.getMessage()
    assert not error.exc_info
    assert [r.levelno for r in caplog.records if r.exc_info] == [logging.DEBUG]


def test_large_queries_are_not_remembered_byte_for_byte() -> None:
    """The exact-bytes cache is keyed by the query's bytes: a 40 KB padded query (RFC 7830) is
    answered, and its reply cached by question, but its bytes are not kept (each is sent
    twice: exact bytes are kept on their second sight)."""
    handler, store = fresh_handler()
    for size in (100, 100, 40000, 40000):
        padding = dns.edns.GenericOption(dns.edns.PADDING, bytes(size))
        data = dns.message.make_query("api.gw.test.", "A", use_edns=0,
                                      options=[padding]).to_wire(max_size=65535)
        reply = handler.handle(data)
        assert reply is not None
        assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
    assert store.snapshot.replies
    assert max(len(key) for key in store.snapshot.replies) < 512


@pytest.mark.parametrize("name", MALFORMED)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_crafted_messages_get_their_rcode_and_log_nothing(
    name: str, tcp: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 11 items 1 and 5: the crafted messages of test_wire get FORMERR (or NOTIMP,
    BADVERS) from the handler, with nothing at ERROR and no traceback in the log."""
    data, rcode, _ = MALFORMED[name]
    caplog.set_level(logging.DEBUG)
    reply = fresh_handler()[0].handle(data, tcp)
    check_reply(data, reply, tcp)
    assert reply is not None
    assert reply[3] & 0x0F == rcode & 0x0F  # BADVERS's upper bits are in the OPT
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
