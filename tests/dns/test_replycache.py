"""replycache.py without sockets: the cache key sees what the reply depends on, no more."""

from __future__ import annotations

import dns.edns
import pytest

from dnsfail.dns.query import Refuse, parse_query
from dnsfail.dns.replycache import question_key
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
