"""Query streams in which no query repeats, for compare.py's non-repeating rows.

dnsperf sends the same bytes for a given input line and fixes ``-E`` per run,
so a text input file cannot ask a new name, a new ECS network or a new letter
case on every query.  ``dnsperf -B`` reads wire-format messages instead, each
behind a two-octet length as in a TCP stream (it overwrites only the ID), so
these functions write such files: every record a whole query, EDNS included.

Each stream is built column-wise: one template query is repeated ``count``
times and each varying octet (a letter of a random label, a letter whose case
is flipped at random, an ECS address octet) is written for every record at
once with a strided slice assignment.  That runs at C speed: a few seconds for
millions of records, where a per-query Python loop would take minutes.

Random labels are 16 characters from a 32-character alphabet (80 bits), so
among a few million of them the chance that two collide is below 1e-11: every
query asks a new name.  Case patterns (0x20) are drawn independently per query
and per letter, as resolvers do (draft-vixie-dnsext-dns0x20).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

#: Random label characters: 32 of them, so ``byte & 31`` picks one uniformly.
ALPHABET = b"abcdefghijklmnopqrstuvwxyz012345"
#: Length of a random label: 16 characters of 5 bits, 80 bits per name.
LABEL_LENGTH = 16
#: Byte -> random label character, lower case.
_LOWER = bytes(ALPHABET[b & 31] for b in range(256))
#: Byte -> random label character with a random case (bit 5 flips the letters).
_MIXED = bytes(
    ALPHABET[b & 31] ^ 0x20 if b & 32 and chr(ALPHABET[b & 31]).isalpha() else ALPHABET[b & 31]
    for b in range(256)
)
#: The EDNS payload size every generated query offers (the DNS Flag Day 2020 value).
UDP_PAYLOAD = 1232
ECS_CODE = 8
QTYPE_A = 1


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"


def query_wire(qname: bytes, ecs24: bytes | None = None) -> bytes:
    """An A query (ID 0, RD clear) with EDNS and, when given, ECS for the /24 ``ecs24``."""
    option = b""
    if ecs24 is not None:
        data = struct.pack("!HBB", 1, 24, 0) + ecs24
        option = struct.pack("!HH", ECS_CODE, len(data)) + data
    opt = b"\0" + struct.pack("!HHIH", 41, UDP_PAYLOAD, 0, len(option)) + option
    return struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1) + qname + struct.pack("!HH", QTYPE_A, 1) + opt


@dataclass(frozen=True)
class Shape:
    """One kind of query in a stream: a name, which parts of it vary, and whether ECS varies.

    ``suffix`` is the fixed part of the name; with ``random_label`` a new label of
    ``LABEL_LENGTH`` characters goes in front of it.  ``case`` flips the case of each
    letter of the name at random.  ``ecs`` gives each query an ECS /24 drawn from the
    stream's networks.
    """

    suffix: str
    random_label: bool = False
    case: bool = False
    ecs: bool = False

    def records(self, count: int, rng: random.Random, nets: Sequence[bytes] = ()) -> bytearray:
        """``count`` length-prefixed queries of this shape, as one buffer."""
        name = ("x" * LABEL_LENGTH + "." if self.random_label else "") + self.suffix
        template = query_wire(wire_name(name), b"\0\0\0" if self.ecs else None)
        one = struct.pack("!H", len(template)) + template
        stride = len(one)
        buf = bytearray(one * count)
        first = 2 + 12 + 1  # length prefix, header, first length octet
        label_end = first + (LABEL_LENGTH if self.random_label else 0)
        for pos in range(first, label_end):
            buf[pos::stride] = rng.randbytes(count).translate(_MIXED if self.case else _LOWER)
        if self.case:
            for pos in range(label_end, 2 + 12 + len(wire_name(name))):
                char = one[pos]
                if chr(char).isalpha():
                    flip = bytes(char ^ 0x20 if b & 1 else char for b in range(256))
                    buf[pos::stride] = rng.randbytes(count).translate(flip)
        if self.ecs:
            if not nets:
                raise ValueError("an ECS shape needs networks")
            picked = b"".join(rng.choices(nets, k=count))
            for k in range(3):
                buf[stride - 3 + k :: stride] = picked[k::3]
        return buf


def stream(
    shapes: Sequence[tuple[Shape, float]], count: int, rng: random.Random,
    nets: Sequence[bytes] = (),
) -> bytes:  # fmt: skip
    """``count`` queries mixing ``shapes`` by weight, in random order (one shape: in order)."""
    if len(shapes) == 1:
        return bytes(shapes[0][0].records(count, rng, nets))
    total = sum(weight for _, weight in shapes)
    counts = [round(count * weight / total) for _, weight in shapes[:-1]]
    counts.append(count - sum(counts))
    pieces: list[bytes] = []
    for (shape, _), n in zip(shapes, counts, strict=True):
        if n <= 0:
            continue
        buf = shape.records(n, rng, nets)
        stride = len(buf) // n if n else 0
        pieces += [bytes(buf[i : i + stride]) for i in range(0, len(buf), stride)]
    rng.shuffle(pieces)
    return b"".join(pieces)


def networks(count: int, rng: random.Random, always: Sequence[str] = ()) -> list[bytes]:
    """``count`` distinct /24s as 3 octets each: every /24 of the ``always`` networks, and
    the rest drawn at random from the unicast IPv4 space (no packet is ever sent there:
    they are only ECS option data)."""
    chosen: set[bytes] = set()
    for net in always:
        for sub in ipaddress.ip_network(net).subnets(new_prefix=24):
            chosen.add(sub.network_address.packed[:3])
    while len(chosen) < count:
        first = rng.randrange(1, 224)
        if first in (10, 127):
            continue
        chosen.add(bytes([first, rng.randrange(256), rng.randrange(256)]))
    out = sorted(chosen)
    rng.shuffle(out)
    return out


def split(data: bytes) -> list[bytes]:
    """The messages of a length-prefixed stream (for the answer checks)."""
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("!H", data, pos)
        out.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return out
