"""The signed negative templates (``dnssec.fast``) against the full signed path: the same
reply for any name, case, type, DO/CO, EDNS size, NSID and transport; Ed25519 signatures are
deterministic, so those replies are byte for byte equal; ECDSA ones are equal but for the
signature octets, and each signature checks (dnspython's validator)."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.dns.query import HEADER_LEN
from dnsfail.dns.replycache import key_edns, question_key
from dnsfail.dns.stats import QueryStats
from dnsfail.dnssec import keys
from dnsfail.dnssec.answer import SignedZone, signed_zone
from dnsfail.dnssec.fast import SignedTemplates
from dnsfail.dnssec.path import SignedPath
from dnsfail.dnssec.sign import Signer
from dnsfail.state import Store
from tests.dns import test_template as tpl
from tests.dnssec.checker import validate

ZONES = tpl.ZONES2
#: The fast path's edges: the key types and NSEC/RRSIG/NXNAME (the full path's own).
TYPES = [*tpl.TYPES, "NSEC", "RRSIG", "DNSKEY", "CDS", "CDNSKEY", "NXNAME"]


@pytest.fixture(scope="module")
def keysets(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, SignedZone]]:
    out = {}
    for algorithm in (13, 15):
        folder = tmp_path_factory.mktemp(f"keys{algorithm}")
        for origin in ("gw.test", "tpl.test"):
            keys.generate(origin, str(folder), algorithm)
        out[algorithm] = {z: signed_zone(z, k) for z, k in keys.load_keys(str(folder)).items()}
    return out


def handler(signed: dict[str, SignedZone], fast: bool) -> Handler:
    """A handler with its own signers (so no signature is shared with the other one)."""
    store = Store(ZONES)
    mine = {z: signed_zone(z, s.signer.keys) for z, s in signed.items()}
    return Handler(lambda: store.snapshot, identity="unit", signed=SignedPath(mine, fast=fast))


def query(name: str, rdtype: str, mask: int, payload: int, do: bool, co: bool, nsid: bool,
          rd: bool, cd: bool, qid: int) -> bytes:
    data = bytearray(tpl.make(name, rdtype, mask, 0, payload, do, nsid, None, rd, cd, qid))
    if co:  # the CO flag: the second bit of the OPT TTL's flags (RFC 9824 section 5)
        qend = question_key(bytes(data), False)
        assert qend is not None
        data[qend[1] + 7] |= 0x40
    return bytes(data)


def without_signatures(reply: bytes) -> str:
    message = dns.message.from_wire(reply)
    for section in (message.answer, message.authority, message.additional):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                signed = [rd.replace(signature=b"") for rd in rrset]
                rrset.clear()
                for rd in signed:
                    rrset.add(rd)
    return message.to_text() + f"\nlength {len(reply)}"


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tpl.labels, st.sampled_from(tpl.ANCHORS), st.sampled_from(TYPES), st.integers(0, 2**60),
       st.sampled_from([512, 1232, 4096, 100]), st.sampled_from([True, True, True, False]),
       st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 65535),
       st.booleans(), st.sampled_from([13, 15]))
@example(["nope"], "gw.test.", "A", 0, 1232, True, True, True, True, True, 1, False, 13)
@example(["nope"], "gw.test.", "A", 0, 512, True, False, False, False, False, 1, False, 15)
@example([], "api.gw.test.", "TXT", 0, 1232, True, False, True, False, False, 1, False, 15)
@example(["x"], "wild.gw.test.", "A", 0, 1232, True, False, False, False, False, 1, True, 13)
@example(["a", "B"], "wild.gw.test.", "TXT", 5, 1232, True, True, True, True, False, 1, False, 15)
def test_every_signed_fast_reply_equals_the_full_signed_paths(
    keysets: dict[int, dict[str, SignedZone]], prefix: list[str], anchor: str, rdtype: str,
    mask: int, payload: int, do: bool, co: bool, nsid: bool, rd: bool, cd: bool, qid: int,
    tcp: bool, algorithm: int,
) -> None:
    name = tpl.name_of(prefix, anchor)
    data = query(name, rdtype, mask, payload, do, co, nsid, rd, cd, qid)
    signed = keysets[algorithm]
    fast, full = handler(signed, True), handler(signed, False)
    expected = full.handle(data, tcp, "192.0.2.7")
    for _ in range(2):  # the first answer, then with the signature cached
        got = fast.handle(data, tcp, "192.0.2.7")
        if algorithm == 15 or got is None or expected is None:
            assert got == expected
        else:
            assert without_signatures(got) == without_signatures(expected)
    assert fast.stats.internal_errors == 0
    assert got is not None
    message = dns.message.from_wire(got)
    zone = next((signed[z] for z in signed if name.lower().endswith(z)), None)
    if zone is not None and message.ednsflags & dns.flags.DO and not message.flags & dns.flags.TC:
        validate(message, zone, skip=frozenset(
            (str(r.name), r.rdtype) for r in message.authority + message.additional
            if r.rdtype in (dns.rdatatype.NS, dns.rdatatype.A, dns.rdatatype.AAAA)
            and not message.answer))


NEGATIVE = [  # name, type, CO, the shape's rcode
    ("nope.gw.test.", "A", False, 0), ("nope.gw.test.", "A", True, 3),
    ("Deep.Nope.GW.test.", "TXT", False, 0), ("ent.gw.test.", "A", False, 0),
    ("api.gw.test.", "TXT", True, 0), ("gw.test.", "SRV", False, 0),
    ("x.wild.gw.test.", "A", False, 0),
    ("x.wild.gw.test.", "TXT", False, 0), ("A.B.c.wild.gw.test.", "TXT", True, 0),
]


@pytest.mark.parametrize(("name", "rdtype", "co", "rcode"), NEGATIVE)
def test_negative_and_wildcard_answers_take_the_templates(
    keysets: dict[int, dict[str, SignedZone]], name: str, rdtype: str, co: bool, rcode: int,
) -> None:
    """Negative and wildcard answers come from ``SignedTemplates``, not the full path
    (the property above would hold of a fast path that never answers)."""
    data = query(name, rdtype, 0, 1232, True, co, False, False, False, 7)
    scanned = question_key(data, False)
    assert scanned is not None
    facts = key_edns(scanned[0], scanned[1] - HEADER_LEN + 1)
    templates = SignedTemplates(keysets[13], b"")
    shaped = templates.answer(data, scanned[0], scanned[1], ZONES, False, facts, co,
                              QueryStats())
    assert shaped is not None
    assert dns.message.from_wire(shaped[0]).rcode() == rcode


def test_a_repeated_name_is_signed_once(keysets: dict[int, dict[str, SignedZone]]) -> None:
    """The NSEC signature of a name is cached by its lower-cased owner and the window: a
    repeat in another letter case costs no signature; a new name costs one per key."""
    fast = handler(keysets[13], True)
    path = fast.signed
    assert isinstance(path, SignedPath)
    signer: Signer = path.zones["gw.test."].signer
    for qid, name in enumerate(["r1.gw.test.", "R1.Gw.Test.", "r1.gw.test.", "r2.gw.test."]):
        fast.handle(query(name, "A", 0, 1232, True, False, False, False, False, qid))
    assert signer.made == 1 + 2  # the SOA once, then r1 and r2


def test_a_zone_without_keys_is_left_to_the_other_paths() -> None:
    """A zone without keys is not answered by the templates (the unsigned path's own)."""
    templates = SignedTemplates({}, b"")
    data = query("nope.gw.test.", "A", 0, 1232, True, False, False, False, False, 1)
    scanned = question_key(data, False)
    assert scanned is not None
    facts = key_edns(scanned[0], scanned[1] - HEADER_LEN + 1)
    assert templates.answer(data, scanned[0], scanned[1], ZONES, False, facts, False,
                            QueryStats()) is None


@pytest.mark.parametrize(("name", "rdtype", "co", "rcode"), NEGATIVE)
def test_two_keys_sign_the_templates_twice(tmp_path: Path, name: str, rdtype: str, co: bool,
                                           rcode: int) -> None:
    """During a rollover (RFC 6781 4.1.4) each RRset of a template answer carries one RRSIG
    per key, and a validator trusting either key alone accepts it."""
    old = keys.generate("gw.test", str(tmp_path))
    new = keys.generate("gw.test", str(tmp_path), 15)
    both = {"gw.test.": signed_zone("gw.test.", keys.load_keys(str(tmp_path))["gw.test."])}
    data = query(name, rdtype, 0, 1232, True, co, False, False, False, 7)
    got = handler(both, True).handle(data)
    expected = handler(both, False).handle(data)
    assert got is not None
    assert expected is not None
    assert without_signatures(got) == without_signatures(expected)
    message = dns.message.from_wire(got)
    assert message.rcode() == rcode
    for rrset in message.answer + message.authority:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            assert sorted(s.key_tag for s in rrset) == sorted([old.tag, new.tag])
    for key in (old, new):
        validate(message, signed_zone("gw.test.", (key,)))
