"""dns/stats.py: the answer path's plain counters, and how worker totals fold in."""

from __future__ import annotations

from dnsfail.dns.stats import QueryStats, Totals, qtype_label


def test_qtype_labels_are_bounded() -> None:
    assert qtype_label(1) == "A"
    assert qtype_label(65) == "HTTPS"
    assert {qtype_label(t) for t in range(1000, 2000)} == {"other"}


def test_worker_totals_merge_into_the_scrape() -> None:
    main, worker = QueryStats(), QueryStats()
    main.counts[main.slot("gw.test.", 1, 0)] += 5
    worker.counts[worker.slot("gw.test.", 28, 0)] += 2  # a key the main process never saw
    worker.counts[worker.slot("gw.test.", 1, 0)] += 3
    worker.time(3e-6)
    worker.dropped = 1
    worker.internal_errors = 1
    exited = Totals()
    exited.add(worker.totals())  # a worker that exited: its counts are kept
    merged = main.merged([worker.totals(), exited])
    counts = dict(zip(merged.keys, merged.counts, strict=True))
    assert counts == {("gw.test.", "A", "NOERROR"): 11, ("gw.test.", "AAAA", "NOERROR"): 4}
    assert sum(merged.latency) == 2
    assert merged.dropped == 2
    assert merged.internal_errors == 2
    assert main.counts == [5], "merging leaves the main process's counters alone"
