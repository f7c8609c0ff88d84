"""The miss paths without a scan (``template.Plan``, ``replycache.Fold``): byte-identical to
the full path, ID and case aside, for new first labels, letter cases, ECS networks and
health states; and bounded."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.dns.replycache import FOLD_LIMIT, ReplyCache, question_key
from dnsfail.dns.stats import PLAN
from dnsfail.dns.template import CASED_PLAN_MEMO, PLAN_MEMO
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone
from tests.dns.test_handler import GEO_ZONE, flip_case
from tests.dns.test_template import ANCHORS, TYPES, ZONES2, fresh_store

ZONES3 = {**ZONES2, "geo.test.": parse_zone(GEO_ZONE, "geo.test.yaml", "geo.test.", serial=1)}
#: First labels: plain, in any case, and ones no plan may answer (names that exist, the
#: wildcard's own ``*``, octets written ``\\DDD``, a label naming a zone of ours).
firsts = st.one_of(
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1,
            max_size=63),
    st.sampled_from(["*", "ns1", "API", "deleg", "mail", "Fo", "x", "y", "ent", "wild", "team",
                     "a\\.b", "x\\032y", "\\200x", "b\\\\s", "tpl", "geo", "hostmaster"]),
)
subnets = st.one_of(
    st.none(),
    st.builds(lambda a, p: f"{a}/{p}", st.sampled_from(["10.1.2.0", "192.0.2.0"]),
              st.sampled_from([0, 24])),
)


def query(name: str, rdtype: str, edns: int, do: bool, nsid: bool, subnet: str | None,
          rd: bool, cd: bool, qid: int, payload: int = 1232) -> bytes:
    options: list[dns.edns.Option] = []
    if nsid and edns >= 0:
        options.append(dns.edns.GenericOption(dns.edns.NSID, b""))
    if subnet is not None and edns >= 0:
        options.append(dns.edns.ECSOption.from_text(subnet))  # last: a fold splices it
    message = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload,
                                     want_dnssec=do, options=options)
    message.id = qid
    message.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return message.to_wire()


def handler_for(health: list[bool], identity: str = "unit") -> tuple[Handler, Store]:
    store = fresh_store(health)
    store.replace_zones(ZONES3)
    return Handler(lambda: store.snapshot, identity=identity), store


def expected(data: bytes, health: list[bool], identity: str = "unit") -> bytes:
    store = fresh_store(health)
    store.replace_zones(ZONES3)
    fresh = Handler(lambda: store.snapshot, identity=identity)
    reply = fresh._full(data, False, store.snapshot, question_key(data, False), "192.0.2.7")
    assert reply is not None
    return reply


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ANCHORS), st.sampled_from(TYPES), st.integers(0, 2**60),
       st.sampled_from([-1, 0]), st.sampled_from([512, 1232, 100]), st.booleans(),
       st.booleans(), subnets, st.lists(st.tuples(firsts, st.booleans(), st.booleans(),
                                                  st.integers(0, 65535)),
                                        min_size=3, max_size=12),
       st.lists(st.booleans(), min_size=2, max_size=2))
@example("gw.test.", "A", 0, 0, 1232, False, False, None,
         [("new1", False, False, 1), ("new2", True, False, 2), ("NeW3", True, True, 3),
          ("ns1", False, False, 4), ("a\\.b", False, False, 5)], [True, True])
@example("tpl.test.", "A", 0, 0, 1232, False, False, "10.1.2.0/24",
         [("new1", False, False, 1), ("new2", True, False, 2), ("mail", True, True, 3),
          ("Fo", False, False, 4), ("mx", False, False, 5), ("*", False, False, 6)],
         [True, False])
def test_new_first_labels_from_a_plan_equal_the_full_path(
    anchor: str, rdtype: str, mask: int, edns: int, payload: int, do: bool, nsid: bool,
    subnet: str | None, asks: list[tuple[str, bool, bool, int]], health: list[bool],
) -> None:
    """A flood's shape: one parent in one letter case and one kind of query, a new first
    label each time (in any case, some naming something, some escaped): every reply is
    the full path's of a fresh handler."""
    parent = flip_case(anchor, mask)
    handler, _store = handler_for(health)
    for first, rd, cd, qid in asks:
        name = f"{first}.{parent}" if parent != "." else f"{first}."
        if len(name) > 250:
            continue
        data = query(name, rdtype, edns, do, nsid, subnet, rd, cd, qid, payload)
        assert handler.handle(data, False, "192.0.2.7") == expected(data, health)
    assert handler.stats.internal_errors == 0


def test_a_flood_of_new_first_labels_is_answered_by_its_plan() -> None:
    """The second query under a parent makes the plan, the rest are answered by it (no
    scan), and no cache grows."""
    handler, store = handler_for([True, True])
    for i in range(200):
        for parent, rdtype in (("gw.test.", "A"), ("wild.gw.test.", "TXT")):
            data = query(f"n{i}x.{parent}", rdtype, 0, False, False, None, False, False, i)
            assert handler.handle(data, False, "192.0.2.7") == expected(data, [True, True])
    assert len(handler._templates.plans) == 2
    assert len(store.snapshot.replies) == 0
    assert len(store.snapshot.replies.keyed) == 0


def test_plans_are_bounded_and_dropped_with_the_zones() -> None:
    handler, store = handler_for([True, True])
    for i in range(PLAN_MEMO + 10):
        for first in ("a", "b"):  # twice under each parent and in each kind of query
            data = query(f"{first}.p{i % 50}.tpl.test.", "A", 0, False, False, None, False,
                         False, i % 4096 * 16 + 1)
            handler.handle(data, False, "192.0.2.7")
    assert 0 < len(handler._templates.plans) <= PLAN_MEMO
    store.replace_zones({**ZONES3})
    data = query("c.p1.tpl.test.", "A", 0, False, False, None, False, False, 9)
    assert handler.handle(data, False, "192.0.2.7") == expected(data, [True, True])
    assert not handler._templates.plans


QUESTIONS = ["api.geo.test.", "cname.geo.test.", "v4only.geo.test.", "api.gw.test.",
             "fo.tpl.test.", "q.fo.tpl.test.", "nope.gw.test.", "x.wild.gw.test.", "gw.test.",
             "mail.tpl.test."]
networks = st.one_of(
    st.builds(lambda n: f"{n >> 16}.{n >> 8 & 255}.{n & 255}.0/24", st.integers(0, 2**24 - 1)),
    st.builds(lambda n: f"{n >> 8}.{n & 255}.0.0/16", st.integers(0, 2**16 - 1)),
    st.builds(lambda n: f"2001:db8:{n:x}::/48", st.integers(0, 0xFFFF)),
    st.sampled_from(["10.1.2.0/24", "10.1.0.0/20", "10.0.0.0/8", "0.0.0.0/0"]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(QUESTIONS), st.sampled_from(["A", "AAAA", "TXT", "MX"]),
       st.sampled_from([-1, 0]), st.booleans(), st.booleans(), st.booleans(),
       st.lists(st.tuples(st.integers(0, 2**60), networks, st.booleans(), st.booleans(),
                          st.integers(0, 65535)), min_size=3, max_size=12),
       st.lists(st.booleans(), min_size=2, max_size=2), st.sampled_from(["unit", "", "a-b"]))
@example("api.geo.test.", "A", 0, False, False, True,
         [(0, "10.1.2.0/24", False, False, 1), (5, "10.1.3.0/24", True, False, 2),
          (7, "10.9.9.0/24", True, True, 3), (9, "10.1.4.0/24", False, True, 4)],
         [True, True], "unit")
def test_known_questions_in_new_cases_and_networks_equal_the_full_path(
    qname: str, rdtype: str, edns: int, do: bool, nsid: bool, with_ecs: bool,
    asks: list[tuple[int, str, bool, bool, int]], health: list[bool], identity: str,
) -> None:
    """0x20 and ECS from ever new networks (a public resolver): whichever path answers
    (keyed, splice, a fold), the bytes are the full path's of a fresh handler."""
    handler, _store = handler_for(health, identity)
    for mask, network, rd, cd, qid in asks:
        data = query(flip_case(qname, mask), rdtype, edns, do, nsid,
                     network if with_ecs else None, rd, cd, qid)
        assert handler.handle(data, False, "192.0.2.7") == expected(data, health, identity)
    assert handler.stats.internal_errors == 0


def test_new_cases_and_networks_are_answered_by_a_fold() -> None:
    handler, store = handler_for([True, True])
    for i in range(300):
        cased = query(flip_case("api.gw.test.", i * 2654435761), "A", 0, False, False, None,
                      True, False, i)
        subnet = f"10.{i % 3}.{i}.0/24" if i < 256 else f"192.0.{i - 256}.0/24"
        ecs = query(flip_case("api.geo.test.", i), "A", 0, False, True, subnet, False,
                    bool(i & 1), i)
        for data in (cased, ecs):
            assert handler.handle(data, False, "192.0.2.7") == expected(data, [True, True])
    folds = store.snapshot.replies.folds
    assert len(folds) == 2
    assert sorted(folds.cuts) == [0, 3]
    assert len(store.snapshot.replies) < 10  # each new case and network seen once


def test_folds_are_bounded_and_go_with_the_keyed_generation() -> None:
    """A flood of distinct questions answered by key cannot grow the folds past
    FOLD_LIMIT, and a new keyed generation drops them."""
    replies = ReplyCache()
    scanned_for = {}
    for i in range(FOLD_LIMIT + 5):
        data = query(f"n{i}.gw.test.", "A", 0, False, False, None, False, False, 1)
        scanned = question_key(data, False)
        assert scanned is not None
        scanned_for[i] = scanned
        replies.remember_fold(data, scanned, (b"\x00" * 40, 0))
        assert len(replies.folds) <= FOLD_LIMIT
    replies.remember_entry(b"k", (b"", 0))
    replies.keyed = {str(i).encode(): (b"", 0) for i in range(50_000)}
    replies.remember_entry(b"k2", (b"", 0))  # a new generation
    assert len(replies.folds) == 0


def test_a_fold_takes_only_octets_that_differ_in_the_names_letter_case() -> None:
    """``bytes.lower`` folds every octet 0x41-0x5A, not only the name's: qtype 65 (HTTPS)
    folds to 97, so a fold made for one must not answer the other; nor an ECS address
    with bits set past SOURCE PREFIX-LENGTH (FORMERR, RFC 7871 section 7.1.1)."""
    replies = ReplyCache()
    typed = query("api.gw.test.", "TYPE97", 0, False, False, None, False, False, 1)
    scanned = question_key(typed, False)
    assert scanned is not None
    replies.remember_fold(typed, scanned, (typed, 0))
    assert replies.folds.fold(typed) is not None
    https = query("API.gw.test.", "HTTPS", 0, False, False, None, False, False, 1)
    assert https.lower()[4:] == typed.lower()[4:]
    assert replies.folds.fold(https) is None
    handler, _store = handler_for([True, True])
    for i in range(3):
        good = query("api.geo.test.", "A", 0, False, False, f"10.1.{16 * i}.0/20", False,
                     False, i)
        assert handler.handle(good, False, "192.0.2.7") == expected(good, [True, True])
    bad = good[:-1] + bytes((good[-1] | 1,))  # a bit past /20
    reply = handler.handle(bad, False, "192.0.2.7")
    assert reply == expected(bad, [True, True])
    assert reply is not None
    assert reply[3] & 15 == 1


def test_a_cookie_query_makes_no_fold() -> None:
    """A client cookie (RFC 7873) is new per client: a fold per cookie would be a fold per
    query of some clients, so such queries take the scan."""
    handler, store = handler_for([True, True])
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    for i in range(3):
        data = dns.message.make_query("API.gw.test.", "A", use_edns=0, options=[cookie])
        data.id = i
        wire = data.to_wire()
        assert handler.handle(wire, False, "192.0.2.7") == expected(wire, [True, True])
    assert len(store.snapshot.replies.folds) == 0


#: ECS networks by (family, SOURCE PREFIX-LENGTH), an address drawn per query: a public
#: resolver's clients.  None: no ECS.
PREFIXES = [None, (4, 24), (4, 20), (4, 0), (4, 32), (6, 48), (6, 56), (6, 67)]


def network(prefix: tuple[int, int], value: int) -> str:
    family, source = prefix
    if family == 4:
        host = (value & 0xFFFFFFFF) >> (32 - source) << (32 - source) if source else 0
        return f"{ipaddress.IPv4Address(host)}/{source}"
    host = (value << 64 | value) & (1 << 128) - 1
    host = host >> (128 - source) << (128 - source)
    return f"{ipaddress.IPv6Address(host)}/{source}"


def past_prefix(data: bytes, prefix: tuple[int, int] | None) -> bytes:
    """``data`` with a bit set past its ECS SOURCE PREFIX-LENGTH (FORMERR), when there is
    such a bit in its last octet; else ``data``."""
    if prefix is None or not prefix[1] & 7:
        return data
    return data[:-1] + bytes((data[-1] | 1,))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ANCHORS), st.sampled_from(TYPES), st.sampled_from([-1, 0]),
       st.sampled_from([512, 1232, 100, 0x4142]), st.booleans(), st.booleans(),
       st.sampled_from(PREFIXES),
       st.lists(st.tuples(firsts, st.integers(0, 2**60), st.integers(0, 2**64 - 1),
                          st.integers(0, 15), st.integers(0, 65535)), min_size=3, max_size=12),
       st.lists(st.booleans(), min_size=2, max_size=2), st.sampled_from(["unit", ""]))
@example("gw.test.", "A", 0, 1232, False, True, (4, 24),
         [("new1", 1, 1, 0, 1), ("nEw2", 2, 2, 1, 2), ("NeW3", 3, 3, 2, 3),
          ("ns1", 4, 4, 3, 4), ("new5", 5, 5, 0, 5), ("new6", 6, 6, 4, 6)], [True, True], "unit")
@example("gw.test.", "HTTPS", 0, 1232, False, False, (4, 24),
         [("a", 4, 1 << 8, 0, 1), ("b", 8, 2 << 8, 0, 2), ("c", 32, 3 << 8, 0, 3),
          ("d", 64, 4 << 8, 8, 4)],
         [True, True], "unit")
@example("wild.gw.test.", "TXT", 0, 1232, True, False, (4, 20),
         [("a", 1, 1, 0, 1), ("b", 2, 2, 0, 2), ("c", 3, 3, 4, 3), ("d", 4, 4, 0, 4)],
         [True, False], "")
def test_new_first_labels_in_new_cases_and_networks_equal_the_full_path(
    anchor: str, rdtype: str, edns: int, payload: int, do: bool, nsid: bool,
    prefix: tuple[int, int] | None, asks: list[tuple[str, int, int, int, int]],
    health: list[bool], identity: str,
) -> None:
    """A flood as a public resolver sends it (``template.CasedPlans``): a new first label
    each time under one parent, every query in its own letter case (0x20) and with its
    own ECS network of one family and prefix, some with a bit past the prefix: every
    reply is the full path's of a fresh handler, counted as it counts it (``flags``: RD, CD,
    a bad address, and for HTTPS qtype 97, which ``lower`` folds it to)."""
    handler, _store = handler_for(health, identity)
    for first, mask, value, flags, qid in asks:
        name = flip_case(f"{first}.{anchor}" if anchor != "." else f"{first}.", mask)
        if len(name) > 250:
            continue
        subnet = network(prefix, value) if prefix is not None else None
        asked = "TYPE97" if rdtype == "HTTPS" and flags & 8 else rdtype  # 65 folds to 97
        data = query(name, asked, edns, do, nsid, subnet, bool(flags & 1), bool(flags & 2),
                     qid, payload)
        if flags & 4 and edns >= 0:
            data = past_prefix(data, prefix)
        reply, counted = full(data, health, identity)
        assert handler.handle(data, False, "192.0.2.7") == reply
        assert handler.stats.keys[handler.slot] == counted
    assert handler.stats.internal_errors == 0


def full(data: bytes, health: list[bool], identity: str) -> tuple[bytes, tuple[str, str, str]]:
    """The full path's reply to ``data`` and the counter it counts it under."""
    store = fresh_store(health)
    store.replace_zones(ZONES3)
    fresh = Handler(lambda: store.snapshot, identity=identity)
    reply = fresh._full(data, False, store.snapshot, question_key(data, False), "192.0.2.7")
    assert reply is not None
    return reply, fresh.stats.keys[fresh.slot]


def test_a_flood_in_new_cases_and_networks_is_answered_by_a_cased_plan() -> None:
    """The second query under a parent in a kind of query makes the plan, whatever its
    letter case and network; the rest are answered by it, and no cache grows."""
    handler, store = handler_for([True, True])
    for i in range(200):
        for parent, rdtype in (("gw.test.", "A"), ("wild.gw.test.", "TXT")):
            data = query(flip_case(f"n{i}x.{parent}", i * 2654435761), rdtype, 0, False, True,
                         f"{i % 200 + 1}.{i}.7.0/24", False, False, i)
            assert handler.handle(data, False, "192.0.2.7") == expected(data, [True, True])
    assert len(handler._templates.cased.plans) == 2
    assert handler._templates.cased.cuts == [3]
    assert not handler._templates.plans
    assert handler.stats.paths[PLAN] == 2 * 200 - 6  # a lineage, then two to make it
    assert len(store.snapshot.replies) == 0
    assert len(store.snapshot.replies.keyed) == 0


def test_cased_plans_are_bounded_and_dropped_with_the_zones() -> None:
    handler, store = handler_for([True, True])
    for i in range(CASED_PLAN_MEMO + 10):
        for first in ("a.p", "b.P", "c.p"):  # a lineage, then the parent in two cases
            data = query(f"{first}{i}.tpl.test.", "A", 0, False, False, None, False,
                         False, i % 4096 * 16 + 1)
            handler.handle(data, False, "192.0.2.7")
    assert 0 < len(handler._templates.cased.plans) <= CASED_PLAN_MEMO
    store.replace_zones({**ZONES3})
    data = query("c.p1.tpl.test.", "A", 0, False, False, None, False, False, 9)
    assert handler.handle(data, False, "192.0.2.7") == expected(data, [True, True])
    assert not handler._templates.cased.plans
