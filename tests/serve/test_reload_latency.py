"""A reload of a zone of 1,000 health-checked targets holds the event loop briefly.

Zones are parsed off the loop (``zonefile.load_zones`` in a thread), and so are the
indexes a new zone set needs (``state.prepare``: the pool values by selector, the
probe targets); what the loop does is swap them in and publish.  Before, building
the indexes on the loop held it 60-80 ms at 1,000 targets (45-125 ms on a loaded
machine); now the loop's part is bounded by ``MAX_LOOP_PART``.  What a ticker still
sees during a whole reload is mostly the GIL, shared with the loading thread.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dnsfail.control.metrics import Metrics
from dnsfail.dns.stats import QueryStats
from dnsfail.model import ProbeSpec, Zone
from dnsfail.serve.reload import Reloader
from dnsfail.state import Store, prepare
from dnsfail.zonefile import load_zones
from tests.big_zone import ORIGIN, big_zone_text

#: The bound the README states for the loop's part of a reload at 1,000 targets (swap in
#: the prepared indexes, carry the health over, publish): 7-13 ms measured on this
#: 2-core machine under a load average of 9; building the indexes too took 45-125 ms.
MAX_LOOP_PART = 0.025
#: The longest stall a ticker may see during a whole reload (best of three): a guard
#: against work coming back onto the loop.  Measured 26-68 ms under a load average of
#: 9, nearly all of it the loading thread holding the GIL (75-370 ms before).
MAX_RELOAD_STALL = 0.150
TARGETS = 1000


def test_the_loop_part_of_a_reload_is_short(tmp_path: Path) -> None:
    zones = load_zones_of(tmp_path)
    store = Store(zones)
    best = float("inf")
    for _ in range(3):
        prepared = prepare(zones)  # in the loading thread, on reload
        start = time.perf_counter()
        store.replace_zones(zones, prepared)
        best = min(best, time.perf_counter() - start)
    assert len(store.targets) == TARGETS
    assert best < MAX_LOOP_PART, best


def load_zones_of(directory: Path) -> dict[str, Zone]:
    (directory / f"{ORIGIN}yaml").write_text(big_zone_text(TARGETS))
    return load_zones([str(directory)])


async def longest_stall_during(reload: asyncio.Future[object]) -> float:
    """The longest gap between wake-ups of a 1 ms ticker while ``reload`` runs."""
    longest, last = 0.0, time.perf_counter()
    while not reload.done():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    await reload
    return longest


def test_a_whole_reload_keeps_the_loop_responsive(tmp_path: Path) -> None:
    zones = load_zones_of(tmp_path)
    changed_text = big_zone_text(TARGETS).replace("value: 192.0.2.1", "value: 192.0.2.2")
    (tmp_path / f"{ORIGIN}yaml").write_text(changed_text)
    changed: list[int] = []

    async def targets_changed(targets: object) -> None:
        assert isinstance(targets, dict)
        changed.append(len(targets))

    async def go() -> list[float]:
        reloader = Reloader([str(tmp_path)], True, Metrics(None, QueryStats()),  # type: ignore[arg-type]
                            targets_changed)
        store = Store(zones)
        reloader.loaded(store)
        stalls = []
        for _ in range(3):
            task = asyncio.ensure_future(reloader.reload("test"))
            stalls.append(await longest_stall_during(task))
            assert task.result() == []
        assert all(isinstance(spec, ProbeSpec) for spec in store.targets)
        return stalls

    stalls = asyncio.run(go())
    assert changed == [TARGETS] * 3
    # The best of three: one stall of a shared machine's scheduler is not the reload's.
    assert min(stalls) < MAX_RELOAD_STALL, stalls
