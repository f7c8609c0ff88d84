"""shape.py and template.py: every template reply is the full path's reply, byte for byte."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.dns.replycache import question_key
from dnsfail.dns.shape import NODATA, NXDOMAIN, REFUSED, WILDCARD, ZoneIndex, classify
from dnsfail.model import ProbeSpec, Zone, pool_values
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone
from tests.dns.test_handler import ZONES, flip_case

TPL_ZONE = """\
'':
- octodns:
    dnsfail:
      soa:
        rname: hostmaster@tpl.test
  type: NS
  values:
  - ns1.tpl.test.
  - ns.elsewhere.example.
'*':
  type: A
  value: 192.0.2.50
'*.big':
  type: TXT
  values:
  - BIG_B
  - BIG_C
  - BIG_D
'*.fo':
  dynamic:
    pools:
      sites:
        values:
        - value: 192.0.2.71
        - value: 192.0.2.72
    rules:
    - pool: sites
  octodns:
    healthcheck:
      port: 8443
      protocol: TCP
  type: A
  values:
  - 192.0.2.99
'*.mx':
  type: MX
  values:
  - exchange: mail.tpl.test.
    preference: 10
  - exchange: mail.elsewhere.example.
    preference: 20
'*.self':
  type: MX
  value:
    exchange: mail.x.self.tpl.test.
    preference: 1
'*.srv':
  type: SRV
  value:
    port: 443
    priority: 1
    target: api.tpl.test.
    weight: 1
'*.txt':
  type: TXT
  value: synthesized
api:
  type: A
  value: 192.0.2.10
deleg:
  type: NS
  values:
  - ns.deleg.tpl.test.
  - ns.elsewhere.example.
fo:
  type: A
  value: 192.0.2.11
mail:
- type: A
  value: 192.0.2.25
- type: AAAA
  value: 2001:db8::25
ns.deleg:
  type: A
  value: 192.0.2.53
ns1:
  type: A
  value: 192.0.2.1
x.y.ent:
  type: A
  value: 192.0.2.77
""".replace("BIG_B", "b" * 200).replace("BIG_C", "c" * 200).replace("BIG_D", "d" * 200)

ZONES2: dict[str, Zone] = {
    **ZONES, "tpl.test.": parse_zone(TPL_ZONE, "tpl.test.yaml", "tpl.test.", serial=7),
}
SPECS = sorted({v.probe for _, _, _, v in pool_values(ZONES2) if v.probe is not None},
               key=lambda s: s.label)

#: Where the random labels go: every shape and every edge of it.
ANCHORS = [
    "gw.test.", "wild.gw.test.", "a.wild.gw.test.", "*.wild.gw.test.", "ent.gw.test.",
    "b.ent.gw.test.", "a.b.ent.gw.test.", "team.gw.test.", "ns.team.gw.test.", "ns1.gw.test.",
    "ops.gw.test.", "cn.gw.test.", "api.gw.test.", "tpl.test.", "y.ent.tpl.test.",
    "mx.tpl.test.", "srv.tpl.test.", "txt.tpl.test.", "self.tpl.test.", "x.self.tpl.test.",
    "fo.tpl.test.", "big.tpl.test.", "deleg.tpl.test.", "mail.tpl.test.",
    "hostmaster.tpl.test.", "api.tpl.test.",
    "example.org.", "test.", ".",
]
TYPES = ["A", "AAAA", "TXT", "MX", "NS", "SRV", "CNAME", "SOA", "DS", "ANY", "PTR", "CAA",
         "HTTPS", "TYPE999", "AXFR", "OPT"]
labels = st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_*", min_size=1, max_size=20),
                  max_size=3)
ecs = st.one_of(
    st.none(),
    st.builds(lambda a, p: f"{a}/{p}", st.sampled_from(["10.1.2.0", "192.0.2.0", "0.0.0.0"]),
              st.sampled_from([0, 8, 24, 32])),
    st.builds(lambda p: f"2001:db8::/{p}", st.sampled_from([0, 32, 48, 56, 128])),
)


def make(name: str, rdtype: str, mask: int, edns: int, payload: int, do: bool, nsid: bool,
         subnet: str | None, rd: bool, cd: bool, qid: int) -> bytes:
    options: list[dns.edns.Option] = []
    if subnet is not None and edns >= 0:
        options.append(dns.edns.ECSOption.from_text(subnet))
    if nsid and edns >= 0:
        options.append(dns.edns.GenericOption(dns.edns.NSID, b""))
    message = dns.message.make_query(flip_case(name, mask), rdtype, use_edns=edns,
                                     payload=payload, want_dnssec=do, options=options)
    message.id = qid
    message.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return message.to_wire()


def full_path(data: bytes, tcp: bool, identity: str, health: list[bool] | None = None) -> bytes:
    """The reply of the full path (parse, resolve, render) of a handler that has seen nothing."""
    store = fresh_store(health)
    handler = Handler(lambda: store.snapshot, identity=identity)
    reply = handler._full(data, tcp, store.snapshot, question_key(data, tcp), "192.0.2.7")
    assert reply is not None
    return reply


def fresh_store(health: list[bool] | None) -> Store:
    store = Store(ZONES2)
    for spec, up in zip(SPECS, health or [], strict=False):
        for _ in range(spec.rise if up else spec.fall):
            store.observe(spec, up, "test", 0.001, 1.0)
    return store


def name_of(prefix: list[str], anchor: str) -> str:
    name = ".".join([*prefix, anchor.rstrip(".")]).strip(".") + "."
    return name if len(name) < 250 else anchor


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labels, st.sampled_from(ANCHORS), st.sampled_from(TYPES), st.integers(0, 2**60),
       st.sampled_from([-1, 0]), st.sampled_from([512, 1232, 4096, 100]), st.booleans(),
       st.booleans(), ecs, st.booleans(), st.booleans(), st.integers(0, 65535), st.booleans(),
       st.sampled_from(["unit", ""]), st.lists(st.booleans(), min_size=2, max_size=2))
@example(["nope"], "gw.test.", "A", 0, 0, 1232, True, True, "10.1.2.0/24", True, True, 1, False,
         "unit", [True, False])
def test_every_fast_reply_equals_the_full_paths(
    prefix: list[str], anchor: str, rdtype: str, mask: int, edns: int, payload: int, do: bool,
    nsid: bool, subnet: str | None, rd: bool, cd: bool, qid: int, tcp: bool, identity: str,
    health: list[bool],
) -> None:
    """New names, cases, EDNS and ECS variants and health states: whichever path answers
    (template, splice, caches), the bytes are those of the full path of a fresh handler."""
    name = name_of(prefix, anchor)
    data = make(name, rdtype, mask, edns, payload, do, nsid, subnet, rd, cd, qid)
    store = fresh_store(health)
    handler = Handler(lambda: store.snapshot, identity=identity)
    for _ in range(3):  # the first answer, then from whatever the first one left behind
        assert handler.handle(data, tcp, "192.0.2.7") == full_path(data, tcp, identity, health)
    other = make(name, rdtype, ~mask, edns, payload, do, nsid, subnet, rd, cd, qid ^ 0x5A5A)
    assert handler.handle(other, tcp, "192.0.2.7") == full_path(other, tcp, identity, health)
    assert handler.stats.internal_errors == 0


#: First labels for siblings: plain, cased, and ones that ``labels_to_text`` escapes (a
#: dot, a space, a high octet, a backslash), which no template may answer.
sibling_labels = st.one_of(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_*", min_size=1, max_size=12),
    st.sampled_from(["a\\.b", "x\\032y", "\\200x", "b\\\\s", "*", "ns1", "api", "deleg",
                     "www", "mail", "tpl", "gw", "y", "ent", "x"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(labels, sibling_labels, st.sampled_from(ANCHORS),
                          st.sampled_from(TYPES), st.integers(0, 2**60), st.sampled_from([-1, 0]),
                          ecs, st.booleans()), min_size=1, max_size=16),
       st.lists(st.booleans(), min_size=2, max_size=2))
def test_siblings_under_one_handler_equal_the_full_path(
    asks: list[tuple[list[str], str, str, str, int, int, str | None, bool]], health: list[bool],
) -> None:
    """One handler asked many names that share parents (its memo of parent names, and of
    the template by qtype under each, is filled by one name and used by the next): every
    reply is the full path's of a fresh handler, whatever was asked before."""
    store = fresh_store(health)
    handler = Handler(lambda: store.snapshot, identity="unit")
    for prefix, first, anchor, rdtype, mask, edns, subnet, tcp in asks + asks[::-1]:
        name = name_of([first, *prefix], anchor)
        data = make(name, rdtype, mask, edns, 1232, False, False, subnet, False, False, 7)
        assert handler.handle(data, tcp, "192.0.2.7") == full_path(data, tcp, "unit", health)
    assert handler.stats.internal_errors == 0


def test_the_parent_memo_is_bounded_and_dropped_with_the_zones() -> None:
    """A flood that varies the parent names too cannot grow the memo past PARENT_MEMO; a
    reload (new zone objects) starts it again."""
    from dnsfail.dns.template import PARENT_MEMO

    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot, identity="unit")
    for i in range(PARENT_MEMO + 50):
        data = make(f"x.p{i}.tpl.test.", "A", 0, 0, 1232, False, False, None, False, False, i)
        assert handler.handle(data, False, "192.0.2.7") == full_path(data, False, "unit")
        assert len(handler._templates.lineages) <= PARENT_MEMO
    assert handler._templates.lineages
    store.replace_zones({**ZONES2, "tpl.test.": parse_zone(TPL_ZONE, "t.yaml", "tpl.test.",
                                                           serial=8)})
    data = make("new.tpl.test.", "A", 0, 0, 1232, False, False, None, False, False, 1)
    handler.handle(data, False, "192.0.2.7")
    assert list(handler._templates.lineages) == [b"\x03tpl\x04test\x00"]


def index(origin: str) -> ZoneIndex:
    return ZoneIndex(ZONES2[origin])


@pytest.mark.parametrize(
    ("qname", "qtype", "shape"),
    [
        ("nope.gw.test.", 1, (NXDOMAIN, "gw.test.")),
        ("x.a.b.ent.gw.test.", 1, (NXDOMAIN, "gw.test.")),  # below a leaf: NXDOMAIN
        ("ent.gw.test.", 1, (NODATA, "gw.test.")),  # an empty non-terminal (RFC 4592 2.2.2)
        ("b.ent.gw.test.", 28, (NODATA, "gw.test.")),
        ("ent.gw.test.", 2, (NODATA, "gw.test.")),  # qname minimisation asks NS of an ENT
        ("api.gw.test.", 16, (NODATA, "gw.test.")),  # the name exists, the type does not
        ("api.gw.test.", 65, (NODATA, "gw.test.")),  # a type we do not know
        ("api.gw.test.", 1, None),  # data: the full path and its caches
        ("x.wild.gw.test.", 16, (WILDCARD, "*.wild.gw.test.")),
        ("a.b.c.wild.gw.test.", 16, (WILDCARD, "*.wild.gw.test.")),  # RFC 4592 3.3.1
        ("x.wild.gw.test.", 1, (NODATA, "gw.test.")),  # the wildcard lacks the type
        ("x.*.wild.gw.test.", 16, (NXDOMAIN, "gw.test.")),  # '*' exists: no synthesis below
        ("*.wild.gw.test.", 16, None),  # the wildcard's own name: plain data
        ("wild.gw.test.", 16, (NODATA, "gw.test.")),  # the wildcard's parent is an ENT
        ("x.cn.gw.test.", 1, None),  # a wildcard CNAME: the full path
        ("x.team.gw.test.", 1, None),  # below a delegation: a referral
        ("team.gw.test.", 43, None),  # DS at the cut
        ("team.gw.test.", 1, None),
        ("x.ns1.gw.test.", 1, None),  # the SOA's MNAME would compress against the question
        ("ops.gw.test.", 1, None),  # so would its RNAME
        ("nope.gw.test.", 255, None),  # ANY (RFC 8482)
        ("nope.gw.test.", 252, None),  # AXFR
        ("nope.gw.test.", 250, None),  # TSIG: NOTIMP
        ("gw.test.", 1, None),  # the apex ALIAS
        ("gw.test.", 99, (NODATA, "gw.test.")),
        ("a.b.tpl.test.", 1, (WILDCARD, "*.tpl.test.")),  # an apex wildcard
        ("a.y.ent.tpl.test.", 1, (NXDOMAIN, "tpl.test.")),  # closest encloser y.ent, no '*'
        ("y.ent.tpl.test.", 1, (NODATA, "tpl.test.")),
        ("q.fo.tpl.test.", 1, None),  # a dynamic (health-checked) record under a wildcard
        ("q.fo.tpl.test.", 16, (NODATA, "tpl.test.")),
        ("q.hostmaster.tpl.test.", 1, None),  # RNAME does not exist, but is mentioned
    ],
)
def test_shapes(qname: str, qtype: int, shape: tuple[int, str] | None) -> None:
    origin = "tpl.test." if qname.endswith("tpl.test.") else "gw.test."
    assert classify(index(origin), qname, qtype) == shape


def ask(handler: Handler, name: str, rdtype: str = "A", **kwargs: object) -> dns.message.Message:
    reply = handler.handle(dns.message.make_query(name, rdtype, **kwargs).to_wire())  # type: ignore[arg-type]
    assert reply is not None
    return dns.message.from_wire(reply)


def test_templates_answer_new_names_without_growing_the_caches() -> None:
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot, identity="unit")
    for i in range(300):
        for name, rdtype, rcode in [
            (f"n{i}.gw.test.", "A", dns.rcode.NXDOMAIN),
            (f"n{i}.wild.gw.test.", "TXT", dns.rcode.NOERROR),
            (f"n{i}.example.org.", "A", dns.rcode.REFUSED),
            (f"n{i}.mx.tpl.test.", "MX", dns.rcode.NOERROR),
        ]:
            assert ask(handler, name, rdtype, use_edns=0).rcode() == rcode
    replies = store.snapshot.replies
    assert len(replies) == 0
    assert len(replies.keyed) == 0
    assert handler.stats.internal_errors == 0
    # The counters see each answer under its zone, qtype and rcode.
    totals = {key: handler.stats.counts[slot] for key, slot in handler.stats.slots.items()}
    assert totals[("gw.test.", "A", "NXDOMAIN")] == 300
    assert totals[("tpl.test.", "MX", "NOERROR")] == 300
    assert totals[("", "A", "REFUSED")] == 300


def test_a_repeated_nonexistent_name_is_kept_on_its_second_sight() -> None:
    """Clients repeat NXDOMAINs (search-path junk): the second identical query admits the
    template's reply to the exact-bytes cache, the third is answered from it."""
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot, identity="unit")
    query = dns.message.make_query("junk.gw.test.", "A", use_edns=0)
    wire = query.to_wire()
    first = handler.handle(wire)
    assert len(store.snapshot.replies) == 0  # seen once: only its doorkeeper slot
    assert handler.handle(wire) == first
    assert store.snapshot.replies.get(wire[2:]) is not None
    third = handler.handle(b"\x12\x34" + wire[2:])
    assert third == b"\x12\x34" + first[2:]
    assert dns.message.from_wire(third).rcode() == dns.rcode.NXDOMAIN


def test_wildcard_synthesis_names_the_question() -> None:
    """RFC 4592 section 3.3.1: the answer's owner is the question's name, in its case."""
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot)
    reply = ask(handler, "Some.Deep.MX.tpl.test.", "MX")
    [rrset] = reply.answer
    assert rrset.name.to_text() == "Some.Deep.MX.tpl.test."
    assert sorted(rd.exchange.to_text() for rd in rrset) == ["mail.elsewhere.example.",
                                                              "mail.tpl.test."]
    assert [r.name.to_text() for r in reply.additional] == ["mail.tpl.test."] * 2


def test_template_edns_variants() -> None:
    """DO echoed (RFC 3225 section 3), NSID only when asked (RFC 5001), ECS echoed with
    scope 0 (RFC 7871 section 7.2.1), no OPT without EDNS, the SOA at its negative TTL."""
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot, identity="unit")
    plain = ask(handler, "nope.gw.test.")
    assert plain.edns < 0
    assert [r.ttl for r in plain.authority] == [30]  # min(SOA TTL 3600, MINIMUM 30)
    signed = ask(handler, "nope.gw.test.", use_edns=0, want_dnssec=True,
                 options=[dns.edns.GenericOption(dns.edns.NSID, b""),
                          dns.edns.ECSOption("198.51.100.0", 24)])
    assert signed.ednsflags & dns.flags.DO
    [ecs_option, nsid] = signed.options
    assert isinstance(ecs_option, dns.edns.ECSOption)
    assert (ecs_option.address, ecs_option.srclen, ecs_option.scopelen) == (
        "198.51.100.0", 24, 0)
    assert nsid.to_wire() == b"unit"


def test_truncation_is_left_to_the_full_path() -> None:
    """A template reply longer than the client's limit goes the full path, which sets TC
    (RFC 1035 section 4.2.1) or drops additional records (RFC 6891 section 7)."""
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot)
    for payload in (-1, 512, 1232):
        data = dns.message.make_query("x.big.tpl.test.", "TXT", use_edns=payload > 0,
                                      payload=max(payload, 512)).to_wire()
        reply = handler.handle(data)
        assert reply is not None
        assert reply == full_path(data, False, "dnsfail")
        assert bool(reply[2] & 0x02) is (payload < 1232), "TC set when it does not fit"
        assert len(reply) <= max(payload, 512)


def test_a_malformed_ecs_option_still_gets_formerr() -> None:
    """Bits set past SOURCE PREFIX-LENGTH (RFC 7871 section 7.1.1): the template path must
    not answer it."""
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot)
    option = dns.edns.GenericOption(dns.edns.ECS, struct.pack("!HBB", 1, 20, 0) + b"\x0a\x01\xff")
    assert ask(handler, "nope.gw.test.", use_edns=0, options=[option]).rcode() == dns.rcode.FORMERR


def test_a_reload_drops_the_old_zone_templates() -> None:
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot)
    assert ask(handler, "n.gw.test.").rcode() == dns.rcode.NXDOMAIN
    changed = ZONES2["gw.test."]
    soa = changed.soa.rdatas[0]
    from dataclasses import replace
    newer = replace(changed, soa=changed.soa.__class__(
        changed.soa.name, changed.soa.rtype, 5, (replace(soa, serial=soa.serial + 1),)))  # type: ignore[type-var]
    store.replace_zones({**ZONES2, "gw.test.": newer})
    [soa_rrset] = ask(handler, "m.gw.test.").authority
    assert soa_rrset.ttl == 5
    assert soa_rrset[0].serial == soa.serial + 1  # type: ignore[attr-defined]


def test_refused_covers_every_type_outside_our_zones() -> None:
    assert classify(index("gw.test."), "gw.test.", dns.rdatatype.A) is None
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot)
    for rdtype in ("A", "ANY", "AXFR"):
        data = dns.message.make_query("x.example.org.", rdtype).to_wire()
        assert handler.handle(data) == full_path(data, False, "dnsfail")
    assert REFUSED == 3


def test_probe_specs_cover_the_wildcard_failover() -> None:
    """The health property test above sets the zone's two probe targets."""
    assert len(SPECS) == 2
    assert all(isinstance(spec, ProbeSpec) for spec in SPECS)


def test_a_wildcard_whose_data_names_a_child_of_its_encloser_takes_the_full_path() -> None:
    """``*.self`` has MX ``mail.x.self.tpl.test.``: for ``a.x.self.tpl.test.`` the full path
    compresses ``x.self.tpl.test.`` against the question, which no template can know."""
    store = Store(ZONES2)
    handler = Handler(lambda: store.snapshot)
    for name in ("a.x.self.tpl.test.", "x.self.tpl.test.", "q.self.tpl.test."):
        data = dns.message.make_query(name, "MX").to_wire()
        assert handler.handle(data) == full_path(data, False, "dnsfail")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.sampled_from([16, 20, 24, 32]),
                          st.sampled_from(["api", "cname", "v4only"]), st.booleans(),
                          st.booleans(), st.booleans()), min_size=1, max_size=12),
       st.sampled_from(["unit", "", "a-much-longer-identity"]))
def test_new_ecs_networks_spliced_equal_the_full_path(
    asks: list[tuple[int, int, str, bool, bool, bool]], identity: str,
) -> None:
    """A new network of a known block is spliced without a parse: with and without NSID and
    DO, over UDP and TCP, the bytes are the full path's."""
    from tests.dns.test_handler import GEO_ZONE

    zones = {"geo.test.": parse_zone(GEO_ZONE, "geo.test.yaml", "geo.test.", serial=1)}
    store = Store(zones)
    handler = Handler(lambda: store.snapshot, identity=identity)
    for value, prefix, name, nsid, do, tcp in asks + asks:
        network = (value >> (32 - prefix)) << (32 - prefix)
        subnet = f"{network >> 24}.{network >> 16 & 255}.{network >> 8 & 255}.{network & 255}"
        options: list[dns.edns.Option] = [dns.edns.ECSOption(subnet, prefix)]
        if nsid:
            options.append(dns.edns.GenericOption(dns.edns.NSID, b""))
        data = dns.message.make_query(f"{name}.geo.test.", "A", use_edns=0, want_dnssec=do,
                                      options=options).to_wire()
        fresh_store = Store(zones)
        fresh = Handler(lambda s=fresh_store: s.snapshot, identity=identity)  # type: ignore[misc]
        expected = fresh._full(data, tcp, fresh_store.snapshot, question_key(data, tcp), "")
        assert handler.handle(data, tcp, "192.0.2.7") == expected
    assert handler.stats.internal_errors == 0


@given(st.lists(st.binary(min_size=1, max_size=63), max_size=4))
@example([b"a.b", b"c"])
@example([b"A-b_*", b"\x80"])
def test_qname_text_is_labels_to_text_or_none(labels: list[bytes]) -> None:
    from dnsfail.dns.query import labels_to_text
    from dnsfail.dns.template import qname_text

    low = [label.lower() for label in labels]
    text = qname_text(b"".join(bytes((len(x),)) + x for x in low) + b"\x00")
    assert text is None or text == labels_to_text(low)
    if all(x.isalnum() for x in low):
        assert text is not None


def test_the_index_of_a_packed_zone_never_walks_its_packed_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A million packed addresses must not cost a million steps at a zone's first miss."""
    from dnsfail.zonefile.packed import PackedStore, ZoneNodes
    text = ("'':\n  type: NS\n  value: ns1.p.test.\n"
            "'*.w':\n  type: A\n  value: 192.0.2.9\n"
            + "".join(f"h{i}:\n  type: A\n  value: 192.0.2.{i % 250}\n" for i in range(300)))
    zone = parse_zone(text, "z.yaml", "p.test.", serial=1)
    assert isinstance(zone.nodes, ZoneNodes)
    assert zone.nodes.packed.owners >= 300

    def walked(self: PackedStore) -> object:
        raise AssertionError("the packed names were walked")

    monkeypatch.setattr(PackedStore, "entries", walked)
    index = ZoneIndex(zone)
    assert index.wildcards == frozenset({"w.p.test."})
    assert classify(index, "x.w.p.test.", 1) == (WILDCARD, "*.w.p.test.")
    assert classify(index, "nope.p.test.", 1) == (NXDOMAIN, "p.test.")
