"""Python's cyclic garbage collector around the serving path: what lives as long as the
zones do is kept out of its collections.

A full collection walks every object the collector tracks.  In a server on the bench
zone that is about 48,000 objects (the zones, the imported modules, the classes and
functions), 22 ms of CPU on a loaded 2-core machine: one collection held the event loop
for as long as 2,000 cached answers take, and none of those objects is ever garbage
while the zones are served.  ``settle`` is called once a snapshot with new zones is
installed (start, reload, a worker's new zones) and freezes what is alive
(``gc.freeze``: a permanent generation that no collection walks), so the collections
that traffic causes later walk only what was made since (caches, requests, tasks):
0.0 ms for the same full collection in the same process.

The first ``settle`` collects before it freezes (at start, before any answer).  Later
ones only freeze, which costs nothing: a collection there held the loop 200 ms and more
on a reload of a 1,000-target zone.  Zones hold no reference cycles, so the ones a reload
replaces are freed by reference counting, frozen or not (a bench-zone store reloaded five
times: 23,827 frozen objects after each).  What could still leak is a cycle frozen while
alive and dropped later (a task and its exception), so when the frozen objects grow past
``FROZEN_GROWTH`` times what the last collecting ``settle`` left, the next one unfreezes
and collects first: memory stays bounded however often zones are reloaded.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

#: How many times the frozen objects may grow over what the last collecting ``settle``
#: left before the next one collects again (see the module docstring).
FROZEN_GROWTH = 2.0

_collected_to = 0


def settle() -> float:
    """Freeze what is alive, collecting first on the first call and after growth past
    ``FROZEN_GROWTH``; returns the seconds it took."""
    global _collected_to
    started = time.perf_counter()
    gc.freeze()
    if not _collected_to or gc.get_freeze_count() > FROZEN_GROWTH * _collected_to:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _collected_to = max(gc.get_freeze_count(), 1)
    took = time.perf_counter() - started
    log.debug("%d objects frozen, in %.1f ms", gc.get_freeze_count(), took * 1000)
    return took
