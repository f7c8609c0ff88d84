"""Failed token checks are limited per source (control.logins.LoginLimit), over a fake clock;
the server side (the form and the bearer both answering 429) is in
tests/integration/test_page.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.control.logins import LoginLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_past_the_limit_a_source_waits_out_the_window() -> None:
    clock = Clock()
    limit = LoginLimit(failures=3, window=60.0, clock=clock)
    for _ in range(3):
        assert limit.retry_after("192.0.2.7") == 0.0
        limit.failed("192.0.2.7")
        clock.now += 1
    assert limit.retry_after("192.0.2.7") == pytest.approx(57.0)
    assert limit.retry_after("192.0.2.8") == 0.0  # another source is not held back
    clock.now += 57
    assert limit.retry_after("192.0.2.7") == 0.0
    limit.failed("192.0.2.7")  # a new window: one failure in it
    assert limit.retry_after("192.0.2.7") == 0.0
    assert limit.refused == 1


def test_a_right_token_ends_the_count() -> None:
    limit = LoginLimit(failures=2, window=60.0, clock=Clock())
    limit.failed("192.0.2.7")
    limit.succeeded("192.0.2.7")
    limit.failed("192.0.2.7")
    assert limit.retry_after("192.0.2.7") == 0.0


def test_an_ipv6_64_is_one_source_and_a_mapped_address_its_ipv4() -> None:
    """Failures count per ``addresses.source_of``: one host holds its whole /64."""
    limit = LoginLimit(failures=3, window=60.0, clock=Clock())
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:aaaa::1", "2001:db8:1:2::ffff"):
        limit.failed(host)
    assert limit.retry_after("2001:db8:1:2::77") > 0
    assert limit.retry_after("2001:db8:1:3::1") == 0.0  # the next /64 is another source
    for _ in range(3):
        limit.failed("::ffff:192.0.2.7")
    assert limit.retry_after("192.0.2.7") > 0


def test_one_host_cannot_escape_by_changing_address_in_its_64() -> None:
    limit = LoginLimit(failures=3, window=60.0, clock=Clock())
    for i in range(3):
        limit.failed(f"2001:db8::{i + 1:x}")
    assert limit.retry_after("2001:db8::ffff") > 0


def test_the_table_is_bounded() -> None:
    limit = LoginLimit(failures=3, sources=100, clock=Clock())
    for i in range(1000):
        limit.failed(f"10.{i // 256}.{i % 256}.1")
    assert len(limit.by_source) == 100


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 20), st.booleans()), max_size=300))
def test_no_source_gets_more_than_the_limit_of_checks_per_window(
        steps: list[tuple[int, float, bool]]) -> None:
    """Any sequence of attempts: within any window, a source has at most ``failures``
    failed checks before it is refused unchecked."""
    clock = Clock()
    limit = LoginLimit(failures=4, window=60.0, clock=clock)
    checked: dict[int, list[float]] = {}
    for source, step, right in steps:
        clock.now += step
        address = f"192.0.2.{source}"
        if limit.retry_after(address):
            continue
        if right:
            limit.succeeded(address)
            checked[source] = []
            continue
        limit.failed(address)
        recent = [t for t in checked.get(source, []) if clock.now - t < 60.0]
        checked[source] = [*recent, clock.now]
        assert len(checked[source]) <= 2 * 4  # two windows can overlap a 60 s span
