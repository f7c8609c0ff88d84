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
