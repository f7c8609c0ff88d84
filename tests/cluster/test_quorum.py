"""The quorum rule, freshness, degraded, replays: tables and properties, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.cluster.quorum import (
    Fallback,
    QuorumClock,
    Seen,
    Vote,
    accept,
    degraded_after,
    describe,
    fresh_window,
    judge,
    majority,
    needed,
    tally,
)
from dnsfail.model import Quorum
from dnsfail.steering.health import Health

U, D, K = Health.UP, Health.DOWN, Health.UNKNOWN
WINDOW = fresh_window(1.0, 0.5)  # 3.5 s


def votes(*states: Health, age: float = 0.0) -> list[Vote]:
    return [Vote(f"ns{i + 1}", s, 100.0 - age) for i, s in enumerate(states)]


@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_majority_of_configured(n: int, q: int) -> None:
    assert majority(n) == q == needed(Quorum.MAJORITY, n)


@pytest.mark.parametrize(
    ("quorum", "states", "n", "expected"),
    [
        (Quorum.MAJORITY, (D, D, U), 3, D),
        (Quorum.MAJORITY, (D, U, U), 3, U),
        (Quorum.MAJORITY, (D,), 3, U),  # one vote of three: never withdraws alone
        (Quorum.MAJORITY, (D, D), 3, D),  # a dead instance's missing vote does not block
        (Quorum.MAJORITY, (D, D), 4, U),  # 2 of 4 is not a majority
        (Quorum.MAJORITY, (), 3, K),
        (Quorum.MAJORITY, (K, K, K), 3, K),
        (Quorum.ANY, (D, U, U), 3, D),
        (Quorum.ANY, (U, U, U), 3, U),
        (Quorum.ALL, (D, D, U), 3, U),
        (Quorum.ALL, (D, D), 3, U),  # all means all configured
        (Quorum.ALL, (D, D, D), 3, D),
    ],
)
def test_rule_table(quorum: Quorum, states: tuple[Health, ...], n: int,
                    expected: Health) -> None:
    assert tally(votes(*states), n, quorum, 100.0, WINDOW).state is expected


def test_stale_votes_do_not_count() -> None:
    old = votes(D, D, age=WINDOW + 0.1)
    assert tally(old, 3, Quorum.MAJORITY, 100.0, WINDOW).state is K
    mixed = [*votes(D, age=WINDOW + 0.1), Vote("ns2", D, 100.0), Vote("ns3", U, 100.0)]
    t = tally(mixed, 3, Quorum.MAJORITY, 100.0, WINDOW)
    assert (t.state, t.down, t.fresh) == (U, 1, 2)


def test_window_and_degraded_after() -> None:
    assert fresh_window(5.0, 2.0) == 17.0
    assert degraded_after([5.0, 2.0]) == 20.0
    assert degraded_after([30.0]) == 60.0
    assert degraded_after([]) == 60.0


@pytest.mark.parametrize(
    ("heard", "agreed", "degraded", "fallback", "own", "tallied", "state", "basis"),
    [
        (3, U, False, Fallback.HOLD, D, D, D, "quorum"),
        (2, U, False, Fallback.HOLD, D, D, D, "quorum"),
        (1, U, False, Fallback.HOLD, D, U, U, "held"),
        (1, D, False, Fallback.HOLD, U, U, D, "held"),  # cut off: keeps the agreed DOWN
        (1, D, True, Fallback.HOLD, U, U, D, "held"),
        (1, None, False, Fallback.HOLD, D, U, U, "rule"),
        (1, None, True, Fallback.HOLD, D, U, D, "own"),  # degraded, never agreed: own vote
        (1, U, True, Fallback.OWN, D, U, D, "own"),
        (1, U, False, Fallback.OWN, D, U, U, "held"),  # OWN only once degraded
    ],
)
def test_judge_table(heard: int, agreed: Health | None, degraded: bool, fallback: Fallback,
                     own: Health, tallied: Health, state: Health, basis: str) -> None:
    t = tally(votes(tallied), 3, Quorum.ANY, 100.0, WINDOW)
    assert t.state is tallied
    j = judge(t, own, heard=heard, agreed=agreed, degraded=degraded, fallback=fallback)
    assert (j.state, j.basis) == (state, basis)


def test_quorum_clock() -> None:
    c = QuorumClock().step(False, 10.0)
    assert c.lost_since == 10.0
    assert c.step(False, 15.0).lost_since == 10.0
    assert not c.degraded(20.0, 10.0)
    assert c.degraded(20.5, 10.0)
    assert c.step(True, 21.0).lost_since is None


@pytest.mark.parametrize(
    ("prev", "boot", "seq", "ok"),
    [
        (None, "100-a", 0, True),
        (Seen("100-a", 5), "100-a", 6, True),
        (Seen("100-a", 5), "100-a", 5, False),  # the same message again
        (Seen("100-a", 5), "100-a", 2, False),  # an old one
        (Seen("100-a", 5), "200-b", 0, True),  # a restart
        (Seen("200-b", 5), "100-a", 99, False),  # a message of the previous boot
    ],
)
def test_replay_table(prev: Seen | None, boot: str, seq: int, ok: bool) -> None:
    assert (accept(prev, boot, seq) is None) is ok


def test_describe_names_every_vote() -> None:
    vs = [Vote("ns1", D, 99.0), Vote("ns2", D, 98.0), Vote("ns3", U, 99.0)]
    t = tally(vs, 3, Quorum.MAJORITY, 100.0, WINDOW)
    text = describe(judge(t, D, heard=3, agreed=None, degraded=False,
                          fallback=Fallback.HOLD), 100.0, WINDOW)
    assert text.startswith("DOWN (2 of 3 fresh votes: ns1 DOWN 1 s ago, ns2 DOWN 2 s ago, "
                           "ns3 UP 1 s ago")


STATES = st.sampled_from([U, D, K])


@given(st.lists(STATES, max_size=7), st.integers(2, 7))
def test_an_instance_alone_never_withdraws_under_majority(others: list[Health], n: int) -> None:
    """Whatever the others' (stale) votes, one fresh DOWN vote of N >= 2 is not a majority."""
    vs = [Vote("me", D, 100.0)] + [Vote(f"p{i}", s, 0.0) for i, s in enumerate(others)]
    assert tally(vs, n, Quorum.MAJORITY, 100.0, WINDOW).state is U


@given(st.lists(STATES, min_size=1, max_size=7), st.lists(st.floats(0, 10), min_size=7,
                                                          max_size=7))
def test_any_majority_all_are_ordered(states: list[Health], ages: list[float]) -> None:
    """ANY withdraws whenever MAJORITY does, and MAJORITY whenever ALL does."""
    vs = [Vote(f"p{i}", s, 100.0 - a) for i, (s, a) in enumerate(zip(states, ages, strict=False))]
    n = len(vs)
    down = {q: tally(vs, n, q, 100.0, WINDOW).state is D for q in Quorum}
    assert down[Quorum.ALL] <= down[Quorum.MAJORITY] <= down[Quorum.ANY]


@given(st.floats(-1e6, 1e6), st.floats(0, 100))
def test_freshness_ignores_the_sender_clock(offset: float, age: float) -> None:
    """Only the age and the receive time matter: a sender's clock offset cannot enter."""
    received = 1000.0
    v = Vote("ns1", D, received - age)  # what the node builds; offset has no field to go to
    fresh = tally([v], 1, Quorum.MAJORITY, received, WINDOW).state is D
    assert fresh is (age <= WINDOW)
    del offset
