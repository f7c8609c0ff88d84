"""replycache.py without sockets: the cache key sees what the reply depends on, no more."""

from __future__ import annotations

import ipaddress

import dns.edns
import pytest

from dnsfail.dns import replycache
from dnsfail.dns.query import Refuse, parse_query
from dnsfail.dns.replycache import ClientBlocks, ReplyCache, question_key
from dnsfail.model import Rcode
from tests.dns.test_wire import query


@pytest.mark.parametrize(
    ("data", "scannable"),
    [
        (query(), True),
        (query(use_edns=0), True),
        (query(use_edns=0, want_dnssec=True), True),
        (query(use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")]), True),
        (query(use_edns=0, options=[dns.edns.ECSOption("192.0.2.0", 24)]), True),
        (query(use_edns=1), False),
        (query() + b"x", False),
        (query()[:-1], False),
        (b"\x00" * 11, False),
    ],
)
def test_scan_question_accepts_only_plain_queries(data: bytes, scannable: bool) -> None:
    assert (question_key(data, tcp=False) is not None) is scannable


def test_scan_key_ignores_case_and_id_but_not_type_edns_or_transport() -> None:
    base = question_key(query("api.gw.test."), False)
    assert base is not None
    same = question_key(query("API.Gw.TEST."), False)
    assert same is not None
    assert same[0] == base[0]
    for other in (
        question_key(query("api.gw.test.", "AAAA"), False),
        question_key(query("api.gw.test.", use_edns=0), False),
        question_key(query("api.gw.test.", use_edns=0, want_dnssec=True), False),
        question_key(query("api.gw.test."), True),
    ):
        assert other is not None
        assert other[0] != base[0]


def test_qtype_bytes_are_not_lowercased() -> None:
    # qtype 65 (HTTPS) is 0x0041, 'A' in ASCII: folding it would collide with qtype 97.
    a = question_key(query("x.gw.test.", "HTTPS"), False)
    b = question_key(query("x.gw.test.", 97), False)
    assert a is not None
    assert b is not None
    assert a[0] != b[0]


def test_ecs_options_key_apart_and_malformed_ecs_still_scans() -> None:
    def key(option: bytes) -> bytes:
        data = query(use_edns=0, options=[dns.edns.GenericOption(8, option)])
        scanned = question_key(data, False)
        assert scanned is not None
        return scanned[0]

    eu, us = bytes.fromhex("00011800c00002"), bytes.fromhex("00011800c63364")
    assert key(eu) != key(us)
    assert key(eu) == key(eu)
    data = query(use_edns=0, options=[dns.edns.GenericOption(8, bytes.fromhex("0003180000"))])
    scanned = question_key(data, False)
    assert scanned is not None
    with pytest.raises(Refuse) as caught:
        parse_query(data)
    assert caught.value.rcode == Rcode.FORMERR


def test_a_flood_of_new_questions_stays_bounded_and_keeps_what_clients_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Referrals to new names (the full path), new letter cases of a known name (keyed
    hits), new ECS networks (splices) and new nonexistent names (templates), 20,000 in all
    with small limits: neither cache ever holds more than two generations, and a handful of
    questions that real clients repeat are answered from the exact-bytes cache throughout,
    and one asked in a new letter case each time from the keyed cache."""
    import random

    import dns.message

    from dnsfail.dns import replycache
    from dnsfail.dns.handler import Handler
    from dnsfail.state import Store
    from tests.dns.test_handler import ZONES, flip_case

    monkeypatch.setattr(replycache, "EXACT_LIMIT", 100)
    monkeypatch.setattr(replycache, "KEYED_LIMIT", 100)
    store = Store(ZONES)
    handler = Handler(lambda: store.snapshot)
    rng = random.Random(4592)
    real = [query(name, "A") for name in ("api.gw.test.", "ns1.gw.test.", "mx.gw.test.")]
    real += [query("api.gw.test.", "AAAA", use_edns=0)]
    hits = misses = 0
    replies = store.snapshot.replies
    for i in range(20_000):
        kind = i % 4
        if kind == 0:
            data = query(f"n{i}.team.gw.test.")
        elif kind == 1:
            data = query(flip_case("api.gw.test.", rng.getrandbits(60)), "A")
        elif kind == 2:
            subnet = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
            data = query("api.gw.test.", use_edns=0,
                         options=[dns.edns.ECSOption(subnet, 24)])
        else:
            data = query(f"n{i}.gw.test.")
        assert handler.handle(data) is not None
        if i % 10 == 5:  # a resolver using 0x20: a new case every time, a keyed hit
            cased = query(flip_case("ns2.gw.test.", rng.getrandbits(60)), "AAAA")
            key = question_key(cased, False)
            assert key is not None
            if i > 1000:
                assert key[0] in replies.keyed or key[0] in replies.keyed_previous
            assert handler.handle(cased) is not None
        if i % 10 == 0:
            ask = real[i // 10 % len(real)]
            if i > 1000:  # once warm: each real question is in the exact-bytes cache
                if ask[2:] in replies or ask[2:] in replies.previous:
                    hits += 1
                else:
                    misses += 1
            assert dns.message.from_wire(handler.handle(ask) or b"").rcode() == 0
        assert len(replies) <= 100
        assert len(replies.previous) <= 100
        assert len(replies.keyed) <= 100
        assert len(replies.keyed_previous) <= 100
    assert hits == 1899
    assert misses == 0
    # Seen once, no new name's or network's bytes were kept (the name's 512 letter cases
    # recur among 5,000, and a recurring case is a repeat).
    kept = list(replies) + list(replies.previous)
    assert not [k for k in kept if b"team" in k or b"\x00\x08\x00\x07" in k]
    assert handler.stats.internal_errors == 0


def test_a_new_generation_swaps_dicts_and_releases_the_old_one_a_step_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No insert copies a generation or frees one whole (that held the loop 2-10 ms at
    50,000 entries): the old previous generation shrinks by RELEASE_STEP per insert, and
    its emptied dict is where the generation after next starts."""
    monkeypatch.setattr(replycache, "EXACT_LIMIT", 100)
    cache = ReplyCache()

    def keep(i: int) -> None:
        cache._keep_exact(b"q%d" % i, (b"r%d" % i, 0))

    for i in range(200):  # two generations: 100 current, 100 previous
        keep(i)
    assert (len(cache), len(cache.previous), len(cache.retired)) == (100, 100, 0)
    first_previous, first_current = cache.previous, cache.exact
    keep(200)  # the third generation starts: a swap, nothing released yet
    assert cache.previous is first_current
    assert cache.retired == [first_previous]
    assert len(first_previous) == 100
    assert cache.get(b"q200") == (b"r200", 0)
    for n in range(1, 13):
        keep(200 + n)
        assert len(first_previous) == 100 - n * replycache.RELEASE_STEP
    keep(213)
    assert not first_previous
    assert not cache.retired
    for i in range(214, 301):
        keep(i)
    assert cache.exact is first_previous  # reused: an old, already sized dict
    assert cache.get(b"q300") == (b"r300", 0)
    assert cache.previous.get(b"q250") == (b"r250", 0)
    assert len(cache) + len(cache.previous) + sum(map(len, cache.retired)) <= 300


def test_a_recalled_entry_leaves_the_previous_generation_so_its_release_spares_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A question's ClientBlocks recalled from the previous generation is the current one's
    alone: releasing the previous generation (blocks a step at a time) never empties it."""
    monkeypatch.setattr(replycache, "KEYED_LIMIT", 10)
    cache = ReplyCache()
    address = ipaddress.ip_address("192.0.2.1")
    for i in range(50):
        cache.remember_block(b"geo", ipaddress.ip_address(f"10.0.{i}.1"), 24, (b"r", i))
    for i in range(19):
        cache.remember_entry(b"k%d" % i, (b"e", i))
    blocks = cache.keyed_previous[b"geo"]
    assert isinstance(blocks, ClientBlocks)
    assert cache.recall(b"geo") is blocks  # the current generation is full: a new one
    assert b"geo" not in cache.keyed_previous
    assert cache.keyed == {b"geo": blocks}
    assert len(cache.retired) == 1  # the generation blocks left, being released
    while cache.retired:
        cache.retired.release()
    assert len(blocks) == 50
    assert blocks.find(ipaddress.ip_address("10.0.7.9")) == (b"r", 7)
    assert blocks.find(address) is None
