"""Tests of parse_zone and load_zones: zone YAML -> validated Zone, every problem located.

Bad inputs are tables of (zone text, exact ``file:line: record: reason`` lines);
each text starts from ``APEX`` (lines 1-3; the apex NS under its absolute name,
so a body may still use the ``''`` key) and the line numbers in the
expectations can be read off the text.  No sockets, no sleeps.
"""

from __future__ import annotations

import gc
import os
import textwrap
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.errors import ConfigError
from dnsfail.model import (
    AAAA,
    CAA,
    CNAME,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    AllDown,
    Pool,
    PoolValue,
    ProbeProtocol,
    ProbeSpec,
    RRset,
    RRType,
    Rule,
    Status,
    Zone,
)
from dnsfail.zonefile import load_zones, parse_zone
from dnsfail.zonefile.load import collector_paused
from dnsfail.zonefile.names import owner_name

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "x.test."
APEX = """\
x.test.:
  type: NS
  values: [ns1.x.test., ns2.x.test.]
"""


def zone(body: str, *, serial: int = 1, previous: Zone | None = None) -> Zone:
    return parse_zone(
        APEX + textwrap.dedent(body), "z.yaml", ORIGIN, serial=serial, previous=previous
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_zone(text, "z.yaml", ORIGIN, serial=1)
    return [str(p) for p in caught.value.problems]


# --- good zones ------------------------------------------------------------------------------


def test_defaults_names_and_soa() -> None:
    z = zone(
        """\
        www:
          type: A
          value: 192.0.2.1
        host.deep.lab:
          type: AAAA
          value: 2001:DB8:0:0::1
        """
    )
    assert z.origin == ORIGIN
    assert z.source == "z.yaml"
    assert z.names == {
        "x.test.",
        "www.x.test.",
        "host.deep.lab.x.test.",
        "deep.lab.x.test.",  # empty non-terminals (RFC 4592 section 2.2.2)
        "lab.x.test.",
    }
    assert z.nodes["www.x.test."][RRType.A] == RRset(
        "www.x.test.", RRType.A, 3600, (A("192.0.2.1"),)
    )
    assert z.nodes["host.deep.lab.x.test."][RRType.AAAA].rdatas == (AAAA("2001:db8::1"),)
    assert z.nodes["x.test."][RRType.NS].rdatas == (NS("ns1.x.test."), NS("ns2.x.test."))
    assert "lab.x.test." not in z.nodes
    assert z.soa == RRset(
        ORIGIN,
        RRType.SOA,
        3600,
        (SOA("ns1.x.test.", "hostmaster.x.test.", 1, 3600, 600, 604800, 60),),
    )
    assert z.serial == 1
    assert z.negative_ttl == 60
    assert z.cuts == frozenset()
    assert z.alias is None
    assert dict(z.dynamic) == {}
    assert z.record_count == 4


def test_every_record_type() -> None:
    text = r"""
    '':
    - type: NS
      value: ns1.x.test.
    - type: ALIAS
      ttl: 60
      value: WWW.x.test.
    - type: MX
      values:
      - {preference: 10, exchange: mail.x.test.}
      - {priority: 20, value: mail2.example.net.}
    - type: CAA
      values:
      - {tag: issue, value: letsencrypt.org}
      - {flags: 128, tag: iodef, value: 'mailto:sec@x.test'}
    - type: TXT
      values: ['v=spf1 -all', 'a\; b']
    _sip._tcp:
      type: SRV
      value: {port: 5060, priority: 10, target: sip.x.test., weight: 5}
    www:
      type: A
      values: [192.0.2.1, 192.0.2.2]
    Api:
      type: CNAME
      value: www.x.test.
    1.2:
      type: PTR
      values: [a.example.net., b.example.net.]
    nomail:
      type: MX
      value: {exchange: ., preference: 0}
    """
    z = parse_zone(textwrap.dedent(text), "z.yaml", ORIGIN, serial=1)
    apex = z.nodes[ORIGIN]
    assert set(apex) == {RRType.NS, RRType.MX, RRType.CAA, RRType.TXT, RRType.SOA}
    assert apex[RRType.SOA] == z.soa
    assert z.alias == RRset(ORIGIN, RRType.CNAME, 60, (CNAME("www.x.test."),))
    assert apex[RRType.MX].rdatas == (MX(10, "mail.x.test."), MX(20, "mail2.example.net."))
    assert apex[RRType.CAA].rdatas == (
        CAA(0, "issue", "letsencrypt.org"),
        CAA(128, "iodef", "mailto:sec@x.test"),
    )
    assert apex[RRType.TXT].rdatas == (TXT((b"v=spf1 -all",)), TXT((b"a; b",)))
    assert z.nodes["_sip._tcp.x.test."][RRType.SRV].rdatas == (SRV(10, 5, 5060, "sip.x.test."),)
    assert z.nodes["api.x.test."][RRType.CNAME].rdatas == (CNAME("www.x.test."),)
    assert z.nodes["1.2.x.test."][RRType.PTR].rdatas == (
        PTR("a.example.net."),
        PTR("b.example.net."),
    )
    assert z.nodes["nomail.x.test."][RRType.MX].rdatas == (MX(0, "."),)  # null MX, RFC 7505
    assert {"_tcp.x.test.", "2.x.test."} <= z.names
    # 1 NS + 2 MX + 2 CAA + 2 TXT + SRV + 2 A + CNAME + 2 PTR + MX + the ALIAS
    assert z.record_count == 15


@pytest.mark.parametrize(
    ("value", "chunks"),
    [
        ("plain", (b"plain",)),
        (r"v=DKIM1\; k=rsa\; p=abc", (b"v=DKIM1; k=rsa; p=abc",)),
        ("", (b"",)),
        ("a" * 255, (b"a" * 255,)),
        ("a" * 256, (b"a" * 255, b"a")),
        ("b" * 600, (b"b" * 255, b"b" * 255, b"b" * 90)),
    ],
)
def test_txt_unescape_and_chunking(value: str, chunks: tuple[bytes, ...]) -> None:
    z = zone(f"t:\n  type: TXT\n  value: '{value}'\n")
    assert z.nodes["t.x.test."][RRType.TXT].rdatas == (TXT(chunks),)


def test_wildcards_delegation_and_glue() -> None:
    z = zone(
        """\
        '*':
          type: A
          value: 192.0.2.80
        '*.sub':
          type: CNAME
          value: www.x.test.
        team:
        - type: NS
          values: [ns1.team.x.test., ns.elsewhere.example.]
        ns1.team:
          type: A
          value: 192.0.2.153
        www.x.test.:
          type: A
          value: 192.0.2.1
        """
    )
    assert z.cuts == {"team.x.test."}
    assert {"*.x.test.", "*.sub.x.test.", "sub.x.test.", "ns1.team.x.test."} <= z.names
    assert z.nodes["ns1.team.x.test."][RRType.A].rdatas == (A("192.0.2.153"),)
    assert "www.x.test." in z.nodes  # an absolute key inside the zone


def test_soa_override() -> None:
    z = zone(
        """\
        '':
        - octodns:
            dnsfail:
              soa: {expire: 1209600, minimum: 0, mname: NS9.x.test., refresh: 7200,
                    retry: 900, rname: admin@example.net, serial: 2024010101, ttl: 300}
          type: TXT
          value: hello
        """
    )
    assert z.soa == RRset(
        ORIGIN,
        RRType.SOA,
        300,
        (SOA("ns9.x.test.", "admin.example.net.", 2024010101, 7200, 900, 1209600, 0),),
    )
    assert z.negative_ttl == 0


BASE = "www:\n  type: A\n  value: 192.0.2.1\n"


@pytest.mark.parametrize(
    ("previous_body", "previous_serial", "body", "serial", "expected"),
    [
        pytest.param(None, None, BASE, 500, 500, id="no-previous-uses-argument"),
        pytest.param(BASE, 700, BASE, 900, 700, id="unchanged-keeps-previous"),
        pytest.param(BASE, 700, BASE.replace(".1\n", ".2\n"), 900, 900, id="changed-takes-mtime"),
        pytest.param(
            BASE, 700, BASE.replace(".1\n", ".2\n"), 10, 701, id="changed-never-goes-back"
        ),
        pytest.param(BASE, 700, BASE + "  ttl: 60\n", 10, 701, id="ttl-change-is-a-change"),
        pytest.param(
            BASE,
            4294967295,
            BASE.replace(".1\n", ".2\n"),
            10,
            0,
            id="wraps-at-32-bits-rfc1982",
        ),
        pytest.param(
            BASE,
            700,
            BASE + "'':\n  octodns: {dnsfail: {soa: {serial: 42}}}\n  type: TXT\n  value: a\n",
            900,
            42,
            id="override-wins",
        ),
    ],
)
def test_serial_rules(
    previous_body: str | None,
    previous_serial: int | None,
    body: str,
    serial: int,
    expected: int,
) -> None:
    previous = None
    if previous_body is not None:
        assert previous_serial is not None
        previous = zone(previous_body, serial=previous_serial)
        assert previous.serial == previous_serial
    assert zone(body, serial=serial, previous=previous).serial == expected


def test_soa_only_change_bumps_serial() -> None:
    previous = zone(BASE, serial=700)
    changed = BASE + "'':\n  octodns: {dnsfail: {soa: {minimum: 30}}}\n  type: TXT\n  value: a\n"
    # the TXT changes content too; compare an SOA-only change on the same records:
    first = zone(changed, serial=700)
    second = zone(changed.replace("minimum: 30", "minimum: 31"), serial=10, previous=first)
    assert second.serial == 701
    assert zone(BASE, serial=10, previous=previous).serial == 700


def test_impossible_date_is_text() -> None:
    """YAML reads ``2001-02-30`` as a timestamp it cannot build; it stays text like any date."""
    z = zone("note:\n  type: TXT\n  values:\n  - 2001-02-30\n  - 2001-12-14\n")
    rdatas = z.nodes["note.x.test."][RRType.TXT].rdatas
    assert rdatas == (TXT((b"2001-02-30",)), TXT((b"2001-12-14",)))


def test_zone_is_immutable() -> None:
    z = zone(BASE)
    with pytest.raises(TypeError):
        z.nodes["evil.x.test."] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        z.nodes["www.x.test."][RRType.AAAA] = RRset("www.x.test.", RRType.AAAA, 1, ())  # type: ignore[index]


# --- bad zones: one problem each -------------------------------------------------------------

BAD_RECORDS = [
    # (id, body after APEX (starts at line 4), expected problem)
    ("bad-ipv4", "api:\n  type: A\n  value: 300.1.1.1\n",
     "z.yaml:6: api A: '300.1.1.1' is not a valid IPv4 address"),
    ("ipv4-in-aaaa", "api:\n  type: AAAA\n  value: 192.0.2.1\n",
     "z.yaml:6: api AAAA: '192.0.2.1' is not a valid IPv6 address"),
    ("ipv6-in-a", "api:\n  type: A\n  values:\n  - 192.0.2.1\n  - 2001:db8::1\n",
     "z.yaml:8: api A: '2001:db8::1' is not a valid IPv4 address"),
    ("not-a-string", "api:\n  type: A\n  value: 12\n",
     "z.yaml:6: api A: value must be a string, not 12"),
    ("ttl-too-big", "api:\n  ttl: 2147483648\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:5: api A: ttl 2147483648 is out of range 0..2147483647"),
    ("ttl-negative", "api:\n  ttl: -1\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:5: api A: ttl -1 is out of range 0..2147483647"),
    ("ttl-not-int", "api:\n  ttl: soon\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:5: api A: ttl must be an integer, not 'soon'"),
    ("value-and-values", "api:\n  type: A\n  value: 192.0.2.1\n  values: [192.0.2.2]\n",
     "z.yaml:4: api A: give 'value' or 'values', not both"),
    ("no-value", "api:\n  type: A\n",
     "z.yaml:4: api A: missing 'value' or 'values'"),
    ("empty-values", "api:\n  type: A\n  values: []\n",
     "z.yaml:6: api A: values is empty"),
    ("unknown-key", "api:\n  type: A\n  vaule: 192.0.2.1\n  value: 192.0.2.1\n",
     "z.yaml:6: api A: unknown key 'vaule' in record"),
    ("unknown-type", "api:\n  type: SOA\n  value: x\n",
     "z.yaml:5: api SOA: unknown record type 'SOA'"),
    ("lower-case-type", "api:\n  type: a\n  value: 192.0.2.1\n",
     "z.yaml:5: api a: unknown record type 'a'"),
    ("missing-type", "api:\n  value: 192.0.2.1\n",
     "z.yaml:4: api: missing 'type'"),
    ("duplicate-type",
     "api:\n- type: A\n  value: 192.0.2.1\n- type: A\n  value: 192.0.2.2\n",
     "z.yaml:7: api A: duplicate A record (first at line 5)"),
    ("duplicate-type-across-keys",
     "api:\n  type: A\n  value: 192.0.2.1\napi.x.test.:\n  type: A\n  value: 192.0.2.2\n",
     "z.yaml:7: api A: duplicate A record (first at line 4)"),
    ("duplicate-value", "api:\n  type: A\n  values:\n  - 192.0.2.1\n  - 192.0.2.1\n",
     "z.yaml:8: api A: duplicate value '192.0.2.1'"),
    ("leading-zero-ipv4", "api:\n  type: A\n  values:\n  - 192.0.2.1\n  - 192.0.2.01\n",
     "z.yaml:8: api A: '192.0.2.01' is not a valid IPv4 address"),
    ("duplicate-value-normalised", "api:\n  type: AAAA\n  values:\n  - 2001:db8::1\n"
                                   "  - 2001:DB8:0::1\n",
     "z.yaml:8: api AAAA: duplicate value '2001:db8::1'"),
    ("record-not-a-mapping", "api: 192.0.2.1\n",
     "z.yaml:4: api: expected a record mapping or a list of them, not '192.0.2.1'"),
    ("list-item-not-a-mapping", "api:\n- 192.0.2.1\n",
     "z.yaml:5: api: record must be a mapping, not '192.0.2.1'"),
    ("cname-no-dot", "api:\n  type: CNAME\n  value: www.example.com\n",
     "z.yaml:6: api CNAME: 'www.example.com' must be an absolute name ending with '.'"),
    ("cname-ip", "api:\n  type: CNAME\n  value: 192.0.2.1\n",
     "z.yaml:6: api CNAME: '192.0.2.1' is an IP address, not a host name"),
    ("cname-bad-host", "api:\n  type: CNAME\n  value: -bad.example.com.\n",
     "z.yaml:6: api CNAME: '-bad.example.com.' is not a valid host name"),
    ("cname-values", "api:\n  type: CNAME\n  values: [www.x.test.]\n",
     "z.yaml:6: api CNAME: CNAME takes a single 'value', not 'values'"),
    ("cname-and-a",
     "api:\n- type: A\n  value: 192.0.2.1\n- type: CNAME\n  value: www.x.test.\n",
     "z.yaml:7: api CNAME: CNAME cannot coexist with other records (A)"),
    ("cname-at-apex", "'':\n  type: CNAME\n  value: www.example.com.\n",
     "z.yaml:4: @ CNAME: CNAME is not allowed at the apex (use ALIAS)"),
    ("alias-not-at-apex", "api:\n  type: ALIAS\n  value: www.x.test.\nwww:\n  type: A\n"
                          "  value: 192.0.2.1\n",
     "z.yaml:4: api ALIAS: ALIAS is only allowed at the apex"),
    ("alias-and-a",
     "'':\n- type: ALIAS\n  value: www.x.test.\n- type: A\n  value: 192.0.2.1\n"
     "www:\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:5: @ ALIAS: ALIAS cannot coexist with A or AAAA records"),
    ("alias-outside", "'':\n  type: ALIAS\n  value: www.example.com.\n",
     "z.yaml:4: @ ALIAS: ALIAS target 'www.example.com.' must be a name inside the zone"),
    ("alias-missing-target", "'':\n  type: ALIAS\n  value: www.x.test.\n",
     "z.yaml:4: @ ALIAS: ALIAS target 'www.x.test.' does not exist in the zone"),
    ("outside-zone", "www.example.com.:\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: www.example.com.: 'www.example.com.' is outside the zone x.test."),
    ("suffix-not-a-label", "www.notx.test.:\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: www.notx.test.: 'www.notx.test.' is outside the zone x.test."),
    ("at-sign", "'@':\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: @: invalid name '@', use '' for the apex (octoDNS)"),
    ("long-label", "a" * 64 + ":\n  type: A\n  value: 192.0.2.1\n",
     f"z.yaml:4: {'a' * 64}: label '{'a' * 64}' is longer than 63 octets"),
    ("long-name", ".".join(["a" * 60] * 5) + ":\n  type: A\n  value: 192.0.2.1\n",
     f"z.yaml:4: {'.'.join(['a' * 60] * 5)}: name '{'.'.join(['a' * 60] * 5)}.x.test.' "
     "is longer than 255 octets"),
    ("empty-label", "a..b:\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: a..b: name 'a..b.x.test.' has an empty label"),
    ("wildcard-inside", "a.*.b:\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: a.*.b: '*' is only a wildcard as the whole leftmost label, not in 'a.*.b.x.test.'"),
    ("wildcard-partial", "'a*':\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: a*: '*' is only a wildcard as the whole leftmost label, not in 'a*.x.test.'"),
    ("bad-char", "'a b':\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:4: a b: label 'a b' has characters other than letters, digits, '-' and '_'"),
    ("occluded-below-cut",
     "team:\n  type: NS\n  value: ns.team.x.test.\nx.team:\n  type: TXT\n  value: hi\n",
     "z.yaml:7: x.team TXT: occluded by delegation at team.x.test."),
    ("occluded-at-cut",
     "team:\n- type: NS\n  value: ns.team.x.test.\n- type: MX\n"
     "  value: {exchange: ., preference: 0}\n",
     "z.yaml:7: team MX: occluded by delegation at team.x.test."),
    ("nested-delegation",
     "team:\n  type: NS\n  value: ns.team.x.test.\nsub.team:\n  type: NS\n  value: ns.example.\n",
     "z.yaml:7: sub.team NS: occluded by delegation at team.x.test."),
    ("ns-on-wildcard", "'*':\n  type: NS\n  value: ns.example.\n",
     "z.yaml:4: * NS: NS is not allowed on a wildcard (RFC 4592 section 4.2)"),
    ("ns-ip", "sub:\n  type: NS\n  values: [192.0.2.1]\n",
     "z.yaml:6: sub NS: '192.0.2.1' is an IP address, not a host name"),
    ("mx-missing-exchange", "'':\n  type: MX\n  value: {preference: 10}\n",
     "z.yaml:6: @ MX: missing 'exchange' in MX value"),
    ("mx-preference-range", "'':\n  type: MX\n  value:\n    exchange: m.x.test.\n"
                            "    preference: 65536\n",
     "z.yaml:8: @ MX: preference 65536 is out of range 0..65535"),
    ("mx-scalar", "'':\n  type: MX\n  value: 10 m.x.test.\n",
     "z.yaml:6: @ MX: MX value must be a mapping, not '10 m.x.test.'"),
    ("mx-unknown-field", "'':\n  type: MX\n"
                         "  value: {exchange: m.x.test., preference: 1, weight: 3}\n",
     "z.yaml:6: @ MX: unknown key 'weight' in MX value"),
    ("srv-owner", "sip:\n  type: SRV\n"
                  "  value: {port: 1, priority: 1, target: s.x.test., weight: 1}\n",
     "z.yaml:4: sip SRV: SRV owner must look like _service._proto (RFC 2782)"),
    ("srv-port", "_sip._tcp:\n  type: SRV\n"
                 "  value: {port: 70000, priority: 1, target: s.x.test., weight: 1}\n",
     "z.yaml:6: _sip._tcp SRV: port 70000 is out of range 0..65535"),
    ("srv-missing-target", "_sip._tcp:\n  type: SRV\n  value: {port: 7, priority: 1, weight: 1}\n",
     "z.yaml:6: _sip._tcp SRV: missing 'target' in SRV value"),
    ("caa-tag", "'':\n  type: CAA\n  value: {tag: issue-wild, value: x}\n",
     "z.yaml:6: @ CAA: CAA tag 'issue-wild' must be 1 to 15 letters or digits"),
    ("caa-flags", "'':\n  type: CAA\n  value: {flags: 256, tag: issue, value: x}\n",
     "z.yaml:6: @ CAA: flags 256 is out of range 0..255"),
    ("txt-unescaped", "t:\n  type: TXT\n  value: v=DKIM1; k=rsa\n",
     "z.yaml:6: t TXT: unescaped ';' in 'v=DKIM1; k=rsa' (write '\\;')"),
    ("txt-non-ascii", "t:\n  type: TXT\n  value: café\n",
     "z.yaml:6: t TXT: non-ASCII character in 'café'"),
    ("txt-number", "t:\n  type: TXT\n  values:\n  - 42\n",
     "z.yaml:7: t TXT: value must be a string, not 42"),
    ("dynamic-on-cname",
     "api:\n  dynamic: {pools: {}, rules: []}\n  type: CNAME\n  value: www.example.com.\n",
     "z.yaml:5: api CNAME: dynamic is only supported on A and AAAA records"),
    ("dnsfail-knob-without-dynamic",
     "api:\n  octodns:\n    dnsfail:\n      ttl_floor: 5\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:7: api A: 'ttl_floor' only applies to dynamic records"),
    ("dnsfail-unknown-knob",
     "api:\n  octodns:\n    dnsfail:\n      ttl_flor: 5\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:7: api A: unknown key 'ttl_flor' in octodns.dnsfail"),
    ("soa-below-apex",
     "api:\n  octodns:\n    dnsfail:\n      soa: {serial: 1}\n  type: A\n  value: 192.0.2.1\n",
     "z.yaml:7: api A: 'soa' is only allowed on apex records"),
    ("soa-bad-serial",
     "'':\n  octodns:\n    dnsfail:\n      soa:\n        serial: 4294967296\n  type: TXT\n"
     "  value: a\n",
     "z.yaml:8: @ TXT: serial 4294967296 is out of range 0..4294967295"),
    ("soa-bad-mname",
     "'':\n  octodns:\n    dnsfail:\n      soa:\n        mname: ns1.x.test\n  type: TXT\n"
     "  value: a\n",
     "z.yaml:8: @ TXT: 'ns1.x.test' must be an absolute name ending with '.'"),
    ("soa-unknown-field",
     "'':\n  octodns:\n    dnsfail:\n      soa:\n        negative: 5\n  type: TXT\n  value: a\n",
     "z.yaml:8: @ TXT: unknown key 'negative' in soa"),
    ("soa-twice",
     "'':\n- octodns: {dnsfail: {soa: {retry: 5}}}\n  type: TXT\n  value: a\n"
     "- octodns: {dnsfail: {soa: {retry: 6}}}\n  type: MX\n  value: {exchange: ., preference: 0}\n",
     "z.yaml:8: @ MX: SOA override already given on '@ TXT'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"), [pytest.param(b, e, id=i) for i, b, e in BAD_RECORDS]
)
def test_bad_record(body: str, expected: str) -> None:
    assert problems(APEX + body) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("api: [\n", ["z.yaml:2: (yaml): while parsing a flow node, expected the "
                                  "node content, but found '<stream end>'"], id="unclosed"),
        pytest.param("a: b\n\tc: d\n"
                     "", ["z.yaml:2: (yaml): while scanning for the next token, found "
                                        "character '\\t' that cannot start any token"],
                     id="tab"),
        pytest.param("a: 1\n---\nb: 2\n", ["z.yaml:2: (yaml): expected a single document in the "
                                            "stream, but found another document"], id="two-docs"),
        pytest.param("\x00", ["z.yaml:1: (yaml): special characters are not allowed"], id="nul"),
        pytest.param("- a\n", ["z.yaml:1: (zone): the top level must be a mapping, not a list"],
                     id="list"),
        pytest.param("just text\n", ["z.yaml:1: (zone): the top level must be a mapping, not "
                                     "'just text'"], id="scalar"),
        pytest.param("", ["z.yaml:1: @ NS: the apex has no NS record"], id="empty"),
        pytest.param(APEX + "a: !include other.yaml\n",
                     ["z.yaml:4: (yaml): could not determine a constructor for the tag '!include'",
                      "z.yaml:4: a: expected a record mapping or a list of them, not None"],
                     id="include-tag"),
        pytest.param(APEX + "a: &x [*x]\n",
                     ["z.yaml:4: (yaml): recursive alias",
                      "z.yaml:4: a: record must be a mapping, not None"], id="recursive-alias"),
        pytest.param(APEX + "www:\n  type: A\n  value: 192.0.2.1\nwww:\n  type: A\n"
                     "  value: 192.0.2.2\n",
                     ["z.yaml:7: (yaml): duplicate key 'www' (first at line 4)"], id="dup-key"),
        pytest.param(APEX + "www:\n  type: A\n  value: 192.0.2.1\n  type: AAAA\n",
                     ["z.yaml:7: (yaml): duplicate key 'type' (first at line 5)"],
                     id="dup-inner-key"),
        pytest.param("www:\n  type: A\n  value: 192.0.2.1\n",
                     ["z.yaml:1: @ NS: the apex has no NS record"], id="no-apex"),
        pytest.param("'':\n  type: TXT\n  value: a\n",
                     ["z.yaml:1: @ NS: the apex has no NS record"], id="apex-without-ns"),
    ],
)  # fmt: skip
def test_bad_file(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = APEX + textwrap.dedent(
        """\
        base: &base {ttl: 60, type: A, value: 192.0.2.1}
        www:
          <<: *base
          value: 192.0.2.2
        """
    )
    z = parse_zone(text, "z.yaml", ORIGIN, serial=1)
    assert z.nodes["www.x.test."][RRType.A] == RRset("www.x.test.", RRType.A, 60, (A("192.0.2.2"),))


def test_every_problem_in_a_file_is_reported() -> None:
    text = textwrap.dedent(
        """\
        api:
          type: A
          value: 300.1.1.1
        www:
          ttl: -5
          type: CNAME
          value: nodot
        mail:
          type: MX
          value: {preference: 99999}
        '*.x':
          type: BOGUS
          value: 1
        """
    )
    assert problems(text) == [
        "z.yaml:1: @ NS: the apex has no NS record",
        "z.yaml:3: api A: '300.1.1.1' is not a valid IPv4 address",
        "z.yaml:5: www CNAME: ttl -5 is out of range 0..2147483647",
        "z.yaml:7: www CNAME: 'nodot' must be an absolute name ending with '.'",
        "z.yaml:10: mail MX: missing 'exchange' in MX value",
        "z.yaml:10: mail MX: preference 99999 is out of range 0..65535",
        "z.yaml:12: *.x BOGUS: unknown record type 'BOGUS'",
    ]


# --- dynamic records ------------------------------------------------------------------------------

DYNAMIC = """\
api:
  dynamic:
    pools:
      eu:
        fallback: us
        values:
        - value: 192.0.2.10
        - {status: down, value: 192.0.2.11, weight: 2}
      us:
        values:
        - value: 198.51.100.10
    rules:
    - geos: [EU]
      pool: eu
    - pool: us
  octodns:
    dnsfail:
      all_down: servfail
      healthcheck:
        body_match: ok
        ca_file: /etc/ca.pem
        expect_status: [200, 204]
        fall: 4
        headers: {X-Check: dnsfail}
        interval: 10
        probe_addresses: {192.0.2.10: 10.0.0.10}
        rise: 3
        timeout: 1.5
        verify_tls: false
      rules:
      - pools: [eu, us]
      - pools: [us]
      ttl_floor: 10
    healthcheck: {host: health.x.test, path: /health, port: 8443, protocol: HTTPS}
  ttl: 30
  type: A
  values: [192.0.2.99]
"""


def test_dynamic_record_parses() -> None:
    z = zone(DYNAMIC)
    record = z.dynamic[("api.x.test.", RRType.A)]
    probe = ProbeSpec(
        protocol=ProbeProtocol.HTTPS,
        address="192.0.2.11",
        port=8443,
        host="health.x.test",
        path="/health",
        interval=10.0,
        timeout=1.5,
        rise=3,
        fall=4,
        expect_status=(200, 204),
        body_match="ok",
        headers=(("X-Check", "dnsfail"),),
        verify_tls=False,
        ca_file="/etc/ca.pem",
    )
    assert dict(record.pools) == {
        "eu": Pool(
            "eu",
            (
                PoolValue("192.0.2.10", 1, Status.OBEY, _replace(probe, address="10.0.0.10")),
                PoolValue("192.0.2.11", 2, Status.DOWN, probe),
            ),
            fallback="us",
        ),
        "us": Pool(
            "us",
            (PoolValue("198.51.100.10", 1, Status.OBEY, _replace(probe, address="198.51.100.10")),),
        ),
    }
    assert record.rules == (Rule(("eu", "us"), geos=("EU",)), Rule(("us",)))
    assert record.backup == ("192.0.2.99",)
    assert record.all_down is AllDown.SERVFAIL
    assert record.ttl_floor == 10
    assert record.ttl == 30
    # the backup is also the static RRset, so type existence is uniform for the resolver
    assert z.nodes["api.x.test."][RRType.A].rdatas == (A("192.0.2.99"),)


def _replace(spec: ProbeSpec, **changes: str) -> ProbeSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_dynamic_defaults_follow_octodns() -> None:
    z = zone(
        """\
        api:
          dynamic:
            pools:
              one: {values: [{value: '2001:db8::1'}]}
            rules:
            - subnets: [10.0.0.0/8]
              pool: one
            - pool: one
          type: AAAA
          values: ['2001:db8::99']
        """
    )
    record = z.dynamic[("api.x.test.", RRType.AAAA)]
    (value,) = record.pools["one"].values
    # octoDNS: HTTPS, port 443, path /_dns, host = record FQDN; dnsfail: 5 s / 2 s, rise 2, fall 3
    assert value.probe == ProbeSpec(ProbeProtocol.HTTPS, "2001:db8::1", 443, "api.x.test", "/_dns")
    assert record.rules[0].subnets[0].prefixlen == 8
    assert record.rules == (Rule(("one",), subnets=record.rules[0].subnets), Rule(("one",)))
    assert record.all_down is AllDown.BACKUP
    assert record.ttl_floor == 5
    assert record.ttl == 3600


def test_tcp_probes_ignore_http_knobs() -> None:
    z = zone(
        """\
        api:
          dynamic:
            pools:
              one: {values: [{value: 192.0.2.1}]}
            rules:
            - pool: one
          octodns:
            healthcheck: {path: /x, port: 25, protocol: TCP}
          type: A
          values: [192.0.2.9]
        """
    )
    (value,) = z.dynamic[("api.x.test.", RRType.A)].pools["one"].values
    assert value.probe == ProbeSpec(ProbeProtocol.TCP, "192.0.2.1", 25)


def _dyn(pools: str, rules: str, extra: str = "", values: str = "  values: [192.0.2.99]\n") -> str:
    """A dynamic record at line 4 (after APEX): dynamic(5) pools(6) <pools> rules <rules>."""
    return (
        "api:\n  dynamic:\n    pools:\n"
        + textwrap.indent(textwrap.dedent(pools), "      ")
        + ("    rules: []\n" if rules == "[]" else "    rules:\n")
        + ("" if rules == "[]" else textwrap.indent(textwrap.dedent(rules), "    "))
        + extra
        + "  type: A\n"
        + values
    )


P2 = "eu: {fallback: us, values: [{value: 192.0.2.10}]}\nus: {values: [{value: 192.0.2.20}]}\n"
R2 = "- {geos: [EU], pool: eu}\n- pool: us\n"

BAD_DYNAMIC = [
    # pools start at line 7; with P2, rules start at line 10.
    ("weight-range", "a: {values: [{value: 192.0.2.1, weight: 0}, {value: 192.0.2.2}]}\n",
     "- pool: a\n",
     "z.yaml:7: api A: pool 'a' value 1 weight 0 is out of range 1..100"),
    ("weight-range-high", "a: {values: [{value: 192.0.2.1}, {value: 192.0.2.2, weight: 101}]}\n",
     "- pool: a\n",
     "z.yaml:7: api A: pool 'a' value 2 weight 101 is out of range 1..100"),
    ("single-weight", "a: {values: [{value: 192.0.2.1, weight: 5}]}\n", "- pool: a\n",
     "z.yaml:7: api A: pool 'a' has a single value with weight != 1 (octoDNS)"),
    ("status", "a: {values: [{status: sick, value: 192.0.2.1}]}\n", "- pool: a\n",
     "z.yaml:7: api A: pool 'a' value 1 status 'sick' is not one of up, down, obey"),
    ("family", "a: {values: [{value: '2001:db8::1'}]}\n", "- pool: a\n",
     "z.yaml:7: api A: '2001:db8::1' is not a valid IPv4 address"),
    ("missing-value", "a: {values: [{weight: 1}]}\n", "- pool: a\n",
     "z.yaml:7: api A: missing 'value' in pool 'a' value 1"),
    ("dup-pool-value", "a: {values: [{value: 192.0.2.1}, {value: 192.0.2.1}]}\n", "- pool: a\n",
     "z.yaml:7: api A: duplicate value '192.0.2.1' in pool 'a'"),
    ("pool-name", "'a b': {values: [{value: 192.0.2.1}]}\n", "- pool: a b\n",
     "z.yaml:7: api A: invalid pool name 'a b'"),
    ("pool-no-values", "a: {fallback: null}\n", "- pool: a\n",
     "z.yaml:7: api A: pool 'a' is missing 'values'"),
    ("fallback-undefined", "a: {fallback: zz, values: [{value: 192.0.2.1}]}\n", "- pool: a\n",
     "z.yaml:7: api A: pool 'a': fallback 'zz' is not a pool"),
    ("fallback-loop",
     "a: {fallback: b, values: [{value: 192.0.2.1}]}\n"
     "b: {fallback: a, values: [{value: 192.0.2.2}]}\n",
     "- pool: a\n", "z.yaml:7: api A: loop in pool fallbacks: a -> b -> a"),
    ("fallback-self", "a: {fallback: a, values: [{value: 192.0.2.1}]}\n", "- pool: a\n",
     "z.yaml:7: api A: loop in pool fallbacks: a -> a"),
    ("unused-pool", P2 + "spare: {values: [{value: 192.0.2.30}]}\n", R2,
     "z.yaml:9: api A: pool 'spare' is not used by any rule or fallback"),
    ("rule-pool-undefined", P2, "- {geos: [EU], pool: eu}\n- pool: asia\n",
     "z.yaml:11: api A: rule 2: pool 'asia' is not defined"),
    ("rule-no-pool", P2, "- {geos: [EU], pool: eu}\n- {geos: [AS]}\n- pool: us\n",
     "z.yaml:11: api A: rule 2 has no 'pool'"),
    ("no-catch-all", P2, "- {geos: [EU], pool: eu}\n- {geos: [NA], pool: us}\n",
     "z.yaml:11: api A: no catch-all rule (the last rule must have no geos and no subnets)"),
    ("two-catch-alls", P2, "- {geos: [EU], pool: eu}\n- pool: us\n- pool: eu\n",
     "z.yaml:12: api A: rule 3 is a second catch-all rule"),
    ("catch-all-not-last", P2, "- pool: us\n- {geos: [EU], pool: eu}\n",
     "z.yaml:10: api A: rule 1 is a catch-all but is not the last rule"),
    ("order-geo-before-subnet", P2 + "lan: {values: [{value: 192.0.2.40}]}\n",
     "- {geos: [EU], pool: eu}\n- {pool: lan, subnets: [10.0.0.0/8]}\n- pool: us\n",
     "z.yaml:12: api A: rule 2 is out of order: subnet-only rules come first, then subnet+geo "
     "rules, then geo-only rules"),
    ("pool-reused", P2, "- {geos: [EU], pool: eu}\n- {geos: [AS], pool: eu}\n- pool: us\n",
     "z.yaml:11: api A: rule 2: pool 'eu' is already used by rule 1 (a pool may back only one "
     "rule besides the catch-all)"),
    ("geo-shape", P2, "- {geos: [Europe], pool: eu}\n- pool: us\n",
     "z.yaml:10: api A: rule 1: invalid geo code 'Europe'"),
    ("geo-shadowed", P2 + "de: {values: [{value: 192.0.2.50}]}\n",
     "- {geos: [EU], pool: eu}\n- {geos: [EU-DE], pool: de}\n- pool: us\n",
     "z.yaml:12: api A: rule 2: geo EU-DE is already covered by EU in rule 1"),
    ("subnet-host-bits", P2, "- {pool: eu, subnets: [10.0.0.1/8]}\n- pool: us\n",
     "z.yaml:10: api A: rule 1: subnet '10.0.0.1/8' has host bits set"),
    ("subnet-invalid", P2, "- {pool: eu, subnets: [10.0.0.0/33]}\n- pool: us\n",
     "z.yaml:10: api A: rule 1: '10.0.0.0/33' is not a valid subnet"),
    ("subnet-shadowed", P2 + "lan: {values: [{value: 192.0.2.40}]}\n",
     "- {pool: eu, subnets: [10.0.0.0/8]}\n- {pool: lan, subnets: [10.1.0.0/16]}\n- pool: us\n",
     "z.yaml:12: api A: rule 2: subnet 10.1.0.0/16 is already covered by 10.0.0.0/8 in rule 1"),
    ("no-rules", P2, "[]",
     "z.yaml:9: api A: rules is empty"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pools", "rules", "expected"), [pytest.param(p, r, e, id=i) for i, p, r, e in BAD_DYNAMIC]
)
def test_bad_dynamic(pools: str, rules: str, expected: str) -> None:
    found = problems(APEX + _dyn(pools, rules))
    assert expected in found, found
    if rules != "[]":
        assert found == [expected]


def _knobs(yaml_text: str) -> str:
    return "  octodns:\n" + textwrap.indent(textwrap.dedent(yaml_text), "    ")


BAD_KNOBS = [
    # with P2/R2 the octodns block starts at line 12, its first inner line is 13.
    ("protocol", "healthcheck: {protocol: ICMP}\n",
     "z.yaml:13: api A: healthcheck protocol 'ICMP' is not one of HTTP, HTTPS, TCP"),
    ("port", "healthcheck: {port: 0}\n",
     "z.yaml:13: api A: healthcheck port 0 is out of range 1..65535"),
    ("path", "healthcheck: {path: health}\n",
     "z.yaml:13: api A: healthcheck path 'health' must start with '/'"),
    ("healthcheck-unknown", "healthcheck: {url: /x}\n",
     "z.yaml:13: api A: unknown key 'url' in octodns.healthcheck"),
    ("interval", "dnsfail:\n  healthcheck: {interval: 0.1}\n",
     "z.yaml:14: api A: interval 0.1 is out of range 0.5..3600"),
    ("timeout-vs-interval", "dnsfail:\n  healthcheck:\n    interval: 2\n    timeout: 2\n",
     "z.yaml:16: api A: timeout 2 must be shorter than interval 2"),
    ("rise", "dnsfail:\n  healthcheck: {rise: 0}\n",
     "z.yaml:14: api A: rise 0 is out of range 1..100"),
    ("fall", "dnsfail:\n  healthcheck: {fall: 101}\n",
     "z.yaml:14: api A: fall 101 is out of range 1..100"),
    ("status-code", "dnsfail:\n  healthcheck:\n    expect_status: [200, 600]\n",
     "z.yaml:15: api A: expect_status 600 is out of range 100..599"),
    ("verify-tls", "dnsfail:\n  healthcheck: {verify_tls: maybe}\n",
     "z.yaml:14: api A: verify_tls must be true or false, not 'maybe'"),
    ("unknown-knob", "dnsfail:\n  healthcheck: {retries: 3}\n",
     "z.yaml:14: api A: unknown key 'retries' in octodns.dnsfail.healthcheck"),
    ("probe-address-not-in-pool",
     "dnsfail:\n  healthcheck:\n    probe_addresses: {192.0.2.77: 10.0.0.1}\n",
     "z.yaml:15: api A: probe_addresses names '192.0.2.77', which is in no pool"),
    ("probe-address-invalid",
     "dnsfail:\n  healthcheck:\n    probe_addresses: {192.0.2.10: nowhere}\n",
     "z.yaml:15: api A: 'nowhere' is not a valid IP address"),
    ("all-down", "dnsfail: {all_down: panic}\n",
     "z.yaml:13: api A: all_down 'panic' is not one of backup, all, servfail"),
    ("ttl-floor-above-ttl", "dnsfail: {ttl_floor: 7200}\n",
     "z.yaml:13: api A: ttl_floor 7200 is above the record's ttl 3600"),
    ("rules-length", "dnsfail:\n  rules:\n  - pools: [eu]\n",
     "z.yaml:15: api A: octodns.dnsfail.rules has 1 entries, dynamic.rules has 2"),
    ("rules-unknown-pool", "dnsfail:\n  rules:\n  - pools: [eu, asia]\n  - pools: [us]\n",
     "z.yaml:15: api A: octodns.dnsfail.rules item 1: pool 'asia' is not defined"),
    ("rules-pool-twice", "dnsfail:\n  rules:\n  - pools: [eu, us, eu]\n  - pools: [us]\n",
     "z.yaml:15: api A: octodns.dnsfail.rules item 1: pool 'eu' is listed twice"),
]  # fmt: skip


@pytest.mark.parametrize(("knobs", "expected"), [pytest.param(k, e, id=i) for i, k, e in BAD_KNOBS])
def test_bad_dynamic_knobs(knobs: str, expected: str) -> None:
    assert problems(APEX + _dyn(P2, R2, _knobs(knobs))) == [expected]


def test_dynamic_needs_backup_values() -> None:
    assert problems(APEX + _dyn(P2, R2, values="")) == [
        "z.yaml:4: api A: missing 'values' (a dynamic record's backup answer)"
    ]


def test_dynamic_missing_pools_and_rules() -> None:
    text = APEX + "api:\n  dynamic: {}\n  type: A\n  values: [192.0.2.99]\n"
    assert problems(text) == [
        "z.yaml:5: api A: dynamic has no 'pools'",
        "z.yaml:5: api A: dynamic has no 'rules'",
    ]


def test_ordered_pools_count_as_used() -> None:
    z = zone(
        _dyn(
            "a: {values: [{value: 192.0.2.1}]}\nb: {values: [{value: 192.0.2.2}]}\n",
            "- pool: a\n",
            _knobs("dnsfail:\n  rules:\n  - pools: [a, b]\n"),
        )
    )
    assert z.dynamic[("api.x.test.", RRType.A)].rules == (Rule(("a", "b")),)


# --- load_zones -----------------------------------------------------------------------------------


def _write(path: Path, text: str, mtime: int = 1_700_000_000) -> Path:
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def test_load_directory(tmp_path: Path) -> None:
    _write(tmp_path / "a.test.yaml", "'':\n  type: NS\n  value: ns.a.test.\n", 1_700_000_000)
    _write(tmp_path / "B.Test.yml", "'':\n  type: NS\n  value: ns.b.test.\n", 1_700_000_500)
    _write(tmp_path / "notes.txt", "not a zone")
    zones = load_zones([str(tmp_path)])
    assert sorted(zones) == ["a.test.", "b.test."]
    assert zones["a.test."].serial == 1_700_000_000
    assert zones["b.test."].serial == 1_700_000_500
    assert zones["b.test."].source == str(tmp_path / "B.Test.yml")


def test_load_keeps_serial_of_unchanged_zone(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.test.yaml", "'':\n  type: NS\n  value: ns.a.test.\n", 1_700_000_000)
    first = load_zones([str(path)])
    _write(path, "'':\n  type: NS\n  value: ns.a.test.\n# touched\n", 1_700_000_900)
    assert load_zones([str(path)], first)["a.test."].serial == 1_700_000_000
    _write(path, "'':\n  type: NS\n  value: ns2.a.test.\n", 1_700_000_950)
    assert load_zones([str(path)], first)["a.test."].serial == 1_700_000_950


def test_load_reports_every_file(tmp_path: Path) -> None:
    _write(
        tmp_path / "a.test.yaml",
        "'':\n  type: NS\n  value: ns.a.test.\nx:\n  type: A\n  value: 1\n",
    )
    _write(tmp_path / "a.test.yml", "'':\n  type: NS\n  value: ns.a.test.\n")
    _write(tmp_path / "b.test.yaml", "b: [\n")
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as caught:
        load_zones([str(tmp_path), str(missing)])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}/a.test.yaml:6: x A: value must be a string, not 1",
        f"{tmp_path}/a.test.yml:1: (zone): zone a.test. is also defined in {tmp_path}/a.test.yaml",
        f"{tmp_path}/b.test.yaml:2: (yaml): while parsing a flow node, expected the node content, "
        "but found '<stream end>'",
        f"{missing}:1: (zone): no such file or directory",
    ]


def test_load_same_file_twice_is_one_zone(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.test.yaml", "'':\n  type: NS\n  value: ns.a.test.\n")
    assert list(load_zones([str(tmp_path), str(path)])) == ["a.test."]


def test_load_bad_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "a..test.yaml", "'':\n  type: NS\n  value: ns.a.test.\n")
    with pytest.raises(ConfigError) as caught:
        load_zones([str(path)])
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:1: (zone): file name 'a..test.yaml' is not a zone name: "
        "name 'a..test.' has an empty label"
    ]


# --- the shipped example zone -------------------------------------------------------------------


def test_example_zone_loads() -> None:
    zones = load_zones([str(ROOT / "zones")])
    gw = zones["gw.example.com."]
    assert gw.cuts == {"team.gw.example.com."}
    assert gw.alias is not None
    assert {"*.gw.example.com.", "*.sub.gw.example.com.", "sub.gw.example.com."} <= gw.names
    assert "lab.gw.example.com." in gw.names
    assert "lab.gw.example.com." not in gw.nodes
    txt = gw.nodes["_dmarc.gw.example.com."][RRType.TXT].rdatas[0]
    assert isinstance(txt, TXT)
    assert b";" in txt.strings[0]
    assert b"\\" not in txt.strings[0]


def test_example_zone_loads_in_octodns() -> None:
    """The example must stay a valid octoDNS zone (sorted keys included)."""
    provider_yaml = pytest.importorskip("octodns.provider.yaml")
    octodns_zone = pytest.importorskip("octodns.zone")
    provider = provider_yaml.YamlProvider("example", str(ROOT / "zones"), escaped_semicolons=True)
    target = octodns_zone.Zone("gw.example.com.", [])
    provider.populate(target)
    ours = load_zones([str(ROOT / "zones")])["gw.example.com."]
    theirs = {(r.name, r._type) for r in target.records}
    assert ("", "ALIAS") in theirs
    mine = {
        (name[: -len("gw.example.com.") - 1] if name != "gw.example.com." else "", rtype.name)
        for name, by_type in ours.nodes.items()
        for rtype in by_type
    }
    assert mine - {("", "SOA")} | {("", "ALIAS")} == theirs  # octoDNS has no SOA record


# --- robustness -----------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**33), 2**33),
    st.text(max_size=20),
    st.sampled_from(["A", "AAAA", "CNAME", "NS", "MX", "TXT", "SRV", "CAA", "ALIAS", "PTR"]),
    st.sampled_from(["192.0.2.1", "2001:db8::1", "x.test.", "", "*", "eu", "10.0.0.0/8"]),
)
keys = st.sampled_from(
    ["", "www", "*", "type", "value", "values", "ttl", "dynamic", "pools", "rules", "pool",
     "octodns", "dnsfail", "healthcheck", "soa", "fallback", "geos", "subnets", "preference",
     "exchange", "port", "weight", "status", "tag", "flags", "target", "probe_addresses"]
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_yaml_document_gives_a_zone_or_config_error(doc: object) -> None:
    """Like h11's fuzz invariant: parse or raise ConfigError, never anything else."""
    _zone_or_problems(yaml.safe_dump(doc))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_zone_or_config_error(text: str) -> None:
    _zone_or_problems(text)


def _zone_or_problems(text: str) -> None:
    try:
        parse_zone(text, "z.yaml", ORIGIN, serial=1)
    except ConfigError as exc:
        if not exc.problems:
            raise


LONG = ".".join(["a" * 61] * 4)  # 247 octets


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("www", ("www.x.test.", None)),
        ("a-b_c.d9", ("a-b_c.d9.x.test.", None)),
        ("WWW", ("www.x.test.", None)),
        ("a" * 63, ("a" * 63 + ".x.test.", None)),
        ("a" * 64, (None, f"label {'a' * 64!r} is longer than 63 octets")),
        # 246 + 1 + 7 octets and the root label's length octet: 255, the longest name there is.
        (LONG[:246], (LONG[:246] + ".x.test.", None)),
        (LONG, (None, f"name {LONG + '.x.test.'!r} is longer than 255 octets")),
        ("a..b", (None, "name 'a..b.x.test.' has an empty label")),
        ("@", (None, "invalid name '@', use '' for the apex (octoDNS)")),
        ("", ("x.test.", None)),
    ],
)  # fmt: skip
def test_owner_names(key: str, expected: tuple[str | None, str | None]) -> None:
    assert owner_name(key, ORIGIN) == expected


# --- the garbage collector pause -------------------------------------------------------------


def test_collector_is_on_again_after_a_parse_good_or_bad() -> None:
    zone(BASE)
    assert gc.isenabled()
    with pytest.raises(ConfigError):
        parse_zone("a: [\n", "z.yaml", ORIGIN, serial=1)
    assert gc.isenabled()


def test_collector_is_off_while_paused() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collector_pauses_nest_across_threads() -> None:
    inside = threading.Barrier(2)
    leave = threading.Event()

    def load() -> None:
        with collector_paused():
            inside.wait()
            leave.wait()

    thread = threading.Thread(target=load)
    thread.start()
    with collector_paused():
        inside.wait()
    assert not gc.isenabled()  # the other load still runs
    leave.set()
    thread.join()
    assert gc.isenabled()


def test_collector_stays_off_if_it_was_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- the dual-stack shorthand ---------------------------------------------------------------

DUAL = """\
api:
  dynamic:
    pools:
      eu: {fallback: us, values: [{value: 192.0.2.10}, {value: 192.0.2.11, status: down}]}
      us: {values: [{value: 198.51.100.10, weight: 1}]}
    rules:
    - pool: eu
  octodns:
    dnsfail:
      ipv6:
        192.0.2.10: 2001:db8::10
        192.0.2.11: 2001:db8::11
        192.0.2.99: 2001:db8::99
        198.51.100.10: 2001:db8:1::10
    healthcheck: {port: 8443, protocol: TCP}
  ttl: 30
  type: A
  values: [192.0.2.99]
"""


def test_ipv6_shorthand_makes_an_aaaa_twin_probed_per_family() -> None:
    z = zone(DUAL)
    v4 = z.dynamic[("api.x.test.", RRType.A)]
    v6 = z.dynamic[("api.x.test.", RRType.AAAA)]
    assert v6.rtype == RRType.AAAA
    assert v6.rules == v4.rules
    assert v6.backup == ("2001:db8::99",)
    assert [(v.value, v.status) for v in v6.pools["eu"].values] == [
        ("2001:db8::10", Status.OBEY), ("2001:db8::11", Status.DOWN)
    ]
    assert v6.pools["eu"].fallback == "us"
    probe = v6.pools["us"].values[0].probe
    assert probe is not None
    assert probe.address == "2001:db8:1::10"
    assert probe.port == 8443
    assert probe.protocol == ProbeProtocol.TCP


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("        198.51.100.10: 2001:db8:1::10\n", ""),
         "z.yaml:13: api A: ipv6 has no address for 198.51.100.10"),
        (("2001:db8::11", "not-an-address"),
         "z.yaml:15: api A: 'not-an-address' is not a valid IPv6 address"),
        (("        192.0.2.99: 2001:db8::99\n",
          "        192.0.2.99: 2001:db8::99\n        192.0.2.77: 2001:db8::77\n"),
         "z.yaml:13: api A: ipv6 maps 192.0.2.77, which is not a value of the record"),
    ],
)
def test_ipv6_shorthand_problems(edit: tuple[str, str], expected: str) -> None:
    assert problems(APEX + DUAL.replace(*edit)) == [expected]


def test_ipv6_shorthand_beside_an_aaaa_record() -> None:
    text = APEX + textwrap.dedent("""\
        api:
        - dynamic:
            pools: {eu: {values: [{value: 192.0.2.10}]}}
            rules: [{pool: eu}]
          octodns:
            dnsfail:
              ipv6: {192.0.2.10: 2001:db8::10, 192.0.2.99: 2001:db8::99}
          type: A
          values: [192.0.2.99]
        - type: AAAA
          value: 2001:db8::5
        """)
    assert problems(text) == [
        "z.yaml:10: api A: 'ipv6' would create an AAAA record beside the one already here"
    ]


def test_a_directory_without_zone_files_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_zones([str(tmp_path)])
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}:1: (zone): no zone files (*.yaml, *.yml) found"
    ]


def test_geos_need_a_geoip_database() -> None:
    text = APEX + textwrap.dedent("""\
        api:
          dynamic:
            pools:
              eu: {values: [{value: 192.0.2.10}]}
              us: {values: [{value: 192.0.2.20}]}
            rules:
            - geos: [EU]
              pool: eu
            - pool: us
          type: A
          values: [192.0.2.99]
        """)
    parse_zone(text, "z.yaml", ORIGIN, serial=1)  # with a database: fine
    with pytest.raises(ConfigError) as caught:
        parse_zone(text, "z.yaml", ORIGIN, serial=1, geoip=False)
    assert [str(p) for p in caught.value.problems] == [
        "z.yaml:10: api A: rule 1 has geos but no GeoIP database is configured (--geoip PATH)"
    ]


NEAREST = """\
api:
  dynamic:
    pools:
      fra: {values: [{value: 192.0.2.10}]}
      iad: {values: [{value: 192.0.2.20}]}
      sin: {values: [{value: 192.0.2.30}]}
    rules:
    - pool: fra
  octodns:
    dnsfail:
      coordinates: {fra: [50.11, 8.68], iad: [38.95, -77.45], sin: [1.35, 103.82]}
      rules:
      - nearest: true
        pools: [fra, iad, sin]
  type: A
  values: [192.0.2.99]
"""


def test_nearest_mode_parses() -> None:
    record = zone(NEAREST).dynamic[("api.x.test.", RRType.A)]
    assert record.rules[0].nearest
    assert record.rules[0].pools == ("fra", "iad", "sin")
    assert record.coordinates["sin"] == (1.35, 103.82)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("sin: [1.35, 103.82]", "sin: [91, 103.82]"),
         "z.yaml:14: api A: latitude of 'sin' 91 is out of range -90..90"),
        (("sin: [1.35, 103.82]", "sin: [1.35]"),
         "z.yaml:14: api A: coordinates of 'sin' must be [latitude, longitude]"),
        ((", sin: [1.35, 103.82]", ""),
         "z.yaml:16: api A: octodns.dnsfail.rules item 1 is nearest but pools sin have no "
         "coordinates"),
        (("sin: [1.35, 103.82]}", "sin: [1.35, 103.82], lhr: [51.5, -0.1]}"),
         "z.yaml:14: api A: coordinates: pool 'lhr' is not defined"),
    ],
)
def test_nearest_mode_problems(edit: tuple[str, str], expected: str) -> None:
    assert problems(APEX + NEAREST.replace(*edit)) == [expected]


def test_nearest_needs_a_geoip_database() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_zone(APEX + NEAREST, "z.yaml", ORIGIN, serial=1, geoip=False)
    assert [str(p) for p in caught.value.problems] == [
        "z.yaml:16: api A: octodns.dnsfail.rules item 1: nearest needs a GeoIP City database "
        "(--geoip)"
    ]
