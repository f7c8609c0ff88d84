"""The anti-flap machine, driven with plain values and an injected time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.model import ProbeProtocol, ProbeSpec
from dnsfail.steering.health import (
    DEFAULT_FALL,
    DEFAULT_INTERVAL,
    DEFAULT_RISE,
    DEFAULT_TIMEOUT,
    Health,
    TargetHealth,
    describe_change,
    next_change_bound,
    observe,
)

U, D, X = Health.UP, Health.DOWN, Health.UNKNOWN


def run(seq: str, *, rise: int = 2, fall: int = 3) -> list[TargetHealth]:
    """Feed 'o' (ok) / 'x' (fail) results one second apart; return every state."""
    h = TargetHealth()
    out = []
    for i, c in enumerate(seq):
        h = observe(
            h,
            c == "o",
            "HTTP 200" if c == "o" else "HTTP 503",
            0.01,
            float(i + 1),
            rise=rise,
            fall=fall,
        )
        out.append(h)
    return out


@pytest.mark.parametrize(
    ("seq", "rise", "fall", "states", "transitions"),
    [
        # Cold start: the first result decides at once, either way.
        ("o", 2, 3, [U], 0),
        ("x", 2, 3, [D], 0),
        # One lost probe never withdraws; fall=3 failures in a row do.
        ("oxo", 2, 3, [U, U, U], 0),
        ("oxxoxx", 2, 3, [U] * 6, 0),
        ("oxxx", 2, 3, [U, U, U, D], 1),
        # One good probe never restores; rise=2 successes in a row do.
        ("xoxo", 2, 3, [D] * 4, 0),
        ("xoo", 2, 3, [D, D, U], 1),
        # A full flap both ways.
        ("oxxxoo", 2, 3, [U, U, U, D, D, U], 2),
        # Extra results past the threshold change nothing.
        ("oxxxxxx", 2, 3, [U, U, U, D, D, D, D], 1),
        # rise=fall=1 is PowerDNS-like: every result decides.
        ("oxox", 1, 1, [U, D, U, D], 3),
    ],
)
def test_observe_table(
    seq: str, rise: int, fall: int, states: list[Health], transitions: int
) -> None:
    hs = run(seq, rise=rise, fall=fall)
    assert [h.state for h in hs] == states
    assert hs[-1].transitions == transitions


def test_counters_last_result_and_since() -> None:
    hs = run("oxxxoo")
    assert [(h.successes, h.failures) for h in hs] == [
        (1, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
        (2, 0),
    ]
    # `since` is the time of the last state change: first verdict at 1, down at 4, up at 6.
    assert [h.since for h in hs] == [1.0, 1.0, 1.0, 4.0, 4.0, 6.0]
    last = hs[-1].last
    assert last is not None
    assert (last.ok, last.detail, last.latency, last.at) == (True, "HTTP 200", 0.01, 6.0)


def test_observe_is_pure() -> None:
    h = TargetHealth()
    before = repr(h)
    observe(h, False, "x", 0.0, 1.0, rise=2, fall=3)
    assert repr(h) == before


@pytest.mark.parametrize(("rise", "fall"), [(0, 3), (2, 0), (-1, -1)])
def test_observe_rejects_nonpositive_thresholds(rise: int, fall: int) -> None:
    with pytest.raises(ValueError, match="rise and fall"):
        observe(TargetHealth(), True, "", 0.0, 0.0, rise=rise, fall=fall)


def test_describe_change_exact_line() -> None:
    up = observe(TargetHealth(), True, "HTTP 200", 0.01, 0.0, rise=2, fall=3)
    h = up
    for t in (5.0, 10.0):
        h = observe(h, False, "connect timeout after 2.0s", 2.0, t, rise=2, fall=3)
        assert describe_change(up, h, "192.0.2.10:443", "x") is None
    down = observe(h, False, "connect timeout after 2.0s", 2.0, 15.0, rise=2, fall=3)
    assert describe_change(h, down, "192.0.2.10:443", "api.gw.example.com pool eu") == (
        "target 192.0.2.10:443 (api.gw.example.com pool eu) UP -> DOWN "
        "(3 failures; last: connect timeout after 2.0s)"
    )


@pytest.mark.parametrize(
    ("seq", "line"),
    [
        ("o", "target 192.0.2.1:80 UNKNOWN -> UP (1 success; last: HTTP 200)"),
        ("x", "target 192.0.2.1:80 UNKNOWN -> DOWN (1 failure; last: HTTP 503)"),
        ("xoo", "target 192.0.2.1:80 DOWN -> UP (2 successes; last: HTTP 200)"),
        ("xo", None),
    ],
)
def test_describe_change_without_context(seq: str, line: str | None) -> None:
    hs = [TargetHealth(), *run(seq)]
    assert describe_change(hs[-2], hs[-1], "192.0.2.1:80") == line


def test_label_comes_from_probe_spec() -> None:
    v6 = ProbeSpec(ProbeProtocol.TCP, "2001:db8::1", 443)
    a, b = TargetHealth(), run("x")[0]
    assert describe_change(a, b, v6.label, "") == (
        "target [2001:db8::1]:443 UNKNOWN -> DOWN (1 failure; last: HTTP 503)"
    )


@pytest.mark.parametrize(
    ("seq", "bound"),
    [
        ("", 0.0),  # UNKNOWN: the next result decides; cache nothing beyond the floor
        ("o", 15.0),  # UP, no failures: 3 more failures needed
        ("ox", 10.0),
        ("oxx", 5.0),
        ("oxxo", 15.0),  # a success resets the failure count
        ("x", 10.0),  # DOWN: 2 successes needed
        ("xo", 5.0),
        ("xoo", 15.0),  # back UP
    ],
)
def test_next_change_bound(seq: str, bound: float) -> None:
    h = run(seq)[-1] if seq else TargetHealth()
    assert next_change_bound(h, 2, 3, 5.0) == bound


def test_next_change_bound_is_at_least_one_interval_after_threshold_change() -> None:
    # A reload lowered fall below the failures already counted: the next result decides.
    h = run("oxx", fall=3)[-1]
    assert next_change_bound(h, rise=2, fall=2, interval=5.0) == 5.0


def test_defaults_match_model_probe_spec() -> None:
    spec = ProbeSpec(ProbeProtocol.HTTPS, "192.0.2.1", 443)
    assert (spec.interval, spec.timeout, spec.rise, spec.fall) == (
        DEFAULT_INTERVAL,
        DEFAULT_TIMEOUT,
        DEFAULT_RISE,
        DEFAULT_FALL,
    )
    # A dead gateway is withdrawn within fall x interval plus one timeout.
    assert DEFAULT_FALL * DEFAULT_INTERVAL + DEFAULT_TIMEOUT <= 17.0


@given(
    results=st.lists(st.booleans(), min_size=1, max_size=60),
    rise=st.integers(1, 5),
    fall=st.integers(1, 5),
)
def test_state_changes_only_after_rise_or_fall_consecutive_results(
    results: list[bool], rise: int, fall: int
) -> None:
    h = TargetHealth()
    flips = 0
    for i, ok in enumerate(results):
        nxt = observe(h, ok, "", 0.0, float(i), rise=rise, fall=fall)
        tail = results[: i + 1]
        if i == 0:
            assert nxt.state is (U if ok else D)
        elif nxt.state is not h.state:
            flips += 1
            need = rise if nxt.state is U else fall
            # The flip is backed by `need` consecutive results of the new kind...
            assert len(tail) >= need
            assert all(r == (nxt.state is U) for r in tail[-need:])
            # ...and happens exactly when the streak reaches the threshold.
            assert (nxt.successes if ok else nxt.failures) == need
        else:
            # No flip: the streak against the current state is still short.
            if h.state is U:
                assert nxt.failures < fall
            else:
                assert nxt.successes < rise
        assert nxt.transitions == flips
        assert nxt.successes + nxt.failures >= 1
        assert (nxt.successes == 0) == (not ok)
        h = nxt
