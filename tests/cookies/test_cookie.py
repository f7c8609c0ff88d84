"""cookies.cookie and cookies.siphash: RFC 9018's vectors, the option's lengths, the clock."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.message
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dnsfail.cookies.cookie import (
    INVALID,
    LIFETIME,
    REFRESH_AFTER,
    RENEW,
    SKEW,
    VALID,
    age,
    judge,
    read_cookie,
    server_cookie,
    well_formed,
)
from dnsfail.cookies.siphash import siphash24

#: RFC 9018 appendix A: (secret, client cookie, client IP, time, server cookie made).
APPENDIX_A = [
    pytest.param("e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100",
                 1559731985, "010000005cf79f111f8130c3eee29480", id="A.1 a new cookie"),
    pytest.param("e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100",
                 1559734385, "010000005cf7a871d4a564a1442aca77", id="A.2 renewed"),
    pytest.param("e5e973e5a6b2a43f48e7dc849e37bfcf", "fc93fc62807ddb86", "203.0.113.203",
                 1559734700, "010000005cf7a9acf73a7810aca2381e", id="A.3 another client"),
    pytest.param("445536bcd2513298075a5d379663c962", "22681ab97d52c298",
                 "2001:db8:220:1:59de:d0f4:8769:82b8", 1559741961,
                 "010000005cf7c609a6bb79d16625507a", id="A.4 IPv6, a new secret"),
]


def packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


@pytest.mark.parametrize(("secret", "client", "ip", "now", "made"), APPENDIX_A)
def test_rfc9018_appendix_a(secret: str, client: str, ip: str, now: int, made: str) -> None:
    cookie = server_cookie(bytes.fromhex(secret), bytes.fromhex(client), packed(ip), now)
    assert cookie.hex() == made


#: RFC 9018 appendix A: cookies clients send back, judged at the time the example answers.
SENT_BACK = [
    # A.2: 40 minutes after A.1's cookie: valid, and renewed (older than half an hour).
    pytest.param(("e5e973e5a6b2a43f48e7dc849e37bfcf",), "198.51.100.100",
                 "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559734385, RENEW,
                 id="A.2 half an hour old"),
    # A.3: reserved octets set by another implementation are part of the hash.
    pytest.param(("e5e973e5a6b2a43f48e7dc849e37bfcf",), "203.0.113.203",
                 "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5", 0x5CF78F71 + 60, RENEW,
                 id="A.3 reserved octets set"),
    pytest.param(("e5e973e5a6b2a43f48e7dc849e37bfcf",), "203.0.113.204",
                 "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5", 0x5CF78F71 + 60, INVALID,
                 id="A.3 from another address"),
    # A.4: made by the old secret, accepted beside the new one during the rollover.
    pytest.param(("445536bcd2513298075a5d379663c962", "dd3bdf9344b678b185a6f5cb60fca715"),
                 "2001:db8:220:1:59de:d0f4:8769:82b8",
                 "22681ab97d52c298010000005cf7c57926556bd0934c72f8", 1559741961, RENEW,
                 id="A.4 the previous secret"),
    pytest.param(("445536bcd2513298075a5d379663c962",), "2001:db8:220:1:59de:d0f4:8769:82b8",
                 "22681ab97d52c298010000005cf7c57926556bd0934c72f8", 1559741961, INVALID,
                 id="A.4 the previous secret dropped"),
    pytest.param(("e5e973e5a6b2a43f48e7dc849e37bfcf",), "198.51.100.100",
                 "2464c4abcf10c957010000005cf79f111f8130c3eee29480", 1559731985 + 10, VALID,
                 id="A.1 ten seconds later"),
]


@pytest.mark.parametrize(("secrets", "ip", "option", "now", "verdict"), SENT_BACK)
def test_rfc9018_cookies_sent_back(secrets: tuple[str, ...], ip: str, option: str, now: int,
                                   verdict: int) -> None:
    raw = bytes.fromhex(option)
    keys = tuple(bytes.fromhex(s) for s in secrets)
    assert judge(keys, raw[:8], raw[8:], packed(ip), now) == verdict


#: SipHash-2-4 reference vectors (Aumasson and Bernstein, vectors.h): key 00..0f, message
#: 00..n-1, the output octets.
REFERENCE = [
    (0, "310e0edd47db6f72"), (1, "fd67dc93c539f874"), (7, "37d1018bf50002ab"),
    (8, "6224939a79f5f593"), (15, "e545be4961ca29a1"), (16, "db9bc2577fcc2a3f"),
    (63, "724506eb4c328a95"),
]


@pytest.mark.parametrize(("length", "output"), REFERENCE)
def test_siphash_reference_vectors(length: int, output: str) -> None:
    assert siphash24(bytes(range(16)), bytes(range(length))).hex() == output


def test_siphash_wants_a_128_bit_key() -> None:
    with pytest.raises(ValueError, match="16 octets"):
        siphash24(bytes(15), b"")


SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
CLIENT = bytes.fromhex("2464c4abcf10c957")
IP = packed("198.51.100.100")
NOW = 1559731985


@pytest.mark.parametrize(("issued", "verdict"), [
    (NOW, VALID),
    (NOW - REFRESH_AFTER, VALID),
    (NOW - REFRESH_AFTER - 1, RENEW),
    (NOW - LIFETIME, RENEW),
    (NOW - LIFETIME - 1, INVALID),
    (NOW + SKEW, VALID),
    (NOW + SKEW + 1, INVALID),
])
def test_lifetime_and_skew(issued: int, verdict: int) -> None:
    cookie = server_cookie(SECRET, CLIENT, IP, issued)
    assert judge((SECRET,), CLIENT, cookie, IP, NOW) == verdict


@pytest.mark.parametrize(("timestamp", "now", "seconds"), [
    (100, 160, 60), (160, 100, -60), (0xFFFFFFF0, 0x10, 0x20), (0x10, 0xFFFFFFF0, -0x20),
])
def test_age_wraps_as_serial_numbers(timestamp: int, now: int, seconds: int) -> None:
    assert age(timestamp, now) == seconds


@pytest.mark.parametrize("server", [
    bytes(8),  # another implementation's 8-octet cookie
    b"\x02" + bytes(15),  # a version we do not know
    bytes(24),
])
def test_foreign_cookies_are_invalid(server: bytes) -> None:
    assert judge((SECRET,), CLIENT, server, IP, NOW) == INVALID


def test_the_hash_covers_the_client_cookie_and_address() -> None:
    cookie = server_cookie(SECRET, CLIENT, IP, NOW)
    assert judge((SECRET,), CLIENT, cookie, IP, NOW) == VALID
    assert judge((SECRET,), bytes(8), cookie, IP, NOW) == INVALID
    assert judge((SECRET,), CLIENT, cookie, packed("198.51.100.101"), NOW) == INVALID
    assert judge((bytes(16),), CLIENT, cookie, IP, NOW) == INVALID


@pytest.mark.parametrize(("length", "ok"), [
    (0, False), (7, False), (8, True), (9, False), (15, False), (16, True), (24, True),
    (40, True), (41, False), (64, False),
])
def test_lengths_rfc7873_allows(length: int, ok: bool) -> None:
    assert well_formed(bytes(length)) is ok


def with_options(*options: tuple[int, bytes], name: str = "api.gw.test.",
                 payload: int = 1232, do: bool = False) -> bytes:
    message = dns.message.make_query(name, "A", use_edns=0, payload=payload, want_dnssec=do,
                                     options=[dns.edns.GenericOption(c, d) for c, d in options])
    return message.to_wire()


def test_read_cookie_finds_the_first_cookie_among_options() -> None:
    data = with_options((3, b""), (10, CLIENT), (10, bytes(16)), payload=4096, do=True)
    found = read_cookie(data)
    assert found is not None
    assert found[0] == CLIENT
    assert data[: found[1]].endswith(b"\x00\x01\x00\x01")  # the question ends there
    assert found[2:] == (4096, True, True)  # NSID asked: the reply's OPT is not empty


@pytest.mark.parametrize("data", [
    dns.message.make_query("api.gw.test.", "A").to_wire(),  # no EDNS
    with_options(),  # EDNS, no option
    with_options((3, b"")),  # NSID only
    with_options((10, CLIENT))[:-1],  # cut short
    with_options((10, CLIENT)) + b"\x00",  # octets past the OPT
    with_options((10, CLIENT))[:-10] + b"\x00\x0a" + with_options((10, CLIENT))[-8:],
    b"",
])
def test_read_cookie_without_a_cookie(data: bytes) -> None:
    assert read_cookie(data) is None


def test_read_cookie_ignores_other_edns_versions() -> None:
    data = bytearray(with_options((10, CLIENT)))
    qend = 12 + len(b"\x03api\x02gw\x04test\x00") + 4
    data[qend + 6] = 1  # EDNS version 1: BADVERS, its options uninterpreted
    assert read_cookie(bytes(data)) is None


def test_read_cookie_of_a_query_without_question() -> None:
    data = bytearray(with_options((10, CLIENT)))
    qend = 12 + len(b"\x03api\x02gw\x04test\x00") + 4
    empty = bytes(data[:4]) + b"\x00\x00" + bytes(data[6:12]) + bytes(data[qend:])
    found = read_cookie(empty)
    assert found is not None
    assert found[:2] == (CLIENT, 12)


@given(st.binary(max_size=600))
def test_read_cookie_never_raises(data: bytes) -> None:
    found = read_cookie(data)
    if found is not None:
        assert found[1] <= len(data)


@given(st.binary(max_size=48), st.integers(0, 80), st.integers(0, 255), st.integers(0, 120))
@example(b"", 12, 63, 0)  # a label longer than the rest of the message
@example(CLIENT, 0, 0, 90)  # cut inside the question
def test_read_cookie_of_damaged_queries(option: bytes, at: int, octet: int, cut: int) -> None:
    """Queries one octet or a cut away from sound ones, which random octets seldom reach."""
    data = bytearray(with_options((3, b""), (10, option), (10, CLIENT)))
    if at < len(data):
        data[at] = octet
    found = read_cookie(bytes(data[: len(data) - cut]))
    if found is not None:
        start = bytes(data).find(found[0]) if found[0] else 0
        assert start + len(found[0]) <= len(data) - cut


@given(st.binary(max_size=80))
def test_any_option_never_raises(option: bytes) -> None:
    found = read_cookie(with_options((10, option)))
    assert found is not None
    assert found[0] == option
    if well_formed(option) and len(option) > 8:
        assert judge((SECRET,), option[:8], option[8:], IP, NOW) in (INVALID, VALID, RENEW)
