"""Flood denial's NSEC chain (``dnssec.chain``) and its switch (``dnssec.flood``), pure:
canonical order (RFC 4034 6.1), the chain's owners and bitmaps (ENTs, delegations,
wildcards, dynamic names), the NXDOMAIN proof of RFC 4035 3.1.3.2 checked by a checker
written here on dnspython's names (its canonical order is not ours), for any name, and the
budget's one-second windows.  Real validators judge it in
``tests/integration/test_dnssec_flood.py``."""

from __future__ import annotations

import logging
import random

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.dns.stats import CHAIN, SIGNED
from dnsfail.dnssec import keys
from dnsfail.dnssec.answer import SignedZone, signed_zone
from dnsfail.dnssec.chain import Chain, build, canonical_key, owners, text_key
from dnsfail.dnssec.flood import LOG_INTERVAL, Flood
from dnsfail.dnssec.path import SignedPath
from dnsfail.dnssec.records import name_wire
from dnsfail.model import RRType
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone
from tests.dns import test_template as tpl
from tests.dnssec.checker import validate

ORIGIN = "c.test."
ZONE_TEXT = """\
'':
  type: NS
  values: [ns1.c.test.]
'*.wild':
  type: TXT
  value: w
a.b.ent:
  type: A
  value: 192.0.2.7
api:
  dynamic:
    pools:
      one: {values: [{value: 192.0.2.1}]}
    rules:
    - pool: one
  octodns:
    healthcheck: {port: 8443, protocol: TCP}
  type: A
  values: [192.0.2.9]
ns1:
  type: A
  value: 192.0.2.53
sec:
- type: DS
  values:
  - algorithm: 13
    digest: 39BC373700000000000000000000000000000000000000000000000000000000
    digest_type: 2
    key_tag: 1234
- type: NS
  values: [ns.sec.c.test.]
- type: A
  value: 192.0.2.60
ns.sec:
  type: A
  value: 192.0.2.61
open:
- type: NS
  values: [ns.open.c.test.]
- type: A
  value: 192.0.2.62
"""


@pytest.fixture(scope="module")
def zone() -> object:
    return parse_zone(ZONE_TEXT, "c.test.yaml", ORIGIN, serial=1)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SignedZone]:
    folder = tmp_path_factory.mktemp("chainkeys")
    for origin in ("gw.test", "tpl.test", "c.test"):
        keys.generate(origin, str(folder))
    return {z: signed_zone(z, k) for z, k in keys.load_keys(str(folder)).items()}


def test_canonical_order_is_rfc_4034_section_6_1s() -> None:
    expected = ["example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.",
                "zABC.a.EXAMPLE.", "z.example.", "\\001.z.example.", "*.z.example.",
                "\\200.z.example."]
    shuffled = expected[:]
    random.Random(4).shuffle(shuffled)
    assert sorted(shuffled, key=lambda n: canonical_key(name_wire(n))) == expected


def test_the_chain_holds_every_name_with_data_and_nothing_below_a_cut(zone: object) -> None:
    chain = build(zone)  # type: ignore[arg-type]
    assert chain is not None
    got = [dns.name.from_wire(w, 0)[0].to_text() for w in chain.wires]
    # canonical order; ENTs (ent, b.ent) own nothing; glue below cuts (ns.sec) is left out
    assert got == ["c.test.", "api.c.test.", "a.b.ent.c.test.", "ns1.c.test.", "open.c.test.",
                   "sec.c.test.", "*.wild.c.test."]
    assert sorted(owners(zone)) == sorted(got)  # type: ignore[arg-type]


def _nsec(chain: Chain, name: str) -> tuple[str, set[str]]:
    i = chain.wires.index(name_wire(name))
    record = chain.records[i]
    message = dns.message.from_wire(b"\x00\x00\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00" + record)
    (rrset,) = message.answer
    rd = rrset[0]
    types = {dns.rdatatype.to_text(t) for w, bits in rd.windows for k, o in enumerate(bits)
             for b in range(8) if o & (0x80 >> b) for t in [w * 256 + k * 8 + b]}
    return rd.next.to_text(), types


@pytest.mark.parametrize(("owner", "following", "types"), [
    ("c.test.", "api.c.test.", {"NS", "SOA", "RRSIG", "NSEC", "DNSKEY", "CDS", "CDNSKEY"}),
    ("api.c.test.", "a.b.ent.c.test.", {"A", "RRSIG", "NSEC"}),  # dynamic: listed always
    ("a.b.ent.c.test.", "ns1.c.test.", {"A", "RRSIG", "NSEC"}),
    ("open.c.test.", "sec.c.test.", {"NS", "RRSIG", "NSEC"}),  # insecure delegation
    ("sec.c.test.", "*.wild.c.test.", {"NS", "DS", "RRSIG", "NSEC"}),  # no glue A (RFC 4035 2.3)
    ("*.wild.c.test.", "c.test.", {"TXT", "RRSIG", "NSEC"}),  # the last wraps to the apex
])
def test_each_nsec_names_the_next_owner_and_the_truth(zone: object, owner: str,
                                                      following: str, types: set[str]) -> None:
    chain = build(zone)  # type: ignore[arg-type]
    assert chain is not None
    assert _nsec(chain, owner) == (following, types)


@pytest.mark.parametrize(("qname", "proof"), [
    # covered by the apex NSEC (next api), whose wildcard *.c.test is covered by it too
    ("aa.c.test.", ["c.test."]),
    # below the ENT b.ent: closest encloser b.ent.c.test, its wildcard before a.b.ent
    ("x.b.ent.c.test.", ["a.b.ent.c.test.", "api.c.test."]),
    ("ent2.c.test.", ["a.b.ent.c.test.", "c.test."]),
    ("zzz.c.test.", ["*.wild.c.test.", "c.test."]),
    ("b.ns1.c.test.", ["ns1.c.test."]),  # encloser ns1: *.ns1 covered by ns1's NSEC
])
def test_the_nxdomain_proof(zone: object, qname: str, proof: list[str]) -> None:
    chain = build(zone)  # type: ignore[arg-type]
    assert chain is not None
    found = chain.proof(canonical_key(name_wire(qname)))
    assert found is not None
    assert [dns.name.from_wire(chain.wires[i], 0)[0].to_text() for i in found] == proof


def test_a_compact_referral_lists_no_glue_at_the_cut(zone: object,
                                                     signed: dict[str, SignedZone]) -> None:
    """RFC 4035 2.3: the insecure delegation's NSEC (compact denial, budget off) and the
    DS NODATA at it list NS, RRSIG and NSEC, not the A the parent holds as glue."""
    store = Store({ORIGIN: zone})  # type: ignore[dict-item]
    handler = Handler(lambda: store.snapshot, identity="unit",
                      signed=SignedPath({ORIGIN: signed[ORIGIN]}))
    for rdtype in ("A", "DS"):
        reply = ask(handler, "www.open.c.test." if rdtype == "A" else "open.c.test.", rdtype)
        (nsec,) = [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
        assert _nsec_types(nsec)[1] == {"NS", "RRSIG", "NSEC"}


def test_no_proof_for_a_name_that_exists_or_a_covering_wildcard(zone: object) -> None:
    chain = build(zone)  # type: ignore[arg-type]
    assert chain is not None
    assert chain.proof(text_key("api.c.test.")) is None
    assert chain.proof(text_key("x.wild.c.test.")) is None  # *.wild exists: not NXDOMAIN


def test_a_zone_over_the_limit_builds_no_chain(zone: object) -> None:
    assert build(zone, limit=3) is None  # type: ignore[arg-type]
    assert build(zone, limit=7) is not None  # type: ignore[arg-type]


# --- the NXDOMAIN proof as a validator checks it (RFC 4035 section 5.4) ---------------------


def covers(owner: dns.name.Name, following: dns.name.Name, name: dns.name.Name) -> bool:
    """Whether an NSEC owner -> following proves ``name`` does not exist (dnspython's
    name order is canonical: RFC 4034 6.1)."""
    if following.is_subdomain(name):
        return False  # name is an empty non-terminal: it exists
    if owner < following:
        return owner < name < following
    return name > owner or name < following  # the last NSEC, next name the apex


def check_nxdomain(reply: dns.message.Message, qname: str, signed: SignedZone) -> None:
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert validate(reply, signed) >= 2  # SOA, NSEC(s): every signature valid
    name = dns.name.from_text(qname)
    nsecs = [(r.name, r[0].next) for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
    covering = [(o, n) for o, n in nsecs if covers(o, n, name)]
    assert covering, f"nothing covers {qname}: {nsecs}"
    owner, following = covering[0]
    # the closest encloser: the longer common ancestor with the owner or the next name
    shared = max(name.fullcompare(owner)[2], name.fullcompare(following)[2])
    wildcard = dns.name.Name((b"*", *name.labels[-shared:]))
    assert any(covers(o, n, wildcard) for o, n in nsecs), f"no NSEC covers {wildcard}"


def ask(handler: Handler, qname: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, want_dnssec=True)
    reply = handler.handle(query.to_wire(), False, "192.0.2.7")
    assert reply is not None
    return dns.message.from_wire(reply)


def chained_handler(signed: dict[str, SignedZone], budget: int | None = 0) -> Handler:
    store = Store({**tpl.ZONES2})
    mine = {z: signed_zone(z, s.signer.keys) for z, s in signed.items() if z != ORIGIN}
    return Handler(lambda: store.snapshot, identity="unit",
                   signed=SignedPath(mine, flood_budget=budget))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tpl.labels, st.sampled_from(tpl.ANCHORS), st.sampled_from(["A", "AAAA", "TXT", "MX"]))
def test_any_nonexistent_name_gets_a_proof_validators_accept(
        signed: dict[str, SignedZone], labels: list[str], anchor: str, rdtype: str) -> None:
    handler = chained_handler(signed)
    qname = ".".join([*labels, anchor]) if labels else anchor
    if not qname.endswith((".gw.test.", ".tpl.test.")) or len(name_wire(qname)) > 255:
        return  # not in a signed zone
    reply = ask(handler, qname, rdtype)
    origin = "tpl.test." if qname.endswith("tpl.test.") else "gw.test."
    compact = [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC
               and r[0].next.to_text().startswith("\\000.")]
    if reply.rcode() == dns.rcode.NXDOMAIN:
        check_nxdomain(reply, qname, handler.signed.zones[origin])  # type: ignore[union-attr]
        assert not compact
        # every covering NSEC: owner < name < next in canonical order
        name = dns.name.from_text(qname)
        assert any(r.name < name and (name < r[0].next or r[0].next.to_text() == origin)
                   for r in reply.authority if r.rdtype == dns.rdatatype.NSEC)


def test_chain_mode_counts_its_own_path_and_signs_once_per_owner(
        signed: dict[str, SignedZone]) -> None:
    handler = chained_handler(signed)
    path = handler.signed
    assert isinstance(path, SignedPath)
    for i in range(200):
        reply = ask(handler, f"n{i}.gw.test.")
        check_nxdomain(reply, f"n{i}.gw.test.", path.zones["gw.test."])
    signer = path.zones["gw.test."].signer
    assert signer.made <= 4  # the SOA and a few chain NSECs, not one per name
    assert handler.stats.paths[CHAIN] == 200
    assert handler.stats.paths[SIGNED] == 0


def test_off_is_compact_denial_always(signed: dict[str, SignedZone]) -> None:
    handler = chained_handler(signed, budget=None)
    reply = ask(handler, "n1.gw.test.")
    assert reply.rcode() == dns.rcode.NOERROR  # RFC 9824 without CO
    (nsec,) = [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
    assert nsec.name.to_text() == "n1.gw.test."


# --- the switch --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_flips_on_the_last_complete_second(zone: object,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    flood = Flood(3, clock)
    caplog.set_level(logging.WARNING, "dnsfail.dnssec.flood")

    def second(at: float, names: int) -> bool:
        """``names`` new names at ``at``: whether the first was denied from the chain."""
        clock.now = at
        chained = flood.new_name(zone) is not None  # type: ignore[arg-type]
        for _ in range(names - 1):
            flood.new_name(zone)  # type: ignore[arg-type]
        return chained

    assert not second(1000.0, 10)  # over the budget, but no second is complete yet
    assert second(1001.2, 3)  # the last complete second had 10 > 3; this one has 3
    assert flood.chained(ORIGIN)
    assert not second(1002.0, 5)  # 3 is not over the budget
    assert not second(1004.0, 1)  # a quiet second in between: compact
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "denying them from the signed NSEC chain" in lines[0]
    assert "back to compact denial" in lines[1]
    second(1004.5, 5)
    assert second(1005.0, 1)  # a new spell within LOG_INTERVAL: neither end logged
    assert not second(1007.0, 1)
    assert len(caplog.records) == 2
    second(1004.0 + LOG_INTERVAL, 5)
    assert second(1005.0 + LOG_INTERVAL, 1)  # logged again, with the spell not logged
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "(1 spells not logged)" in lines[2]


def test_budget_zero_is_the_chain_always(zone: object) -> None:
    flood = Flood(0, Clock())
    assert flood.new_name(zone) is not None  # type: ignore[arg-type]
    assert flood.chain(zone) is flood.chain(zone)  # type: ignore[arg-type]  # built once


def test_the_chain_signs_a_window_once_and_again_for_the_next(
        zone: object, signed: dict[str, SignedZone]) -> None:
    chain = build(zone)  # type: ignore[arg-type]
    assert chain is not None
    signer = signed[ORIGIN].signer
    first = chain.signatures(0, signer, (1, 2))
    assert chain.signatures(0, signer, (1, 2)) is first
    assert chain.signatures(0, signer, (3, 4)) != first
    assert len(first) == len(signer.keys)
    assert all(s[:2] == RRType.RRSIG.to_bytes(2, "big") for s in first)


@pytest.fixture(scope="module")
def ed25519(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SignedZone]:
    folder = tmp_path_factory.mktemp("chainkeys15")
    for origin in ("gw.test", "tpl.test"):
        keys.generate(origin, str(folder), 15)
    return {z: signed_zone(z, k) for z, k in keys.load_keys(str(folder)).items()}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(["www", "team", "ops", "ns1", "api", "b", "ent",
                                           "Nope", "x-y", "_z", "*", "a.b"]),
                          st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1,
                                  max_size=12)), min_size=2, max_size=8),
       st.sampled_from(["gw.test.", "ent.gw.test.", "b.ent.gw.test.", "www.gw.test.",
                        "wild.gw.test.", "team.gw.test.", "y.ent.tpl.test."]),
       st.booleans())
def test_sibling_names_get_what_a_fresh_server_gives(
        ed25519: dict[str, SignedZone], labels: list[str], parent: str, co: bool) -> None:
    """``fast.ChainPlan`` (a new first label under a parent answered before) against a
    server that never saw the parent: the same bytes (Ed25519 signs deterministically),
    names that exist, cuts and wildcards included."""
    kept = chained_handler(ed25519)
    for label in labels:
        data = bytearray(dns.message.make_query(f"{label}.{parent}", "A", want_dnssec=True,
                                                payload=1232).to_wire())
        data[:2] = b"\x12\x34"
        if co:
            data[-4] |= 0x40  # the CO flag (RFC 9824 section 5), after DO in the OPT TTL
        assert kept.handle(bytes(data), False, "192.0.2.7") == chained_handler(
            ed25519).handle(bytes(data), False, "192.0.2.7")


@pytest.mark.parametrize(("qname", "final", "options"), [
    ("nope.gw.test.", "nope.gw.test.", "ecs"),  # ECS queries take the full signed path
    ("a\\007b.gw.test.", "a\\007b.gw.test.", None),  # so do names whose text needs escapes
    ("dangling.gw.test.", "missing.gw.test.", None),  # a CNAME to a name that does not exist
])
def test_the_full_path_denies_from_the_chain_too(signed: dict[str, SignedZone], qname: str,
                                                 final: str, options: str | None) -> None:
    import dns.edns

    handler = chained_handler(signed)
    extra = [dns.edns.ECSOption.from_text("192.0.2.0/24")] if options else []
    query = dns.message.make_query(qname, "A", want_dnssec=True, options=extra)
    raw = handler.handle(query.to_wire(), False, "192.0.2.7")
    assert raw is not None
    reply = dns.message.from_wire(raw)
    check_nxdomain(reply, final, handler.signed.zones["gw.test."])  # type: ignore[union-attr]
    assert handler.stats.paths[CHAIN] == 0  # counted as the full path: signed


def test_the_full_path_counts_its_new_names(signed: dict[str, SignedZone]) -> None:
    import dns.edns

    clock = Clock()
    store = Store({**tpl.ZONES2})
    mine = {z: signed_zone(z, s.signer.keys) for z, s in signed.items() if z != ORIGIN}
    handler = Handler(lambda: store.snapshot, identity="unit",
                      signed=SignedPath(mine, clock, flood_budget=3))
    ecs = [dns.edns.ECSOption.from_text("192.0.2.0/24")]

    def rcode(name: str) -> int:
        query = dns.message.make_query(name, "A", want_dnssec=True, options=ecs)
        raw = handler.handle(query.to_wire(), False, "192.0.2.7")
        assert raw is not None
        return dns.message.from_wire(raw).rcode()

    assert {rcode(f"e{i}.gw.test.") for i in range(5)} == {dns.rcode.NOERROR}  # compact
    clock.now += 1
    assert rcode("late.gw.test.") == dns.rcode.NXDOMAIN  # 5 > 3 in the last second: chain


def test_wildcard_answers_deny_the_next_closer_name_from_the_chain(
        signed: dict[str, SignedZone]) -> None:
    handler = chained_handler(signed)
    path = handler.signed
    assert isinstance(path, SignedPath)
    signer = path.zones["gw.test."].signer
    for i in range(50):
        qname = f"x.n{i}.wild.gw.test."
        reply = ask(handler, qname, "TXT")
        assert reply.rcode() == dns.rcode.NOERROR
        assert [r.rdtype for r in reply.answer] == [dns.rdatatype.TXT, dns.rdatatype.RRSIG]
        assert validate(reply, path.zones["gw.test."]) == 2
        (nsec,) = [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
        closer = dns.name.from_text(f"n{i}.wild.gw.test.")
        assert covers(nsec.name, nsec[0].next, closer)
        assert not nsec[0].next.to_text().endswith(f"n{i}.wild.gw.test.")  # not RFC 4470's
    assert signer.made <= 4  # the wildcard's TXT and the chain NSECs it needs, once each
    assert handler.stats.paths[CHAIN] == 50


def test_a_reload_rebuilds_the_chain_and_new_keys_drop_it(
        signed: dict[str, SignedZone]) -> None:
    from pathlib import Path

    text = Path("tests/data/zones/gw.test.yaml").read_text()
    store = Store({**tpl.ZONES2})
    mine = {z: signed_zone(z, s.signer.keys) for z, s in signed.items() if z != ORIGIN}
    path = SignedPath(mine, flood_budget=0)
    handler = Handler(lambda: store.snapshot, identity="unit", signed=path)
    before = ask(handler, "nopf.gw.test.")
    assert "nope.gw.test." not in {r.name.to_text() for r in before.authority}
    newer = parse_zone(text + "nope:\n  type: A\n  value: 192.0.2.9\n", "gw.test.yaml",
                       "gw.test.", serial=9)
    store.replace_zones({**tpl.ZONES2, "gw.test.": newer})
    after = ask(handler, "nopf.gw.test.")
    check_nxdomain(after, "nopf.gw.test.", mine["gw.test."])
    assert "nope.gw.test." in {r.name.to_text() for r in after.authority
                               if r.rdtype == dns.rdatatype.NSEC}
    assert path.flood is not None
    assert path.flood.chains
    path.replace(mine)
    assert not path.flood.chains  # new keys: the chains' signatures were the old keys'


def test_a_wildcards_nodata_comes_from_the_chain(signed: dict[str, SignedZone]) -> None:
    """RFC 4035 3.1.3.4: the NSEC at the wildcard (no MX in its bitmap) and the NSEC
    covering the next closer name, no signature per name."""
    handler = chained_handler(signed)
    path = handler.signed
    assert isinstance(path, SignedPath)
    for i in range(30):
        reply = ask(handler, f"x.n{i}.wild.gw.test.", "MX")
        assert reply.rcode() == dns.rcode.NOERROR
        assert not reply.answer
        assert validate(reply, path.zones["gw.test."]) >= 2
        nsecs = {r.name.to_text(): r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC}
        at = nsecs["*.wild.gw.test."]
        _, types = _nsec_types(at)
        assert "MX" not in types
        assert "TXT" in types
        closer = dns.name.from_text(f"n{i}.wild.gw.test.")
        assert any(covers(r.name, r[0].next, closer) for r in nsecs.values())
    assert path.zones["gw.test."].signer.made <= 4
    assert handler.stats.paths[CHAIN] == 30


def _nsec_types(rrset: dns.rrset.RRset) -> tuple[str, set[str]]:
    rd = rrset[0]
    return rd.next.to_text(), {dns.rdatatype.to_text(t) for w, bits in rd.windows
                               for k, o in enumerate(bits) for b in range(8)
                               if o & (0x80 >> b) for t in [w * 256 + k * 8 + b]}


@pytest.mark.parametrize(("argv", "budget"), [
    ([], "default"), (["--dnssec-flood-budget", "0"], 0),
    (["--dnssec-flood-budget", "250"], 250), (["--dnssec-flood-budget", "off"], None)])
def test_the_budget_option_and_its_one_default(argv: list[str], budget: object) -> None:
    """``serve``'s option and ``Settings`` spell ``flood.DEFAULT_BUDGET`` as a literal (the
    daemon imports nothing of ``dnssec`` unless keys are given): they must agree with it."""
    from dnsfail.cli.main import build_parser
    from dnsfail.dnssec.flood import DEFAULT_BUDGET
    from dnsfail.serve.app import Settings

    args = build_parser().parse_args(["serve", *argv])
    assert args.dnssec_flood_budget == (DEFAULT_BUDGET if budget == "default" else budget)
    assert Settings().dnssec_flood_budget == DEFAULT_BUDGET
