"""The pure accounting: reply classes from real replies, and BIND's debit as tables and laws."""

from __future__ import annotations

from fractions import Fraction

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.dns.handler import Handler
from dnsfail.rrl.account import (
    ANSWER,
    DROP,
    ERROR,
    NODATA,
    NXDOMAIN,
    PASS,
    REFERRAL,
    SLIP,
    balance,
    classify,
    debit,
    delegation,
    name_at,
)
from dnsfail.state import Store
from dnsfail.zonefile import load_zones
from tests.conftest import DATA, ROOT

ZONES = load_zones([str(ROOT / "zones"), str(DATA / "zones")])
STORE = Store(ZONES)
HANDLER = Handler(lambda: STORE.snapshot)


def reply(qname: str, qtype: str = "A", **kwargs: object) -> bytes:
    query = dns.message.make_query(qname, qtype, **kwargs)  # type: ignore[arg-type]
    out = HANDLER.handle(query.to_wire(), False, "192.0.2.1")
    assert out is not None
    return out


@pytest.mark.parametrize(("qname", "qtype", "expected"), [
    ("api.gw.test.", "A", ANSWER),
    ("www.gw.example.com.", "A", ANSWER),
    ("edge.gw.example.com.", "A", ANSWER),  # a CNAME chain is an answer
    ("x.wild.gw.test.", "TXT", ANSWER),  # synthesised from *.wild
    ("gw.test.", "SRV", NODATA),
    ("ent.gw.test.", "A", NODATA),  # an empty non-terminal
    ("x.wild.gw.test.", "A", NODATA),  # the wildcard has no A
    ("nope.gw.test.", "A", NXDOMAIN),
    ("no.such.name.gw.test.", "AAAA", NXDOMAIN),
    ("host.team.gw.example.com.", "A", REFERRAL),
    ("team.gw.example.com.", "A", REFERRAL),
    ("example.org.", "A", ERROR),  # REFUSED: not ours
])
def test_classes_of_real_replies(qname: str, qtype: str, expected: int) -> None:
    assert classify(reply(qname, qtype)) == expected


def test_badvers_is_an_error() -> None:
    assert classify(reply("nope.gw.test.", use_edns=1)) == ERROR


def test_errors_without_a_question_are_errors() -> None:
    formerr = HANDLER.handle(b"\x12\x34\x00\x00\x00\x02" + bytes(6) + b"\x00\x00\x01\x00\x01",
                             False, "192.0.2.1")
    assert formerr is not None
    assert classify(formerr) == ERROR


@pytest.mark.parametrize("qname", ["host.team.gw.example.com.", "A.B.Team.GW.example.com.",
                                   "team.gw.example.com."])
def test_a_referral_is_keyed_by_its_delegation_point(qname: str) -> None:
    assert delegation(reply(qname)) == b"\x04team\x02gw\x07example\x03com\x00"


@pytest.mark.parametrize(("message", "offset", "expected"), [
    (b"\x01a\x00", 0, b"\x01a\x00"),
    (b"\x01A\xc0\x04\x02bc\x00", 0, b"\x01a\x02bc\x00"),
    (b"\xc0\x00", 0, None),  # a pointer loop
    (b"\x01a", 0, None),  # runs off the end
    (b"\x40" + bytes(64), 0, None),  # a label length over 63
])
def test_names_in_replies(message: bytes, offset: int, expected: bytes | None) -> None:
    assert name_at(message, offset) == expected


# --- debit: tables ----------------------------------------------------------------------

#: (tat, slips, now, rate, window, slip) -> (tat, slips, decision)
DEBITS = [
    ((0.0, 0, 100.0, 10, 15, 2), (100.1, 0, PASS)),  # idle: full credit, one debit
    ((100.95, 0, 100.0, 10, 15, 2), (101.05, 1, SLIP)),  # the first limited reply slips
    ((101.05, 1, 100.0, 10, 15, 2), (101.15, 0, DROP)),  # then every second one
    ((101.15, 0, 100.0, 10, 15, 2), (101.25, 1, SLIP)),
    ((116.0, 1, 100.0, 10, 15, 2), (116.0, 0, DROP)),  # the debt floor: window seconds
    ((101.0, 0, 100.0, 10, 15, 0), (101.1, 0, DROP)),  # slip 0: never
    ((101.0, 0, 100.0, 10, 15, 1), (101.1, 0, SLIP)),  # slip 1: always
    ((101.1, 0, 100.0, 10, 15, 1), (101.2, 0, SLIP)),
    ((101.0, 2, 100.0, 10, 15, 3), (101.1, 0, DROP)),  # slip 3: S D D S
    ((100.5, 5, 100.0, 10, 15, 2), (100.6, 5, PASS)),  # in credit: the count is kept
    ((99.0, 5, 100.0, 10, 15, 2), (100.1, 0, PASS)),  # full again: the count restarts
]


@pytest.mark.parametrize(("given_", "expected"), DEBITS)
def test_debit_table(given_: tuple[float, int, float, int, int, int],
                     expected: tuple[float, int, int]) -> None:
    tat, slips, decision = debit(*given_)
    assert (round(tat, 9), slips, decision) == expected


@pytest.mark.parametrize(("tat", "now", "rate", "expected"), [
    (0.0, 5.0, 10, 10), (5.0, 5.0, 10, 10), (5.5, 5.0, 10, 5), (6.0, 5.0, 10, 0),
    (21.0, 5.0, 10, -150),
])
def test_balance_is_bind_responses(tat: float, now: float, rate: int, expected: float) -> None:
    assert balance(tat, now, rate) == pytest.approx(expected)


# --- debit: laws, against BIND's balance written out in exact arithmetic -----------------

#: Times are multiples of 1/1024 s and rates powers of two, so floats are exact.
TICK = Fraction(1, 1024)
rates = st.sampled_from([1, 2, 4, 8, 16, 64])
gaps = st.lists(st.integers(0, 3000), min_size=1, max_size=300)


def bind_model(times: list[Fraction], rate: int, window: int) -> list[bool]:
    """BIND's ``responses`` balance: credit ``rate`` a second up to ``rate``, debit one per
    reply, pass while not negative, debt floored at ``window * rate``."""
    passes, responses, last = [], Fraction(rate), times[0]
    for now in times:
        responses = min(Fraction(rate), responses + rate * (now - last))
        last = now
        responses -= 1
        passes.append(responses >= 0)
        responses = max(responses, Fraction(-window * rate))
    return passes


def run(times: list[Fraction], rate: int, window: int, slip: int) -> list[int]:
    tat, slips, out = 0.0, 0, []
    for now in times:
        tat, slips, decision = debit(tat, slips, float(now), rate, window, slip)
        out.append(decision)
    return out


def arrivals(ticks: list[int]) -> list[Fraction]:
    times, now = [], Fraction(1000)
    for gap in ticks:
        now += gap * TICK
        times.append(now)
    return times


@settings(max_examples=300, deadline=None)
@given(gaps, rates, st.integers(1, 20), st.integers(0, 10))
def test_debit_is_bind_balance(ticks: list[int], rate: int, window: int, slip: int) -> None:
    times = arrivals(ticks)
    decisions = run(times, rate, window, slip)
    assert [d == PASS for d in decisions] == bind_model(times, rate, window)


@settings(max_examples=300, deadline=None)
@given(gaps, rates, st.integers(1, 20))
def test_never_more_than_rate_plus_a_burst(ticks: list[int], rate: int, window: int) -> None:
    """In any interval of L seconds at most ``rate * (L + 1)`` replies pass."""
    times = arrivals(ticks)
    passed = [t for t, d in zip(times, run(times, rate, window, 2), strict=True) if d == PASS]
    for i, first in enumerate(passed):
        for j in range(i, len(passed)):
            assert j - i + 1 <= rate * (passed[j] - first + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=200), rates, st.integers(1, 20))
def test_a_client_under_the_rate_is_never_limited(extra: list[int], rate: int,
                                                  window: int) -> None:
    ticks = [1024 // rate + gap for gap in extra]  # every gap at least 1/rate seconds
    assert set(run(arrivals(ticks), rate, window, 2)) == {PASS}


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 10))
def test_slips_are_every_nth_limited_reply(limited: int, slip: int) -> None:
    """One instant, ``rate`` passes, then the limited replies: the first slips, then every
    ``slip``-th (BIND ``debit_rrl_entry``)."""
    decisions = run([Fraction(1000)] * (4 + limited), 4, 15, slip)
    assert decisions[:4] == [PASS] * 4
    expected = [SLIP if slip and i % slip == 0 else DROP for i in range(limited)]
    assert decisions[4:] == expected


@settings(max_examples=200, deadline=None)
@given(gaps, rates, st.integers(1, 20))
def test_the_debt_is_floored_and_repaid_within_the_window(ticks: list[int], rate: int,
                                                          window: int) -> None:
    times = arrivals(ticks)
    tat, slips = 0.0, 0
    for now in times:
        tat, slips, _ = debit(tat, slips, float(now), rate, window, 2)
        assert tat - float(now) <= 1 + window
    after = float(times[-1]) + window + 1  # quiet for window + 1 seconds: a full burst
    for _ in range(rate):
        tat, slips, decision = debit(tat, slips, after, rate, window, 2)
        assert decision == PASS
