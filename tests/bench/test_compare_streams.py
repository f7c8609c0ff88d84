"""The benchmark's generated query streams and answer checks (pure: no sockets, no servers).

compare.py is a measurement, not a test; but a stream that repeated its names, lost its
ECS option or sent malformed queries would measure the wrong thing without any error, so
the generator and the checks that judge every server's answers are tested here.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import sys
import time
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # sibling scripts, not a package
import compare_streams as cs

ZONE = compare.ZONE
NETS = cs.networks(1000, random.Random(0), always=("10.1.0.0/16",))


def _names(shapes: tuple[tuple[cs.Shape, float], ...], count: int) -> list[str]:
    """The question names of a stream (read directly: dnspython is slow for 50,000)."""
    data = cs.stream(shapes, count, random.Random(1), NETS)
    return [compare._read_name(wire, 12) for wire in cs.split(data)]


def _queries(shapes: tuple[tuple[cs.Shape, float], ...], count: int) -> list[dns.message.Message]:
    data = cs.stream(shapes, count, random.Random(1), NETS)
    return [dns.message.from_wire(wire) for wire in cs.split(data)]


@pytest.mark.parametrize("row", [r for r in compare.ROWS if r.shapes], ids=lambda r: r.key)
def test_every_record_is_a_whole_edns_query_of_the_zone(row: compare.Row) -> None:
    messages = _queries(row.shapes, 500)
    assert len(messages) == 500
    for m in messages:
        assert (m.id, m.opcode(), m.flags & dns.flags.RD) == (0, 0, 0)
        assert m.edns == 0
        assert m.payload == cs.UDP_PAYLOAD
        (question,) = m.question
        assert question.rdtype == dns.rdatatype.A
        assert question.name.to_text().lower().endswith(f".{ZONE}.")


@pytest.mark.parametrize("key", ["nx", "wild"])
def test_random_names_never_repeat_even_ignoring_case(key: str) -> None:
    row = next(r for r in compare.ROWS if r.key == key)
    names = [n.lower() for n in _names(row.shapes, 50_000)]
    assert len(set(names)) == len(names)
    assert all(len(n.split(".")[0]) == cs.LABEL_LENGTH for n in names)


def test_case_row_keeps_the_name_and_draws_a_case_per_query() -> None:
    row = next(r for r in compare.ROWS if r.key == "case")
    names = _names(row.shapes, 20_000)
    assert {n.lower() for n in names} == {f"fo.{ZONE}"}
    # 17 letters: 2**17 patterns, so 20,000 draws are nearly all distinct.
    assert len(set(names)) > 18_000
    upper = [sum(c.isupper() for c in n) for n in names]
    assert 7 < sum(upper) / len(upper) < 10  # about half of 17 letters


def test_ecs_rows_carry_a_24_from_the_pool_on_every_query() -> None:
    pool = {ipaddress.ip_network(bytes(n) + b"\0").network_address for n in NETS}
    for key in ("ecs", "mix"):
        row = next(r for r in compare.ROWS if r.key == key)
        seen = set()
        for m in _queries(row.shapes, 5_000):
            (option,) = m.options
            assert isinstance(option, dns.edns.ECSOption)
            assert (option.srclen, option.scopelen) == (24, 0)
            assert ipaddress.ip_address(option.address) in pool
            seen.add(option.address)
        assert len(seen) > 900  # 5,000 draws from 1,000 networks reach nearly all


def test_a_mix_too_short_for_every_shape_still_has_the_count_asked() -> None:
    row = next(r for r in compare.ROWS if r.key == "mix")
    for count in (1, 3, 12, 19):
        assert len(_names(row.shapes, count)) == count


def test_networks_are_distinct_and_include_the_steered_blocks() -> None:
    nets = cs.networks(5000, random.Random(2), always=("10.1.0.0/16", "10.2.0.0/16"))
    assert len(set(nets)) == len(nets) == 5000
    steered = {b"\x0a\x01" + bytes([i]) for i in range(256)}
    assert {n for n in nets if n[:2] == b"\x0a\x01"} == steered


def test_mix_has_five_percent_nonexistent_names_and_all_of_them_cased() -> None:
    row = next(r for r in compare.ROWS if r.key == "mix")
    names = _names(row.shapes, 20_000)
    fixed = {f"{label}.{ZONE}" for label in ("static", "fo", "geo")}
    nx = [n for n in names if n.lower() not in fixed]
    assert 0.045 < len(nx) / len(names) < 0.055
    assert all(n != n.lower() for n in names[:200])  # 0x20 on every query (all but ~never)
    # ... the random labels of the nonexistent names included.
    labels = [n.split(".")[0] for n in nx]
    assert sum(label != label.lower() for label in labels) > 0.95 * len(labels)


def _reply(wire: bytes, rcode: int = 0, addresses: tuple[str, ...] = (),
           soa: bool = False, qname: str | None = None) -> bytes:  # fmt: skip
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    reply.flags |= dns.flags.AA
    name = query.question[0].name
    if qname is not None:
        reply.question[0].name = dns.name.from_text(qname)
    if addresses:
        reply.answer.append(dns.rrset.from_text(name, 30, "IN", "A", *addresses))
    if soa:
        reply.authority.append(dns.rrset.from_text(
            ZONE + ".", 300, "IN", "SOA", f"ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 604800 300"))
    return reply.to_wire()


def test_answer_checks_accept_the_right_answers() -> None:
    rng = random.Random(3)
    nx = cs.split(cs.stream(((cs.Shape(ZONE, random_label=True, case=True), 1),), 1, rng))[0]
    wild = cs.split(cs.stream(((cs.Shape(compare.WILD, random_label=True), 1),), 1, rng))[0]
    geo = cs.query_wire(cs.wire_name(f"GeO.{ZONE}"), b"\x0a\x02\x05")
    cases = [
        (nx, _reply(nx, 3, soa=True)),
        (wild, _reply(wild, 0, (compare.WILD_ADDRESS,))),
        (geo, _reply(geo, 0, ("127.0.0.73",))),
    ]
    for wire, reply in cases:
        assert compare._wrong(compare.parse_reply(reply), wire) is None


def test_answer_checks_catch_each_kind_of_wrong_answer() -> None:
    rng = random.Random(4)
    nx = cs.split(cs.stream(((cs.Shape(ZONE, random_label=True, case=True), 1),), 1, rng))[0]
    fo = cs.split(cs.stream(((cs.Shape(f"fo.{ZONE}", case=True), 1),), 1, rng))[0]
    geo = cs.query_wire(cs.wire_name(f"geo.{ZONE}"), b"\x0a\x01\x05")
    asked = compare._read_name(fo, 12)
    wrong = [
        (nx, _reply(nx, 3), "SOA"),  # NXDOMAIN without the SOA
        (nx, _reply(nx, 0), "want rcode 3"),
        (fo, _reply(fo, 0, compare.SITES, qname=asked.lower()), "0x20"),  # case not echoed
        (fo, _reply(fo, 0, compare.SITES[:2]), "want rcode 0"),  # a site missing
        (geo, _reply(geo, 0, ("127.0.0.71",)), "want rcode 0"),  # ECS ignored
    ]
    for wire, reply, why in wrong:
        found = compare._wrong(compare.parse_reply(reply), wire)
        assert found is not None
        assert why in found


def test_cpu_accounting_sees_this_process_burn_and_the_machine_add_up() -> None:
    """The half-peak table's CPU figures come from /proc: this process's own burn shows in
    ``process_cpu``, and the machine's idle and steal never exceed its total."""
    total0, idle0, steal0 = compare.machine_times()
    before = compare.process_cpu([os.getpid()])
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    burnt = compare.process_cpu([os.getpid()]) - before
    total1, idle1, steal1 = compare.machine_times()
    assert 0.2 <= burnt <= 5.0
    assert total1 - total0 >= (idle1 - idle0) + (steal1 - steal0) >= 0
    assert compare.process_cpu([2**22 + 12345]) == 0  # a process that is gone counts nothing
    usage = compare.Usage(seconds=1.0, server_s=0.5, client_s=0.2, idle_s=1.0, steal_s=0.1)
    assert usage.per_query_us(10_000) == pytest.approx(50.0)
    assert math.isnan(usage.per_query_us(0))
