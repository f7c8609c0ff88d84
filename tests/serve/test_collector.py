"""serve/collector.py: what is alive at a settle leaves the collections; nothing frozen leaks."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsfail.serve import collector
from dnsfail.serve.collector import settle
from dnsfail.state import Store
from dnsfail.zonefile import parse_zone

ZONE = "bench.example.com."
TEXT = (Path(__file__).parents[1] / "bench" / "peers" / "dnsfail" / "bench.example.com.yaml"
        ).read_text()


class Node:
    """An object that can be in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _thawed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(collector, "_collected_to", 0)  # each test starts as a new process
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_what_is_alive_at_a_settle_is_not_walked_by_later_collections() -> None:
    kept = [Node() for _ in range(1000)]
    settle()
    assert gc.get_freeze_count() >= 1000
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)
    assert len(tracked) < 1000


def test_a_cycle_frozen_alive_and_dropped_later_is_collected_once_the_frozen_grow() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle, like a task and its exception
    gone = weakref.ref(a)
    settle()
    baseline = gc.get_freeze_count()
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: no collection sees it
    settle()  # a reload of the same size: only a freeze
    assert gone() is not None
    grown = [Node() for _ in range(int(baseline * collector.FROZEN_GROWTH))]
    settle()  # past FROZEN_GROWTH: unfrozen and collected, then frozen again
    assert gone() is None
    assert grown


def test_zones_a_reload_replaces_are_freed_though_frozen() -> None:
    """Zones hold no cycles: reference counting frees the replaced ones, so a reload's
    settle (a freeze, no collection) keeps the frozen count flat."""
    store = Store({ZONE: parse_zone(TEXT, "bench.example.com.yaml", ZONE, serial=1)})
    settle()
    counts = []
    for serial in range(2, 6):
        store.replace_zones({ZONE: parse_zone(TEXT, "bench.example.com.yaml", ZONE,
                                              serial=serial)})
        settle()
        counts.append(gc.get_freeze_count())
    assert len(set(counts)) == 1, counts


def test_garbage_at_a_settle_is_collected_not_frozen() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    settle()
    assert gone() is None
