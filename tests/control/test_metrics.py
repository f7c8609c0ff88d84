"""metrics.py without sockets: every answer path counts once, and the export parses."""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsfail.control.metrics import Metrics
from dnsfail.dns.handler import Handler
from dnsfail.dns.stats import SAMPLE_EVERY, QueryStats, Totals
from dnsfail.model import Status
from dnsfail.state import Store
from dnsfail.steering.overrides import Override
from dnsfail.zonefile import load_zones
from tests.conftest import DATA

ZONES = load_zones([str(DATA / "zones")])


@dataclass
class FakeSource:
    store: Store | None
    ready: bool = True
    tcp_open: int = 3
    config_generation: int = 7
    udp_dropped_sends: int = 0
    tcp_closed: dict[str, int] = field(default_factory=dict)
    control_closed: dict[str, int] = field(default_factory=dict)
    cookie_counts: dict[str, int] = field(default_factory=dict)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def queries(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], zone: str, qtype: str,
            rcode: str) -> float:
    key = ("dnsfail_queries_total", (("qtype", qtype), ("rcode", rcode), ("zone", zone)))
    return got.get(key, 0.0)


@pytest.fixture
def setup() -> tuple[Handler, Metrics, Store]:
    store = Store(ZONES)
    stats = QueryStats()
    handler = Handler(lambda: store.snapshot, stats=stats)
    return handler, Metrics(FakeSource(store), stats), store


def test_cached_and_full_answers_count_once_each(setup: tuple[Handler, Metrics, Store]) -> None:
    handler, metrics, store = setup
    wire = dns.message.make_query("api.gw.test.", "A").to_wire()
    for _ in range(50):
        assert handler.handle(wire) is not None
    assert store.snapshot.replies.keyed  # 49 of them were cache hits
    for _ in range(7):
        handler.handle(dns.message.make_query("nope.gw.test.", "TXT").to_wire())
    for _ in range(5):
        handler.handle(dns.message.make_query("example.org.", "AAAA").to_wire())
    handler.handle(dns.message.make_query("api.gw.test.", 65).to_wire())
    handler.handle(dns.message.make_query("api.gw.test.", 4321).to_wire())
    handler.handle(b"\x00\x01")  # too short: dropped
    got = samples(metrics)
    assert queries(got, "gw.test.", "A", "NOERROR") == 50
    assert queries(got, "gw.test.", "TXT", "NXDOMAIN") == 7
    assert queries(got, "", "AAAA", "REFUSED") == 5
    assert queries(got, "gw.test.", "HTTPS", "NOERROR") == 1
    assert queries(got, "gw.test.", "other", "NOERROR") == 1
    assert got[("dnsfail_dropped_messages_total", ())] == 1
    answered = 50 + 7 + 5 + 2
    assert got[("dnsfail_answer_latency_seconds_count", ())] == (answered + 1) // SAMPLE_EVERY
    assert got[("dnsfail_answer_latency_seconds_sum", ())] > 0


def paths(got: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {labels[0][1]: value for (name, labels), value in got.items()
            if name == "dnsfail_answers_by_path_total"}


def test_answers_by_path_count_each_message_once_and_exact_hits_for_free(
    setup: tuple[Handler, Metrics, Store],
) -> None:
    """The same bytes 50 times: once the full way, once by key (the second sight admits
    them), 48 exact hits, which no counter on the hit path counts; new nonexistent names
    are templates until two in a row under one parent make a plan (the other five); a
    worker's counts add up."""
    handler, metrics, store = setup
    wire = dns.message.make_query("api.gw.test.", "A").to_wire()
    for _ in range(50):
        handler.handle(wire)
    for i in range(7):
        handler.handle(dns.message.make_query(f"nope{i}.gw.test.", "A").to_wire())
    handler.handle(b"\x00\x01")  # dropped: the full path, in no slot
    handler.handle(wire, tcp=True)  # TCP: no exact cache, its own key: the full way
    handler.handle(wire, tcp=True)  # then by key
    got = paths(samples(metrics))
    assert got == {"exact": 48, "keyed": 2, "splice": 0, "template": 2, "plan": 5, "fold": 0,
                   "full": 3, "signed": 0, "chain": 0}
    assert sum(got.values()) == sum(handler.stats.counts) + handler.stats.dropped
    worker = QueryStats()
    Handler(lambda: store.snapshot, stats=worker).handle(
        dns.message.make_query("nope.gw.test.", "A").to_wire())
    both = Metrics(FakeSource(store), handler.stats, lambda: [worker.totals()])
    got = paths(samples(both))
    assert (got["template"], got["plan"], got["exact"]) == (3, 5, 48)


def test_formerr_and_servfail_are_counted(setup: tuple[Handler, Metrics, Store],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    handler, metrics, _ = setup
    query = dns.message.make_query("api.gw.test.", "A").to_wire()
    handler.handle(query[:12] + b"\xff\xff\xff")  # a header, then garbage: FORMERR
    monkeypatch.setattr(handler, "answer", lambda *a, **k: 1 / 0)
    handler.handle(dns.message.make_query("api.gw.test.", "A").to_wire())  # the full path
    monkeypatch.setattr(handler, "_quick", lambda *a, **k: 1 / 0)
    handler.handle(dns.message.make_query("nope.gw.test.", "A").to_wire())  # a template
    got = samples(metrics)
    assert queries(got, "", "other", "FORMERR") == 1
    assert queries(got, "", "other", "SERVFAIL") == 2
    assert got[("dnsfail_internal_errors_total", ())] == 2


def test_state_zones_and_daemon_gauges(setup: tuple[Handler, Metrics, Store]) -> None:
    _, metrics, _store = setup
    got = samples(metrics)
    assert got[("dnsfail_tcp_connections_open", ())] == 3
    assert got[("dnsfail_config_generation", ())] == 7
    zone = ZONES["gw.test."]
    assert got[("dnsfail_zone_serial", (("zone", "gw.test."),))] == zone.serial
    assert got[("dnsfail_zone_records", (("zone", "gw.test."),))] == zone.record_count
    assert got[("dnsfail_overrides_active", ())] == 0


def test_target_state_real_and_effective() -> None:
    from dnsfail.zonefile import parse_zone
    from tests.steering.test_overrides import ZONE

    zones = {"drain.test.": parse_zone(ZONE, "drain.test.yaml", "drain.test.", serial=1)}
    store = Store(zones, now=lambda: 10.0)
    metrics = Metrics(FakeSource(store), QueryStats())
    for spec in store.targets:
        store.observe(spec, spec.address != "192.0.2.11", "x", 0.001, 0.0)
        metrics.observe_probe(spec, spec.address != "192.0.2.11", 0.003)
    store.set_overrides([Override("192.0.2.10:443", Status.DOWN, "r", 0.0, 60.0)])
    got = samples(metrics)

    def state(name: str, target: str, value: str) -> float:
        return got[(name, (("state", value), ("target", target)))]

    assert state("dnsfail_target_state", "192.0.2.10:443", "up") == 1
    assert state("dnsfail_target_effective_state", "192.0.2.10:443", "down") == 1
    assert state("dnsfail_target_state", "192.0.2.11:443", "down") == 1
    assert state("dnsfail_target_effective_state", "192.0.2.11:443", "down") == 1
    assert state("dnsfail_target_effective_state", "192.0.2.10:8443", "up") == 1
    assert got[("dnsfail_probes_total", (("result", "fail"), ("target", "192.0.2.11:443")))] == 1
    assert got[("dnsfail_probe_latency_seconds_count", (("target", "192.0.2.10:443"),))] == 1
    assert got[("dnsfail_overrides_active", ())] == 1


def test_tcp_closed_by_reason() -> None:
    """Each worker's counts by reason, those of exited workers too, are one counter per reason."""
    exited = Totals()
    exited.add(Totals(tcp_closed={"stalled": 2, "idle": 1}))
    exited.add(Totals(tcp_closed={"stalled": 3}))
    assert exited.tcp_closed == {"stalled": 5, "idle": 1}
    metrics = Metrics(FakeSource(None, tcp_closed={"stalled": 5, "input_limit": 0}), QueryStats())
    got = samples(metrics)
    assert got[("dnsfail_tcp_closed_total", (("reason", "stalled"),))] == 5
    assert got[("dnsfail_tcp_closed_total", (("reason", "input_limit"),))] == 0


def test_control_connections_closed_by_limit() -> None:
    metrics = Metrics(FakeSource(None, control_closed={"over_cap": 4, "head_timeout": 0}),
                      QueryStats())
    got = samples(metrics)
    assert got[("dnsfail_control_closed_total", (("reason", "over_cap"),))] == 4
    assert got[("dnsfail_control_closed_total", (("reason", "head_timeout"),))] == 0


def test_build_info_and_readiness() -> None:
    import platform

    from dnsfail import __version__

    got = samples(Metrics(FakeSource(None), QueryStats()))
    build = (("python", platform.python_version()), ("version", __version__))
    assert got[("dnsfail_build_info", build)] == 1.0
    assert got[("dnsfail_ready", ())] == 1.0
    assert samples(Metrics(FakeSource(None, ready=False), QueryStats()))[
        ("dnsfail_ready", ())] == 0.0


def test_no_created_series() -> None:
    """``*_created`` doubles every counter's series and no rule uses it (issue 17)."""
    metrics = Metrics(FakeSource(Store(ZONES)), QueryStats())
    metrics.reloads.labels("ok").inc()
    text = metrics.render().decode()
    assert "_created" not in text
    assert 'dnsfail_reloads_total{result="error"} 0.0' in text  # present before any error


def test_last_reload_success_and_failure() -> None:
    metrics = Metrics(FakeSource(None), QueryStats())
    metrics.reloaded(True, 1700000000.5)
    got = samples(metrics)
    assert got[("dnsfail_last_reload_successful", ())] == 1.0
    assert got[("dnsfail_last_reload_success_timestamp_seconds", ())] == 1700000000.5
    metrics.reloaded(False, 1700000100.0)  # a rejected reload keeps the last success's time
    got = samples(metrics)
    assert got[("dnsfail_last_reload_successful", ())] == 0.0
    assert got[("dnsfail_last_reload_success_timestamp_seconds", ())] == 1700000000.5
