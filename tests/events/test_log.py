"""The event ring: ids, the cursor, what a reader missed, listeners."""

from __future__ import annotations

import logging

import pytest

from dnsfail.events.log import Event, EventLog


def filled(n: int, kept: int = 5) -> EventLog:
    events = EventLog(kept, now=lambda: 1000.0)
    for i in range(n):
        events.emit("drain", selector=f"s{i}")
    return events


@pytest.mark.parametrize(("n", "cursor", "limit", "ids", "missed"), [
    (0, 0, 10, [], False),
    (3, 0, 10, [1, 2, 3], False),
    (3, 1, 10, [2, 3], False),
    (3, 3, 10, [], False),
    (3, 0, 2, [1, 2], False),
    (8, 0, 10, [4, 5, 6, 7, 8], True),     # 1-3 left the ring unseen
    (8, 3, 10, [4, 5, 6, 7, 8], False),    # saw up to 3: nothing lost
    (8, 2, 10, [4, 5, 6, 7, 8], True),
    (8, 6, 1, [7], False),
    (8, 8, 10, [], False),
    (8, 99, 10, [4, 5, 6, 7, 8], True),    # a cursor of a previous run: from the start
])
def test_after(n: int, cursor: int, limit: int, ids: list[int], missed: bool) -> None:
    page, lost = filled(n).after(cursor, limit)
    assert ([e.id for e in page], lost) == (ids, missed)


def test_events_carry_time_kind_and_fields() -> None:
    event = filled(1).ring[0]
    assert event.to_json() == {"id": 1, "at": 1000.0, "at_iso": "1970-01-01T00:16:40Z",
                               "kind": "drain", "selector": "s0"}


def test_a_failing_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    events = EventLog()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("bug")

    events.listeners += [broken, got.append]
    with caplog.at_level(logging.ERROR):
        events.emit("reload", ok=True)
    assert [e.kind for e in got] == ["reload"]
    assert "event listener failed" in caplog.text
