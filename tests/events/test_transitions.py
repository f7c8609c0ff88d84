"""State changes become events however they reach the store: a probe result or a verdict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dnsfail.events import transitions
from dnsfail.events.log import EventLog
from dnsfail.state import Store
from dnsfail.steering.health import Health
from dnsfail.zonefile import load_zones
from tests.integration.ctl_server import zone_text


def store(tmp_path: Path) -> Store:
    (tmp_path / "ctl.test.yaml").write_text(zone_text(8080))  # fall 2, rise 1
    return Store(load_zones([str(tmp_path)]))


def test_probe_results_tell_first_downs_and_flips_only(tmp_path: Path) -> None:
    s, events = store(tmp_path), EventLog()
    transitions.watch(events, s)
    a, b, _ = sorted(s.targets, key=lambda spec: spec.address)
    s.observe(a, True, "connected", 0.001, 1.0)        # first result UP: no news
    s.observe(b, False, "connection refused", 0.001, 1.0)
    s.observe(b, False, "connection refused", 0.002, 2.0)  # fall 2: first result DOWN
    s.observe(a, False, "connection refused", 0.003, 3.0)
    s.observe(a, False, "connection refused", 0.004, 4.0)  # UP -> DOWN
    s.observe(a, False, "connection refused", 0.004, 5.0)  # no change
    got = [(e.data["target"], e.data["from"], e.data["to"]) for e in events.ring]
    assert got == [(b.label, "unknown", "down"), (a.label, "up", "down")]
    assert events.ring[1].data["detail"] == "connection refused"
    assert events.ring[1].data["latency_ms"] == 4.0
    assert events.ring[1].data["used_by"] == ["api.ctl.test pool eu"]


def test_a_cluster_verdict_is_told_too(tmp_path: Path) -> None:
    s, events = store(tmp_path), EventLog()
    transitions.watch(events, s)
    spec = next(iter(s.targets))
    s.observe(spec, True, "connected", 0.001, 1.0)
    own = s.snapshot.health[spec]
    s.set_health(spec, replace(own, state=Health.DOWN))
    s.set_health(spec, replace(own, state=Health.DOWN))
    assert [(e.data["from"], e.data["to"]) for e in events.ring] == [("up", "down")]


def test_a_broken_watcher_does_not_undo_the_change(tmp_path: Path) -> None:
    s = store(tmp_path)

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    s.changes.append(broken)
    spec = next(iter(s.targets))
    s.observe(spec, True, "connected", 0.001, 1.0)
    assert s.snapshot.is_up(spec) is True
