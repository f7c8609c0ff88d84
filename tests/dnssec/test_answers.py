"""The signed path without sockets: every RRset signed and valid (dnspython's validator),
compact denial with truthful bitmaps, the window, the signature cache, and answers without
DO or of unsigned zones byte for byte as before."""

from __future__ import annotations

import time
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from dnsfail.dns.handler import Handler
from dnsfail.dnssec import keys
from dnsfail.dnssec.answer import SignedZone, signed_zone
from dnsfail.dnssec.path import SignedPath
from dnsfail.dnssec.sign import INCEPTION_BACKDATE, VALIDITY, WINDOW_STEP, Signer, window_at
from dnsfail.model import Zone
from dnsfail.state import Store
from dnsfail.zonefile import load_zones
from tests.conftest import DATA
from tests.dnssec.checker import validate

DYNAMIC = """\
'':
  type: NS
  value: ns1.dyn.test.
down:
  dynamic:
    pools:
      one: {values: [{value: 192.0.2.1, status: down}]}
    rules:
    - pool: one
  type: A
  values: [192.0.2.99]
up:
  dynamic:
    pools:
      one: {values: [{value: 192.0.2.1, status: up}, {value: 192.0.2.2, status: up}]}
    rules:
    - pool: one
  type: A
  values: [192.0.2.99]
ns1:
  type: A
  value: 192.0.2.53
"""


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Zone]:
    folder = tmp_path_factory.mktemp("zones")
    (folder / "gw.test.yaml").write_text((DATA / "zones" / "gw.test.yaml").read_text())
    (folder / "dyn.test.yaml").write_text(DYNAMIC)
    (folder / "plain.test.yaml").write_text("'':\n  type: NS\n  value: ns1.plain.test.\n"
                                            "ns1:\n  type: A\n  value: 192.0.2.9\n")
    return load_zones([str(folder)])


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SignedZone]:
    folder = tmp_path_factory.mktemp("keys")
    keys.generate("gw.test", str(folder))
    keys.generate("dyn.test", str(folder), 15)
    return {z: signed_zone(z, k) for z, k in keys.load_keys(str(folder)).items()}


def handlers(zones: dict[str, Zone], signed: dict[str, SignedZone] | None
             ) -> tuple[Handler, Store]:
    store = Store(zones)
    path = SignedPath(signed) if signed is not None else None
    return Handler(lambda: store.snapshot, identity="unit", signed=path), store


def ask(handler: Handler, qname: str, qtype: str, *, do: bool = True, co: bool = False,
        payload: int = 1232, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, want_dnssec=do, payload=payload)
    if co:
        query.ednsflags |= 0x4000
    data = handler.handle(query.to_wire(), tcp, "192.0.2.200")
    assert data is not None
    return dns.message.from_wire(data)


def nsec_of(reply: dns.message.Message) -> tuple[str, str, set[str]]:
    (nsec,) = [r for r in reply.authority + reply.answer if r.rdtype == dns.rdatatype.NSEC]
    rd = nsec[0]
    types = {dns.rdatatype.to_text(t) for w, bits in rd.windows
             for i, octet in enumerate(bits) for b in range(8)
             if octet & (0x80 >> b) for t in [w * 256 + i * 8 + b]}
    return str(nsec.name), str(rd.next), types


GLUE = frozenset({("team.gw.test.", 2), ("ns.team.gw.test.", 1)})

POSITIVE = [
    ("api.gw.test.", "A", 1), ("api.gw.test.", "AAAA", 1), ("gw.test.", "MX", 2),
    ("gw.test.", "A", 1),  # ALIAS at the apex
    ("gw.test.", "DNSKEY", 1), ("gw.test.", "CDS", 1), ("gw.test.", "CDNSKEY", 1),
    ("chain1.gw.test.", "A", 3), ("x.wild.gw.test.", "TXT", 2), ("a.b.wild.gw.test.", "TXT", 2),
    ("foo.cn.gw.test.", "A", 3), ("_api._tcp.gw.test.", "SRV", 3), ("caa.gw.test.", "CAA", 1),
    ("ptr.gw.test.", "PTR", 1), ("external.gw.test.", "A", 1), ("gw.test.", "TXT", 1),
    ("up.dyn.test.", "A", 1), ("down.dyn.test.", "A", 1), ("x.wild.gw.test.", "ANY", 2),
]


@pytest.mark.parametrize(("qname", "qtype", "least"), POSITIVE)
def test_every_rrset_of_a_positive_answer_is_signed_and_valid(
    zones: dict[str, Zone], signed: dict[str, SignedZone], qname: str, qtype: str, least: int,
) -> None:
    handler, _ = handlers(zones, signed)
    reply = ask(handler, qname, qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer
    assert reply.ednsflags & dns.flags.DO
    zone = signed["dyn.test." if qname.endswith("dyn.test.") else "gw.test."]
    assert validate(reply, zone) >= least


def test_a_wildcard_answer_has_its_source_labels_and_a_covering_nsec(
    zones: dict[str, Zone], signed: dict[str, SignedZone],
) -> None:
    handler, _ = handlers(zones, signed)
    reply = ask(handler, "a.b.wild.gw.test.", "TXT")
    sig = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)[0]
    assert sig.labels == 3  # *.wild.gw.test.
    owner, following, types = nsec_of(reply)
    closer = dns.name.from_text("b.wild.gw.test.")
    assert dns.name.from_text(owner) < closer < dns.name.from_text(following)
    assert not dns.name.from_text(following).is_subdomain(closer)
    assert types == {"RRSIG", "NSEC"}
    validate(reply, signed["gw.test."])


NEGATIVE = [  # qname, qtype, NSEC owner, types at it (the truth)
    ("nope.gw.test.", "A", "nope.gw.test.", {"RRSIG", "NSEC", "NXNAME"}),
    ("a.nope.gw.test.", "A", "a.nope.gw.test.", {"RRSIG", "NSEC", "NXNAME"}),
    ("dangling.gw.test.", "A", "missing.gw.test.", {"RRSIG", "NSEC", "NXNAME"}),
    ("api.gw.test.", "MX", "api.gw.test.", {"A", "AAAA", "RRSIG", "NSEC"}),
    ("ent.gw.test.", "A", "ent.gw.test.", {"RRSIG", "NSEC"}),
    ("x.wild.gw.test.", "A", "x.wild.gw.test.", {"TXT", "RRSIG", "NSEC"}),
    ("gw.test.", "SRV", "gw.test.",  # the ALIAS target has A and AAAA: so has the apex
     {"NS", "SOA", "MX", "TXT", "A", "AAAA", "RRSIG", "NSEC", "DNSKEY", "CDS", "CDNSKEY"}),
    ("team.gw.test.", "DS", "team.gw.test.", {"NS", "RRSIG", "NSEC"}),
    ("down.dyn.test.", "AAAA", "down.dyn.test.", {"A", "RRSIG", "NSEC"}),
    ("up.dyn.test.", "TXT", "up.dyn.test.", {"A", "RRSIG", "NSEC"}),
]


@pytest.mark.parametrize(("qname", "qtype", "owner", "types"), NEGATIVE)
def test_denial_is_compact_and_its_bitmap_truthful(
    zones: dict[str, Zone], signed: dict[str, SignedZone], qname: str, qtype: str,
    owner: str, types: set[str],
) -> None:
    handler, _ = handlers(zones, signed)
    reply = ask(handler, qname, qtype)
    assert reply.rcode() == dns.rcode.NOERROR  # RFC 9824: NXDOMAIN only when CO is set
    got_owner, following, got_types = nsec_of(reply)
    assert (got_owner, got_types) == (owner, types)
    assert following == "\\000." + owner
    assert qtype not in got_types
    zone = signed["dyn.test." if qname.endswith("dyn.test.") else "gw.test."]
    validate(reply, zone)
    soa = [r for r in reply.authority if r.rdtype == dns.rdatatype.SOA]
    assert soa
    assert soa[0].ttl <= 60


def test_co_restores_nxdomain_and_is_echoed(zones: dict[str, Zone],
                                            signed: dict[str, SignedZone]) -> None:
    handler, _ = handlers(zones, signed)
    plain = ask(handler, "nope.gw.test.", "A")
    compact = ask(handler, "nope.gw.test.", "A", co=True)
    assert plain.rcode() == dns.rcode.NOERROR
    assert not plain.ednsflags & 0x4000
    assert compact.rcode() == dns.rcode.NXDOMAIN
    assert compact.ednsflags & 0x4000
    assert nsec_of(compact) == nsec_of(plain)
    assert ask(handler, "api.gw.test.", "MX", co=True).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("qname", ["nope.gw.test.", "api.gw.test."])
def test_a_question_for_nsec_gets_the_nsec_as_its_answer(
    zones: dict[str, Zone], signed: dict[str, SignedZone], qname: str,
) -> None:
    """Asked for NSEC, the name's own NSEC is the answer, also at a name that does not
    exist (delv rejected the NODATA whose authority NSEC listed NSEC); with CO a
    nonexistent name is NXDOMAIN with the proof in AUTHORITY, as for any other type."""
    handler, _ = handlers(zones, signed)
    reply = ask(handler, qname, "NSEC")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.NSEC, dns.rdatatype.RRSIG]
    assert reply.answer[0].name.to_text() == qname
    assert not [r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC]
    validate(reply, signed["gw.test."])
    compact = ask(handler, "nope.gw.test.", "NSEC", co=True)
    assert compact.rcode() == dns.rcode.NXDOMAIN
    assert not compact.answer
    assert nsec_of(compact)[2] == {"RRSIG", "NSEC", "NXNAME"}


def test_nxname_is_formerr_and_keys_answer_without_do(zones: dict[str, Zone],
                                                      signed: dict[str, SignedZone]) -> None:
    handler, _ = handlers(zones, signed)
    for do in (True, False):
        assert ask(handler, "api.gw.test.", "TYPE128", do=do).rcode() == dns.rcode.FORMERR
    reply = ask(handler, "gw.test.", "DNSKEY", do=False)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.DNSKEY]
    assert ask(handler, "plain.test.", "TYPE128").rcode() == dns.rcode.NOERROR  # unsigned


def test_a_referral_proves_the_delegation_insecure(zones: dict[str, Zone],
                                                   signed: dict[str, SignedZone]) -> None:
    handler, _ = handlers(zones, signed)
    reply = ask(handler, "host.team.gw.test.", "A")
    assert not reply.flags & dns.flags.AA
    assert [r for r in reply.authority if r.rdtype == dns.rdatatype.NS]
    assert not [r for r in reply.authority
                if r.rdtype == dns.rdatatype.RRSIG and r.covers == dns.rdatatype.NS]
    assert nsec_of(reply)[0::2] == ("team.gw.test.", {"NS", "RRSIG", "NSEC"})
    assert validate(reply, signed["gw.test."], skip=GLUE) == 1


def test_a_signed_reply_too_big_for_udp_is_truncated(zones: dict[str, Zone],
                                                     signed: dict[str, SignedZone]) -> None:
    handler, _ = handlers(zones, signed)
    small = ask(handler, "big.gw.test.", "TXT", payload=512)
    assert small.flags & dns.flags.TC
    assert not small.answer
    whole = ask(handler, "big.gw.test.", "TXT", payload=512, tcp=True)
    assert validate(whole, signed["gw.test."]) == 1


NAMES = ["api.gw.test.", "gw.test.", "x.wild.gw.test.", "nope.gw.test.", "ent.gw.test.",
         "host.team.gw.test.", "chain1.gw.test.", "up.dyn.test.", "down.dyn.test.",
         "plain.test.", "nope.plain.test.", "example.org."]
TYPES = ["A", "AAAA", "MX", "TXT", "ANY", "DS", "NSEC", "RRSIG", "SOA", "NS"]


def test_without_do_and_for_unsigned_zones_the_bytes_are_as_before(
    zones: dict[str, Zone], signed: dict[str, SignedZone],
) -> None:
    before, _ = handlers(zones, None)
    after, _ = handlers(zones, signed)
    for qname in NAMES:
        for qtype in TYPES:
            for do in (False, True):
                if do and not qname.endswith(("plain.test.", "example.org.")):
                    continue
                for repeat in range(2):  # the miss, then the cache
                    query = dns.message.make_query(qname, qtype, want_dnssec=do)
                    query.id = 7
                    wire = query.to_wire()
                    assert before.handle(wire, False, "192.0.2.1") == after.handle(
                        wire, False, "192.0.2.1"), (qname, qtype, do, repeat)


def test_the_window_is_rounded_so_instances_agree() -> None:
    now = 1_800_000_000.0
    inception, expiration = window_at(now)
    assert inception % WINDOW_STEP == 0
    assert now - INCEPTION_BACKDATE - WINDOW_STEP < inception <= now - INCEPTION_BACKDATE
    assert expiration - inception == VALIDITY
    hour = int(now) // WINDOW_STEP * WINDOW_STEP
    assert {window_at(hour + s) for s in (0, 1, 1800, WINDOW_STEP - 1)} == {window_at(now)}
    assert window_at(hour + WINDOW_STEP)[0] == inception + WINDOW_STEP


def test_signatures_are_cached_across_snapshots(zones: dict[str, Zone],
                                                signed: dict[str, SignedZone]) -> None:
    zone = signed["gw.test."]
    path = {"gw.test.": SignedZone(zone.origin, Signer(zone.origin, zone.signer.keys),
                                   zone.dnskey, zone.cds, zone.cdnskey)}
    handler, store = handlers(zones, path)
    ask(handler, "api.gw.test.", "A")
    made = path["gw.test."].signer.made
    assert made == 1
    store.snapshot = Store(zones).snapshot  # a new snapshot: an empty reply cache
    ask(handler, "api.gw.test.", "A")
    assert path["gw.test."].signer.made == made


def _with_signer(zone: SignedZone, signer: Signer) -> dict[str, SignedZone]:
    return {zone.origin: SignedZone(zone.origin, signer, zone.dnskey, zone.cds, zone.cdnskey)}


def test_negative_controls_an_expired_or_tampered_signature_fails(
    zones: dict[str, Zone], signed: dict[str, SignedZone],
) -> None:
    zone = signed["gw.test."]
    old = _with_signer(zone, Signer(zone.origin, zone.signer.keys,
                                    clock=lambda: time.time() - VALIDITY - 7200))
    tampered = _with_signer(zone, Signer(zone.origin, zone.signer.keys,
                                         mangle=lambda s: bytes([s[0] ^ 1]) + s[1:]))
    for path in (old, tampered):
        handler, _ = handlers(zones, path)
        with pytest.raises(dns.dnssec.ValidationFailure):
            validate(ask(handler, "api.gw.test.", "A"), zone)


def test_two_keys_double_sign_for_a_rollover(zones: dict[str, Zone], tmp_path: Path) -> None:
    """RFC 6781 4.1.4: both keys published and signing, so either DS validates."""
    old = keys.generate("gw.test", str(tmp_path))
    new = keys.generate("gw.test", str(tmp_path), 15)
    both = keys.load_keys(str(tmp_path))["gw.test."]
    handler, _ = handlers(zones, {"gw.test.": signed_zone("gw.test.", both)})
    reply = ask(handler, "api.gw.test.", "A")
    sigs = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)
    assert sorted(s.key_tag for s in sigs) == sorted([old.tag, new.tag])
    for key in (old, new):  # a validator trusting either key alone accepts the answer
        alone = signed_zone("gw.test.", (key,))
        validate(reply, alone)
    dnskeys = ask(handler, "gw.test.", "DNSKEY")
    assert len(dnskeys.answer[0]) == 2
    assert len(ask(handler, "gw.test.", "CDS").answer[0]) == 2


def test_an_rrsig_query_gets_the_signatures_of_the_static_data(
    zones: dict[str, Zone], signed: dict[str, SignedZone],
) -> None:
    handler, _ = handlers(zones, signed)
    reply = ask(handler, "api.gw.test.", "RRSIG")
    assert sorted(r.covers for r in reply.answer) == [dns.rdatatype.A, dns.rdatatype.AAAA]
    assert all(r.rdtype == dns.rdatatype.RRSIG for r in reply.answer)


def _long_name(parent: str, octets: int, last: str = "a") -> str:
    """A name of ``octets`` wire octets under ``parent``, its first label ending in ``last``."""
    room = octets - len(dns.name.from_text(parent).to_wire())
    labels = []
    while room > 0:
        size = min(63, room - 1)
        labels.append("a" * size)
        room -= size + 1
    labels[0] = labels[0][:-1] + last
    return ".".join(labels) + "." + parent


@pytest.mark.parametrize("octets", [253, 254, 255])
@pytest.mark.parametrize(("parent", "qtype"), [
    ("gw.test.", "A"), ("wild.gw.test.", "A"), ("wild.gw.test.", "TXT")])
def test_names_of_the_longest_lengths_are_denied_with_names_that_fit(
    zones: dict[str, Zone], signed: dict[str, SignedZone], octets: int, parent: str,
    qtype: str,
) -> None:
    """``\\000.<name>`` and a label grown by one octet do not fit a name of 254 or 255
    octets: the next name is then the name's first label incremented (RFC 4471 3.1.2)."""
    handler, _ = handlers(zones, signed)
    qname = _long_name(parent, octets)
    assert len(dns.name.from_text(qname).to_wire()) == octets
    reply = ask(handler, qname, qtype)
    assert reply.rcode() == dns.rcode.NOERROR
    owner, following, _ = nsec_of(reply)
    assert dns.name.from_text(owner) <= dns.name.from_text(qname) < dns.name.from_text(following)
    validate(reply, signed["gw.test."])


@pytest.mark.parametrize("last", ["@", "\\255", "z"])
def test_a_full_first_label_is_incremented_in_canonical_order(last: str) -> None:
    """After a 63-octet label ending in ``@`` comes ``[`` (upper case sorts as lower), and
    a ``\\255`` is carried into the octet before it."""
    from dnsfail.dnssec.answer import after_subtree

    name = "a" * 62 + last + ".gw.test."
    following = after_subtree(name)
    assert dns.name.from_text(name) < dns.name.from_text(following)
    between = {"@": "a" * 62 + "_.gw.test.", "\\255": "a" * 61 + "b.gw.test.",
               "z": "a" * 62 + "{.gw.test."}[last]
    assert dns.name.from_text(following) <= dns.name.from_text(between)


def test_a_wildcard_next_closer_of_255_octets_gets_a_covering_nsec_that_fits(
        tmp_path: Path) -> None:
    from dnsfail.dnssec.answer import covering_nsec

    parent = ".".join(["b" * 63] * 3)  # 192 octets + the origin's 8 + the root
    (tmp_path / "gw.test.yaml").write_text(
        f"'':\n  type: NS\n  value: ns1.gw.test.\n'*.{parent}':\n  type: TXT\n  value: w\n")
    zone = load_zones([str(tmp_path)])["gw.test."]
    qname = _long_name(f"{parent}.gw.test.", 255)
    nsec = covering_nsec(zone, qname, 60)
    owner = dns.name.from_text(nsec.name)  # raises NameTooLong if it does not fit
    assert owner < dns.name.from_text(qname)
