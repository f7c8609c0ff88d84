"""A chain of trust through a secure delegation, judged by Unbound: one ``dnsfail serve``
holds a signed parent zone and two signed child zones; the parent's file holds each child's
DS as ``dnsfail dnssec ds`` printed it (for one child with a digit of the digest changed).
Unbound trusts the parent's key only: a name in the good child must come back AD, one in the
child with the wrong DS SERVFAIL (the negative control that shows the first can fail)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsfail.dnssec import keys

from ..conftest import ROOT, DnsfailProcess, free_port
from .test_dnssec import anchor_line
from .unbound import UNBOUND, launch, server_clause

pytestmark = pytest.mark.skipif(UNBOUND is None, reason="unbound is not installed")

PARENT, GOOD, WRONG = "par.test", "kid.par.test", "bad.par.test"


def ds_fields(zone: str, keydir: Path) -> list[dict[str, str]]:
    """``dnsfail dnssec ds``'s DS lines (one per key), as octoDNS's DS fields."""
    out = subprocess.run([sys.executable, "-m", "dnsfail", "dnssec", "ds", zone, "--keys",
                          str(keydir)], check=True, capture_output=True, text=True, cwd=ROOT)
    found = []
    for line in out.stdout.splitlines():
        if " IN DS " in line:
            tag, algorithm, digest_type, digest = line.split(" IN DS ")[1].split()
            found.append({"key_tag": tag, "algorithm": algorithm, "digest_type": digest_type,
                          "digest": digest})
    return found


def ds_yaml(label: str, fields: dict[str, str]) -> str:
    return textwrap.dedent(f"""\
        {label}:
          - type: DS
            values:
            - algorithm: {fields['algorithm']}
              digest: {fields['digest']}
              digest_type: {fields['digest_type']}
              key_tag: {fields['key_tag']}
          - type: NS
            value: ns1.{label}.{PARENT}.
        ns1.{label}:
          type: A
          value: 127.0.0.1
        """)


def child_text(origin: str) -> str:
    return (f"'':\n  type: NS\n  value: ns1.{origin}.\nns1:\n  type: A\n  value: 127.0.0.1\n"
            "www:\n  type: A\n  value: 192.0.2.80\n")


@contextlib.contextmanager
def unbound(tmp: Path, server: int, anchor: str) -> Iterator[int]:
    """A fresh Unbound (nothing cached) trusting ``anchor`` alone, asking dnsfail on
    ``server`` for the parent and both children; its port."""
    port = free_port()
    conf = tmp / f"unbound-{port}.conf"
    conf.write_text(server_clause(tmp, port, f"unbound-{port}.pid")
                    + '  module-config: "validator iterator"\n  local-zone: "." refuse\n'
                    f'  local-zone: "{PARENT}." transparent\n  trust-anchor: "{anchor}"\n'
                    + "".join(f'stub-zone:\n  name: "{o}"\n  stub-addr: 127.0.0.1@{server}\n'
                              for o in (PARENT, GOOD, WRONG)))
    process = launch(conf, port, f"ns1.{PARENT}.")
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_parent(zones: Path, good: dict[str, str], wrong: dict[str, str]) -> None:
    (zones / f"{PARENT}.yaml").write_text(
        f"'':\n  type: NS\n  value: ns1.{PARENT}.\nns1:\n  type: A\n  value: 127.0.0.1\n"
        + ds_yaml("kid", good) + ds_yaml("bad", wrong))


def setup_chain(tmp: Path, extra: list[str] | None = None
                ) -> tuple[Path, Path, dict[str, keys.Key], DnsfailProcess]:
    zones, keydir = tmp / "zones", tmp / "keys"
    zones.mkdir()
    made = {origin: keys.generate(origin, str(keydir)) for origin in (PARENT, GOOD, WRONG)}
    good, wrong = ds_fields(GOOD, keydir)[0], ds_fields(WRONG, keydir)[0]
    flipped = "0" if wrong["digest"][-1] != "0" else "1"
    wrong["digest"] = wrong["digest"][:-1] + flipped
    write_parent(zones, good, wrong)
    for origin in (GOOD, WRONG):
        (zones / f"{origin}.yaml").write_text(child_text(origin))
    server = DnsfailProcess([str(zones), "--dnssec-keys", str(keydir), "--state-file", "",
                             *(extra or ["--control", "off"])]).wait_ready()
    return zones, keydir, made, server


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("ds-chain")
    _, _, made, server = setup_chain(tmp)
    try:
        with unbound(tmp, server.port, anchor_line(made[PARENT])) as port:
            yield port
    finally:
        server.stop()
    assert "Traceback" not in server.log


def resolve(port: int, qname: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, want_dnssec=True)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=5)


@pytest.mark.parametrize(("qname", "rdtype"), [
    (f"www.{GOOD}.", "A"), (f"{GOOD}.", "DS"), (f"nope.{GOOD}.", "A"), (f"{GOOD}.", "DNSKEY"),
])
def test_a_name_in_the_child_validates_through_the_parents_ds(chain: int, qname: str,
                                                              rdtype: str) -> None:
    reply = resolve(chain, qname, rdtype)
    assert reply.flags & dns.flags.AD, reply
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)


def test_a_wrong_ds_makes_the_child_bogus(chain: int) -> None:
    reply = resolve(chain, f"www.{WRONG}.", "A")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.flags & dns.flags.AD
    # while the parent's own data (the wrong DS included) still validates
    parent = resolve(chain, f"{WRONG}.", "DS")
    assert parent.flags & dns.flags.AD


def test_a_csk_rollover_by_the_readme_commands(tmp_path: Path) -> None:
    """README's rollover: keygen + reload (both keys published, both sign), the parent's
    DS swapped + reload, the old key's files deleted + reload; a fresh validator (nothing
    cached: the waits of the procedure) validates the child after every step.  The negative
    control: the key the parent's DS names replaced by another, SERVFAIL."""
    control = free_port()
    zones, keydir, made, server = setup_chain(tmp_path, ["--control", f"127.0.0.1:{control}"])
    anchor = anchor_line(made[PARENT])
    wrong = ds_fields(WRONG, keydir)[0]

    def run(*argv: str) -> None:
        subprocess.run([sys.executable, "-m", "dnsfail", *argv], check=True, cwd=ROOT,
                       capture_output=True, timeout=60)

    def reload() -> None:
        run("reload", "--control", f"127.0.0.1:{control}")

    def validates() -> bool:
        with unbound(tmp_path, server.port, anchor) as port:
            reply = resolve(port, f"www.{GOOD}.", "A")
        return bool(reply.flags & dns.flags.AD) and reply.rcode() == dns.rcode.NOERROR

    try:
        old = made[GOOD]
        assert validates()
        run("dnssec", "keygen", GOOD, "--keys", str(keydir))  # 1. a second key
        reload()
        published = server.query(f"{GOOD}.", "DNSKEY", want_dnssec=True)
        assert sum(len(r) for r in published.answer if r.rdtype == 48) == 2
        assert validates()
        new = next(f for f in ds_fields(GOOD, keydir) if f["key_tag"] != str(old.tag))
        write_parent(zones, new, wrong)  # 3. the parent takes the new DS
        reload()
        assert validates()  # the old key still signs, the new one matches the DS
        for suffix in (".private", ".key"):  # 4. the old key goes
            Path(old.path).with_suffix(suffix).unlink()
        reload()
        assert validates()
        # the negative control: the key the parent's DS names gone, another in its place
        for path in keydir.glob(f"K{GOOD}.+*"):
            if f"+{new['key_tag'].zfill(5)}." in path.name:
                path.rename(tmp_path / path.name)
        run("dnssec", "keygen", GOOD, "--keys", str(keydir))
        reload()
        assert not validates()
    finally:
        server.stop()
    assert "Traceback" not in server.log
