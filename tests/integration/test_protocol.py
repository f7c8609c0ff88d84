"""The DNS contract over real UDP and TCP, against a running ``dnsfail serve``.

RFC 1034/1035 (header, sections, referrals), 2181 (TC keeps the question),
2308 (negative answers), 4592 (wildcards), 6604 (CNAME rcodes), 6891 (EDNS),
7766 (TCP), 7871 (ECS), 8020 (empty non-terminals are NOERROR) and 8482 (ANY).
Zone data: tests/data/zones/gw.test.yaml.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from ..conftest import DATA, DnsfailProcess
from .conftest import (
    API_ADDRESSES,
    TRANSPORTS,
    assert_answers_api,
    query_wire,
    udp_exchange,
)

Z_BIT = 0x0040
NEGATIVE_TTL = 30  # min(SOA TTL 3600, SOA MINIMUM 30), RFC 2308 section 3
BIG_STRINGS = {("a" * 196 + str(i)) for i in range(1, 9)}


def rtype(rrset: dns.rrset.RRset) -> str:
    return dns.rdatatype.to_text(rrset.rdtype)


def shape(section: list[dns.rrset.RRset]) -> list[tuple[str, str]]:
    """A section as (owner, type) pairs in order, owners lower case."""
    return [(rrset.name.to_text().lower(), rtype(rrset)) for rrset in section]


def texts(rrset: dns.rrset.RRset) -> set[str]:
    return {rd.to_text() for rd in rrset}


def find(section: list[dns.rrset.RRset], owner: str, type_: str) -> dns.rrset.RRset:
    for rrset in section:
        if rrset.name.to_text().lower() == owner and rtype(rrset) == type_:
            return rrset
    raise AssertionError(f"no {owner} {type_} in {shape(section)}")


def assert_negative(reply: dns.message.Message, rcode: int) -> None:
    """RFC 2308: an authoritative negative answer with the zone's SOA, TTL min(TTL, MINIMUM)."""
    assert reply.rcode() == rcode, dns.rcode.to_text(reply.rcode())
    assert reply.flags & dns.flags.AA
    assert shape(reply.authority) == [("gw.test.", "SOA")]
    soa = reply.authority[0]
    assert soa.ttl == NEGATIVE_TTL
    assert soa[0].minimum == 30
    assert soa[0].rname == dns.name.from_text("ops.gw.test.")


def raw_header(qid: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def header_flags(reply: bytes) -> int:
    return int.from_bytes(reply[2:4], "big")


def question_end(wire: bytes) -> int:
    i = 12
    while wire[i]:
        i += wire[i] + 1
    return i + 5


# --- header ---------------------------------------------------------------------


@pytest.mark.parametrize("tcp", TRANSPORTS)
@pytest.mark.parametrize("cd", [False, True], ids=["cd0", "cd1"])
@pytest.mark.parametrize("rd", [False, True], ids=["rd0", "rd1"])
def test_header_bits(test_server: DnsfailProcess, rd: bool, cd: bool, tcp: bool) -> None:
    """AA on an authoritative answer, RA never, RD and CD copied, Z clear (RFC 1035 4.1.1)."""
    flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0) | Z_BIT
    for _ in range(2):  # the second time comes from the reply cache
        reply = test_server.query("api.gw.test.", "A", tcp=tcp, flags=flags)
        assert reply.flags & dns.flags.QR
        assert reply.flags & dns.flags.AA
        assert not reply.flags & dns.flags.RA
        assert not reply.flags & dns.flags.TC
        assert not reply.flags & Z_BIT
        assert not reply.flags & dns.flags.AD
        assert bool(reply.flags & dns.flags.RD) is rd
        assert bool(reply.flags & dns.flags.CD) is cd
        assert reply.rcode() == dns.rcode.NOERROR
        assert texts(find(reply.answer, "api.gw.test.", "A")) == API_ADDRESSES


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode"),
    [
        ("api.gw.test.", "AAAA", dns.rcode.NOERROR),
        ("nope.gw.test.", "A", dns.rcode.NXDOMAIN),
        ("api.gw.test.", "TXT", dns.rcode.NOERROR),
        ("chain1.gw.test.", "A", dns.rcode.NOERROR),
        ("x.wild.gw.test.", "TXT", dns.rcode.NOERROR),
        ("team.gw.test.", "DS", dns.rcode.NOERROR),
        ("gw.test.", "SOA", dns.rcode.NOERROR),
    ],
)
def test_authoritative_answers_set_aa(
    test_server: DnsfailProcess, qname: str, qtype: str, rcode: int
) -> None:
    reply = test_server.query(qname, qtype)
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AA
    assert not reply.flags & dns.flags.RA


@pytest.mark.parametrize("qname", ["example.org.", "test.", "gw.test.example.", "."])
def test_out_of_zone_is_refused_without_aa(test_server: DnsfailProcess, qname: str) -> None:
    reply = test_server.query(qname, "A")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA
    assert not reply.answer
    assert not reply.authority


# --- negative answers (RFC 2308, RFC 8020) ----------------------------------------


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode"),
    [
        ("nope.gw.test.", "A", dns.rcode.NXDOMAIN),
        ("deep.nope.gw.test.", "TXT", dns.rcode.NXDOMAIN),
        ("x.api.gw.test.", "A", dns.rcode.NXDOMAIN),  # below an existing name, no wildcard
        ("c.a.b.ent.gw.test.", "A", dns.rcode.NXDOMAIN),
        ("api.gw.test.", "TXT", dns.rcode.NOERROR),  # NODATA
        ("api.gw.test.", "MX", dns.rcode.NOERROR),
        ("gw.test.", "CAA", dns.rcode.NOERROR),
        ("gw.test.", "TYPE999", dns.rcode.NOERROR),
        ("b.ent.gw.test.", "A", dns.rcode.NOERROR),  # empty non-terminals exist
        ("ent.gw.test.", "A", dns.rcode.NOERROR),
        ("ent.gw.test.", "TXT", dns.rcode.NOERROR),
        ("a.b.ent.gw.test.", "AAAA", dns.rcode.NOERROR),
        ("_tcp.gw.test.", "SRV", dns.rcode.NOERROR),
    ],
)
@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_negative_answers_carry_soa(
    test_server: DnsfailProcess, qname: str, qtype: str, rcode: int, tcp: bool
) -> None:
    reply = test_server.query(qname, qtype, tcp=tcp)
    assert_negative(reply, rcode)
    assert not reply.answer
    assert not reply.additional


# --- CNAME ------------------------------------------------------------------------


def test_cname_chain_in_one_answer(test_server: DnsfailProcess) -> None:
    reply = test_server.query("chain1.gw.test.", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [
        ("chain1.gw.test.", "CNAME"), ("chain2.gw.test.", "CNAME"), ("api.gw.test.", "A"),
    ]
    assert texts(reply.answer[0]) == {"chain2.gw.test."}
    assert texts(reply.answer[1]) == {"api.gw.test."}
    assert texts(reply.answer[2]) == API_ADDRESSES
    assert not reply.authority


def test_cname_chain_to_nodata_keeps_chain_and_adds_soa(test_server: DnsfailProcess) -> None:
    reply = test_server.query("chain1.gw.test.", "TXT")
    assert shape(reply.answer) == [("chain1.gw.test.", "CNAME"), ("chain2.gw.test.", "CNAME")]
    assert_negative(reply, dns.rcode.NOERROR)


def test_dangling_cname_is_nxdomain_with_the_cname(test_server: DnsfailProcess) -> None:
    """RFC 6604: the rcode is that of the last name in the chain."""
    reply = test_server.query("dangling.gw.test.", "A")
    assert shape(reply.answer) == [("dangling.gw.test.", "CNAME")]
    assert texts(reply.answer[0]) == {"missing.gw.test."}
    assert_negative(reply, dns.rcode.NXDOMAIN)


def test_cname_out_of_zone_is_just_the_cname(test_server: DnsfailProcess) -> None:
    reply = test_server.query("external.gw.test.", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [("external.gw.test.", "CNAME")]
    assert texts(reply.answer[0]) == {"www.example.net."}
    assert not reply.authority


def test_cname_loop_terminates_with_a_bounded_answer(test_server: DnsfailProcess) -> None:
    _, wire = query_wire("loop1.gw.test.", "A")
    raw = udp_exchange(test_server, wire)
    assert raw is not None, "no reply to a CNAME loop"
    ancount = int.from_bytes(raw[6:8], "big")
    assert ancount <= 20
    reply = dns.message.from_wire(raw)
    assert reply.rcode() in (dns.rcode.SERVFAIL, dns.rcode.NOERROR)
    assert {owner for owner, _ in shape(reply.answer)} <= {"loop1.gw.test.", "loop2.gw.test."}
    assert {t for _, t in shape(reply.answer)} <= {"CNAME"}
    assert_answers_api(test_server)


def test_qtype_cname_gets_only_that_cname(test_server: DnsfailProcess) -> None:
    reply = test_server.query("chain1.gw.test.", "CNAME")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [("chain1.gw.test.", "CNAME")]
    assert texts(reply.answer[0]) == {"chain2.gw.test."}


# --- wildcards (RFC 4592) -----------------------------------------------------------


@pytest.mark.parametrize(
    "qname", ["x.wild.gw.test.", "a.b.wild.gw.test.", "*.wild.gw.test.", "Mixed.WILD.gw.test."]
)
def test_wildcard_synthesizes_with_owner_qname(test_server: DnsfailProcess, qname: str) -> None:
    reply = test_server.query(qname, "TXT")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [(qname.lower(), "TXT")]
    assert texts(reply.answer[0]) == {'"wildcard"'}
    assert reply.answer[0].ttl == 120
    assert not reply.authority


@pytest.mark.parametrize(
    ("qname", "qtype"),
    [
        ("x.wild.gw.test.", "A"),  # the wildcard owns TXT only
        ("wild.gw.test.", "TXT"),  # an empty non-terminal is not covered by its own wildcard
        ("wild.gw.test.", "A"),
        ("cn.gw.test.", "A"),
    ],
)
def test_wildcard_nodata(test_server: DnsfailProcess, qname: str, qtype: str) -> None:
    reply = test_server.query(qname, qtype)
    assert not reply.answer
    assert_negative(reply, dns.rcode.NOERROR)


@pytest.mark.parametrize("qname", ["foo.cn.gw.test.", "a.b.cn.gw.test."])
def test_wildcard_cname_is_followed(test_server: DnsfailProcess, qname: str) -> None:
    reply = test_server.query(qname, "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [(qname, "CNAME"), ("api.gw.test.", "A")]
    assert texts(reply.answer[0]) == {"api.gw.test."}
    assert texts(reply.answer[1]) == API_ADDRESSES


def test_wildcard_cname_asked_as_cname(test_server: DnsfailProcess) -> None:
    reply = test_server.query("foo.cn.gw.test.", "CNAME")
    assert shape(reply.answer) == [("foo.cn.gw.test.", "CNAME")]
    assert texts(reply.answer[0]) == {"api.gw.test."}


# --- delegation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "qtype"),
    [
        ("host.team.gw.test.", "A"),
        ("deep.host.team.gw.test.", "TXT"),
        ("team.gw.test.", "NS"),
        ("team.gw.test.", "A"),
        ("ns.team.gw.test.", "A"),  # glue is not authoritative data
    ],
)
@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_referral(test_server: DnsfailProcess, qname: str, qtype: str, tcp: bool) -> None:
    """RFC 1034 4.3.2 step 3b: AA clear, NS in authority, glue in additional, no answer."""
    reply = test_server.query(qname, qtype, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AA
    assert not reply.answer
    assert shape(reply.authority) == [("team.gw.test.", "NS")]
    assert texts(reply.authority[0]) == {"ns.team.gw.test.", "ns.elsewhere.example."}
    assert shape(reply.additional) == [("ns.team.gw.test.", "A")]
    assert texts(reply.additional[0]) == {"192.0.2.54"}


def test_ds_at_delegation_is_answered_by_the_parent(test_server: DnsfailProcess) -> None:
    """DS lives on the parent side of the cut (RFC 4035 3.1.4.1): authoritative NODATA."""
    reply = test_server.query("team.gw.test.", "DS")
    assert not reply.answer
    assert_negative(reply, dns.rcode.NOERROR)


# --- additional section ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "qtype", "answer", "additional"),
    [
        ("gw.test.", "NS", {"ns1.gw.test.", "ns2.gw.test.", "ns.elsewhere.example."},
         {("ns1.gw.test.", "A"), ("ns2.gw.test.", "A"), ("ns2.gw.test.", "AAAA")}),
        ("gw.test.", "MX", {"10 mx.gw.test."}, {("mx.gw.test.", "A")}),
        ("_api._tcp.gw.test.", "SRV", {"10 5 443 api.gw.test."},
         {("api.gw.test.", "A"), ("api.gw.test.", "AAAA")}),
    ],
)
def test_additional_addresses(
    test_server: DnsfailProcess, qname: str, qtype: str, answer: set[str],
    additional: set[tuple[str, str]],
) -> None:
    reply = test_server.query(qname, qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [(qname, qtype)]
    assert texts(reply.answer[0]) == answer
    assert set(shape(reply.additional)) == additional
    assert len(reply.additional) == len(additional)
    expected = {"ns1.gw.test.": {"A": {"192.0.2.1"}},
                "ns2.gw.test.": {"A": {"192.0.2.2"}, "AAAA": {"2001:db8::2"}},
                "mx.gw.test.": {"A": {"192.0.2.25"}},
                "api.gw.test.": {"A": API_ADDRESSES, "AAAA": {"2001:db8::10"}}}
    for rrset in reply.additional:
        assert texts(rrset) == expected[rrset.name.to_text()][rtype(rrset)]


# --- static data and ALIAS --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qname", "qtype", "ttl", "values"),
    [
        ("api.gw.test.", "A", 30, API_ADDRESSES),
        ("api.gw.test.", "AAAA", 30, {"2001:db8::10"}),
        ("gw.test.", "A", 30, API_ADDRESSES),  # ALIAS: min(ALIAS TTL 60, target TTL 30)
        ("gw.test.", "AAAA", 30, {"2001:db8::10"}),
        # octoDNS escapes ";" in TXT values; the wire value is unescaped.
        ("gw.test.", "TXT", 3600, {'"v=spf1 -all"', '"k=v; semicolon"'}),
        ("gw.test.", "MX", 300, {"10 mx.gw.test."}),
        ("caa.gw.test.", "CAA", 3600, {'0 issue "letsencrypt.org"'}),
        ("ptr.gw.test.", "PTR", 3600, {"api.gw.test."}),
        ("ns2.gw.test.", "AAAA", 3600, {"2001:db8::2"}),
        ("mx.gw.test.", "A", 3600, {"192.0.2.25"}),
    ],
)
def test_static_answers(
    test_server: DnsfailProcess, qname: str, qtype: str, ttl: int, values: set[str]
) -> None:
    reply = test_server.query(qname, qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [(qname, qtype)]
    assert texts(reply.answer[0]) == values
    assert reply.answer[0].ttl == ttl


def test_apex_soa(test_server: DnsfailProcess) -> None:
    reply = test_server.query("gw.test.", "SOA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [("gw.test.", "SOA")]
    assert reply.answer[0].ttl == 3600
    negative = test_server.query("nope.gw.test.", "A")
    assert negative.authority[0][0] == reply.answer[0][0]  # the same SOA, serial included
    soa = reply.answer[0][0]
    assert soa.rname == dns.name.from_text("ops.gw.test.")
    assert soa.minimum == 30
    assert soa.serial > 0


# --- letter case ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("casings", "qtype", "rdclass"),
    [
        (["ApI.Gw.TeSt.", "ApI.Gw.TeSt.", "aPi.gW.tEsT.", "API.GW.TEST.", "api.gw.test."],
         "A", "IN"),
        (["NoPe.Gw.TeSt.", "NoPe.Gw.TeSt.", "nOpE.gW.tEsT."], "A", "IN"),
        (["X.WiLd.Gw.TeSt.", "X.WiLd.Gw.TeSt.", "x.wIlD.gW.tEsT."], "TXT", "IN"),
        (["ChAiN1.GW.test.", "ChAiN1.GW.test.", "cHaIn1.gw.TEST."], "A", "IN"),
        (["Id.SeRvEr.", "Id.SeRvEr.", "iD.sErVeR."], "TXT", "CH"),
        (["ExAmPlE.OrG.", "ExAmPlE.OrG."], "A", "IN"),
    ],
)
def test_question_is_echoed_byte_for_byte(
    test_server: DnsfailProcess, casings: list[str], qtype: str, rdclass: str
) -> None:
    """0x20-randomising resolvers need the question octet for octet, cached or not."""
    replies = []
    for qname in casings:
        query, wire = query_wire(qname, qtype, rdclass=rdclass)
        raw = udp_exchange(test_server, wire)
        assert raw is not None
        end = question_end(wire)
        assert raw[:2] == wire[:2]
        assert raw[4:6] == b"\x00\x01"
        assert raw[12:end] == wire[12:end], (raw[12:end], wire[12:end])
        reply = dns.message.from_wire(raw)
        assert query.is_response(reply)
        replies.append(reply)
    # Every casing got the same answer (names compared without regard to case: names
    # compressed against the question take on its letter case).
    def summary(reply: dns.message.Message) -> list[tuple[str, str, set[str]]]:
        return [(o, t, {x.lower() for x in texts(r)})
                for (o, t), r in zip(shape(reply.answer), reply.answer, strict=True)]

    first = replies[0]
    assert first.answer or first.rcode() != dns.rcode.NOERROR
    for reply in replies[1:]:
        assert reply.rcode() == first.rcode()
        assert summary(reply) == summary(first)


# --- EDNS (RFC 6891) ------------------------------------------------------------------


@pytest.mark.parametrize("payload", [0, 100, 512, 1232, 4096, 65535])
@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_opt_echoed_with_our_payload(test_server: DnsfailProcess, payload: int, tcp: bool) -> None:
    reply = test_server.query("api.gw.test.", "A", tcp=tcp, use_edns=0, payload=payload)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.edns == 0
    assert reply.payload == 1232
    assert texts(reply.answer[0]) == API_ADDRESSES


def test_no_opt_without_edns(test_server: DnsfailProcess) -> None:
    reply = test_server.query("api.gw.test.", "A", use_edns=False)
    assert reply.edns == -1
    assert not reply.additional


@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_edns_version_1_is_badvers(test_server: DnsfailProcess, tcp: bool) -> None:
    reply = test_server.query("api.gw.test.", "A", tcp=tcp, use_edns=1)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0  # OPT present, with the version we do speak
    assert not reply.answer
    assert len(reply.question) == 1


def test_unknown_edns_option_is_ignored(test_server: DnsfailProcess) -> None:
    options = [dns.edns.GenericOption(65001, b"\x01\x02\x03"), dns.edns.GenericOption(3, b"")]
    reply = test_server.query("api.gw.test.", "A", use_edns=0, options=options)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert texts(reply.answer[0]) == API_ADDRESSES
    assert all(option.otype != 65001 for option in reply.options)


def test_nsid(test_server: DnsfailProcess) -> None:
    """RFC 5001: an empty NSID option asks for the server's identity; only then is it sent."""
    for options, expected in [([dns.edns.GenericOption(dns.edns.NSID, b"")], [b"ns-test-1"]),
                              ([dns.edns.GenericOption(dns.edns.NSID, b"")], [b"ns-test-1"]),
                              ([], []), ([], []),
                              ([dns.edns.GenericOption(dns.edns.NSID, b"")], [b"ns-test-1"])]:
        reply = test_server.query("api.gw.test.", "A", use_edns=0, options=options)
        assert texts(reply.answer[0]) == API_ADDRESSES
        nsid = [o for o in reply.options if o.otype == dns.edns.NSID]
        assert [o.to_wire() for o in nsid] == expected


@pytest.mark.parametrize(
    ("wire", "rcode"),
    [
        (query_wire("example.org.", "A")[1], dns.rcode.REFUSED),
        (query_wire("nope.gw.test.", "A")[1], dns.rcode.NXDOMAIN),
        (query_wire("gw.test.", "A", use_edns=1)[1], dns.rcode.BADVERS & 0xF),
        (raw_header(7, 0, 0), dns.rcode.FORMERR),
        (raw_header(7, 0x1000, 1) + b"\x03api\x02gw\x04test\x00\x00\x01\x00\x01",
         dns.rcode.NOTIMP),
        (raw_header(7, 0, 1) + b"\xc0\xff", dns.rcode.FORMERR),
    ],
    ids=["refused", "nxdomain", "badvers", "formerr-qdcount", "notimp", "formerr-garbage"],
)
@pytest.mark.parametrize("bits", [0x0000, 0x0100, 0x0010, 0x0110, 0x0040],
                         ids=["none", "rd", "cd", "rd-cd", "z"])
def test_header_bits_on_errors(test_server: DnsfailProcess, wire: bytes, rcode: int,
                               bits: int) -> None:
    """RD and CD are copied and RA, Z, AD stay clear on every reply, errors included."""
    flags = (int.from_bytes(wire[2:4], "big") & ~0x0170) | bits
    data = wire[:2] + flags.to_bytes(2, "big") + wire[4:]
    for _ in range(2):
        raw = udp_exchange(test_server, data)
        assert raw is not None
        assert raw[:2] == data[:2]
        got = header_flags(raw)
        assert got & 0x8000  # QR
        assert got & 0x000F == rcode
        assert got & 0x0100 == bits & 0x0100  # RD
        assert got & 0x0010 == bits & 0x0010  # CD
        assert not got & 0x0080  # RA
        assert not got & 0x0040  # Z
        assert not got & 0x0020  # AD
        assert (got >> 11) & 0xF == (flags >> 11) & 0xF  # opcode echoed


@pytest.mark.parametrize("do", [False, True])
def test_do_bit_echoed(test_server: DnsfailProcess, do: bool) -> None:
    for _ in range(2):
        reply = test_server.query("api.gw.test.", "A", use_edns=0, want_dnssec=do)
        assert bool(reply.ednsflags & dns.flags.DO) is do
        assert texts(reply.answer[0]) == API_ADDRESSES


OPT_RR = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # root owner, payload 1232, no options


@pytest.mark.parametrize(
    ("additional", "count"),
    [(OPT_RR + OPT_RR, 2), (b"\x03foo\x00" + OPT_RR[1:], 1)],
    ids=["two-opts", "opt-not-root"],
)
def test_bad_opt_is_formerr(test_server: DnsfailProcess, additional: bytes, count: int) -> None:
    """RFC 6891 6.1.1: more than one OPT, or an OPT not owned by the root, is FORMERR."""
    _, wire = query_wire("api.gw.test.", "A")
    wire = wire[:10] + count.to_bytes(2, "big") + wire[12:] + additional
    raw = udp_exchange(test_server, wire)
    assert raw is not None
    assert raw[:2] == wire[:2]
    assert raw[3] & 0x0F == dns.rcode.FORMERR
    assert int.from_bytes(raw[6:8], "big") == 0


# --- truncation ------------------------------------------------------------------------


@pytest.mark.parametrize("edns", [None, 512, 1232, 4096], ids=lambda e: f"edns-{e}")
def test_big_answer_truncated_over_udp(test_server: DnsfailProcess, edns: int | None) -> None:
    """RFC 1035 4.2.1, RFC 2181 9: TC set, the question kept, the answer dropped."""
    kwargs: dict[str, object] = {"use_edns": False} if edns is None else {
        "use_edns": 0, "payload": edns}
    for _ in range(2):
        reply = test_server.query("big.gw.test.", "TXT", **kwargs)
        assert reply.flags & dns.flags.TC
        assert reply.flags & dns.flags.AA
        assert reply.rcode() == dns.rcode.NOERROR
        assert [q.name.to_text() for q in reply.question] == ["big.gw.test."]
        assert not reply.answer
        assert not reply.authority
        assert reply.edns == (-1 if edns is None else 0)
        if edns is not None:
            assert reply.payload == 1232


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
def test_big_answer_whole_over_tcp(test_server: DnsfailProcess, edns: bool) -> None:
    reply = test_server.query("big.gw.test.", "TXT", tcp=True, use_edns=0 if edns else False)
    assert not reply.flags & dns.flags.TC
    assert reply.rcode() == dns.rcode.NOERROR
    assert shape(reply.answer) == [("big.gw.test.", "TXT")]
    assert {s.decode() for rd in reply.answer[0] for s in rd.strings} == BIG_STRINGS
    assert len(reply.answer[0]) == 8


# --- malformed and unusual queries -----------------------------------------------------


QUESTION = b"\x03api\x02gw\x04test\x00\x00\x01\x00\x01"


@pytest.mark.parametrize(
    ("wire", "qdcount_back"),
    [
        (raw_header(0x1234, 0, 0), 0),
        (raw_header(0x1234, 0x0100, 2) + QUESTION + QUESTION, 0),
    ],
    ids=["qdcount-0", "qdcount-2"],
)
def test_qdcount_not_one_is_formerr(test_server: DnsfailProcess, wire: bytes,
                                    qdcount_back: int) -> None:
    raw = udp_exchange(test_server, wire)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert reply.id == 0x1234
    assert reply.flags & dns.flags.QR
    assert reply.rcode() == dns.rcode.FORMERR
    assert not reply.flags & dns.flags.AA
    assert not reply.answer


@pytest.mark.parametrize("opcode", [dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_other_opcodes_are_notimp(test_server: DnsfailProcess, opcode: int) -> None:
    _, wire = query_wire("gw.test.", "SOA")
    wire = wire[:2] + bytes([(wire[2] & 0x87) | (opcode << 3)]) + wire[3:]
    raw = udp_exchange(test_server, wire)
    assert raw is not None
    assert raw[:2] == wire[:2]
    assert raw[2] & 0x80  # QR
    assert (raw[2] >> 3) & 0x0F == opcode
    assert raw[3] & 0x0F == dns.rcode.NOTIMP
    assert int.from_bytes(raw[6:8], "big") == 0  # no data


@pytest.mark.parametrize(
    ("qtype", "tcp"),
    [pytest.param("AXFR", True), pytest.param("IXFR", True),
     ("IXFR", False), ("AXFR", False)],
)
def test_zone_transfers_refused(test_server: DnsfailProcess, qtype: str, tcp: bool) -> None:
    query = dns.message.make_query("gw.test.", qtype)
    if qtype == "IXFR":  # RFC 1995: the client's SOA goes in the authority section
        query.authority.append(dns.rrset.from_text(
            "gw.test.", 0, "IN", "SOA", "ns1.gw.test. ops.gw.test. 1 7200 3600 1209600 30"))
    if tcp:
        reply = dns.query.tcp(query, test_server.host, port=test_server.port, timeout=2)
    else:
        raw = udp_exchange(test_server, query.to_wire())
        assert raw is not None
        reply = dns.message.from_wire(raw)
    assert reply.id == query.id
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x12\x34\x01\x00\x00",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00",  # 11 octets: one short of a header
        raw_header(0x4321, 0x8000, 1) + QUESTION,  # QR set: a response, never answered
        raw_header(0x4321, 0x8400, 1, 1) + QUESTION + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e"
        b"\x00\x04\xc0\x00\x02\x0a",
    ],
    ids=["empty", "5-octets", "11-octets", "qr-set", "qr-set-response"],
)
def test_no_reply(test_server: DnsfailProcess, wire: bytes) -> None:
    assert udp_exchange(test_server, wire, timeout=0.3) is None
    assert_answers_api(test_server)


@pytest.mark.parametrize(
    "body",
    [
        b"",  # QDCOUNT 1 but no question
        b"\x03api\x02gw",  # name cut short
        b"\x03api\x02gw\x04test\x00\x00",  # type cut short
        b"\xc0\xff\x00\x01\x00\x01",  # compression pointer past the end
        b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        b"\x03api\x02gw\x04test",  # no root label
        pytest.param(b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", id="label-64-octets"),
        pytest.param(b"\x3fa" + b"a" * 62 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
                     + b"\x3e" + b"a" * 62 + b"\x00\x00\x01\x00\x01", id="name-256-octets"),
    ],
    ids=["no-question", "short-name", "short-type", "bad-pointer", "pointer-loop",
         "no-root-label", "label-64-octets", "name-256-octets"],
)
def test_garbage_after_header_is_formerr(test_server: DnsfailProcess, body: bytes) -> None:
    wire = raw_header(0xBEEF, 0x0100, 1) + body
    raw = udp_exchange(test_server, wire)
    assert raw is not None, "no reply to a malformed query with a readable header"
    assert raw[:2] == b"\xbe\xef"
    assert raw[2] & 0x80
    assert raw[3] & 0x0F == dns.rcode.FORMERR
    assert not raw[2] & 0x04  # AA clear
    assert_answers_api(test_server)


@pytest.mark.parametrize("qname", ["api.gw.test.", "gw.test.", "x.wild.gw.test."])
def test_any_gets_one_hinfo(test_server: DnsfailProcess, qname: str) -> None:
    """RFC 8482 section 4.2: a single synthesized HINFO "RFC8482"."""
    reply = test_server.query(qname, "ANY")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert shape(reply.answer) == [(qname, "HINFO")]
    assert len(reply.answer[0]) == 1
    assert reply.answer[0][0].cpu == b"RFC8482"
    assert reply.answer[0][0].os == b""


# --- CHAOS ------------------------------------------------------------------------------


@pytest.mark.parametrize("qname", ["id.server.", "hostname.bind."])
@pytest.mark.parametrize("tcp", TRANSPORTS)
def test_chaos_identity(test_server: DnsfailProcess, qname: str, tcp: bool) -> None:
    reply = test_server.query(qname, "TXT", rdclass="CH", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert shape(reply.answer) == [(qname, "TXT")]
    assert reply.answer[0].rdclass == dns.rdataclass.CH
    assert [s for rd in reply.answer[0] for s in rd.strings] == [b"ns-test-1"]


@pytest.mark.parametrize("qname", ["version.bind.", "version.server.", "authors.bind."])
def test_chaos_version_refused_by_default(test_server: DnsfailProcess, qname: str) -> None:
    reply = test_server.query(qname, "TXT", rdclass="CH")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer


def test_chaos_version_when_configured(spawn) -> None:  # type: ignore[no-untyped-def]
    server = spawn([str(DATA / "zones"), "--version-string", "dnsfail test"]).wait_ready()
    reply = server.query("version.bind.", "TXT", rdclass="CH")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [s for rd in reply.answer[0] for s in rd.strings] == [b"dnsfail test"]


# --- EDNS Client Subnet (RFC 7871) -------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "prefix"), [("192.0.2.0", 24), ("198.51.100.128", 25), ("2001:db8::", 56),
                            ("0.0.0.0", 0)],
)
def test_ecs_echoed_with_scope_zero(test_server: DnsfailProcess, address: str, prefix: int) -> None:
    for _ in range(2):
        reply = test_server.query("api.gw.test.", "A", use_edns=0,
                                  options=[dns.edns.ECSOption(address, prefix)])
        assert reply.rcode() == dns.rcode.NOERROR
        assert texts(reply.answer[0]) == API_ADDRESSES
        ecs = [o for o in reply.options if o.otype == dns.edns.ECS]
        assert len(ecs) == 1
        assert ecs[0].address == address
        assert ecs[0].srclen == prefix
        assert ecs[0].scopelen == 0


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x03\x18\x00\xc0\x00\x02",  # family 3
        b"\x00\x01\x21\x00\xc0\x00\x02\x00\x00",  # IPv4 /33
        b"\x00\x02\x81\x00" + bytes(17),  # IPv6 /129
        b"\x00\x01\x18\x00\xc0\x00\x02\x00",  # /24 with four address octets
        b"\x00\x01\x14\x00\xc0\x00\x0f",  # /20 with bits set past the prefix
        b"\x00\x01",  # too short
    ],
    ids=["family-3", "v4-33", "v6-129", "too-many-octets", "bits-past-prefix", "short"],
)
def test_malformed_ecs_is_formerr(test_server: DnsfailProcess, data: bytes) -> None:
    reply = test_server.query("api.gw.test.", "A", use_edns=0,
                              options=[dns.edns.GenericOption(dns.edns.ECS, data)])
    assert reply.rcode() == dns.rcode.FORMERR
    assert not reply.answer


# --- robustness --------------------------------------------------------------------------


def garbage(rng: random.Random, seeds: list[bytes]) -> bytes:
    """Random octets half the time; otherwise a valid query with some octets replaced."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(0, 600))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(data))
        data[at : at + rng.randint(1, 3)] = rng.randbytes(rng.randint(0, 4))
        if not data:
            break
    return bytes(data)


def test_survives_garbage(test_server: DnsfailProcess) -> None:
    start = len(test_server.lines)
    rng = random.Random(20240611)
    seeds = [
        dns.message.make_query(n, t, use_edns=e, want_dnssec=True,
                               options=[dns.edns.ECSOption("192.0.2.0", 24)] if e == 0 else None
                               ).to_wire()
        for n, t, e in [("api.gw.test.", "A", 0), ("x.wild.gw.test.", "TXT", False),
                        ("team.gw.test.", "NS", 0), ("big.gw.test.", "TXT", False),
                        ("id.server.", "TXT", 0)]
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for i in range(2000):
            data = garbage(rng, seeds)
            with contextlib.suppress(BlockingIOError):
                sock.sendto(data, (test_server.host, test_server.port))
            if i % 200 == 199:  # drain our own replies so that nothing backs up
                try:
                    while sock.recv(65535):
                        pass
                except BlockingIOError:
                    pass
    assert_answers_api(test_server)
    assert test_server.proc.poll() is None
    # No datagram took the handler's SERVFAIL escape hatch or crashed the UDP listener.
    logged = "\n".join(test_server.lines[start:])
    assert "internal error" not in logged
    assert "handler raised" not in logged
    assert "Traceback" not in logged
