"""DS records in zone files: loaded only at delegation points (octoDNS's fields, current and
legacy), answered from the parent side (RFC 4035 3.1.4.1, also when the child zone is served
too), and in signed referrals as the DS RRset and its RRSIG instead of a proof of absence."""

from __future__ import annotations

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
from dnsfail.dnssec.answer import SignedZone, signed_zone, types_at
from dnsfail.dnssec.path import SignedPath
from dnsfail.errors import ConfigError
from dnsfail.model import RRType, Zone
from dnsfail.state import Store
from dnsfail.zonefile import load_zones
from tests.dnssec.checker import validate

DIGEST = "39BC373712345678901234567890123456789012345678901234567890ABCDEF"
PARENT = f"""\
'':
  type: NS
  value: ns1.par.test.
kid:
  - type: DS
    values:
      - algorithm: 13
        digest: {DIGEST}
        digest_type: 2
        key_tag: 12345
  - type: NS
    value: ns1.kid.par.test.
legacy:
  - type: DS
    value:
      algorithm: 2
      flags: 54321
      protocol: 13
      public_key: {DIGEST.lower()}
  - type: NS
    value: ns1.elsewhere.test.
insecure:
  type: NS
  value: ns1.elsewhere.test.
ns1:
  type: A
  value: 192.0.2.53
ns1.kid:
  type: A
  value: 192.0.2.54
"""
CHILD = "'':\n  type: NS\n  value: ns1.kid.par.test.\nwww:\n  type: A\n  value: 192.0.2.80\n"


def load(tmp_path: Path, files: dict[str, str]) -> dict[str, Zone]:
    for origin, text in files.items():
        (tmp_path / f"{origin}.yaml").write_text(text)
    return load_zones([str(tmp_path)])


@pytest.fixture
def parent_only(tmp_path: Path) -> dict[str, Zone]:
    return load(tmp_path, {"par.test": PARENT})


def signer_for(tmp_path: Path, origin: str) -> dict[str, SignedZone]:
    folder = tmp_path / f"keys-{origin}"
    keys.generate(origin, str(folder))
    return {z: signed_zone(z, k) for z, k in keys.load_keys(str(folder)).items()}


def ask(handler: Handler, qname: str, qtype: str, do: bool = True) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, want_dnssec=do)
    data = handler.handle(query.to_wire(), False, "192.0.2.200")
    assert data is not None
    return dns.message.from_wire(data)


def handler(zones: dict[str, Zone], signed: dict[str, SignedZone] | None = None) -> Handler:
    store = Store(zones)
    return Handler(lambda: store.snapshot, identity="unit",
                   signed=SignedPath(signed) if signed is not None else None)


def test_ds_loads_at_a_cut_in_both_of_octodns_forms(parent_only: dict[str, Zone]) -> None:
    zone = parent_only["par.test."]
    current = zone.nodes["kid.par.test."][RRType.DS]
    legacy = zone.nodes["legacy.par.test."][RRType.DS]
    assert current.rdatas[0].data == (12345).to_bytes(2, "big") + bytes((13, 2)) \
        + bytes.fromhex(DIGEST)  # type: ignore[union-attr]
    assert legacy.rdatas[0].data[:4] == (54321).to_bytes(2, "big") + bytes((13, 2))  # type: ignore[union-attr]
    # the NSEC at a secure cut lists DS; at an insecure one it does not (RFC 4034 4.1.2)
    assert RRType.DS in types_at(zone, "kid.par.test.")
    assert RRType.NS in types_at(zone, "kid.par.test.")
    assert RRType.DS not in types_at(zone, "insecure.par.test.")


@pytest.mark.parametrize(("body", "reason"), [
    ("www:\n  - type: A\n    value: 192.0.2.1\n  - type: DS\n    value: {key_tag: 1, "
     f"algorithm: 13, digest_type: 2, digest: {DIGEST}}}\n",
     "DS is only allowed at a delegation point"),
    (f"'':\n  - type: DS\n    value: {{key_tag: 1, algorithm: 13, digest_type: 2, "
     f"digest: {DIGEST}}}\n", "DS is only allowed at a delegation point"),
    ("kid:\n  - type: NS\n    value: ns1.elsewhere.test.\n  - type: DS\n    value: {key_tag: 1, "
     "algorithm: 13, digest_type: 2, digest: 'abcd'}\n", "takes 32 octets"),
    ("kid:\n  - type: NS\n    value: ns1.elsewhere.test.\n  - type: DS\n    value: {key_tag: 1, "
     "algorithm: 13, digest_type: 2, digest: 'xyz1'}\n", "is not hexadecimal"),
    ("kid:\n  - type: NS\n    value: ns1.elsewhere.test.\n  - type: DS\n    value: {key_tag: "
     f"70000, algorithm: 13, digest_type: 2, digest: {DIGEST}}}\n", "key_tag"),
    ("kid:\n  - type: NS\n    value: ns1.elsewhere.test.\n  - type: DS\n    value: {key_tag: "
     f"1, algorithm: 13, digest: {DIGEST}}}\n", "missing 'digest_type'"),
    ("kid:\n  type: NS\n  value: ns1.elsewhere.test.\nx.kid:\n  type: DS\n  value: {key_tag: 1,"
     f" algorithm: 13, digest_type: 2, digest: {DIGEST}}}\n", "DS is only allowed"),
])
def test_a_ds_anywhere_but_a_cut_or_malformed_is_a_located_problem(
    tmp_path: Path, body: str, reason: str,
) -> None:
    text = "'':\n  type: NS\n  value: ns1.par.test.\n" if not body.startswith("''") else ""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"par.test": text + body})
    message = str(caught.value)
    assert reason in message
    assert "par.test.yaml:" in message  # file:line: record: reason


def test_ds_at_the_cut_is_answered_by_the_parent_with_or_without_do(
    tmp_path: Path, parent_only: dict[str, Zone],
) -> None:
    signed = signer_for(tmp_path, "par.test")
    for path in (None, signed):
        reply = ask(handler(parent_only, path), "kid.par.test.", "DS", do=path is not None)
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.AA
        (ds,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.DS]
        assert ds[0].key_tag == 12345
        assert ds[0].digest == bytes.fromhex(DIGEST)
        if path is not None:
            assert validate(reply, signed["par.test."]) == 1


def test_a_signed_referral_carries_the_ds_and_its_signature(
    tmp_path: Path, parent_only: dict[str, Zone],
) -> None:
    signed = signer_for(tmp_path, "par.test")
    served = handler(parent_only, signed)
    reply = ask(served, "www.kid.par.test.", "A")
    assert not reply.flags & dns.flags.AA
    types = [(str(r.name), dns.rdatatype.to_text(r.rdtype)) for r in reply.authority]
    assert ("kid.par.test.", "NS") in types
    assert ("kid.par.test.", "DS") in types
    assert not any(t == "NSEC" for _, t in types)  # a secure delegation: no absence proof
    checked = validate(reply, signed["par.test."], skip=frozenset(
        {("kid.par.test.", dns.rdatatype.NS), ("ns1.kid.par.test.", dns.rdatatype.A)}))
    assert checked == 1  # the DS
    # the insecure delegation next to it still proves that it has no DS
    insecure = ask(served, "www.insecure.par.test.", "A")
    assert [dns.rdatatype.to_text(r.rdtype) for r in insecure.authority
            if r.rdtype != dns.rdatatype.RRSIG] == ["NS", "NSEC"]
    # without DO the referral is what it always was: NS and glue only
    plain = ask(served, "www.kid.par.test.", "A", do=False)
    assert [dns.rdatatype.to_text(r.rdtype) for r in plain.authority] == ["NS"]


def test_the_parent_answers_ds_when_it_serves_the_child_too(tmp_path: Path) -> None:
    """RFC 4035 3.1.4.1: a server authoritative for both sides answers DS from the parent;
    the child's apex has none (NODATA from the child would break the chain)."""
    zones = load(tmp_path, {"par.test": PARENT, "kid.par.test": CHILD})
    signed = {**signer_for(tmp_path, "par.test"), **signer_for(tmp_path, "kid.par.test")}
    for path in (None, signed):
        served = handler(zones, path)
        reply = ask(served, "kid.par.test.", "DS", do=path is not None)
        assert reply.flags & dns.flags.AA
        assert [r.rdtype for r in reply.answer if r.rdtype != dns.rdatatype.RRSIG] \
            == [dns.rdatatype.DS]
        if path is not None:
            sig = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)
            assert str(sig[0].signer) == "par.test."
        # any other type at the child's apex is the child's
        soa = ask(served, "kid.par.test.", "SOA", do=path is not None)
        assert str(soa.answer[0].name) == "kid.par.test."
        assert soa.flags & dns.flags.AA
