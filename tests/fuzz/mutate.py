"""Malformed DNS messages made from sound ones, and the rules every reply must obey.

One mutation engine for the three fuzzers: the Hypothesis properties in
tests/test_handler.py, the socket test tests/integration/test_fuzz.py and the
atheris harness tests/fuzz/fuzz_handler.py.  ``mutate`` reads its edits from
a byte string, so Hypothesis can shrink it and atheris can steer it by
coverage, and each edit is one of the ways issue 11's attacks were built:
flipped octets, wrong counts, truncation, pointer chains and pointer loops,
extra OPT records and malformed ECS options.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.opcode

#: The largest DNS message (a TCP length prefix is 16 bits, RFC 1035 section 4.2.2).
MESSAGE_LIMIT = 65535
#: Edits read from one program; a program longer than this repeats nothing.
MAX_EDITS = 16


def _seeds() -> list[bytes]:
    out: list[bytes] = []
    for qname, rdtype, kwargs in [
        ("api.gw.test.", "A", {}),
        ("API.Gw.TEST.", "AAAA", {"use_edns": 0}),
        ("www.gw.test.", "A", {"use_edns": 0, "want_dnssec": True}),
        ("big.gw.test.", "TXT", {"use_edns": 0, "payload": 4096}),
        ("x.wild.gw.test.", "MX", {"use_edns": 0, "options": [
            dns.edns.ECSOption("192.0.2.0", 24)]}),
        ("gw.test.", "SOA", {"use_edns": 0, "options": [
            dns.edns.ECSOption("2001:db8::", 48), dns.edns.GenericOption(dns.edns.NSID, b"")]}),
        ("id.server.", "TXT", {"rdclass": "CH"}),
        ("nope.gw.test.", "ANY", {}),
        ("example.org.", "NS", {"use_edns": 1}),
        ("gw.test.", "AXFR", {}),
    ]:
        message = dns.message.make_query(qname, rdtype, **kwargs)  # type: ignore[arg-type]
        message.id = len(out) * 257
        out.append(message.to_wire())
    return out


#: Sound queries to mutate: plain, EDNS, DO, ECS v4 and v6, NSID, CHAOS, EDNS version 1.
SEEDS = _seeds()


class _Program:
    """Reads operands from a byte string; past its end every read is zero."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def more(self) -> bool:
        return self.at < len(self.data)

    def byte(self) -> int:
        self.at += 1
        return self.data[self.at - 1] if self.at <= len(self.data) else 0

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def take(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        self.at += n
        return out


def _bump(data: bytearray, which: int, by: int = 1) -> None:
    """Add ``by`` to QDCOUNT (0), ANCOUNT (1), NSCOUNT (2) or ARCOUNT (3), if there is a header."""
    if len(data) >= 12:
        at = 4 + 2 * which
        data[at : at + 2] = ((int.from_bytes(data[at : at + 2], "big") + by) & 0xFFFF).to_bytes(
            2, "big")


def _pointer_chain(data: bytearray, count: int, label: bool) -> None:
    """Append ``count`` answer records whose owners are each a pointer to the one before."""
    previous = 12
    for _ in range(count):
        if len(data) + 16 > MESSAGE_LIMIT:
            break
        here = len(data)
        data += (b"\x01a" if label else b"") + struct.pack("!H", 0xC000 | previous)
        data += struct.pack("!HHIH", 10, 1, 0, 1) + b"x"
        previous = here
        _bump(data, 1)


def mutate(seed: bytes, program: bytes) -> bytes:
    """``seed`` with the edits ``program`` spells: each an opcode octet, then its operands."""
    data = bytearray(seed)
    p = _Program(program)
    edits = 0
    while p.more() and edits < MAX_EDITS:
        edits += 1
        op = p.byte() % 12
        n = max(len(data), 1)
        if op == 0:  # flip bits of one octet
            at = p.u16() % n
            if data:
                data[at] ^= p.byte() or 0x01
        elif op == 1:  # a header count set to a telling value
            which = p.byte() % 4
            value = (0, 1, 2, 3, 255, 0xFFFF, p.u16())[p.byte() % 7]
            if len(data) >= 12:
                data[4 + 2 * which : 6 + 2 * which] = value.to_bytes(2, "big")
        elif op == 2:  # truncate
            del data[p.u16() % (len(data) + 1) :]
        elif op == 3:  # insert octets from the program
            at = p.u16() % (len(data) + 1)
            data[at:at] = p.take(p.byte() % 32)
        elif op == 4:  # a chain of compression pointers in the answer section
            _pointer_chain(data, 1 + p.u16() % 6000, label=bool(p.byte() & 1))
        elif op == 5:  # another OPT record, options from the program
            payload, version, flags = p.u16(), p.byte() % 3, p.u16()
            options = b"".join(
                struct.pack("!HH", (3, 8, 10, 12, p.u16())[p.byte() % 5], length) + p.take(length)
                for length in [p.byte() % 12 for _ in range(p.byte() % 4)]
            )
            owner = b"\x00" if p.byte() % 4 else b"\xc0\x0c"
            data += owner + struct.pack("!HHBBHH", 41, payload, 0, version, flags, len(options))
            data += options
            _bump(data, 3)
        elif op == 6:  # an OPT with an ECS option of any shape
            family, source, scope = p.byte() % 4, p.byte() % 140, p.byte() % 3
            option = struct.pack("!HBB", family, source, scope) + p.take(p.byte() % 20)
            rdata = struct.pack("!HH", 8, len(option)) + option
            data += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(rdata)) + rdata
            _bump(data, 3)
        elif op == 7:  # a compression pointer written into the message
            at = p.u16() % n
            data[at : at + 2] = struct.pack("!H", 0xC000 | p.u16() % 0x4000)
        elif op == 8:  # copy a segment elsewhere
            start = p.u16() % n
            piece = data[start : start + p.byte()]
            at = p.u16() % (len(data) + 1)
            data[at:at] = piece
        elif op == 9:  # header flags: QR, opcode, TC, RD, Z, AD, CD, rcode
            if len(data) >= 4:
                data[2], data[3] = p.byte(), p.byte()
        elif op == 10:  # a label length octet set to a boundary value
            at = 12 + p.u16() % max(len(data) - 12, 1)
            if at < len(data):
                data[at] = (0, 1, 63, 64, 0x40, 0x80, 0xBF, 0xC0, 0xFF)[p.byte() % 9]
        else:  # RDLENGTH or OPTION-LENGTH of the last OPT made to lie
            if len(data) >= 2:
                data[-2:] = p.u16().to_bytes(2, "big")
    return bytes(data[:MESSAGE_LIMIT])


def check_reply(query: bytes, reply: bytes | None, tcp: bool) -> None:
    """What every answer to any bytes must obey (RFC 1035 section 4.1.1, RFC 6891 section 7).

    No reply only for what is not a query (shorter than a header, or QR
    set).  Otherwise a message dnspython reads whole, with the query's ID,
    QR set and RA clear (we are authoritative), that fits the transport: 512
    octets over UDP without EDNS, our 1232 with it, 65535 over TCP.
    """
    if reply is None:
        assert len(query) < 12 or query[2] & 0x80, "a query went unanswered"
        return
    assert len(query) >= 12, "a message shorter than a header was answered"
    assert not query[2] & 0x80, "a response was answered"
    readable = reply
    if (reply[2] >> 3) & 0x0F == dns.opcode.UPDATE:
        # dnspython reads an UPDATE by RFC 2136's sections (ZTYPE must be SOA); a NOTIMP
        # reply echoes whatever question the client sent, so it is read as a QUERY.
        readable = reply[:2] + bytes((reply[2] & 0x87,)) + reply[3:]
    message = dns.message.from_wire(readable, ignore_trailing=False)
    assert message.id == int.from_bytes(query[:2], "big")
    assert message.flags & dns.flags.QR
    assert not message.flags & dns.flags.RA
    limit = MESSAGE_LIMIT if tcp else 1232 if message.edns >= 0 else 512
    assert len(reply) <= limit, (len(reply), limit)


class Records(logging.Handler):
    """Every record logged while installed (see ``captured``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def check(self) -> None:
        """No packet may make the server log an error or a traceback (issue 11)."""
        bad = [r for r in self.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, [r.getMessage() for r in bad]


@contextlib.contextmanager
def captured() -> Iterator[Records]:
    """Collect what the ``dnsfail`` loggers write (usable inside Hypothesis tests, unlike
    pytest's function-scoped ``caplog``)."""
    records = Records()
    logger = logging.getLogger("dnsfail")
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)
