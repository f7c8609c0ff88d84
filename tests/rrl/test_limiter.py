"""The limiter over real replies with a hand-turned clock: classes, blocks, slips, logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from fractions import Fraction

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.dns.stats import PLAN, QueryStats
from dnsfail.rrl import classkey
from dnsfail.rrl import limiter as limiter_module
from dnsfail.rrl.account import DROP, PASS, SLIP, debit
from dnsfail.rrl.limiter import RateLimiter
from dnsfail.rrl.settings import RrlSettings
from dnsfail.rrl.table import Table
from dnsfail.state import Store
from tests.conftest import ROOT
from tests.rrl.test_account import ZONES

RATE = 4
GRANTED = 645  # rate // GRANT_SHARE = 10 replies of credit at a time, the last grant cut


class Rig:
    """A Handler's replies put to a RateLimiter whose clock the test sets."""

    def __init__(self, keyed: bool = False, **kwargs: object) -> None:
        #: Whether ``ask`` gives ``decide`` the handler's key, as the fused stage does.
        self.keyed = keyed
        self.store = Store(ZONES)
        self.stats = QueryStats()
        self.now = 1000.0
        self.handler = Handler(lambda: self.store.snapshot, stats=self.stats)
        kwargs.setdefault("rate", RATE)
        self.limiter = RateLimiter(RrlSettings(**kwargs),  # type: ignore[arg-type]
                                   Table.create(1024), self.stats,
                                   lambda: self.store.snapshot, clock=lambda: self.now)

    def ask(self, qname: str, qtype: str = "A", client: str = "192.0.2.1",
            **kwargs: object) -> int:
        data = dns.message.make_query(qname, qtype, **kwargs).to_wire()  # type: ignore[arg-type]
        reply = self.handler.lookup(data, False, client)
        assert reply is not None
        key = self.handler.key if self.keyed else None
        return self.limiter.decide(data, reply, client, self.handler.slot, key)

    def spend(self, qname: str, qtype: str = "A", client: str = "192.0.2.1") -> None:
        """Use up one stream's burst: RATE passes, then the next is limited."""
        assert [self.ask(qname, qtype, client) for _ in range(RATE)] == [PASS] * RATE
        assert self.ask(qname, qtype, client) != PASS


PADDED = {"use_edns": 0,
          "options": [dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 7)]}

#: (first stream, second stream, whether they are one class): after the first spends its
#: burst, the second is limited at once exactly when it is the same class.
STREAMS: list[tuple[tuple[object, ...], tuple[object, ...], bool]] = [
    (("api.gw.test.",), ("API.Gw.TeSt.",), True),  # 0x20 letter case
    (("api.gw.test.",), ("api.gw.test.", "A", "192.0.2.1", PADDED), True),  # EDNS bytes
    (("api.gw.test.",), ("api.gw.test.", "A", "192.0.2.200"), True),  # same /24
    (("api.gw.test.",), ("api.gw.test.", "A", "192.0.3.1"), False),  # another /24
    (("api.gw.test.", "A", "::ffff:192.0.2.9"), ("api.gw.test.", "A", "192.0.2.1"), True),
    (("api.gw.test.", "A", "2001:db8:0:1::1"), ("api.gw.test.", "A", "2001:db8:0:ff::2"),
     True),  # same /56
    (("api.gw.test.", "A", "2001:db8:0:1::1"), ("api.gw.test.", "A", "2001:db8:0:100::1"),
     False),
    (("api.gw.test.",), ("api.gw.test.", "AAAA"), False),  # answers: per qtype
    (("api.gw.test.",), ("a.b.ent.gw.test.",), False),  # and per qname
    (("nope.gw.test.",), ("other.nope.gw.test.", "AAAA"), True),  # NXDOMAIN: per zone
    (("nope.gw.test.",), ("x.www.gw.example.com.",), False),  # another zone
    (("nope.gw.test.",), ("api.gw.test.",), False),
    (("gw.test.", "SRV"), ("gw.test.", "CAA"), True),  # NODATA: qtype not counted
    (("gw.test.", "SRV"), ("gw.test.", "MX"), False),
    (("gw.test.", "SRV"), ("ent.gw.test.", "SRV"), False),
    (("one.wild.gw.test.", "TXT"), ("two.wild.gw.test.", "TXT"), True),  # a wildcard's owner
    (("one.wild.gw.test.", "TXT"), ("one.cn.gw.test.",), False),  # another wildcard
    (("one.wild.gw.test.", "A"), ("two.wild.gw.test.", "AAAA"), True),  # NODATA at *.wild
    (("a.team.gw.example.com.",), ("b.c.team.gw.example.com.", "AAAA"), True),  # referral
    (("example.org.",), ("example.net.", "MX"), True),  # REFUSED, names not ours
    (("example.org.",), ("nope.gw.test.",), False),
]


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize(("first", "second", "same"), STREAMS)
def test_classes_and_blocks(first: tuple[object, ...], second: tuple[object, ...],
                            same: bool, keyed: bool) -> None:
    """Keyed: with what the handler found each reply by (an exact-bytes hit, a scanned
    question), as the fused stage passes it; the streams must be the same."""
    rig = Rig(keyed)
    rig.spend(*first)  # type: ignore[arg-type]
    args, extra = second[:3], (second[3] if len(second) > 3 else {})
    decision = rig.ask(*args, **extra)  # type: ignore[arg-type]
    assert (decision != PASS) == same


def test_a_class_rate_of_zero_is_unlimited_and_others_apply() -> None:
    rig = Rig(nxdomain_rate=0, error_rate=1)
    assert {rig.ask(f"n{i}.gw.test.") for i in range(50)} == {PASS}
    assert [rig.ask("example.org.") for _ in range(3)] == [PASS, SLIP, DROP]
    rig.spend("api.gw.test.")


def test_a_stream_full_again_slips_first_again() -> None:
    """BIND restarts the slip count when the balance is full: the first limited reply of
    each episode slips, whatever the last episode left."""
    rig = Rig()
    assert [rig.ask("api.gw.test.") for _ in range(RATE + 1)][-1] == SLIP  # count at 1
    rig.now += 2.0  # full again
    assert [rig.ask("api.gw.test.") for _ in range(RATE + 2)][-2:] == [SLIP, DROP]


def test_log_only_passes_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(log_only=True)
    with caplog.at_level(logging.WARNING):
        assert {rig.ask("api.gw.test.") for _ in range(RATE + 10)} == {PASS}
    assert rig.stats.limited == {"would_slip:answer": 5, "would_drop:answer": 5}
    assert "would limit responses to 192.0.2.0/24 for api.gw.test. IN A" in caplog.text


def test_limits_are_counted_by_action_and_class() -> None:
    rig = Rig(slip=3)
    for _ in range(RATE + 6):
        rig.ask("api.gw.test.")
    for i in range(RATE + 3):
        rig.ask(f"n{i}.gw.test.")
    assert rig.stats.limited == {"slipped:answer": 2, "dropped:answer": 4,
                                 "slipped:nxdomain": 1, "dropped:nxdomain": 2}
    assert rig.stats.totals().limited == rig.stats.limited


def test_the_slip_reply_is_truncated_with_only_the_question() -> None:
    rig = Rig()
    data = dns.message.make_query("Api.GW.test.", "A", id=4321, use_edns=0).to_wire()
    reply = rig.handler.lookup(data, False, "192.0.2.1")
    assert reply is not None
    slipped = dns.message.from_wire(rig.limiter.slip(data, reply))
    assert slipped.id == 4321
    assert slipped.flags & dns.flags.TC
    assert slipped.flags & dns.flags.QR
    assert str(slipped.question[0].name) == "Api.GW.test."
    assert (slipped.answer, slipped.authority, slipped.additional) == ([], [], [])
    assert len(rig.limiter.slip(data, reply)) < len(reply)


def test_badvers_replies_are_limited_as_errors_whatever_the_qname() -> None:
    """EDNS version 1 queries get BADVERS (RFC 6891 section 6.1.3): rcode 0 in the header,
    16 in the OPT.  Classed as NODATA they were keyed by qname, so spoofed queries for
    random names were never limited; as errors they share the zone's one stream."""
    rig = Rig()
    decisions = [rig.ask(f"n{i}.gw.test.", use_edns=1) for i in range(RATE + 2)]
    assert decisions[:RATE] == [PASS] * RATE
    assert PASS not in decisions[RATE:]
    assert rig.stats.limited.get("slipped:error", 0) + rig.stats.limited.get(
        "dropped:error", 0) == 2


def test_a_zero_octet_inside_a_label_is_not_the_end_of_the_name() -> None:
    """A label may hold any octet (RFC 2181 section 11): the question's end is found by
    walking the labels, so the slip reply carries the whole question (it used to be cut at
    the first zero octet, a reply no client can parse)."""
    rig = Rig()
    name = dns.name.Name([b"a\0b", b"x", b"gw", b"test", b""])
    data = dns.message.make_query(name, "A", id=99).to_wire()
    reply = rig.handler.lookup(data, False, "192.0.2.1")
    assert reply is not None
    slipped = dns.message.from_wire(rig.limiter.slip(data, reply))
    assert slipped.question[0].name == name
    assert slipped.flags & dns.flags.TC


def test_start_and_stop_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(window=2)
    with caplog.at_level(logging.WARNING):
        for _ in range(RATE + 20):
            rig.ask("api.gw.test.")
        rig.now += 1.0
        rig.ask("www.gw.example.com.")  # still in debt: no stop line
        rig.now += 3.0
        rig.ask("www.gw.example.com.")  # any reply runs the sweep
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["limit responses to 192.0.2.0/24 for api.gw.test. IN A",
                     "stop limiting responses to 192.0.2.0/24 for api.gw.test. IN A"]


def test_the_log_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    blocks = limiter_module.MAX_LOGGED + 30
    with caplog.at_level(logging.WARNING):
        for block in range(blocks):
            for _ in range(RATE + 1):
                rig.ask("api.gw.test.", client=f"10.{block // 256}.{block % 256}.1")
        rig.now += 1.0
        rig.ask("api.gw.test.", client="10.255.0.1")
    starts = [r for r in caplog.records if r.getMessage().startswith("limit")]
    assert len(starts) == limiter_module.MAX_LOGGED
    assert "30 more stream(s) limited, not logged one by one" in caplog.text


def test_the_block_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_module, "BLOCK_MEMO", 16)
    rig = Rig()
    for i in range(100):
        assert rig.ask("api.gw.test.", client=f"10.0.{i}.1") == PASS
        assert len(rig.limiter._clients) <= 16


def test_the_question_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classkey, "QUESTION_MEMO", 16)
    monkeypatch.setattr(limiter_module, "STREAM_MEMO", 16)
    rig = Rig(keyed=True)
    for i in range(100):
        assert rig.ask(f"n{i}.wild.gw.test.", "TXT", client=f"10.0.{i}.1") == PASS
        rig.ask("api.gw.test.", "A", client=f"10.0.{i}.1", use_edns=0,
                options=[dns.edns.GenericOption(dns.edns.OptionType.PADDING, bytes(i))])
        assert len(rig.limiter.names.folded) <= 16
        memos = sum(len(c.memo) for c in rig.limiter._clients.values())
        assert memos <= 16
        assert rig.limiter._memoised == memos
    huge = [dns.edns.GenericOption(dns.edns.OptionType.PADDING, bytes(400))]
    rig.ask("api.gw.test.", "A", use_edns=0, options=huge)
    assert all(len(k) <= limiter_module.QUESTION_MEMO_OCTETS
               for c in rig.limiter._clients.values() for k in c.memo if isinstance(k, bytes))


def test_a_new_snapshot_empties_the_question_memo_at_the_next_sweep() -> None:
    """Wildcard owners are memoised with the question, and classes by the client's key:
    names may come and go."""
    rig = Rig(keyed=True)
    rig.ask("one.wild.gw.test.", "TXT")  # a template's wildcard, as the handler says
    rig.ask("two.wild.gw.test.", "TXT", use_edns=False)
    assert rig.limiter.names.wildcards
    assert rig.limiter._clients
    rig.store.republish()
    rig.now += 2.0
    rig.ask("api.gw.test.")  # the sweep runs first, then this question is memoised
    assert not rig.limiter.names.wildcards
    assert len(rig.limiter.names.folded) == 1
    assert [len(c.memo) for c in rig.limiter._clients.values()] == [1]


def test_what_is_not_an_address_is_not_limited() -> None:
    rig = Rig()
    assert {rig.ask("api.gw.test.", client="") for _ in range(3 * RATE)} == {PASS}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 2)), min_size=1, max_size=150),
       st.integers(0, 4))
def test_the_fast_path_is_the_accounting(steps: list[tuple[int, int]], slip: int) -> None:
    """Whatever the interleaving of streams, each gets what ``account.debit`` decides."""
    rig = Rig(slip=slip)
    streams = [("api.gw.test.", "A"), ("nope.gw.test.", "A"), ("one.wild.gw.test.", "TXT")]
    state = [(0.0, 0)] * len(streams)
    now = Fraction(1000)
    for gap, which in steps:
        now += Fraction(gap, 1024)
        rig.now = float(now)
        tat, slips, expected = debit(*state[which], float(now), RATE, 15, slip)
        state[which] = (tat, slips)
        assert rig.ask(*streams[which]) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=80), st.binary(min_size=12, max_size=80),
       st.integers(0, 5), st.sampled_from(["192.0.2.1", "2001:db8::1", "", "x", "::"]))
def test_hostile_bytes_never_raise(data: bytes, reply: bytes, slot: int, client: str) -> None:
    rig = Rig()
    assert rig.limiter.decide(data, reply, client, slot) in (PASS, SLIP, DROP)
    assert rig.limiter.slip(data, reply)[2] & 0x02


HAMMER = """
import sys
from tests.rrl.test_limiter import hammer
print(hammer(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
"""


def hammer(fd: int | None, seconds: float, rate: int = RATE) -> int:
    """Decide one stream's replies as fast as possible on the table ``fd``; the passes."""
    rig = Rig(rate=rate)
    if fd is not None:
        rig.limiter = RateLimiter(rig.limiter.settings, Table.attach(1024, fd), rig.stats,
                                  lambda: rig.store.snapshot)
    return hammer_on(rig, seconds)


@pytest.mark.parametrize("rate", [RATE, GRANTED])
def test_two_processes_on_one_stream_share_one_limit(rate: int) -> None:
    """What ``--workers`` relies on, at full contention: one limit, not one per process,
    and no torn bucket read as empty or full (``struct.pack_into`` zero-fills first: that
    measured 27,475 passes here instead of ~40); with credit taken ten replies at a time,
    within one grant per process of it (``limiter.Stream``)."""
    rig = Rig(rate=rate)
    fd = rig.limiter.table.fd
    seconds = 1.5
    child = subprocess.Popen([sys.executable, "-c", HAMMER, str(fd), str(seconds), str(rate)],
                             pass_fds=[fd], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(0.3)  # the child is importing; then both run at once
    mine = hammer_on(rig, seconds)
    out, _ = child.communicate(timeout=60)
    total = mine + int(out.strip())
    grants = 2 * max(1, rate // limiter_module.GRANT_SHARE)
    assert total <= rate * (seconds + 0.3 + 1) + 4 + grants, (mine, out)


def hammer_on(rig: Rig, seconds: float) -> int:
    rig.limiter.clock = time.monotonic  # both processes on the one host clock
    data = dns.message.make_query("api.gw.test.", "A").to_wire()
    reply = rig.handler.lookup(data, False, "192.0.2.1")
    assert reply is not None
    passes, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        passes += rig.limiter.decide(data, reply, "192.0.2.1", rig.handler.slot) == PASS
    return passes


def _queries(rate: int = RATE) -> list[tuple[bytes, bool, str]]:
    """Every kind of query the fused stage tells apart, each asked past its stream's limit."""
    ecs = dns.edns.ECSOption("10.1.2.0", 24)  # its address holds the octets 00 0a
    kinds: list[tuple[str, str, dict[str, object], bool, str]] = [
        ("api.gw.test.", "A", {}, False, "192.0.2.1"),
        ("API.gw.Test.", "A", {"use_edns": 0}, False, "192.0.2.1"),  # another case
        ("api.gw.test.", "A", {"use_edns": 0, "options": [ecs]}, False, "192.0.2.1"),
        ("api.gw.test.", "A", {"use_edns": 0, "options": [
            dns.edns.GenericOption(10, bytes(8))]}, False, "192.0.2.1"),  # client cookie
        ("api.gw.test.", "A", {"use_edns": 0, "options": [
            dns.edns.GenericOption(10, bytes(5))]}, False, "192.0.2.1"),  # malformed
        ("api.gw.test.", "TXT", {}, True, "192.0.2.1"),  # TCP
        ("one.wild.gw.test.", "TXT", {}, False, "192.0.2.9"),
        ("gw.test.", "SRV", {"use_edns": 0}, False, "192.0.2.9"),
        ("a.team.gw.example.com.", "A", {}, False, "2001:db8::1"),
        ("example.org.", "A", {}, False, "192.0.2.1"),
    ]
    out = []
    for i in range(rate + 3):
        for qname, qtype, kwargs, tcp, client in kinds:
            out.append((dns.message.make_query(qname, qtype, id=i, **kwargs)  # type: ignore[arg-type]
                        .to_wire(), tcp, client))
        out.append((dns.message.make_query(f"n{i}.gw.test.", "A", id=i).to_wire(), False,
                    "192.0.2.1"))
        out.append((dns.message.make_query(f"n{i}.wild.gw.test.", "TXT", id=i).to_wire(), False,
                    "192.0.2.1"))
    return out


@pytest.mark.parametrize(("answer", "cap", "rate"),
                         [(True, 0, RATE), (True, 512, RATE), (False, 512, RATE),
                          (True, 0, 256), (True, 512, 256)])
def test_the_fused_stage_is_stages_composed(answer: bool, cap: int, rate: int) -> None:
    """``rrl.stage.guarded(cookies, limiter)`` (what the daemon runs) sends what
    ``Stages(cookies, limiter)`` sends, and counts the same, for cache hits and misses of
    every kind; at rate 256 streams take 4 replies of credit at once, which the fused
    stage spends inline."""
    from dnsfail.cookies.settings import Secrets
    from dnsfail.cookies.stage import CookieStage
    from dnsfail.dns.stages import Stages
    from dnsfail.rrl.stage import guarded

    def run(fused: bool) -> tuple[list[bytes | None], dict[str, int], list[int]]:
        store, stats, now = Store(ZONES), QueryStats(), [1000.0]
        limiter = RateLimiter(RrlSettings(rate=rate), Table.create(1024), stats,
                              lambda: store.snapshot, clock=lambda: now[0])
        cookies = CookieStage(Secrets((bytes(range(16)),)), answer=answer, size_cap=cap,
                              clock=lambda: 1559731985.0)
        after = (guarded(cookies, limiter) if fused
                 else Stages(cookies=cookies, limiter=limiter))
        handler = Handler(lambda: store.snapshot, stats=stats, after=after)
        sent = []
        for data, tcp, client in _queries(rate):
            sent.append(handler.handle(data, tcp, client))
            now[0] += 0.004 / rate  # 0.001 at RATE: every stream over its rate
        assert stats.internal_errors == 0
        return sent, dict(stats.limited), list(cookies.counts)

    fused, composed = run(True), run(False)
    assert fused[1] == composed[1]
    assert fused[2] == composed[2]
    assert fused[0] == composed[0]
    assert fused[1]  # something was limited
    assert None in fused[0]



def test_credit_never_passes_more_than_the_bucket_allows_now() -> None:
    """One process, a burst at one instant: exactly the burst passes, credit or not; the
    stream held a grant's credit after its first reply."""
    rig = Rig(keyed=True, rate=GRANTED)
    results = [rig.ask("api.gw.test.") for _ in range(GRANTED + 5)]
    assert results == [PASS] * GRANTED + [SLIP, DROP, SLIP, DROP, SLIP]
    (client,) = rig.limiter._clients.values()
    assert {s.grant for s in client.memo.values()} == {10}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=3000))
def test_credit_is_within_one_grant_of_the_accounting(gaps: list[int]) -> None:
    """Whatever the arrival times, the passes of a stream taking credit ten replies at a
    time stay within one grant of what ``account.debit`` passes, one by one."""
    rig = Rig(keyed=True, rate=GRANTED)
    tat, slips, exact, passes = 0.0, 0, 0, 0
    now = Fraction(1000)
    for gap in gaps:
        now += Fraction(gap, 1 << 16)
        rig.now = float(now)
        tat, slips, expected = debit(tat, slips, float(now), GRANTED, 15, 2)
        exact += expected == PASS
        passes += rig.ask("api.gw.test.") == PASS
        assert abs(passes - exact) < 10, (passes, exact)


@pytest.mark.parametrize("qtype", ["TXT", "A"])  # an answer, and NODATA at *.wild
def test_a_templates_wildcard_is_the_walks_wildcard(qtype: str) -> None:
    """The owner the template hands over (the key's third part) makes the same stream as
    the walk up from the qname, which the parser's path (no key) takes."""
    rig = Rig(keyed=True)
    data = dns.message.make_query("one.wild.gw.test.", qtype).to_wire()
    rig.handler.lookup(data, False, "192.0.2.1")
    assert isinstance(rig.handler.key, tuple)
    if qtype == "TXT":  # NODATA's template is not the wildcard's: the walk finds its owner
        assert rig.handler.key[2:] == (f"*.wild.gw.test. {dns.rdatatype.from_text(qtype)}",)
    rig.spend("one.wild.gw.test.", qtype)
    rig.keyed = False
    assert rig.ask("two.wild.gw.test.", qtype) != PASS


def test_a_flood_answered_by_plans_is_one_stream_per_class_and_no_memo_per_name() -> None:
    """New names under a wildcard and new nonexistent names, answered by ``dns.template``
    plans (no scan): the plan hands the stages the wildcard's owner, or a key that counts
    NXDOMAIN by the zone's slot, so the client's memo holds a few streams, not one per
    name (which cost a memo insert and, for a wildcard, a walk to its owner, per query)."""
    rig = Rig(keyed=True, rate=1 << 20)
    for i in range(40):
        assert rig.ask(f"n{i}.wild.gw.test.", "TXT") == PASS
        assert rig.ask(f"n{i}.gw.test.", "TXT") == PASS
    assert rig.stats.paths[PLAN] >= 70
    (client,) = rig.limiter._clients.values()
    assert len(client.memo) <= 4, len(client.memo)
    assert len({id(stream) for stream in client.memo.values()}) == 2
    rig.ask("last.wild.gw.test.", "TXT")
    assert rig.handler.key == (b"", 0, f"*.wild.gw.test. {dns.rdatatype.TXT}")
