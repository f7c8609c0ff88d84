"""The packed store of plain address records: the same zone, answers and problems as before.

Every zone here is loaded twice: by ``parse_zone`` (the strict reader packing
what it can) and by the general path (``read_libyaml``, which never packs), and
the two must agree on every node, name and count, on every answer byte for byte,
and on every problem.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.dns.resolver import resolve
from dnsfail.dns.wire import render
from dnsfail.errors import ConfigError
from dnsfail.model import RRClass, RRType, Zone
from dnsfail.serve.workers import encode, encode_parts, receive
from dnsfail.state import Snapshot
from dnsfail.zonefile import parse_zone
from dnsfail.zonefile.libyaml import read_libyaml
from dnsfail.zonefile.load import parse_zone_with
from dnsfail.zonefile.packed import MAX_PROBES, PackedBuilder, ZoneNodes

ORIGIN = "p.test."
APEX = "'':\n  type: NS\n  value: ns1.p.test.\n"


def general(text: str) -> Zone | list[str]:
    try:
        return parse_zone_with(text, "z.yaml", ORIGIN, 1, None, True, read_libyaml)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


def packed(text: str) -> Zone | list[str]:
    try:
        return parse_zone(text, "z.yaml", ORIGIN, serial=1)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


def store_of(zone: Zone) -> int:
    """How many owners ``zone`` keeps packed."""
    assert isinstance(zone.nodes, ZoneNodes)
    return zone.nodes.packed.owners


labels = st.text("abcdx0-_", min_size=1, max_size=4)
keys = st.lists(labels, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["2001:db8::1", "2001:db8:0:0:0:0:0:2", "::ffff:192.0.2.1", "fe80::a",
                        "2001:DB8::3", "::"])
ttls = st.one_of(st.none(), st.integers(0, 2**31 - 1), st.just(2**31))


@st.composite
def records(draw: st.DrawFn) -> str:
    """One record text in octoDNS's layout: packable or not, sometimes invalid."""
    key = draw(keys)
    ttl = draw(ttls)
    head = f"{key}:\n" + (f"  ttl: {ttl}\n" if ttl is not None else "")
    kind = draw(st.sampled_from(["a", "as", "aaaa", "txt", "cname", "bad", "quoted"]))
    if kind == "a":
        return head + f"  type: A\n  value: {draw(ipv4)}\n"
    if kind == "as":
        values = draw(st.lists(ipv4, min_size=1, max_size=3))
        return head + "  type: A\n  values:\n" + "".join(f"  - {v}\n" for v in values)
    if kind == "aaaa":
        return head + f"  type: AAAA\n  value: {draw(ipv6)}\n"
    if kind == "txt":
        return head + "  type: TXT\n  value: hello\n"
    if kind == "cname":
        return head + "  type: CNAME\n  value: ns1.p.test.\n"
    if kind == "quoted":
        return head + f"  type: A\n  value: '{draw(ipv4)}'\n"
    return head + "  type: A\n  value: 300.1.2.3\n"


def qnames(zone: Zone, extra: list[str]) -> list[str]:
    names = sorted(set(zone.names) | {f"x.{n}" for n in zone.names} | set(extra))
    return names[:60]


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), max_size=12), st.lists(keys, max_size=4))
def test_packed_zones_answer_byte_for_byte_as_the_general_path(
    texts: list[str], others: list[str]
) -> None:
    text = APEX + "".join(texts) + "ns1:\n  type: A\n  value: 192.0.2.1\n"
    new, old = packed(text), general(text)
    assert new == old
    if not isinstance(new, Zone):
        return
    assert isinstance(old, Zone)
    assert dict(new.nodes.items()) == dict(old.nodes.items())
    assert set(new.names) == set(old.names)
    assert new.record_count == old.record_count
    new_zones, old_zones = {ORIGIN: new}, {ORIGIN: old}
    for qname in qnames(old, [f"{k}.{ORIGIN}" for k in others]):
        for qtype in (RRType.A, RRType.AAAA, RRType.TXT, RRType.ANY):
            replies = [
                render((qname, qtype, RRClass.IN),
                       resolve(zones, qname, qtype, RRClass.IN, Snapshot(1, zones)),
                       edns=None, limit=512)
                for zones in (new_zones, old_zones)
            ]  # fmt: skip
            assert replies[0] == replies[1], (qname, qtype)


def test_the_common_shapes_are_packed() -> None:
    text = APEX + (
        "a:\n  ttl: 60\n  type: A\n  value: 192.0.2.10\n"
        "b.c:\n  type: A\n  values:\n  - 192.0.2.11\n  - 192.0.2.12\n"
        "v6:\n  type: AAAA\n  value: 2001:db8::1\n"
        "ns1:\n  type: A\n  value: 192.0.2.1\n"
        "txt:\n  type: TXT\n  value: hello\n"
    )
    zone = packed(text)
    assert isinstance(zone, Zone)
    assert store_of(zone) == 4  # a, b.c, v6, ns1; not the apex or the TXT
    assert "c.p.test." in zone.names  # an empty non-terminal of b.c
    assert zone.nodes.get("c.p.test.") is None
    assert zone == general(text)


def test_an_empty_non_terminal_that_becomes_an_owner_is_no_duplicate() -> None:
    text = APEX + "a.b:\n  type: A\n  value: 192.0.2.1\nb:\n  type: A\n  value: 192.0.2.2\n"
    zone = packed(text)
    assert isinstance(zone, Zone)
    assert store_of(zone) == 2
    assert zone == general(text)


@pytest.mark.parametrize("text", [
    # The same owner packed and written otherwise: the general path words the problem.
    APEX + "h1:\n  type: A\n  value: 192.0.2.1\nH1:\n  type: A\n  value: 192.0.2.2\n",
    APEX + "H1:\n  type: A\n  value: 192.0.2.1\nh1:\n  type: A\n  value: 192.0.2.2\n",
    APEX + "h1:\n  type: A\n  value: 192.0.2.1\nh1.p.test.:\n  type: A\n  value: 192.0.2.2\n",
    APEX + "h1:\n  type: A\n  value: 192.0.2.1\nh1:\n  type: CNAME\n  value: x.p.test.\n",
    APEX + "h1:\n  type: A\n  value: 192.0.2.1\nh1:\n  type: A\n  value: 192.0.2.2\n",
    APEX + "h1:\n  type: CNAME\n  value: x.p.test.\nh1:\n  type: A\n  value: 192.0.2.2\n",
    # A problem elsewhere: the whole file is judged the general way.
    APEX + "h1:\n  type: A\n  value: 192.0.2.1\nbad:\n  type: A\n  value: nope\n",
    "h1:\n  type: A\n  value: 192.0.2.1\n",  # no apex NS
    # An ALIAS to a packed name: the rest alone would say its target does not exist.
    "'':\n- type: NS\n  value: ns1.p.test.\n- type: ALIAS\n  value: h1.p.test.\n"
    "h1:\n  type: A\n  value: 192.0.2.1\n",
    APEX + "sub:\n  type: NS\n  value: ns.sub.p.test.\nx.sub:\n  type: A\n  value: 192.0.2.1\n"
    "x.sub:\n  type: TXT\n  value: hi\n",
])  # fmt: skip
def test_problems_and_conflicts_are_judged_as_before(text: str) -> None:
    assert packed(text) == general(text)


def test_the_store_travels_to_workers_as_two_buffers() -> None:
    text = APEX + "".join(f"h{i}:\n  type: A\n  value: 198.18.{i // 256}.{i % 256}\n"
                          for i in range(2000))  # fmt: skip
    zone = packed(text)
    assert isinstance(zone, Zone)
    assert store_of(zone) == 2000
    parts = encode_parts(zone)  # the frame the main process sends a worker
    store = zone.nodes.packed
    # Head, pickle, then the blob and the index out of band, not copied: the store's own.
    assert len(parts) == 6
    assert len(parts[1]) < 2000  # the pickle holds neither
    blob, index = parts[3], parts[5]
    assert isinstance(blob, memoryview)
    assert isinstance(index, memoryview)
    assert blob.obj is store.data
    assert index.obj is store.slots
    assert sum(len(part) for part in parts) < 2000 * 60  # about 25 octets a record + slots

    async def across() -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(encode(zone))
        reader.feed_eof()
        return await receive(reader)

    again = asyncio.run(across())
    assert again == zone
    assert isinstance(again, Zone)
    assert again.nodes["h1999.p.test."] == zone.nodes["h1999.p.test."]
    assert again.names == zone.names
    # pickle.dumps (no buffer callback) still works: the buffers go in band.
    assert pickle.loads(pickle.dumps(store, protocol=5)).same_content(store)
    assert pickle.loads(pickle.dumps(store, protocol=4)).same_content(store)


def test_the_builder_refuses_what_it_cannot_keep() -> None:
    builder = PackedBuilder(ORIGIN)
    assert builder.take("a", "300", "A", ("192.0.2.1",)) == 1
    assert builder.take("a", None, "A", ("192.0.2.2",)) == 2  # a second record of one key
    assert builder.take("Up", None, "A", ("192.0.2.1",)) == 0  # not lower case
    assert builder.take("*", None, "A", ("192.0.2.1",)) == 0  # a wildcard
    assert builder.take("b", str(2**31), "A", ("192.0.2.1",)) == 0  # TTL out of range
    assert builder.take("c", None, "A", ("192.0.2.1", "192.0.2.1")) == 0  # duplicate values
    assert builder.take("d", None, "AAAA", ("fe80::1%eth0",)) == 0  # a scope
    assert builder.take("e", None, "TXT", ("x",)) == 0
    assert builder.take("x" * 250, None, "A", ("192.0.2.1",)) == 0  # longer than 255 octets
    assert builder.store().owners == 1


RECORDS = [f"h{i}:\n  type: A\n  value: 192.0.2.{i}\n" for i in range(200)]


@pytest.mark.parametrize(("records", "kept"), [
    (RECORDS, True),
    (RECORDS[::-1], True),  # the same records in another order
    ([r.replace("192.0.2.7\n", "192.0.2.77\n") for r in RECORDS], False),
    ([r.replace("type: A", "ttl: 5\n  type: A") if "2.9\n" in r else r for r in RECORDS], False),
    (RECORDS[:-1], False),
])  # fmt: skip
def test_a_reload_keeps_the_serial_only_of_the_same_packed_content(
    records: list[str], kept: bool
) -> None:
    old = packed(APEX + "".join(RECORDS))
    assert isinstance(old, Zone)
    new = parse_zone(APEX + "".join(records), "z.yaml", ORIGIN, serial=old.serial + 100,
                     previous=old)  # fmt: skip
    assert store_of(new) == len(records)
    assert (new.serial == old.serial) is kept


def test_names_chosen_to_collide_are_read_the_general_way() -> None:
    """crc32 is no keyed hash: a file whose names all share one index slot would make
    packing quadratic.  Past ``MAX_PROBES`` the builder gives up, and the zone is the same."""
    count = MAX_PROBES + 10
    size = 256  # the index of ``count`` + 1 records: a power of two at most half full
    assert PackedBuilder(ORIGIN, count + 1).slots.buffer_info()[1] == size
    colliding = (f"k{n}" for n in itertools.count())
    names = list(itertools.islice((k for k in colliding if zlib.crc32(k.encode()) % size == 0),
                                  count))  # fmt: skip
    text = APEX + "".join(f"{name}:\n  type: A\n  value: 192.0.2.1\n" for name in names)
    zone = packed(text)
    assert isinstance(zone, Zone)
    assert store_of(zone) == 0
    assert zone == general(text)
    few = APEX + "".join(f"{name}:\n  type: A\n  value: 192.0.2.1\n" for name in names[:40])
    assert store_of(packed(few)) == 40  # a few collisions are packed
