"""wire.py without sockets: the fast scanner, personalisation, parsing and rendering."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail import wire
from dnsfail.model import A, Message, Rcode, RRset, RRType


def query(name: str = "api.gw.test.", rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


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
    assert (wire.scan_question(data, tcp=False) is not None) is scannable


def test_scan_key_ignores_case_and_id_but_not_type_edns_or_transport() -> None:
    base = wire.scan_question(query("api.gw.test."), False)
    assert base is not None
    same = wire.scan_question(query("API.Gw.TEST."), False)
    assert same is not None
    assert same[0] == base[0]
    for other in (
        wire.scan_question(query("api.gw.test.", "AAAA"), False),
        wire.scan_question(query("api.gw.test.", use_edns=0), False),
        wire.scan_question(query("api.gw.test.", use_edns=0, want_dnssec=True), False),
        wire.scan_question(query("api.gw.test."), True),
    ):
        assert other is not None
        assert other[0] != base[0]


def test_qtype_bytes_are_not_lowercased() -> None:
    # qtype 65 (HTTPS) is 0x0041, 'A' in ASCII: folding it would collide with qtype 97.
    a = wire.scan_question(query("x.gw.test.", "HTTPS"), False)
    b = wire.scan_question(query("x.gw.test.", 97), False)
    assert a is not None
    assert b is not None
    assert a[0] != b[0]


def test_personalize_copies_id_rd_cd_and_case() -> None:
    q = dns.message.make_query("ApI.gw.test.", "A")
    q.flags |= dns.flags.CD
    q.id = 4242
    data = q.to_wire()
    reply = wire.render(("api.gw.test.", 1, 1), Message(Rcode.NOERROR, True, answer=(
        RRset("api.gw.test.", RRType.A, 30, (A("192.0.2.1"),)),)), edns=None, limit=512)
    scanned = wire.scan_question(data, False)
    assert scanned is not None
    out = dns.message.from_wire(wire.personalize(reply, data, scanned[1]))
    assert out.id == 4242
    assert out.flags & dns.flags.RD
    assert out.flags & dns.flags.CD
    assert out.flags & dns.flags.AA
    assert not out.flags & dns.flags.RA
    assert str(out.question[0].name) == "ApI.gw.test."


@pytest.mark.parametrize(
    ("data", "rcode"),
    [
        (query(use_edns=1), Rcode.BADVERS),
        (bytes.fromhex("1234 0000 0000 0000 0000 0000"), Rcode.FORMERR),  # QDCOUNT 0
        (bytes.fromhex("1234 2800 0001 0000 0000 0000") + query()[12:], Rcode.NOTIMP),
        (bytes.fromhex("1234 0000 0001 0000 0000 0000") + b"\x05abc", Rcode.FORMERR),
    ],
)
def test_parse_query_refusals(data: bytes, rcode: Rcode) -> None:
    with pytest.raises(wire.Refuse) as caught:
        wire.parse_query(data)
    assert caught.value.rcode == rcode
    assert caught.value.query_id == int.from_bytes(data[:2], "big")


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, query()[:2] + b"\x80" + query()[3:]])
def test_parse_query_drops_short_packets_and_responses(data: bytes) -> None:
    with pytest.raises(wire.Drop):
        wire.parse_query(data)


@pytest.mark.parametrize(
    ("option", "ok"),
    [
        (bytes.fromhex("0001 18 00 c00002"), True),  # 192.0.2.0/24
        (bytes.fromhex("0001 00 00"), True),  # SOURCE 0: "do not use my address"
        (bytes.fromhex("0002 30 00 20010db80000"), True),  # 2001:db8::/48
        (bytes.fromhex("0003 18 00 c00002"), False),  # unknown family
        (bytes.fromhex("0001 21 00 c0000201ff"), False),  # /33 for IPv4
        (bytes.fromhex("0001 18 00 c000"), False),  # address too short for /24
        (bytes.fromhex("0001 18 10 c00002"), False),  # SCOPE set in a query
        (bytes.fromhex("0001 17 00 c00003"), False),  # bits set beyond /23
        (b"\x00", False),
    ],
)
def test_decode_ecs(option: bytes, ok: bool) -> None:
    if ok:
        ecs = wire.decode_ecs(option)
        assert wire.encode_ecs(ecs, 0) == option[:3] + b"\x00" + option[4:]
    else:
        with pytest.raises(wire.Refuse):
            wire.decode_ecs(option)


def test_truncation_keeps_question_and_opt() -> None:
    big = RRset("big.gw.test.", RRType.A, 30, tuple(A(f"192.0.2.{i}") for i in range(1, 60)))
    edns = wire.Edns(512, 0, False)
    out = wire.render(("big.gw.test.", 1, 1), Message(Rcode.NOERROR, True, answer=(big,)),
                      edns=edns, limit=512)
    msg = dns.message.from_wire(out)
    assert msg.flags & dns.flags.TC
    assert len(msg.question) == 1
    assert not msg.answer
    assert msg.edns == 0
    assert msg.payload == wire.UDP_PAYLOAD


@given(st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=6))
def test_label_text_round_trip(labels: list[bytes]) -> None:
    import dnslib

    text = wire.name_to_text(dnslib.DNSLabel(tuple(labels)))
    assert wire.text_to_label(text).label == tuple(x.lower() for x in labels)


@given(
    st.sampled_from(["api.gw.test.", "A.B.c.", "x.", "_srv._tcp.Gw.Test."]),
    st.sampled_from(["A", "AAAA", "TXT", "HTTPS", "ANY"]),
    st.sampled_from([None, 0]),
    st.booleans(),
    st.sampled_from([[], [("192.0.2.0", 24)], [("2001:db8::", 48)], [("0.0.0.0", 0)]]),
    st.booleans(),
    st.integers(0, 65535),
)
def test_parse_scanned_equals_parse_query(
    name: str, rdtype: str, edns: int | None, do: bool, ecs: list[tuple[str, int]],
    nsid: bool, qid: int,
) -> None:
    options: list[dns.edns.Option] = [dns.edns.ECSOption(a, p) for a, p in ecs]
    if nsid:
        options.append(dns.edns.GenericOption(dns.edns.NSID, b""))
    use_edns = 0 if options or do else edns
    message = dns.message.make_query(name, rdtype, use_edns=use_edns, want_dnssec=do,
                                     options=options)
    message.id = qid
    data = message.to_wire()
    scanned = wire.scan_question(data, False)
    assert scanned is not None
    assert wire.parse_scanned(data, scanned[1]) == wire.parse_query(data)


def test_ecs_options_key_apart_and_malformed_ecs_still_scans() -> None:
    def key(option: bytes) -> bytes:
        data = query(use_edns=0, options=[dns.edns.GenericOption(8, option)])
        scanned = wire.scan_question(data, False)
        assert scanned is not None
        return scanned[0]

    eu, us = bytes.fromhex("00011800c00002"), bytes.fromhex("00011800c63364")
    assert key(eu) != key(us)
    assert key(eu) == key(eu)
    data = query(use_edns=0, options=[dns.edns.GenericOption(8, bytes.fromhex("0003180000"))])
    scanned = wire.scan_question(data, False)
    assert scanned is not None
    with pytest.raises(wire.Refuse) as caught:
        wire.parse_scanned(data, scanned[1])
    assert caught.value.rcode == Rcode.FORMERR
