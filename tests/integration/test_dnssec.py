"""Signed dnsfail judged by real validators: Unbound (with the zone's trust anchor) in front
of ``dnsfail serve --dnssec-keys``, and BIND's ``delv``.

Positive, dynamic, wildcard, CNAME, NODATA, nonexistent and insecure-delegation answers
must come back AD from Unbound and "fully validated" from delv, and stay so after a drain
takes a site out of the dynamic answer.  The negative controls are dnsfail's own answer
path served from this process (``Server`` below) with a signer made to lie in one way
each: signatures expired, signatures tampered with, an NSEC whose type bitmap lies (re-
signed, so only the bitmap is wrong): the same validators must reject them, which is what
shows the positive checks can fail.  Two instances with one key must agree on the window.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import textwrap
import threading
import time
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
from dnsfail.dnssec.sign import VALIDITY, Signer
from dnsfail.state import Store
from dnsfail.zonefile import load_zones

from ..conftest import DnsfailProcess, free_port
from .ctl_server import SITES, Ctl, wait_for
from .unbound import UNBOUND, launch, server_clause

DELV = shutil.which("delv")
pytestmark = pytest.mark.skipif(UNBOUND is None or DELV is None,
                                reason="unbound or delv (bind9-dnsutils) is not installed")


def zone_text(origin: str, port: int) -> str:
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
        chain:
          type: CNAME
          value: www.{origin}.
        api:
          dynamic:
            pools:
              eu: {{fallback: us, values: [{{value: {SITES[0]}}}, {{value: {SITES[1]}}}]}}
              us: {{values: [{{value: {SITES[2]}}}]}}
            rules:
            - pool: eu
          octodns:
            dnsfail:
              healthcheck: {{fall: 2, interval: 1, rise: 1, timeout: 0.5}}
            healthcheck: {{port: {port}, protocol: TCP}}
          ttl: 5
          type: A
          values: [192.0.2.99]
        ns1:
          type: A
          value: 127.0.0.1
        sub:
          type: NS
          values: [ns.elsewhere.example.]
        www:
          type: A
          values: [192.0.2.10, 192.0.2.11]
        """)


GOOD = "signed.test"
BAD = ("expired.test", "tampered.test", "liar.test")


class Server:
    """dnsfail's Handler on a loopback UDP and TCP port, in threads of this process."""

    def __init__(self, handler: Handler, rewrite: Callable[[bytes, bytes], bytes] | None = None
                 ) -> None:
        self.handler = handler
        self.rewrite = rewrite
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.tcp.settimeout(0.2)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _answer(self, data: bytes, tcp: bool) -> bytes | None:
        reply = self.handler.handle(data, tcp, "127.0.0.1")
        if reply is not None and self.rewrite is not None:
            reply = self.rewrite(data, reply)
        return reply

    def _serve_udp(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            reply = self._answer(data, False)
            if reply is not None:
                self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        chunk = conn.recv(size - len(data))
                        if not chunk:
                            break
                        data += chunk
                    reply = self._answer(data, True)
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.udp.close()
        self.tcp.close()


def lying_bitmap(private: dns.dnssec.PrivateKey, dnskey: dns.rdata.Rdata,
                 origin: str) -> Callable[[bytes, bytes], bytes]:
    """A reply rewriter: the qtype added to the NSEC's bitmap, the NSEC re-signed with the
    zone's key (so the lie itself is the only fault, as in Knot's online signer)."""

    def rewrite(query: bytes, reply: bytes) -> bytes:
        message = dns.message.from_wire(reply)
        qtype = dns.message.from_wire(query).question[0].rdtype
        nsecs = [r for r in message.authority if r.rdtype == dns.rdatatype.NSEC]
        if not nsecs:
            return reply
        nsec = nsecs[0]
        old = nsec[0]
        types = [t for w, bits in old.windows for i, o in enumerate(bits) for b in range(8)
                 if o & (0x80 >> b) for t in [w * 256 + i * 8 + b]]
        lie = dns.rdtypes.ANY.NSEC.NSEC(old.rdclass, old.rdtype, old.next,
                                        dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(
                                            [*types, qtype]))
        forged = dns.rrset.from_rdata_list(nsec.name, nsec.ttl, [lie])
        sig = dns.dnssec.sign(forged, private, dns.name.from_text(origin), dnskey,  # type: ignore[arg-type]
                              lifetime=3600)
        message.authority = [r for r in message.authority
                             if r.name != nsec.name or r.rdtype not in (
                                 dns.rdatatype.NSEC, dns.rdatatype.RRSIG)]
        message.authority += [forged, dns.rrset.from_rdata_list(nsec.name, nsec.ttl, [sig])]
        return message.to_wire(max_size=65535)

    return rewrite


def anchor_line(key: keys.Key) -> str:
    return f'{key.zone} DNSKEY 257 3 {key.algorithm} {base64.b64encode(key.rdata[4:]).decode()}'


def start_unbound(tmp: Path, stubs: list[tuple[str, int]], anchored: list[keys.Key],
                  probe: str, options: str = "") -> tuple[subprocess.Popen[bytes], int, Path]:
    """Unbound validating with ``anchored``'s keys as trust anchors, each zone of ``stubs``
    (origin, port) a stub to 127.0.0.1, ``options`` added to its ``server:`` clause; with its
    port and a delv ``anchors.conf`` for the same keys, once it answers ``probe``."""
    port = free_port()
    stub_text = "".join(f'stub-zone:\n  name: "{o}"\n  stub-addr: 127.0.0.1@{p}\n'
                        for o, p in stubs)
    anchors = "".join(f'  trust-anchor: "{anchor_line(k)}"\n' for k in anchored)
    locals_ = "".join(f'  local-zone: "{k.zone}" transparent\n' for k in anchored)
    conf = tmp / "unbound.conf"
    conf.write_text(server_clause(tmp, port) + '  module-config: "validator iterator"\n'
                    '  val-log-level: 2\n  local-zone: "." refuse\n'
                    + options + locals_ + anchors + stub_text)
    anchor_file = tmp / "anchors.conf"
    anchor_file.write_text("trust-anchors {\n" + "".join(
        f'  {k.zone} static-key 257 3 {k.algorithm} '
        f'"{base64.b64encode(k.rdata[4:]).decode()}";\n' for k in anchored) + "};\n")
    return launch(conf, port, probe), port, anchor_file


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, site_port: int
          ) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("dnssec")
    zones, keydir = tmp / "zones", tmp / "keys"
    zones.mkdir()
    for origin in (GOOD, *BAD):
        (zones / f"{origin}.yaml").write_text(zone_text(origin, site_port))
    made = {origin: keys.generate(origin, str(keydir)) for origin in (GOOD, *BAD)}
    good_keys = tmp / "good-keys"
    good_keys.mkdir()
    for suffix in (".private", ".key"):
        src = Path(made[GOOD].path).with_suffix(suffix)
        (good_keys / src.name).write_bytes(src.read_bytes())
        (good_keys / src.name).chmod(0o600)
    control = free_port()
    server = DnsfailProcess([str(zones), "--dnssec-keys", str(good_keys), "--control",
                             f"127.0.0.1:{control}", "--state-file", str(tmp / "s.json")]
                            ).wait_ready()
    loaded = load_zones([str(zones)])
    store = Store(loaded)
    in_process: dict[str, Server] = {}
    for origin in BAD:
        key = made[origin]
        absolute = origin + "."
        if origin == "expired.test":
            # expired two days ago: Unbound forgives up to a day of clock skew (val-sig-skew-max)
            signer = Signer(absolute, (key,), clock=lambda: time.time() - VALIDITY - 2 * 86400)
        elif origin == "tampered.test":
            signer = Signer(absolute, (key,), mangle=lambda s: bytes([s[0] ^ 0x40]) + s[1:])
        else:
            signer = Signer(absolute, (key,))
        path = SignedPath({absolute: signed_zone(absolute, (key,), signer)})
        handler = Handler(lambda: store.snapshot, identity="bad", signed=path)
        rewrite = None
        if origin == "liar.test":
            pem = Path(key.path).read_text().split("PrivateKey: ")[1].split()[0]
            from cryptography.hazmat.primitives.asymmetric import ec

            private = ec.derive_private_key(int.from_bytes(base64.b64decode(pem), "big"),
                                            ec.SECP256R1())
            dnskey = dns.rdata.from_text("IN", "DNSKEY", anchor_line(key).split(" DNSKEY ")[1])
            rewrite = lying_bitmap(private, dnskey, absolute)
        in_process[origin] = Server(handler, rewrite)
    unbound = None  # whatever starts is stopped, also if Unbound does not
    try:
        unbound, port, anchor_file = start_unbound(
            tmp, [(GOOD, server.port), *[(o, s.port) for o, s in in_process.items()]],
            [made[o] for o in (GOOD, *BAD)], f"www.{GOOD}.", "  use-caps-for-id: yes\n")
        yield {"unbound": port, "server": server, "control": control, "anchors": anchor_file,
               "in_process": in_process, "keys": good_keys, "zones": zones}
    finally:
        if unbound is not None:
            unbound.terminate()
            unbound.wait(timeout=10)
        for s in in_process.values():
            s.stop()
        server.stop()


def resolve(port: int, qname: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, want_dnssec=True)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=5)


def delv(world: dict[str, object], qname: str, rdtype: str) -> str:
    origin = ".".join(qname.rstrip(".").split(".")[-2:])
    server: DnsfailProcess = world["server"]  # type: ignore[assignment]
    port = server.port
    if origin != GOOD:
        port = world["in_process"][origin].port  # type: ignore[index]
    assert DELV is not None
    done = subprocess.run([DELV, "@127.0.0.1", "-p", str(port), "-a", str(world["anchors"]),
                           f"+root={origin}", qname, rdtype], capture_output=True, text=True,
                          timeout=30)
    return done.stdout + done.stderr


CASES = [  # qname, type, rcode Unbound gives, an RR type the answer must hold (or None)
    (f"www.{GOOD}.", "A", dns.rcode.NOERROR, "A"),
    (f"api.{GOOD}.", "A", dns.rcode.NOERROR, "A"),
    (f"x.y.wild.{GOOD}.", "TXT", dns.rcode.NOERROR, "TXT"),
    (f"chain.{GOOD}.", "A", dns.rcode.NOERROR, "CNAME"),
    (f"a.b.ent.{GOOD}.", "A", dns.rcode.NOERROR, "A"),
    (f"ent.{GOOD}.", "A", dns.rcode.NOERROR, None),
    (f"www.{GOOD}.", "MX", dns.rcode.NOERROR, None),
    (f"api.{GOOD}.", "AAAA", dns.rcode.NOERROR, None),
    (f"nope.{GOOD}.", "A", None, None),  # NOERROR (RFC 9824) or NXDOMAIN (newer Unbound)
    (f"sub.{GOOD}.", "DS", dns.rcode.NOERROR, None),
    (f"{GOOD}.", "DNSKEY", dns.rcode.NOERROR, "DNSKEY"),
]


@pytest.mark.parametrize(("qname", "rdtype", "rcode", "holds"), CASES)
def test_unbound_validates_every_kind_of_answer(world: dict[str, object], qname: str,
                                                rdtype: str, rcode: int | None,
                                                holds: str | None) -> None:
    reply = resolve(world["unbound"], qname, rdtype)  # type: ignore[arg-type]
    assert reply.flags & dns.flags.AD, reply
    if rcode is not None:
        assert reply.rcode() == rcode
    else:
        assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    types = {dns.rdatatype.to_text(r.rdtype) for r in reply.answer}
    assert (holds in types) if holds else not (types - {"RRSIG", "CNAME"})


@pytest.mark.parametrize(("qname", "rdtype", "verdict"), [
    (f"www.{GOOD}.", "A", "; fully validated"),
    (f"api.{GOOD}.", "A", "; fully validated"),
    (f"x.y.wild.{GOOD}.", "TXT", "; fully validated"),
    (f"chain.{GOOD}.", "A", "; fully validated"),
    (f"{GOOD}.", "CDS", "; fully validated"),
    (f"nope.{GOOD}.", "A", "; negative response, fully validated"),
    (f"www.{GOOD}.", "MX", "; negative response, fully validated"),
    (f"sub.{GOOD}.", "DS", "; negative response, fully validated"),
])
def test_delv_fully_validates(world: dict[str, object], qname: str, rdtype: str,
                              verdict: str) -> None:
    assert verdict in delv(world, qname, rdtype)


@pytest.mark.parametrize(("origin", "qname", "rdtype"), [
    ("expired.test", "www.expired.test.", "A"),
    ("tampered.test", "www.tampered.test.", "A"),
    ("liar.test", "www.liar.test.", "MX"),  # the NSEC says www has MX
    ("liar.test", "nope.liar.test.", "A"),  # the NSEC says a nonexistent name has A
])
def test_validators_reject_what_is_wrong(world: dict[str, object], origin: str, qname: str,
                                         rdtype: str) -> None:
    reply = resolve(world["unbound"], qname, rdtype)  # type: ignore[arg-type]
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.flags & dns.flags.AD
    out = delv(world, qname, rdtype)
    assert "fully validated" not in out
    assert "resolution failed" in out


def test_answers_stay_valid_after_a_drain(world: dict[str, object]) -> None:
    server: DnsfailProcess = world["server"]  # type: ignore[assignment]
    ctl = Ctl(server, world["control"])  # type: ignore[arg-type]
    qname = f"api.{GOOD}."
    wait_for(lambda: sorted(ctl.answer(qname)) == [SITES[0], SITES[1]], 20, "eu answers")
    code, _ = ctl.post("/v1/drain", {"target": f"api.{GOOD}/eu", "for": 60, "reason": "t"})
    assert code == 200
    try:
        wait_for(lambda: ctl.answer(qname) == [SITES[2]], 10, "fallback to us")
        assert "; fully validated" in delv(world, qname, "A")
        # Unbound's copy expires (TTL 5) and is fetched again, the new answer validated
        wait_for(lambda: [rd.address for r in resolve(world["unbound"], qname, "A").answer
                          for rd in r if r.rdtype == dns.rdatatype.A] == [SITES[2]], 15,
                 "unbound fetches the drained answer")
        reply = resolve(world["unbound"], qname, "A")  # type: ignore[arg-type]
        assert reply.flags & dns.flags.AD
    finally:
        ctl.post("/v1/undrain", {"target": f"api.{GOOD}/eu"})
    assert "Traceback" not in server.log


def test_two_instances_with_one_key_agree_on_the_window(world: dict[str, object]) -> None:
    first: DnsfailProcess = world["server"]  # type: ignore[assignment]
    second = DnsfailProcess([str(world["zones"]), "--dnssec-keys", str(world["keys"]),
                             "--control", "off", "--state-file", ""]).wait_ready()
    try:
        windows = []
        for server in (first, second):
            reply = server.query(f"www.{GOOD}.", "A", want_dnssec=True)
            sig = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)[0]
            windows.append((sig.inception, sig.expiration, sig.key_tag))
            assert "; fully validated" in subprocess.run(
                [DELV, "@127.0.0.1", "-p", str(server.port), "-a", str(world["anchors"]),
                 f"+root={GOOD}", f"www.{GOOD}.", "A"], capture_output=True, text=True,
                timeout=30).stdout
        assert windows[0] == windows[1]
    finally:
        second.stop()
