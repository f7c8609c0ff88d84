"""The UDP listener's two drains, compiled (``serve._datagrams``) and pure Python, side by side.

Both run on real loopback sockets with the real Handler, and must send the same
bytes for every datagram, count the same, and survive the same bad input; the
compiled one must also not leak (its references are counted by hand).  On CI the
compiled drain must have been built: a silent fallback there would leave it untested.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.cli.main import UDP_DRAINS as CLI_DRAINS
from dnsfail.cookies.settings import Secrets
from dnsfail.cookies.stage import COUNTERS, CookieStage
from dnsfail.dns.handler import Handler, exact_source
from dnsfail.dns.stats import SAMPLE_EVERY
from dnsfail.serve import server
from dnsfail.serve.server import UDP_BATCH, UDP_DRAINS, UdpListener, bind_udp, compiled_built
from dnsfail.serve.wiring import answer_path, plain_pass, stages
from dnsfail.state import Store
from dnsfail.steering.geo import NoLocator
from dnsfail.zonefile import load_zones
from tests.conftest import DATA, DnsfailProcess

try:
    from dnsfail.serve import _datagrams
except ImportError:
    _datagrams = None  # type: ignore[assignment]
COMPILED = _datagrams is not None
DRAINS = ["python", pytest.param("compiled", marks=pytest.mark.skipif(
    not COMPILED, reason="serve._datagrams not built (no compiler at install)"))]


def test_the_compiled_drain_is_built_where_it_can_be() -> None:
    """Where a C compiler and Python's headers are (``.ci/run`` installs both), the
    optional build must have succeeded: a silent fallback would leave it untested."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not (sys.platform.startswith("linux") and shutil.which("cc") and headers.exists()):
        pytest.skip("no C compiler or no Python headers here: the pure-Python drain runs")
    assert COMPILED, "cc and Python.h are here, yet dnsfail.serve._datagrams was not built"


def test_the_drain_is_chosen_by_name() -> None:
    assert CLI_DRAINS == UDP_DRAINS, "the CLI's --udp-drain choices are the listener's"
    assert compiled_built() == COMPILED
    sock = bind_udp("127.0.0.1", 0)
    try:
        assert UdpListener(sock, lambda *a: None, drain="python").compiled is None
        assert (UdpListener(sock, lambda *a: None).compiled is not None) == COMPILED
        if not COMPILED:
            with pytest.raises(RuntimeError, match="not built"):
                UdpListener(sock, lambda *a: None, drain="compiled")
    finally:
        sock.close()


def query(name: str = "api.gw.test.", qid: int = 1, rdtype: str = "A",
          **kwargs: object) -> bytes:  # fmt: skip
    message = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
    message.id = qid
    return message.to_wire()


class Rig:
    """A listener on loopback with its own handler, a client socket, and the handler's calls."""

    def __init__(self, drain: str, host: str = "127.0.0.1", stages: bool = False,
                 cookies: CookieStage | None = None) -> None:  # fmt: skip
        self.store = Store(load_zones([str(DATA / "zones")]))
        plain = None
        if cookies is not None:  # wired as serve wires it
            self.handler = _cookie_handler(self.store, cookies)
            plain = plain_pass(cookies, None)
        else:
            self.handler = Handler(lambda: self.store.snapshot, identity="unit",
                                   after=(lambda d, r, *rest: r) if stages else None)
        self.calls: list[tuple[bytes, str]] = []

        def handle(data: bytes, tcp: bool = False, client: str = "") -> bytes | None:
            self.calls.append((data, client))
            return self.handler.handle(data, tcp, client)

        self.handle = handle
        self.sock = bind_udp(host, 0)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.peer = socket.socket(family, socket.SOCK_DGRAM)
        self.peer.bind((host, 0))
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.peer.settimeout(0.5)
        self.listener = UdpListener(self.sock, handle, exact=exact_source(self.handler, plain),
                                    drain=drain)
        assert (self.listener.compiled is not None) == (drain == "compiled")

    def send(self, *datagrams: bytes) -> int:
        for data in datagrams:
            self.peer.sendto(data, self.sock.getsockname())
        time.sleep(0.01)  # loopback delivery is immediate, but the test must not race it
        return self.listener._drain()

    def replies(self, expect: int) -> list[bytes]:
        got = []
        for _ in range(expect):
            try:
                got.append(self.peer.recv(65535))
            except TimeoutError:
                break
        self.peer.setblocking(False)
        try:  # nothing more than expected
            extra = self.peer.recv(65535)
            got.append(extra)
        except BlockingIOError:
            pass
        self.peer.settimeout(0.5)
        return got

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@pytest.fixture(params=DRAINS)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    made = Rig(request.param)
    yield made
    made.close()


#: Datagrams, each sent three times with different IDs (the second sight is cached, the
#: third a hit), and how many replies each should get.
CASES = [
    ("plain A", query(), 1),
    ("mixed case", query("aPi.Gw.TeSt."), 1),
    ("EDNS", query(use_edns=0, payload=1232), 1),
    ("nonexistent", query("nope.gw.test."), 1),
    ("wildcard", query("x.wild.gw.test.", rdtype="TXT"), 1),
    ("truncated (TC)", query("big.gw.test.", rdtype="TXT"), 1),
    ("not ours", query("www.example.net."), 1),
    ("AAAA", query(rdtype="AAAA"), 1),
    ("empty", b"", 0),
    ("one octet", b"\x01", 0),
    ("a header only", b"\x12\x34" + bytes(10), 1),
    ("a response (QR set)", b"\x12\x34\x80" + query()[3:], 0),
    ("garbage", bytes(range(200)), 1),
]


@pytest.mark.parametrize(("label", "data", "answers"), CASES, ids=[c[0] for c in CASES])
def test_both_drains_send_the_same_bytes(label: str, data: bytes, answers: int) -> None:
    seen: dict[str, list[bytes]] = {}
    for drain in ("python", "compiled") if COMPILED else ("python",):
        rig = Rig(drain)
        try:
            for qid in (0x1111, 0x2222, 0x3333):
                datagram = qid.to_bytes(2, "big") + data[2:] if len(data) >= 2 else data
                assert rig.send(datagram) == 1
                got = rig.replies(answers)
                assert len(got) == answers, (drain, label, got)
                if got:
                    assert got[0][:2] == datagram[:2], "the reply carries the query's ID"
                seen.setdefault(drain, []).extend(got)
        finally:
            rig.close()
    if COMPILED:
        assert seen.get("compiled") == seen.get("python")


def test_a_hit_never_reaches_the_handler_and_is_counted(rig: Rig) -> None:
    data = query(use_edns=0, payload=1232)
    rig.send(data)
    rig.send(data)  # the second sight: now in the exact-bytes cache
    rig.replies(2)
    calls = len(rig.calls)
    before = sum(rig.handler.stats.counts)
    for qid in range(3, 3 + 20):
        rig.send(qid.to_bytes(2, "big") + data[2:])
    got = rig.replies(20)
    assert [r[:2] for r in got] == [qid.to_bytes(2, "big") for qid in range(3, 23)]
    assert sum(rig.handler.stats.counts) == before + 20
    expect_calls = calls if rig.listener.compiled is not None else calls + 20
    assert len(rig.calls) == expect_calls


def test_hits_are_sampled_for_the_latency_histogram(rig: Rig) -> None:
    data = query()
    rig.send(data, data)
    rig.replies(2)
    sampled = sum(rig.handler.stats.latency)
    for _ in range(4):
        rig.send(*[data] * (SAMPLE_EVERY * 4))
        rig.replies(SAMPLE_EVERY * 4)
    assert sum(rig.handler.stats.latency) - sampled == 16, "one message in SAMPLE_EVERY"


def test_with_stages_every_datagram_goes_to_the_handler() -> None:
    """Stages (cookies, RRL) see every reply: no hit may bypass them."""
    for drain in ("python", "compiled") if COMPILED else ("python",):
        rig = Rig(drain, stages=True)
        try:
            data = query()
            for _ in range(5):
                rig.send(data)
            assert len(rig.replies(5)) == 5
            assert len(rig.calls) == 5
        finally:
            rig.close()


def _cookie_handler(store: Store, cookies: CookieStage) -> Handler:
    return answer_path(lambda: store.snapshot, NoLocator(), identity="unit",
                       after=stages(cookies, None)).handler


#: One secret and a fixed clock for both drains' cookie stages: the same server cookies.
SECRETS = Secrets((bytes(range(16)),))
COOKIE = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, bytes.fromhex("0123456789abcdef"))
ECS_10 = dns.edns.ECSOption("10.1.2.0", 24)  # its address holds 00 0a: "00 0a 01 02"

#: Queries for the cookie stage, and whether the compiled drain may answer their hits itself.
COOKIE_CASES = [
    ("no EDNS", query(), True),
    ("EDNS, no cookie", query(use_edns=0, payload=1232), True),
    ("a client cookie", query(use_edns=0, options=[COOKIE]), False),
    ("ECS in 10/8 (00 0a, no cookie)", query(use_edns=0, options=[ECS_10]), False),
    ("a cookie and ECS", query(use_edns=0, options=[ECS_10, COOKIE]), False),
]


@pytest.mark.parametrize(("label", "data", "in_c"), COOKIE_CASES, ids=[c[0] for c in COOKIE_CASES])
def test_with_the_cookie_stage_alone_both_drains_agree(label: str, data: bytes,
                                                        in_c: bool) -> None:
    """The default stage: a hit whose query cannot hold a COOKIE option is answered by the
    compiled drain and counted as the stage counts it; any other goes through the stage."""
    seen: dict[str, tuple[list[bytes], list[int], list[int], int]] = {}
    for drain in ("python", "compiled") if COMPILED else ("python",):
        stage = CookieStage(SECRETS, clock=lambda: 1_800_000_000.0)
        rig = Rig(drain, cookies=stage)
        try:
            got: list[bytes] = []
            for qid in range(1, 11):
                rig.send(qid.to_bytes(2, "big") + data[2:])
                got += rig.replies(1)
            assert len(got) == 10
            seen[drain] = (got, list(rig.handler.stats.counts), list(stage.counts),
                           len(rig.calls))
        finally:
            rig.close()
    python = seen["python"]
    assert python[3] == 10
    if label == "a client cookie":
        assert python[2][COUNTERS.index("client_only")] == 10
    if COMPILED:
        compiled = seen["compiled"]
        assert compiled[:3] == python[:3], "same replies, handler and stage counters"
        assert compiled[3] == (2 if in_c else 10), "hits after the second sight: in C or not"


def test_a_stage_that_may_change_a_reply_sees_every_datagram() -> None:
    """The size cap truncates replies to clients without a cookie: no hit may bypass it."""
    capped = CookieStage(SECRETS, size_cap=512)
    assert capped.plain_pass() is None
    assert plain_pass(CookieStage(SECRETS), None) is not None
    assert plain_pass(CookieStage(SECRETS), object()) is None, "a rate limiter judges all"  # type: ignore[arg-type]
    for drain in ("python", "compiled") if COMPILED else ("python",):
        rig = Rig(drain, cookies=capped)
        try:
            for _ in range(5):
                rig.send(query())
            assert len(rig.replies(5)) == 5
            assert len(rig.calls) == 5
        finally:
            rig.close()


def test_a_drain_reads_at_most_its_limit_and_the_rest_waits(rig: Rig) -> None:
    data = query()
    count = UDP_BATCH + 44
    for start in range(0, count, 50):
        for qid in range(start, min(count, start + 50)):
            rig.peer.sendto(qid.to_bytes(2, "big") + data[2:], rig.sock.getsockname())
    time.sleep(0.05)
    assert rig.listener._drain() == UDP_BATCH
    assert rig.listener._drain() == 44
    assert rig.listener._drain() == 0
    assert len(rig.replies(count)) == count


def test_the_client_address_is_the_sources(rig: Rig) -> None:
    rig.send(query("nope.gw.test."))
    rig.replies(1)
    assert rig.calls[-1][1] == "127.0.0.1"


@pytest.mark.parametrize("drain", DRAINS)
def test_an_ipv6_client(drain: str) -> None:
    try:
        rig = Rig(drain, host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        rig.send(query("nope.gw.test."))
        assert len(rig.replies(1)) == 1
        assert rig.calls[-1][1] == "::1"
    finally:
        rig.close()


def test_the_largest_datagram(rig: Rig) -> None:
    """65,507 octets, the most an IPv4 datagram carries: answered (FORMERR), not cut."""
    data = query(use_edns=0, payload=4096)
    big = data + bytes(65507 - len(data))
    rig.peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    assert rig.send(big) == 1
    got = rig.replies(1)
    assert len(got) == 1
    assert rig.calls[-1][0] == big


def test_a_handler_that_raises_costs_only_its_datagram(rig: Rig,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def broken(data: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        if data[2:4] == b"\xff\xff":
            raise RuntimeError("a bug")
        return rig.handler.handle(data, tcp, client)

    rig.listener.handle = broken
    if rig.listener.compiled is not None:
        rig.listener.compiled = _datagrams.Datagrams(
            rig.sock.fileno(), broken, None, [], lambda s: None, server._report, SAMPLE_EVERY)
    bad = b"\x00\x01\xff\xff" + bytes(8)
    assert rig.send(bad, query(), bad, query()) == 4
    assert len(rig.replies(2)) == 2
    assert "a bug" in caplog.text


def test_compiled_hits_hold_no_memory() -> None:
    if not COMPILED:
        pytest.skip("serve._datagrams not built")
    rig = Rig("compiled")
    try:
        data = query()
        rig.send(data, data)
        rig.replies(2)
        tracemalloc.start()
        try:
            for _ in range(20):
                rig.send(*[data] * 200)
                rig.replies(200)
            first = tracemalloc.get_traced_memory()[0]
            for _ in range(100):
                rig.send(*[data] * 200)
                rig.replies(200)
            grown = tracemalloc.get_traced_memory()[0] - first
        finally:
            tracemalloc.stop()
        assert grown < 64 * 1024, f"{grown} bytes kept after 20,000 hits"
    finally:
        rig.close()


def _twice_each(rig: Rig, data: bytes) -> list[bytes]:
    """``data`` three times (its second sight is cached, its third a hit) and the replies."""
    got: list[bytes] = []
    rig.peer.setblocking(False)
    for _ in range(3):
        rig.send(data)
        while True:
            try:
                got.append(rig.peer.recv(65535))
            except BlockingIOError:
                break
    rig.peer.settimeout(0.5)
    return got


labels = st.text(alphabet="aApPiIgGwWtTeEsSxX-", min_size=1, max_size=8)


@settings(max_examples=150)
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda name, edns: query(name + ".gw.test.", use_edns=edns),
              st.lists(labels, min_size=1, max_size=3).map(".".join),
              st.sampled_from([False, 0])),
    st.builds(lambda data, at, byte: data[:at] + bytes([byte]) + data[at + 1:],
              st.just(query(use_edns=0)), st.integers(0, 40), st.integers(0, 255)),
))  # fmt: skip
def test_any_datagram_gets_the_same_replies_from_both_drains(data: bytes) -> None:
    if not COMPILED:
        pytest.skip("serve._datagrams not built")
    rigs = RIGS.setdefault("pair", (Rig("python"), Rig("compiled")))
    assert _twice_each(rigs[0], data) == _twice_each(rigs[1], data)


#: Two rigs shared by the Hypothesis examples above (made once, closed at the module's end).
RIGS: dict[str, tuple[Rig, Rig]] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_rigs() -> Iterator[None]:
    yield
    for pair in RIGS.values():
        for rig in pair:
            rig.close()
    RIGS.clear()


@pytest.mark.parametrize("drain", DRAINS)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_server_answers_through_the_chosen_drain(drain: str, workers: str) -> None:
    """``serve --udp-drain``, end to end: the log names the drain, and repeats (the exact
    cache, answered in C by the compiled drain) get the same answers as first sights."""
    server = DnsfailProcess([str(DATA / "zones"), "--workers", workers, "--udp-drain", drain,
                             "--state-file", ""])  # fmt: skip
    try:
        server.wait_ready()
        name = "compiled" if drain == "compiled" else "pure-Python"
        server.wait_for_log(f"UDP read by the {name} drain")
        answers = {str(server.query("api.gw.test.", use_edns=0).answer[0]) for _ in range(40)}
        assert answers == {"api.gw.test. 30 IN A 192.0.2.10\napi.gw.test. 30 IN A 192.0.2.11"}
        assert server.query("nope.gw.test.").rcode() == dns.rcode.NXDOMAIN
    finally:
        assert server.stop() == 0


def test_compiled_is_refused_clearly_where_it_was_not_built() -> None:
    """As on a machine without a compiler: the module is made unimportable in the child."""
    code = ("import sys; sys.modules['dnsfail.serve._datagrams'] = None; "
            "from dnsfail.cli.main import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "serve", "--udp-drain", "compiled",
                           "--state-file", "", str(DATA / "zones")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "was not built at install" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("drain", DRAINS)
@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.10", "127.1.20.255", "127.99.100.9"])
def test_every_ipv4_source_is_spelt_as_recvfrom_spells_it(drain: str, source: str) -> None:
    """The compiled drain writes dotted quads by hand: one, two and three digits."""
    rig = Rig(drain)
    try:
        rig.peer.close()
        rig.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rig.peer.bind((source, 0))
        rig.peer.settimeout(0.5)
        rig.send(query("nope.gw.test."))
        assert len(rig.replies(1)) == 1
        assert rig.calls[-1][1] == source
    finally:
        rig.close()
