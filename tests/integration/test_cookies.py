"""DNS Cookies against a real ``dnsfail serve``: dig and kdig, two instances, a rollover,
the size cap, malformed options, worker processes and the metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from dnsfail.cookies.cookie import VALID, judge, server_cookie
from tests.conftest import DATA, DnsfailProcess, free_port

from .conftest import udp_exchange

SECRET = "e5e973e5a6b2a43f48e7dc849e37bfcf"
NEW = "445536bcd2513298075a5d379663c962"
OTHER = "dd3bdf9344b678b185a6f5cb60fca715"
LOOPBACK = bytes((127, 0, 0, 1))
#: What dig and kdig print: ``COOKIE: <client><server>`` in hexadecimal.
COOKIE_LINE = re.compile(r"COOKIE: ([0-9A-Fa-f]+)")
Spawn = Callable[..., DnsfailProcess]


def secret_file(directory: Path, *secrets: str) -> str:
    path = directory / f"secret-{len(list(directory.iterdir()))}"
    path.write_text("".join(f"{s}\n" for s in secrets))
    return str(path)


def serve(spawn: Spawn, *extra: str, zones: Path = DATA / "zones") -> DnsfailProcess:
    return spawn([str(zones), "--control", "off", "--state-file", "", *extra]).wait_ready()


def tool(name: str, server: DnsfailProcess, cookie: str = "", *args: str) -> str:
    """The cookie ``dig`` or ``kdig`` prints after asking ``server`` with ``+cookie[=...]``."""
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    flag = f"+cookie={cookie}" if cookie else "+cookie"
    patience = ["+tries=1", "+time=2"] if name == "dig" else ["+retry=0", "+timeout=2"]
    out = subprocess.run([name, flag, *patience, f"@{server.host}", "-p",
                          str(server.port), *args, "api.gw.test", "A"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert "NOERROR" in out, out
    found = COOKIE_LINE.search(out)
    assert found is not None, out
    return found.group(1).lower()


def valid(cookie: str, secret: str = SECRET) -> bool:
    raw = bytes.fromhex(cookie)
    verdict = judge((bytes.fromhex(secret),), raw[:8], raw[8:], LOOPBACK,
                    int.from_bytes(raw[12:16], "big"))
    return verdict == VALID


@pytest.mark.parametrize("name", ["dig", "kdig"])
def test_dig_and_kdig_see_a_valid_stable_cookie(spawn: Spawn, tmp_path: Path,
                                                name: str) -> None:
    server = serve(spawn, "--cookie-secret-file", secret_file(tmp_path, SECRET))
    first = tool(name, server)
    assert len(first) == 48  # 8 octets of client cookie, 16 of RFC 9018 server cookie
    assert valid(first)
    assert first[16:24] == "01000000"  # version 1, reserved zero
    again = tool(name, server, first)
    assert again == first  # sent back, it comes back unchanged: the same server cookie
    # One made a minute ago (by this test, with the server's secret) is kept as it is, not
    # replaced by one of this second: the cookie stays stable for half an hour.
    client = bytes.fromhex(first[:16])
    older = client + server_cookie(bytes.fromhex(SECRET), client, LOOPBACK,
                                   int(time.time()) - 60)
    assert tool(name, server, older.hex()) == older.hex()
    if name == "dig":
        assert "(good)" in subprocess.run(
            ["dig", f"+cookie={first}", f"@{server.host}", "-p", str(server.port),
             "api.gw.test"], capture_output=True, text=True, timeout=10).stdout


def ask(server: DnsfailProcess, cookie: bytes | None, *, name: str = "gw.test.",
        qtype: str = "NS", tcp: bool = False) -> dns.message.Message:
    options = [] if cookie is None else [dns.edns.GenericOption(10, cookie)]
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232, options=options)
    if tcp:
        return dns.query.tcp(query, server.host, port=server.port, timeout=2)
    return dns.query.udp(query, server.host, port=server.port, timeout=2,
                         ignore_trailing=True)


def cookie_of(reply: dns.message.Message) -> bytes | None:
    for option in reply.options:
        if option.otype == 10:
            return option.to_wire()
    return None


def test_instances_sharing_a_secret_accept_each_others_cookies(spawn: Spawn,
                                                               tmp_path: Path) -> None:
    """A's cookie sent to B comes back valid: unchanged, and B's size cap spares it."""
    shared = secret_file(tmp_path, SECRET)
    a = serve(spawn, "--cookie-secret-file", shared)
    b = serve(spawn, "--cookie-secret-file", shared, "--udp-size-cap-without-cookie", "128")
    stranger = serve(spawn, "--cookie-secret-file", secret_file(tmp_path, OTHER),
                     "--udp-size-cap-without-cookie", "128")
    for name in ("dig", "kdig"):
        from_a = tool(name, a)
        assert tool(name, b, from_a) == from_a  # valid at B: sent back as it is
        assert tool(name, stranger, from_a) != from_a  # not ours: a fresh cookie
    from_a = cookie_of(ask(a, bytes.fromhex("2464c4abcf10c957")))
    assert from_a is not None
    at_b = ask(b, from_a)
    assert at_b.rcode() == dns.rcode.NOERROR
    assert at_b.answer  # proven: the 194-octet reply passes B's 128-octet cap
    assert cookie_of(at_b) == from_a
    at_stranger = ask(stranger, from_a)
    assert at_stranger.flags & dns.flags.TC  # unproven there: capped, not BADCOOKIE
    assert at_stranger.rcode() == dns.rcode.NOERROR


def test_a_rollover_accepts_the_previous_secret(spawn: Spawn, tmp_path: Path) -> None:
    """Step 2 of the NSD procedure: the new secret makes cookies, the old one is accepted."""
    old = serve(spawn, "--cookie-secret-file", secret_file(tmp_path, SECRET))
    rolled = serve(spawn, "--cookie-secret-file", secret_file(tmp_path, NEW, SECRET),
                   "--udp-size-cap-without-cookie", "128")
    dropped = serve(spawn, "--cookie-secret-file", secret_file(tmp_path, NEW),
                    "--udp-size-cap-without-cookie", "128")
    before = cookie_of(ask(old, bytes.fromhex("2464c4abcf10c957")))
    assert before is not None
    reply = ask(rolled, before)
    assert reply.answer  # the old secret's cookie is still proof
    renewed = cookie_of(reply)
    assert renewed is not None
    assert renewed != before
    assert valid(renewed.hex(), NEW)  # and is replaced by one of the new secret
    assert ask(dropped, before).flags & dns.flags.TC  # once the old line is gone, it is not
    assert ask(dropped, renewed).answer


def big_zone(directory: Path) -> Path:
    """big.test, whose t.big.test TXT answer is about 830 octets (amplification 15x)."""
    zones = directory / "zones"
    zones.mkdir()
    strings = "".join(f"  - {chr(97 + i) * 200}\n" for i in range(4))
    (zones / "big.test.yaml").write_text(
        "'':\n  type: NS\n  value: ns1.big.test.\nns1:\n  type: A\n  value: 192.0.2.53\n"
        f"t:\n  type: TXT\n  values:\n{strings}")
    return zones


def test_the_size_cap_and_its_metrics(spawn: Spawn, tmp_path: Path) -> None:
    control = free_port()
    server = spawn([str(big_zone(tmp_path)), "--state-file", "", "--control",
                    f"127.0.0.1:{control}", "--udp-size-cap-without-cookie", "512"]).wait_ready()
    plain = ask(server, None, name="t.big.test.", qtype="TXT")
    assert plain.flags & dns.flags.TC
    assert not plain.answer
    assert len(plain.to_wire()) <= 512
    learning = ask(server, bytes.fromhex("2464c4abcf10c957"), name="t.big.test.", qtype="TXT")
    assert learning.flags & dns.flags.TC  # capped, but carrying the cookie to prove itself
    learnt = cookie_of(learning)
    assert learnt is not None
    proven = ask(server, learnt, name="t.big.test.", qtype="TXT")
    assert not proven.flags & dns.flags.TC
    assert len(proven.to_wire()) > 800
    assert ask(server, None, name="t.big.test.", qtype="TXT", tcp=True).answer
    text = urllib.request.urlopen(f"http://127.0.0.1:{control}/metrics", timeout=5).read()
    metrics = text.decode()
    assert 'dnsfail_cookie_queries_total{state="none"} 2.0' in metrics
    assert 'dnsfail_cookie_queries_total{state="client_only"} 1.0' in metrics
    assert 'dnsfail_cookie_queries_total{state="valid"} 1.0' in metrics
    assert "dnsfail_udp_capped_replies_total 2.0" in metrics


@pytest.mark.parametrize("length", [0, 4, 9, 15, 41])
def test_malformed_options_get_formerr(spawn: Spawn, length: int,
                                       cookie_server: DnsfailProcess) -> None:
    query = dns.message.make_query("api.gw.test.", "A", use_edns=0, options=[
        dns.edns.GenericOption(10, bytes(length))])
    raw = udp_exchange(cookie_server, query.to_wire())
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert reply.rcode() == dns.rcode.FORMERR
    assert reply.id == query.id
    assert cookie_of(reply) is None


@pytest.fixture(scope="module")
def cookie_server() -> object:
    server = DnsfailProcess([str(DATA / "zones"), "--control", "off", "--state-file",
                             ""]).wait_ready()
    yield server
    server.stop()


def test_workers_answer_with_the_same_secret(spawn: Spawn, tmp_path: Path) -> None:
    """With --workers, every process makes and accepts the same cookies, the random secret
    of this start included."""
    server = serve(spawn, "--workers", "2")
    server.wait_for_log("worker 1 (pid")
    seen = set()
    for i in range(40):
        client = i.to_bytes(8, "big")
        made = cookie_of(ask(server, client, name="api.gw.test.", qtype="A"))
        assert made is not None
        back = cookie_of(ask(server, made, name="api.gw.test.", qtype="A"))
        seen.add(back == made)
    assert seen == {True}


def test_no_cookies_answers_as_before_cookies(spawn: Spawn) -> None:
    server = serve(spawn, "--no-cookies")
    reply = ask(server, bytes.fromhex("2464c4abcf10c957"), name="api.gw.test.", qtype="A")
    assert reply.answer
    assert cookie_of(reply) is None
    malformed = ask(server, bytes(3), name="api.gw.test.", qtype="A")
    assert malformed.rcode() == dns.rcode.NOERROR  # the option means nothing to it


def test_an_unreadable_secret_file_stops_the_start(spawn: Spawn, tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("not a secret\n")
    server = spawn([str(DATA / "zones"), "--control", "off", "--state-file", "",
                    "--cookie-secret-file", str(tmp_path / "bad")])
    assert server.proc.wait(timeout=15) == 1
    server.stop()
    assert "not a 128-bit secret" in server.log
