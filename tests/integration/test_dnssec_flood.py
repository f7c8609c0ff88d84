"""Flood denial judged by real validators, and its switch over real sockets.

``dnsfail serve --dnssec-flood-budget 0`` denies every nonexistent name from its NSEC
chain: Unbound (trust anchor, aggressive NSEC on) must return NXDOMAIN with AD, delv must
report a fully validated negative response; with RFC 8198 Unbound then answers another
name the same NSECs cover from its cache, without asking us.  Negative controls, from this
process's answer path with a rewriter (re-signed with the zone's key, so the one fault is
the proof's): an NSEC whose next name is moved so it no longer covers the name, and a
proof without the wildcard NSEC; both validators must reject them.  Then the switch: a
server with budget 50 answers a flood first compactly, then from the chain, and goes back
to compact denial after a quiet second, logging both changes and counting the ``chain``
path in its metrics.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rrset
import pytest

import tests.dnssec  # noqa: F401  (dnspython's validator enabled)
from dnsfail.dns.handler import Handler
from dnsfail.dnssec import keys
from dnsfail.dnssec.answer import signed_zone
from dnsfail.dnssec.path import SignedPath
from dnsfail.state import Store
from dnsfail.zonefile import load_zones

from ..conftest import DnsfailProcess, free_port
from .ctl_server import Ctl, wait_for
from .test_dnssec import DELV, UNBOUND, Server, anchor_line, start_unbound

pytestmark = pytest.mark.skipif(UNBOUND is None or DELV is None,
                                reason="unbound or delv (bind9-dnsutils) is not installed")

GOOD = "flood.test"
MOVED, NOWILD, QUIET = "moved.test", "nowild.test", "quiet.test"
ZONES = (GOOD, MOVED, NOWILD, QUIET)


def zone_text(origin: str) -> str:
    return textwrap.dedent(f"""\
        '':
          type: NS
          values: [ns1.{origin}.]
        '*.wild':
          type: TXT
          value: wildcard
        a.b.ent:
          type: A
          value: 192.0.2.77
        ns1:
          type: A
          value: 127.0.0.1
        sub:
          type: NS
          values: [ns.elsewhere.example.]
        www:
          type: A
          values: [192.0.2.10]
        """)


def private_key(key: keys.Key) -> dns.dnssec.PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = Path(key.path).read_text().split("PrivateKey: ")[1].split()[0]
    return ec.derive_private_key(int.from_bytes(base64.b64decode(pem), "big"), ec.SECP256R1())


def resigned(key: keys.Key, change: Callable[[dns.message.Message], None]
             ) -> Callable[[bytes, bytes], bytes]:
    """A reply rewriter: ``change`` edits the authority section's NSECs, which are then
    signed again with the zone's own key, so only the proof itself is wrong."""
    origin = dns.name.from_text(key.zone)
    dnskey = dns.rdata.from_text("IN", "DNSKEY", anchor_line(key).split(" DNSKEY ")[1])
    private = private_key(key)

    def rewrite(query: bytes, reply: bytes) -> bytes:
        message = dns.message.from_wire(reply)
        if message.rcode() != dns.rcode.NXDOMAIN:
            return reply
        change(message)
        nsecs = [r for r in message.authority if r.rdtype == dns.rdatatype.NSEC]
        message.authority = [r for r in message.authority if r.rdtype != dns.rdatatype.RRSIG
                             or r.covers != dns.rdatatype.NSEC]
        for nsec in nsecs:
            sig = dns.dnssec.sign(nsec, private, origin, dnskey,  # type: ignore[arg-type]
                                  lifetime=3600)
            message.authority.append(dns.rrset.from_rdata_list(nsec.name, nsec.ttl, [sig]))
        return message.to_wire(max_size=65535)

    return rewrite


def move_next(message: dns.message.Message) -> None:
    """The covering NSEC's next name moved to just after its owner: it covers nothing."""
    nsec = next(r for r in message.authority if r.rdtype == dns.rdatatype.NSEC)
    old = nsec[0]
    nsec.clear()
    nsec.add(dns.rdtypes.ANY.NSEC.NSEC(old.rdclass, old.rdtype,
                                       dns.name.Name((b"\x00", *nsec.name.labels)),
                                       old.windows))


def drop_wildcard_proof(message: dns.message.Message) -> None:
    """Only the NSEC covering the name is left: no proof that no wildcard answers it."""
    first = next(r for r in message.authority if r.rdtype == dns.rdatatype.NSEC)
    message.authority = [r for r in message.authority
                         if r.rdtype != dns.rdatatype.NSEC or r is first]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("flood")
    zones, keydir, good_keys = tmp / "zones", tmp / "keys", tmp / "good-keys"
    zones.mkdir()
    good_keys.mkdir()
    for origin in ZONES:
        (zones / f"{origin}.yaml").write_text(zone_text(origin))
    made = {origin: keys.generate(origin, str(keydir)) for origin in ZONES}
    for suffix in (".private", ".key"):
        src = Path(made[GOOD].path).with_suffix(suffix)
        (good_keys / src.name).write_bytes(src.read_bytes())
        (good_keys / src.name).chmod(0o600)
    server = DnsfailProcess([str(zones), "--dnssec-keys", str(good_keys),
                             "--dnssec-flood-budget", "0", "--state-file", ""]).wait_ready()
    store = Store(load_zones([str(zones)]))
    in_process: dict[str, Server] = {}
    asked: list[str] = []
    for origin in (MOVED, NOWILD, QUIET):
        absolute = origin + "."
        path = SignedPath({absolute: signed_zone(absolute, (made[origin],))}, flood_budget=0)
        handler = Handler(lambda: store.snapshot, identity="flood", signed=path)
        rewrite = None
        if origin == MOVED:
            rewrite = resigned(made[origin], move_next)
        elif origin == NOWILD:
            rewrite = resigned(made[origin], drop_wildcard_proof)
        else:
            def rewrite(query: bytes, reply: bytes) -> bytes:
                asked.append(dns.message.from_wire(query).question[0].name.to_text())
                return reply
        in_process[origin] = Server(handler, rewrite)
    unbound = None  # whatever starts is stopped, also if Unbound does not
    try:
        unbound, port, anchor_file = start_unbound(
            tmp, [(GOOD, server.port), *[(o, s.port) for o, s in in_process.items()]],
            [made[o] for o in ZONES], f"www.{GOOD}.",
            "  aggressive-nsec: yes\n  trust-anchor-signaling: no\n  qname-minimisation: no\n")
        yield {"unbound": port, "server": server, "anchors": anchor_file,
               "in_process": in_process, "asked": asked, "zones": zones, "keys": good_keys}
    finally:
        if unbound is not None:
            unbound.terminate()
            unbound.wait(timeout=10)
        for s in in_process.values():
            s.stop()
        server.stop()


def resolve(port: int, qname: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, want_dnssec=True)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=5)


def delv(world: dict[str, object], qname: str, port: int) -> str:
    origin = ".".join(qname.rstrip(".").split(".")[-2:])
    assert DELV is not None
    done = subprocess.run([DELV, "@127.0.0.1", "-p", str(port), "-a", str(world["anchors"]),
                           f"+root={origin}", qname, "A"], capture_output=True, text=True,
                          timeout=30)
    return done.stdout + done.stderr


def nsec_count(reply: dns.message.Message) -> int:
    return sum(1 for r in reply.authority if r.rdtype == dns.rdatatype.NSEC)


@pytest.mark.parametrize("qname", [
    f"nope.{GOOD}.",  # covered by ns1's NSEC, the wildcard *.flood.test by the apex's
    f"x.b.ent.{GOOD}.",  # below an empty non-terminal: closest encloser b.ent
    f"zzz.{GOOD}.",  # after the last owner: the NSEC that wraps to the apex
    f"a.www.{GOOD}.",  # below a name with data: one NSEC proves both
    f"wild2.{GOOD}.",  # covered by the NSEC the wildcard *.wild owns
])
def test_unbound_and_delv_validate_the_chains_nxdomain(world: dict[str, object],
                                                       qname: str) -> None:
    server: DnsfailProcess = world["server"]  # type: ignore[assignment]
    direct = server.query(qname, "A", want_dnssec=True)
    assert direct.rcode() == dns.rcode.NXDOMAIN
    assert nsec_count(direct) in (1, 2)
    assert not any(r[0].next.labels[0] == b"\x00" for r in direct.authority
                   if r.rdtype == dns.rdatatype.NSEC)  # not compact denial
    reply = resolve(world["unbound"], qname)  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AD
    assert "; negative response, fully validated" in delv(world, qname, server.port)


def test_a_wildcard_answers_next_closer_proof_comes_from_the_chain(
        world: dict[str, object]) -> None:
    server: DnsfailProcess = world["server"]  # type: ignore[assignment]
    qname = f"x.y.wild.{GOOD}."
    direct = server.query(qname, "TXT", want_dnssec=True)
    (nsec,) = [r for r in direct.authority if r.rdtype == dns.rdatatype.NSEC]
    assert (nsec.name.to_text(), nsec[0].next.to_text()) == (f"*.wild.{GOOD}.", f"www.{GOOD}.")
    reply = resolve(world["unbound"], qname, "TXT")  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert any(r.rdtype == dns.rdatatype.TXT for r in reply.answer)
    assert DELV is not None
    out = subprocess.run([DELV, "@127.0.0.1", "-p", str(server.port), "-a",
                          str(world["anchors"]), f"+root={GOOD}", qname, "TXT"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "; fully validated" in out


def test_a_wildcards_nodata_from_the_chain_validates(world: dict[str, object]) -> None:
    server: DnsfailProcess = world["server"]  # type: ignore[assignment]
    qname = f"x.y.wild.{GOOD}."
    direct = server.query(qname, "MX", want_dnssec=True)
    owners = {r.name.to_text() for r in direct.authority if r.rdtype == dns.rdatatype.NSEC}
    assert owners == {f"*.wild.{GOOD}."}  # at the wildcard, and covering y.wild.flood.test
    reply = resolve(world["unbound"], qname, "MX")  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert not reply.answer
    assert DELV is not None
    out = subprocess.run([DELV, "@127.0.0.1", "-p", str(server.port), "-a",
                          str(world["anchors"]), f"+root={GOOD}", qname, "MX"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "; negative response, fully validated" in out


@pytest.mark.parametrize(("origin", "qname"), [
    (MOVED, f"nope.{MOVED}."),  # the NSEC no longer covers the name
    (NOWILD, f"nope.{NOWILD}."),  # nothing proves *.nowild.test does not exist
])
def test_validators_reject_a_broken_chain_proof(world: dict[str, object], origin: str,
                                                qname: str) -> None:
    reply = resolve(world["unbound"], qname)  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.flags & dns.flags.AD
    port = world["in_process"][origin].port  # type: ignore[index]
    out = delv(world, qname, port)
    assert "fully validated" not in out
    assert "resolution failed" in out


def test_aggressive_nsec_answers_the_next_names_from_the_resolvers_cache(
        world: dict[str, object]) -> None:
    """RFC 8198: after one chain NXDOMAIN, Unbound denies other names the same NSECs
    cover itself, so a random-subdomain flood stops reaching the server."""
    asked: list[str] = world["asked"]  # type: ignore[assignment]
    first = resolve(world["unbound"], f"aaa.{QUIET}.")  # type: ignore[arg-type]
    assert first.rcode() == dns.rcode.NXDOMAIN
    assert first.flags & dns.flags.AD
    before = len(asked)
    for label in ("aab", "abc", "b-1", "cz"):  # all between the apex and a.b.ent's subtree
        reply = resolve(world["unbound"], f"{label}.{QUIET}.")  # type: ignore[arg-type]
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert reply.flags & dns.flags.AD
    assert asked[before:] == []


def flood(port: int, names: list[str]) -> list[dns.message.Message]:
    """Send ``names`` (A, DO) at about 400 a second and read every reply."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for i, name in enumerate(names):
            sock.sendto(dns.message.make_query(name, "A", want_dnssec=True).to_wire(),
                        ("127.0.0.1", port))
            out.append(dns.message.from_wire(sock.recvfrom(65535)[0]))
            if i % 20 == 19:
                time.sleep(0.05)
    return out


def test_a_burst_over_the_budget_flips_the_mode_and_quiet_flips_it_back(
        world: dict[str, object]) -> None:
    control = free_port()
    server = DnsfailProcess([str(world["zones"]), "--dnssec-keys", str(world["keys"]),
                             "--dnssec-flood-budget", "50", "--state-file", "",
                             "--control", f"127.0.0.1:{control}"]).wait_ready()
    try:
        first = flood(server.port, [f"warm{i}.{GOOD}." for i in range(10)])
        assert all(r.rcode() == dns.rcode.NOERROR and nsec_count(r) == 1 for r in first)
        start = time.monotonic()
        replies = flood(server.port, [f"f{i}.{GOOD}." for i in range(1000)])
        assert time.monotonic() - start > 2  # at least two whole seconds of flood
        chained = [r.rcode() == dns.rcode.NXDOMAIN for r in replies]
        assert not chained[0]  # the first second is compact
        assert all(chained[-200:])  # then the chain (the last half second at least)
        assert chained.index(True) < 600
        deadline = time.monotonic() + 2.2
        while time.monotonic() < deadline:  # two quiet seconds
            time.sleep(0.1)
        (after,) = flood(server.port, [f"late.{GOOD}."])
        assert after.rcode() == dns.rcode.NOERROR  # compact again (RFC 9824, no CO)
        assert nsec_count(after) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{control}/metrics", timeout=5) as page:
            metrics = page.read().decode()
        line = next(m for m in metrics.splitlines()
                    if m.startswith("dnsfail_answers_by_path_total") and 'path="chain"' in m)
        assert float(line.split()[-1]) >= 200
    finally:
        server.stop()
    log = server.log
    assert "denying them from the signed NSEC chain" in log
    assert "back to compact denial" in log
    assert "Traceback" not in log


def test_every_worker_process_takes_the_budget(world: dict[str, object]) -> None:
    """``--workers 2``: the budget reaches the worker process too (its spec), so every
    answer is the chain's, whichever process reads the datagram."""
    control = free_port()
    server = DnsfailProcess([str(world["zones"]), "--dnssec-keys", str(world["keys"]),
                             "--dnssec-flood-budget", "0", "--state-file", "",
                             "--workers", "2", "--control", f"127.0.0.1:{control}"]
                            ).wait_ready()
    ctl = Ctl(server, control)
    try:
        wait_for(lambda: all(w["ready"] for w in ctl.get("/v1/status")[1]["workers"])
                 and len(ctl.get("/v1/status")[1]["workers"]) == 1, 30, "the worker")
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        rcodes = set()
        try:
            for i in range(400):  # eight sources: the kernel spreads them over the processes
                sock = socks[i % 8]
                sock.settimeout(2)
                sock.sendto(dns.message.make_query(f"w{i}.{GOOD}.", "A", want_dnssec=True)
                            .to_wire(), ("127.0.0.1", server.port))
                rcodes.add(dns.message.from_wire(sock.recv(65535)).rcode())
        finally:
            for sock in socks:
                sock.close()
        assert rcodes == {dns.rcode.NXDOMAIN}
        wait_for(lambda: ctl.get("/v1/status")[1]["workers"][0]["queries"] > 0, 10,
                 "the worker answered some")
    finally:
        server.stop()
