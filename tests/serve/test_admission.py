"""Who gets a TCP slot, without sockets: the source a client counts as, caps, who is evicted;
and the accept throttle's rule and shared table (``serve.spread``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.cli.main import build_parser
from dnsfail.serve.admission import (
    CONNECTION_LIMIT,
    EVICT_SCAN,
    PER_SOURCE_LIMIT,
    Admission,
)
from dnsfail.serve.server import TCP_MAX_CONNECTIONS, TCP_MAX_PER_SOURCE
from dnsfail.serve.spread import ABSENT, Shares, over_share


@dataclass(eq=False)
class Conn:
    """A stand-in connection: only whether it is idle matters here."""

    name: str
    busy: bool = False


def table(max_connections: int, max_per_source: int = 0) -> Admission[Conn]:
    return Admission(max_connections, max_per_source, lambda c: not c.busy)


def test_below_the_limits_everyone_is_admitted() -> None:
    admission = table(3, 2)
    for name in "ab":
        assert admission.admit("s1") == (None, None)
        admission.add(Conn(name), "s1")
    assert admission.admit("s2") == (None, None)
    assert len(admission) == 2


def test_per_source_cap() -> None:
    admission = table(10, 2)
    first, second = Conn("a"), Conn("b")
    admission.add(first, "s1")
    admission.add(second, "s1")
    assert admission.admit("s1") == (PER_SOURCE_LIMIT, None)
    assert admission.admit("s2") == (None, None)  # another source is not affected
    admission.remove(first)
    assert admission.admit("s1") == (None, None)  # a closed one frees its slot
    assert admission.per_source == {"s1": 1}


def test_no_cap_per_source_when_zero() -> None:
    admission = table(5, 0)
    for i in range(4):
        admission.add(Conn(str(i)), "s1")
    assert admission.admit("s1") == (None, None)


def test_at_the_limit_the_least_recently_active_idle_one_is_evicted() -> None:
    admission = table(3)
    a, b, c = Conn("a"), Conn("b"), Conn("c")
    for conn in (a, b, c):
        admission.add(conn, "s1")
    admission.touch(a)  # a answered a query: now b is idle the longest
    refused, victim = admission.admit("s2")
    assert (refused, victim) == (None, b)
    assert list(admission.order) == [c, a]  # already forgotten: the caller closes it
    assert admission.per_source == {"s1": 2}


def test_a_connection_mid_answer_is_never_evicted() -> None:
    admission = table(3)
    a, b, c = Conn("a", busy=True), Conn("b"), Conn("c", busy=True)
    for conn in (a, b, c):
        admission.add(conn, "s1")
    assert admission.admit("s2") == (None, b)
    admission.add(Conn("d", busy=True), "s2")
    assert admission.admit("s3") == (CONNECTION_LIMIT, None)  # all busy: refuse the new one
    assert len(admission) == 3


def test_busy_ones_move_back_and_the_scan_is_bounded() -> None:
    """A table full of busy connections costs at most EVICT_SCAN looks per new connection,
    and the next scan starts past the busy ones already seen."""
    size = EVICT_SCAN * 3
    admission = table(size)
    conns = [Conn(str(i), busy=i < size - 1) for i in range(size)]
    for conn in conns:
        admission.add(conn, "s")
    looks: list[Conn] = []

    def idle(conn: Conn) -> bool:
        looks.append(conn)
        return not conn.busy

    admission.idle = idle
    assert admission.admit("t") == (CONNECTION_LIMIT, None)
    assert len(looks) == EVICT_SCAN
    assert admission.admit("t") == (CONNECTION_LIMIT, None)
    assert looks[EVICT_SCAN] is conns[EVICT_SCAN]  # not the first ones again
    assert admission.admit("t") == (None, conns[-1])  # the third scan reaches the idle one


def test_remove_is_idempotent() -> None:
    admission = table(2)
    a = Conn("a")
    admission.add(a, "s")
    assert admission.remove(a)
    assert not admission.remove(a)  # evicted, then its connection_lost
    assert admission.per_source == {}
    admission.touch(a)  # a forgotten connection is not brought back
    assert len(admission) == 0


@given(st.lists(st.tuples(st.sampled_from(["add", "touch", "remove", "admit"]),
                          st.integers(0, 7), st.sampled_from(["s1", "s2", "s3"]),
                          st.booleans()), max_size=60))
def test_counts_stay_consistent(steps: list[tuple[str, int, str, bool]]) -> None:
    admission = table(5, 3)
    conns = [Conn(str(i)) for i in range(8)]
    for action, index, source, busy in steps:
        conn = conns[index]
        conn.busy = busy
        if action == "add" and conn not in admission.order:
            refused, _ = admission.admit(source)
            if refused is None:
                admission.add(conn, source)
        elif action == "touch":
            admission.touch(conn)
        elif action == "remove":
            admission.remove(conn)
        else:
            admission.admit(source)
        assert len(admission) <= 5
        counted: dict[str, int] = {}
        for s in admission.order.values():
            counted[s] = counted.get(s, 0) + 1
        assert counted == admission.per_source
        assert all(n <= 3 for n in counted.values())


@pytest.mark.parametrize(
    ("mine", "others", "over"),
    [
        (0, [0], False),
        (1, [0], True),  # a sibling holds fewer: leave the next one to it
        (1, [1], False),
        (2, [3], False),
        (3, [3, 2], True),
        (1, [ABSENT], False),  # a sibling that is not running is not waited for
        (5, [ABSENT, 5], False),
        (0, [], False),
    ],
)
def test_over_share(mine: int, others: list[int], over: bool) -> None:
    assert over_share(mine, others) is over


def test_shares_are_seen_by_every_process() -> None:
    main = Shares.create(3)
    worker = Shares(main.fd, 3, 1)  # what a worker maps from the descriptor it inherits
    try:
        assert main.counts.tolist() == [0, ABSENT, ABSENT]
        main.set(1)
        assert not main.over()  # the workers are not running yet
        worker.set(0)
        assert main.over()
        assert not worker.over()
        worker.set(1)
        assert not main.over()
        main.absent(1)  # the worker exited
        main.set(4)
        assert not main.over()
    finally:
        worker.unmap()
        main.close()


def test_cli_defaults_are_the_documented_constants() -> None:
    """cli.main may not import the server (``check`` must stay light), so it repeats them."""
    args = build_parser().parse_args(["serve"])
    assert args.tcp_max_connections == TCP_MAX_CONNECTIONS
    assert args.tcp_max_per_source == TCP_MAX_PER_SOURCE
