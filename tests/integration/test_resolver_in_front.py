"""A real recursive resolver (Unbound) in front of dnsfail, as production clients see it.

Unbound randomises letter case (use-caps-for-id, draft-vixie-dnsext-dns0x20),
minimises QNAMEs (RFC 9156) and sends ECS to dnsfail (subnetcache module),
so this checks that a strict resolver accepts every kind of answer and that
the ECS scope is honoured in its cache.  Unbound may only talk to loopback:
its outgoing interface is 127.0.0.1 and the zone names nothing outside itself.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from ..conftest import DnsfailProcess, free_port
from .unbound import UNBOUND, launch, server_clause

pytestmark = pytest.mark.skipif(UNBOUND is None, reason="unbound is not installed")

ZONE = textwrap.dedent("""\
    '':
      type: NS
      values: [ns1.resolved.test.]
    '*.wild':
      type: TXT
      value: wildcard
    a.b.ent:
      type: A
      value: 192.0.2.77
    chain:
      type: CNAME
      value: www.resolved.test.
    geo:
      dynamic:
        pools:
          local: {values: [{status: up, value: 192.0.2.1}]}
          rest: {values: [{status: up, value: 192.0.2.2}]}
        rules:
        - pool: local
          subnets: [127.0.9.0/24]
        - pool: rest
      type: A
      values: [192.0.2.99]
    ns1:
      type: A
      value: 127.0.0.1
    www:
      type: A
      values: [192.0.2.10, 192.0.2.11]
    """)


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, DnsfailProcess]]:
    tmp = tmp_path_factory.mktemp("unbound")
    (tmp / "zones").mkdir()
    (tmp / "zones" / "resolved.test.yaml").write_text(ZONE)
    server = DnsfailProcess([str(tmp / "zones"), "--control", "off"]).wait_ready()
    port = free_port()
    conf = tmp / "unbound.conf"
    conf.write_text(server_clause(tmp, port) + textwrap.dedent(f"""\
          use-caps-for-id: yes
          qname-minimisation: yes
          module-config: "subnetcache iterator"
          send-client-subnet: 127.0.0.1
          client-subnet-always-forward: yes
          local-zone: "." refuse
          local-zone: "resolved.test." transparent
        stub-zone:
          name: "resolved.test"
          stub-addr: 127.0.0.1@{server.port}
        """))
    try:
        proc = launch(conf, port, "www.resolved.test.", capture_errors=True)
        try:
            yield port, server
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        server.stop()


def resolve(port: int, qname: str, rdtype: str, source: str = "127.0.0.1") -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype)  # RD set: Unbound recurses into dnsfail
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3, source=source)


def rrs(reply: dns.message.Message) -> list[str]:
    return sorted(f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in reply.answer
                  for rd in r)


@pytest.mark.parametrize(
    ("qname", "rdtype", "rcode", "answer"),
    [
        ("www.resolved.test.", "A", dns.rcode.NOERROR,
         ["www.resolved.test. A 192.0.2.10", "www.resolved.test. A 192.0.2.11"]),
        ("chain.resolved.test.", "A", dns.rcode.NOERROR,
         ["chain.resolved.test. CNAME www.resolved.test.", "www.resolved.test. A 192.0.2.10",
          "www.resolved.test. A 192.0.2.11"]),
        ("x.y.wild.resolved.test.", "TXT", dns.rcode.NOERROR,
         ['x.y.wild.resolved.test. TXT "wildcard"']),
        ("ent.resolved.test.", "A", dns.rcode.NOERROR, []),  # empty non-terminal: NODATA
        ("a.b.ent.resolved.test.", "A", dns.rcode.NOERROR, ["a.b.ent.resolved.test. A 192.0.2.77"]),
        ("nope.resolved.test.", "A", dns.rcode.NXDOMAIN, []),
        ("www.resolved.test.", "MX", dns.rcode.NOERROR, []),
        ("resolved.test.", "SOA", dns.rcode.NOERROR,
         ["resolved.test. SOA ns1.resolved.test. hostmaster.resolved.test."]),
    ],
)
def test_a_strict_resolver_gets_every_answer(
    resolver: tuple[int, DnsfailProcess], qname: str, rdtype: str, rcode: int,
    answer: list[str],
) -> None:
    reply = resolve(resolver[0], qname, rdtype)
    assert reply.rcode() == rcode
    got = rrs(reply)
    if rdtype == "SOA":  # the serial is the file's mtime: compare the fixed part
        got = [" ".join(line.split()[:4]) for line in got]
    assert got == answer


def test_ecs_from_the_resolver_steers_and_is_cached_by_scope(
    resolver: tuple[int, DnsfailProcess],
) -> None:
    """Unbound asks from 127.0.0.1 but sends each client's /24 as ECS: only ECS can steer
    127.0.9.9 to the subnet rule, and the /24 scope keeps the two clients apart in its cache."""
    port, server = resolver
    for _ in range(2):  # the second round comes from Unbound's cache
        assert rrs(resolve(port, "geo.resolved.test.", "A", source="127.0.9.9")) == [
            "geo.resolved.test. A 192.0.2.1"
        ]
        assert rrs(resolve(port, "geo.resolved.test.", "A", source="127.0.8.8")) == [
            "geo.resolved.test. A 192.0.2.2"
        ]
    assert "Traceback" not in server.log
