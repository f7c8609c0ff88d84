"""Geo steering through a real server: ECS from dnspython, a real .mmdb, real TCP health checks.

The database is built by tests/mmdb.py and read through geoip2 exactly as a
production database is.  Sites are plain TCP listeners on 127.0.0.5x; the
record probes them with TCP checks, so stopping a listener is a site failure.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from ..conftest import ROOT, DnsfailProcess
from ..mmdb import write_city_db

SITES = {"eu": "127.0.0.51", "us": "127.0.0.52", "ap": "127.0.0.53"}
DB = {
    "192.0.2.0/24": ("EU", "DE", None, (52.5, 13.4)),
    "198.51.100.0/24": ("NA", "US", "CA", (37.4, -122.1)),
    "2001:db8:1::/48": ("EU", "FR", None, (48.8, 2.3)),
    # One /24 whose halves are in two countries (issue 11, item 9).
    "198.18.2.0/25": ("EU", "DE", None, (52.5, 13.4)),
    "198.18.2.128/25": ("NA", "US", "CA", (37.4, -122.1)),
}


class Site:
    """A TCP listener standing in for a gateway site; stop() makes its checks fail."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.start()

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        sock.settimeout(0.2)
        self.sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def common_port() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((SITES["eu"], 0))
            port: int = probe.getsockname()[1]
        try:
            for host in SITES.values():
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def zone_text(port: int) -> str:
    return textwrap.dedent(f"""\
        '':
          type: NS
          values: [ns1.geo.test.]
        api:
          dynamic:
            pools:
              ap: {{values: [{{value: {SITES["ap"]}}}]}}
              eu: {{fallback: us, values: [{{value: {SITES["eu"]}}}]}}
              office: {{values: [{{status: up, value: 127.0.0.54}}]}}
              us: {{fallback: ap, values: [{{value: {SITES["us"]}}}]}}
            rules:
            - pool: office
              subnets: [10.1.0.0/16]
            - geos: [EU]
              pool: eu
            - geos: [NA-US]
              pool: us
            - pool: ap
          octodns:
            dnsfail:
              healthcheck: {{fall: 1, interval: 0.5, rise: 1, timeout: 0.3}}
            healthcheck: {{port: {port}, protocol: TCP}}
          ttl: 30
          type: A
          values: [192.0.2.99]
        near:
          dynamic:
            pools:
              ap: {{values: [{{value: {SITES["ap"]}}}]}}
              eu: {{values: [{{value: {SITES["eu"]}}}]}}
              us: {{values: [{{value: {SITES["us"]}}}]}}
            rules:
            - pool: eu
          octodns:
            dnsfail:
              coordinates: {{ap: [1.35, 103.82], eu: [50.11, 8.68], us: [38.95, -77.45]}}
              healthcheck: {{fall: 1, interval: 0.5, rise: 1, timeout: 0.3}}
              rules:
              - nearest: true
                pools: [eu, us, ap]
            healthcheck: {{port: {port}, protocol: TCP}}
          ttl: 30
          type: A
          values: [192.0.2.99]
        halves:
          dynamic:
            pools:
              high: {{values: [{{status: up, value: 127.0.0.62}}]}}
              low: {{values: [{{status: up, value: 127.0.0.61}}]}}
              rest: {{values: [{{status: up, value: 127.0.0.63}}]}}
            rules:
            - pool: low
              subnets: [10.1.2.0/25]
            - pool: high
              subnets: [10.1.2.128/25]
            - pool: rest
          ttl: 30
          type: A
          values: [192.0.2.99]
        ns1:
          type: A
          value: 192.0.2.1
        static:
          type: A
          value: 192.0.2.7
        """)


@pytest.fixture(scope="module")
def geo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DnsfailProcess, dict[str, Site], Path]]:
    tmp = tmp_path_factory.mktemp("geo")
    port = common_port()
    sites = {name: Site(host, port) for name, host in SITES.items()}
    (tmp / "zones").mkdir()
    (tmp / "zones" / "geo.test.yaml").write_text(zone_text(port))
    write_city_db(tmp / "city.mmdb", DB)
    server = DnsfailProcess([str(tmp / "zones"), "--geoip", str(tmp / "city.mmdb"),
                             "--geoip-refresh", "0.2"])
    try:
        server.wait_ready()
        yield server, sites, tmp
    finally:
        server.stop()
        for site in sites.values():
            site.stop()


def ask(server: DnsfailProcess, ecs: str | None, qname: str = "api.geo.test.",
        tcp: bool = False) -> dns.message.Message:
    options = []
    if ecs is not None:
        address, _, prefix = ecs.partition("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    query = dns.message.make_query(qname, "A", use_edns=0, options=options)
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=2)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in reply.answer for r in rrset)


def scope(reply: dns.message.Message) -> tuple[int, int] | None:
    """(SOURCE, SCOPE) of the echoed ECS option, or None when there is none."""
    for option in reply.options:
        if isinstance(option, dns.edns.ECSOption):
            return option.srclen, option.scopelen
    return None


@pytest.mark.parametrize(
    ("ecs", "expected", "echo"),
    [
        ("192.0.2.0/24", [SITES["eu"]], (24, 24)),  # EU-DE, placed by the /24 in the db
        ("192.0.2.128/25", [SITES["eu"]], (25, 24)),  # scope may be shorter than source
        ("198.51.100.0/24", [SITES["us"]], (24, 24)),  # NA-US-CA matches NA-US
        ("10.1.2.0/24", ["127.0.0.54"], (24, 16)),  # the subnet rule decides: scope /16
        ("2001:db8:1:2::/56", [SITES["eu"]], (56, 48)),  # IPv6, EU-FR
        ("0.0.0.0/0", [SITES["ap"]], (0, 0)),  # SOURCE 0: do not use my address
    ],
)
def test_ecs_steers_and_scope_is_honest(
    geo: tuple[DnsfailProcess, dict[str, Site], Path], ecs: str, expected: list[str],
    echo: tuple[int, int],
) -> None:
    server = geo[0]
    for tcp in (False, True):
        reply = ask(server, ecs, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == expected
        assert scope(reply) == echo


@pytest.mark.parametrize(
    ("qname", "asks"),
    [
        ("api.geo.test.", [  # the database splits 198.18.2.0/24 between DE and US
            ("198.18.2.0/24", [SITES["eu"]], (24, 25)),
            ("198.18.2.128/25", [SITES["us"]], (25, 25)),
            ("198.18.2.0/25", [SITES["eu"]], (25, 25)),
            ("198.18.2.0/23", [SITES["eu"]], (23, 25)),
        ]),
        ("halves.geo.test.", [  # two subnet rules of /25 split 10.1.2.0/24
            ("10.1.2.0/24", ["127.0.0.61"], (24, 25)),
            ("10.1.2.128/25", ["127.0.0.62"], (25, 25)),
            ("10.1.2.0/25", ["127.0.0.61"], (25, 25)),
            ("10.1.2.192/26", ["127.0.0.62"], (26, 25)),
        ]),
    ],
    ids=["two-countries", "two-subnet-rules"],
)
def test_a_source_block_with_two_answers_gets_a_scope_longer_than_its_source(
    geo: tuple[DnsfailProcess, dict[str, Site], Path], qname: str,
    asks: list[tuple[str, list[str], tuple[int, int]]],
) -> None:
    """RFC 7871 section 7.2.1: SCOPE > SOURCE says "send more bits".  The /24 gets the
    answer of its network address, 198.18.2.0, with scope /25, so a resolver keeps it for
    /24 queries only (section 7.3.1); the other half, asked with more bits, gets its own
    answer, also from warm caches (each round asks everything again)."""
    server = geo[0]
    for _ in range(2):
        for tcp in (False, True):
            for ecs, expected, echo in asks:
                reply = ask(server, ecs, qname=qname, tcp=tcp)
                assert reply.rcode() == dns.rcode.NOERROR
                assert (addresses(reply), scope(reply)) == (expected, echo), (ecs, tcp)


def test_without_ecs_the_source_address_decides(
    geo: tuple[DnsfailProcess, dict[str, Site], Path],
) -> None:
    reply = ask(geo[0], None)
    assert addresses(reply) == [SITES["ap"]]  # 127.0.0.1 is in no rule and not in the db
    assert scope(reply) is None  # no ECS asked, none echoed


def test_static_names_echo_scope_zero(geo: tuple[DnsfailProcess, dict[str, Site], Path]) -> None:
    reply = ask(geo[0], "192.0.2.0/24", qname="static.geo.test.")
    assert addresses(reply) == ["192.0.2.7"]
    assert scope(reply) == (24, 0)


@pytest.mark.parametrize(
    "option",
    [b"\x00\x03\x18\x00\xc0\x00\x02", b"\x00\x01\x21\x00\xc0\x00\x02\x01\xff"],
    ids=["unknown-family", "source-33-for-ipv4"],
)
def test_malformed_ecs_is_formerr(geo: tuple[DnsfailProcess, dict[str, Site], Path],
                                  option: bytes) -> None:
    query = dns.message.make_query("api.geo.test.", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(8, option)])
    reply = dns.query.udp(query, geo[0].host, port=geo[0].port, timeout=2)
    assert reply.rcode() == dns.rcode.FORMERR


def wait_for(server: DnsfailProcess, ecs: str, expected: list[str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if addresses(ask(server, ecs)) == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{ecs} never got {expected}; last {addresses(ask(server, ecs))}")


def test_a_failed_site_moves_its_region_to_the_next_pool_in_order(
    geo: tuple[DnsfailProcess, dict[str, Site], Path],
) -> None:
    server, sites, _ = geo
    sites["eu"].stop()
    try:
        wait_for(server, "192.0.2.0/24", [SITES["us"]])  # eu -> fallback us
        assert addresses(ask(server, "198.51.100.0/24")) == [SITES["us"]]  # NA unaffected
        sites["us"].stop()
        wait_for(server, "192.0.2.0/24", [SITES["ap"]])  # then us -> fallback ap
    finally:
        for name in ("us", "eu"):
            if sites[name].sock is None:
                sites[name].start()
    wait_for(server, "192.0.2.0/24", [SITES["eu"]])


def test_a_replaced_database_is_used_without_a_restart(
    geo: tuple[DnsfailProcess, dict[str, Site], Path],
) -> None:
    server, _, tmp = geo
    moved = dict(DB)
    moved["192.0.2.0/24"] = ("NA", "US", "NY", (40.7, -74.0))
    staging = tmp / "city.mmdb.new"
    write_city_db(staging, moved)
    staging.replace(tmp / "city.mmdb")
    try:
        wait_for(server, "192.0.2.0/24", [SITES["us"]])
        server.wait_for_log("GeoIP database")
    finally:
        write_city_db(staging, DB)
        staging.replace(tmp / "city.mmdb")
    wait_for(server, "192.0.2.0/24", [SITES["eu"]])


def test_explain_tells_the_whole_decision(
    geo: tuple[DnsfailProcess, dict[str, Site], Path],
) -> None:
    _, _, tmp = geo
    out = subprocess.run(
        [sys.executable, "-m", "dnsfail", "explain", "api.geo.test", "--zones",
         str(tmp / "zones"), "--geoip", str(tmp / "city.mmdb"), "--client", "203.0.113.9",
         "--ecs", "192.0.2.0/24"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert "placed EU-DE by 192.0.2.0/24" in out
    assert "rule 2: geos ['EU'] -> pools eu" in out
    assert f"{SITES['eu']}" in out
    assert "UP" in out
    assert f"answer: {SITES['eu']}, ttl" in out
    assert "reply: NOERROR, AA, ECS scope /24" in out


@pytest.mark.parametrize(
    ("ecs", "expected", "echo"),
    [
        ("192.0.2.0/24", [SITES["eu"]], (24, 24)),  # Berlin: Frankfurt is nearest
        ("198.51.100.0/24", [SITES["us"]], (24, 24)),  # California: Virginia beats the rest
        # Not in the db: the configured order, valid for the db's whole empty block around it.
        ("203.0.113.0/24", [SITES["eu"]], (24, 5)),
    ],
)
def test_nearest_pool_first(
    geo: tuple[DnsfailProcess, dict[str, Site], Path], ecs: str, expected: list[str],
    echo: tuple[int, int],
) -> None:
    reply = ask(geo[0], ecs, qname="near.geo.test.")
    assert addresses(reply) == expected
    assert scope(reply) == echo


def test_nearest_fails_over_to_the_next_nearest(
    geo: tuple[DnsfailProcess, dict[str, Site], Path],
) -> None:
    server, sites, _ = geo
    sites["us"].stop()
    try:
        deadline = time.monotonic() + 5
        while addresses(ask(server, "198.51.100.0/24", qname="near.geo.test.")) != [SITES["eu"]]:
            assert time.monotonic() < deadline, "California never failed over to Frankfurt"
            time.sleep(0.05)
    finally:
        sites["us"].start()
