"""resolver.py as a table: (qname, qtype) -> (rcode, AA, answer, authority, additional).

No sockets and no wire format: the zone comes from tests/data/zones/gw.test.yaml
through config.load_zones, and answers are compared as short text.
"""

from __future__ import annotations

import pytest

from dnsfail.dns.resolver import chaos, find_zone, resolve
from dnsfail.model import Message, Rcode, RRClass, RRset, RRType
from dnsfail.state import Snapshot
from dnsfail.zonefile import load_zones
from tests.conftest import DATA

ZONES = load_zones([str(DATA / "zones")])
SNAPSHOT = Snapshot(1, ZONES)


def show(rrsets: tuple[RRset, ...]) -> list[str]:
    """``owner TYPE ttl`` per RRset: enough to tell every case apart."""
    return [f"{r.name} {r.rtype.name} {r.ttl}" for r in rrsets]


def ask(qname: str, qtype: RRType | int) -> Message:
    return resolve(ZONES, qname, int(qtype), RRClass.IN, SNAPSHOT)


SOA = ["gw.test. SOA 30"]  # min(SOA TTL 3600, minimum 30), RFC 2308 section 3

CASES = [
    # qname, qtype, rcode, aa, answer, authority, additional
    ("api.gw.test.", RRType.A, Rcode.NOERROR, True, ["api.gw.test. A 30"], [], []),
    ("api.gw.test.", RRType.MX, Rcode.NOERROR, True, [], SOA, []),
    ("nope.gw.test.", RRType.A, Rcode.NXDOMAIN, True, [], SOA, []),
    ("ent.gw.test.", RRType.A, Rcode.NOERROR, True, [], SOA, []),
    ("b.ent.gw.test.", RRType.A, Rcode.NOERROR, True, [], SOA, []),
    ("x.a.b.ent.gw.test.", RRType.A, Rcode.NXDOMAIN, True, [], SOA, []),
    ("chain1.gw.test.", RRType.A, Rcode.NOERROR, True,
     ["chain1.gw.test. CNAME 3600", "chain2.gw.test. CNAME 3600", "api.gw.test. A 30"], [], []),
    ("chain1.gw.test.", RRType.CNAME, Rcode.NOERROR, True, ["chain1.gw.test. CNAME 3600"], [], []),
    ("dangling.gw.test.", RRType.A, Rcode.NXDOMAIN, True, ["dangling.gw.test. CNAME 3600"], SOA,
     []),
    ("external.gw.test.", RRType.A, Rcode.NOERROR, True, ["external.gw.test. CNAME 3600"], [], []),
    ("loop1.gw.test.", RRType.A, Rcode.SERVFAIL, False,
     ["loop1.gw.test. CNAME 3600", "loop2.gw.test. CNAME 3600"] * 4
     + ["loop1.gw.test. CNAME 3600"], [], []),
    ("x.wild.gw.test.", RRType.TXT, Rcode.NOERROR, True, ["x.wild.gw.test. TXT 120"], [], []),
    ("a.b.wild.gw.test.", RRType.TXT, Rcode.NOERROR, True, ["a.b.wild.gw.test. TXT 120"], [], []),
    ("x.wild.gw.test.", RRType.A, Rcode.NOERROR, True, [], SOA, []),
    ("wild.gw.test.", RRType.TXT, Rcode.NOERROR, True, [], SOA, []),
    ("*.wild.gw.test.", RRType.TXT, Rcode.NOERROR, True, ["*.wild.gw.test. TXT 120"], [], []),
    ("foo.cn.gw.test.", RRType.A, Rcode.NOERROR, True,
     ["foo.cn.gw.test. CNAME 3600", "api.gw.test. A 30"], [], []),
    ("host.team.gw.test.", RRType.A, Rcode.NOERROR, False, [], ["team.gw.test. NS 3600"],
     ["ns.team.gw.test. A 3600"]),
    ("team.gw.test.", RRType.NS, Rcode.NOERROR, False, [], ["team.gw.test. NS 3600"],
     ["ns.team.gw.test. A 3600"]),
    ("team.gw.test.", RRType.DS, Rcode.NOERROR, True, [], SOA, []),
    ("gw.test.", RRType.NS, Rcode.NOERROR, True, ["gw.test. NS 3600"], [],
     ["ns1.gw.test. A 3600", "ns2.gw.test. A 3600", "ns2.gw.test. AAAA 3600"]),
    ("gw.test.", RRType.MX, Rcode.NOERROR, True, ["gw.test. MX 300"], [], ["mx.gw.test. A 3600"]),
    ("_api._tcp.gw.test.", RRType.SRV, Rcode.NOERROR, True, ["_api._tcp.gw.test. SRV 3600"], [],
     ["api.gw.test. A 30", "api.gw.test. AAAA 30"]),
    ("gw.test.", RRType.A, Rcode.NOERROR, True, ["gw.test. A 30"], [], []),  # ALIAS, min TTL
    ("gw.test.", RRType.AAAA, Rcode.NOERROR, True, ["gw.test. AAAA 30"], [], []),
    ("gw.test.", RRType.SOA, Rcode.NOERROR, True, ["gw.test. SOA 3600"], [], []),
    ("gw.test.", RRType.ANY, Rcode.NOERROR, True, ["gw.test. HINFO 3600"], [], []),
    ("gw.test.", RRType.AXFR, Rcode.REFUSED, False, [], [], []),
    ("gw.test.", RRType.IXFR, Rcode.REFUSED, False, [], [], []),
    ("example.org.", RRType.A, Rcode.REFUSED, False, [], [], []),
    ("test.", RRType.A, Rcode.REFUSED, False, [], [], []),
    ("gw.test.", 250, Rcode.NOTIMP, False, [], [], []),  # TSIG as a question
    ("gw.test.", 999, Rcode.NOERROR, True, [], SOA, []),  # unknown type: NODATA
    ("caa.gw.test.", RRType.CAA, Rcode.NOERROR, True, ["caa.gw.test. CAA 3600"], [], []),
    ("ptr.gw.test.", RRType.PTR, Rcode.NOERROR, True, ["ptr.gw.test. PTR 3600"], [], []),
]


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "aa", "answer", "authority", "additional"),
    CASES,
    ids=[f"{c[0]}-{c[1]}" for c in CASES],
)
def test_resolve(
    qname: str, qtype: RRType, rcode: Rcode, aa: bool, answer: list[str], authority: list[str],
    additional: list[str],
) -> None:
    message = ask(qname, qtype)
    assert (message.rcode, message.aa) == (rcode, aa)
    assert show(message.answer) == answer
    assert show(message.authority) == authority
    assert show(message.additional) == additional


def test_referral_glue_is_required_only_for_in_domain_servers() -> None:
    # ns.team.gw.test is below the cut: without its glue the delegation is unusable (RFC 9471).
    assert ask("host.team.gw.test.", RRType.A).glue_required


def test_classes_other_than_in_are_refused() -> None:
    assert resolve(ZONES, "api.gw.test.", 1, RRClass.CH, SNAPSHOT).rcode == Rcode.REFUSED


@pytest.mark.parametrize(
    ("qname", "qtype", "version", "rcode", "text"),
    [
        ("id.server.", RRType.TXT, None, Rcode.NOERROR, b"ns-a"),
        ("hostname.bind.", RRType.TXT, None, Rcode.NOERROR, b"ns-a"),
        ("version.bind.", RRType.TXT, None, Rcode.REFUSED, None),
        ("version.bind.", RRType.TXT, "dnsfail 1", Rcode.NOERROR, b"dnsfail 1"),
        ("other.bind.", RRType.TXT, None, Rcode.REFUSED, None),
    ],
)
def test_chaos(qname: str, qtype: RRType, version: str | None, rcode: Rcode,
               text: bytes | None) -> None:
    message = chaos(qname, qtype, "ns-a", version)
    assert message.rcode == rcode
    if text is None:
        assert not message.answer
    else:
        assert message.answer[0].rdatas[0].strings == (text,)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("qname", "zone"),
    [("gw.test.", "gw.test."), ("a.b.gw.test.", "gw.test."), ("xgw.test.", None), (".", None)],
)
def test_find_zone(qname: str, zone: str | None) -> None:
    found = find_zone(ZONES, qname)
    assert (found.origin if found else None) == zone
