"""Prometheus metrics, counted cheaply on the answer path and exported at scrape time.

The only module that imports prometheus-client.  The answer path must stay
fast (a cached reply costs a few microseconds), so it never calls
prometheus-client, nor imports this module: each cached reply carries the
index of its ``(zone, qtype, rcode)`` counter, and a hit costs one list
increment (``dns.stats.QueryStats``, plain ints this module exports at
scrape time).  Latency is timed on one query in
``SAMPLE_EVERY`` (``time.perf_counter`` costs about as much as a
cache hit), so ``dnsfail_answer_latency_seconds`` is a sampled histogram:
its quantiles are right, its ``_count`` is the number of samples.
Everything else (target state, zones, generations, TCP connections) is
read from the server (a ``control.port.Counters``) when Prometheus scrapes,
by :class:`_Collector`;
reloads and overrides are rare and go to ordinary prometheus-client
counters.

Series per probe target are written by :func:`target_text`, not by
prometheus-client: at 1,000 targets they are ~27,000 samples, which
``generate_latest`` renders in ~300 ms on the event loop (issue 11: a scrape
must not stall DNS); plain counters (:class:`ProbeStats`) and one f-string
a line take a tenth of that.

For alerts (``deploy/prometheus/dnsfail-rules.yml``): ``dnsfail_build_info``,
``dnsfail_ready``, ``dnsfail_last_reload_successful`` and
``dnsfail_last_reload_success_timestamp_seconds`` (Prometheus's own
``prometheus_config_last_reload_*`` pattern).  No ``*_created`` series: they
double the counter series and no rule or panel uses them.
"""

from __future__ import annotations

import bisect
import itertools
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dnsfail import __version__
from dnsfail.control.port import ClusterPort, cluster_of
from dnsfail.control.port import Counters as Source
from dnsfail.dns.stats import LATENCY_BUCKETS, SAMPLE_EVERY, QueryStats, Totals
from dnsfail.model import ProbeSpec, Status, Zone, pool_values
from dnsfail.state import Store
from dnsfail.steering.health import Health
from dnsfail.steering.serving import SERVING, Memo

#: The Content-Type of ``Metrics.render()``: Prometheus text format 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Process-wide, and this is the only module that uses prometheus-client: no ``_created``.
disable_created_metrics()  # type: ignore[no-untyped-call]

PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class ProbeCounts:
    """One target's probe results: counts by result and a latency histogram."""

    ok: int = 0
    fail: int = 0
    #: Per bucket of PROBE_BUCKETS, the last one +Inf (not cumulative).
    latency: list[int] = field(default_factory=lambda: [0] * (len(PROBE_BUCKETS) + 1))
    latency_sum: float = 0.0


class ProbeStats:
    """Probe results by target label, counted as plain numbers (see the module docstring)."""

    def __init__(self) -> None:
        self.by_target: dict[str, ProbeCounts] = {}

    def observe(self, label: str, ok: bool, latency: float) -> None:
        counts = self.by_target.get(label)
        if counts is None:
            counts = self.by_target[label] = ProbeCounts()
        if ok:
            counts.ok += 1
        else:
            counts.fail += 1
        counts.latency[bisect.bisect_left(PROBE_BUCKETS, latency)] += 1
        counts.latency_sum += latency

    def prune(self, labels: Iterable[str]) -> None:
        """Forget targets no zone probes any more: their series end, memory stays bounded."""
        keep = set(labels)
        for label in [k for k in self.by_target if k not in keep]:
            del self.by_target[label]


def _label(value: str) -> str:
    """A label value escaped for the text format (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


_BOUNDS = [*(repr(float(b)) for b in PROBE_BUCKETS), "+Inf"]
_EFFECTIVE = ("up", "down", "unknown", "mixed")


def target_text(store: Store, probes: ProbeStats) -> str:
    """The per-target families in Prometheus text format 0.0.4, in one pass over targets."""
    snap = store.snapshot
    statuses = value_statuses(snap.zones)
    labels = {spec: _label(spec.label) for spec in store.targets}
    probes.prune(spec.label for spec in store.targets)
    state = ["# HELP dnsfail_target_state Probed (real) state of each target: 1 for its "
             "current state.", "# TYPE dnsfail_target_state gauge"]
    effective = ["# HELP dnsfail_target_effective_state State answers use, overrides "
                 "included: 1 for the current one.", "# TYPE dnsfail_target_effective_state gauge"]
    transitions = ["# HELP dnsfail_target_transitions_total UP <-> DOWN flips of each target's "
                   "probed state.", "# TYPE dnsfail_target_transitions_total counter"]
    for spec, label in labels.items():
        h = snap.health.get(spec)
        real = h.state if h is not None else Health.UNKNOWN
        for s in Health:
            state.append(f'dnsfail_target_state{{target="{label}",state="{s.value}"}} '
                         f"{1.0 if s is real else 0.0}")
        now = effective_state(statuses.get(spec, set()), real)
        for name in _EFFECTIVE:
            effective.append(f'dnsfail_target_effective_state{{target="{label}",state="{name}"}} '
                             f"{1.0 if name == now else 0.0}")
        transitions.append(f'dnsfail_target_transitions_total{{target="{label}"}} '
                           f"{float(h.transitions if h is not None else 0)}")
    results = ["# HELP dnsfail_probes_total Probe results by target and result.",
               "# TYPE dnsfail_probes_total counter"]
    latency = ["# HELP dnsfail_probe_latency_seconds Time from probe start to its verdict.",
               "# TYPE dnsfail_probe_latency_seconds histogram"]
    for raw, counts in probes.by_target.items():
        label = _label(raw)
        results.append(f'dnsfail_probes_total{{target="{label}",result="ok"}} {float(counts.ok)}')
        results.append(f'dnsfail_probes_total{{target="{label}",result="fail"}} '
                       f"{float(counts.fail)}")
        for bound, total in zip(_BOUNDS, itertools.accumulate(counts.latency), strict=True):
            latency.append(f'dnsfail_probe_latency_seconds_bucket{{target="{label}",le="{bound}"}}'
                           f" {float(total)}")
        latency.append(f'dnsfail_probe_latency_seconds_count{{target="{label}"}} '
                       f"{float(counts.ok + counts.fail)}")
        latency.append(f'dnsfail_probe_latency_seconds_sum{{target="{label}"}} '
                       f"{counts.latency_sum!r}")
    return "\n".join([*state, *effective, *transitions, *results, *latency]) + "\n"


#: What each record serves, shared by the scrape and ``/v1/status`` (one walk per generation).
SERVING_VIEW = Memo()


def record_text(store: Store) -> str:
    """``dnsfail_record_serving``: per dynamic record, 1 for what it serves now (the worst
    of its rules': pools, fallback, backup, all_down; see ``steering.serving``)."""
    snap = store.snapshot
    lines = ["# HELP dnsfail_record_serving What each dynamic record answers now, the worst of "
             "its rules: pools (primary), fallback, backup or all_down; 1 for the current one.",
             "# TYPE dnsfail_record_serving gauge"]
    for r in SERVING_VIEW.view(snap.zones, snap.generation, snap):
        labels = f'zone="{_label(r.zone)}",record="{_label(r.name)}",type="{r.rtype}"'
        lines.extend(f'dnsfail_record_serving{{{labels},serving="{kind}"}} '
                     f"{1.0 if kind == r.serving else 0.0}" for kind in SERVING)
    return "\n".join(lines) + "\n"


def value_statuses(zones: Mapping[str, Zone]) -> dict[ProbeSpec, set[Status]]:
    """The status of every pool value, by the target that probes it."""
    out: dict[ProbeSpec, set[Status]] = {}
    for _, _, _, value in pool_values(zones):
        if value.probe is not None:
            out.setdefault(value.probe, set()).add(value.status)
    return out


def effective_state(statuses: set[Status], real: Health) -> str:
    """What answers use for a target: forced ``up``/``down``, its probed state, or ``mixed``.

    ``mixed`` means some of the values probed through this target are
    forced and others are not (e.g. one record's pool drained).
    """
    if len(statuses) > 1:
        return "mixed"
    status = next(iter(statuses), Status.OBEY)
    chosen: str = real.value if status is Status.OBEY else status.value
    return chosen


class Metrics:
    """The registry behind ``GET /metrics`` and the counters the daemon feeds."""

    def __init__(
        self, source: Source, queries: QueryStats,
        workers: Callable[[], Iterable[Totals]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry()
        self.queries = queries
        self.source = source
        self.probes = ProbeStats()
        self.reloads = Counter("dnsfail_reloads", "Zone reloads by result (ok, error).",
                               ["result"], registry=self.registry)
        self.overrides = Counter("dnsfail_override_changes",
                                 "Operator overrides set (drain), removed (undrain), expired.",
                                 ["action"], registry=self.registry)
        self.last_reload_ok = Gauge("dnsfail_last_reload_successful", "1 if the last zone "
                                    "reload (or the start) succeeded, 0 if it was rejected.",
                                    registry=self.registry)
        self.last_reload_success = Gauge("dnsfail_last_reload_success_timestamp_seconds",
                                         "When zones were last loaded successfully (start "
                                         "or reload), Unix time.", registry=self.registry)
        for result in ("ok", "error"):  # present from the start: increase() needs a zero
            self.reloads.labels(result)
        for action in ("set", "removed", "expired"):
            self.overrides.labels(action)
        self.registry.register(_Collector(source, queries, workers))
        ProcessCollector(registry=self.registry)

    def reloaded(self, ok: bool, at: float) -> None:
        """A zone load (start or reload) finished: ``ok``, at wall-clock ``at``."""
        self.last_reload_ok.set(1 if ok else 0)
        if ok:
            self.last_reload_success.set(at)

    def observe_probe(self, spec: ProbeSpec, ok: bool, latency: float) -> None:
        self.probes.observe(spec.label, ok, latency)

    def render(self) -> bytes:
        head = generate_latest(self.registry)
        store = self.source.store
        if store is None:
            return head
        return head + (target_text(store, self.probes) + record_text(store)).encode()


class _Collector(Collector):
    """Reads the daemon at scrape time; query counts include every worker process's."""

    def __init__(
        self, source: Source, queries: QueryStats, workers: Callable[[], Iterable[Totals]]
    ) -> None:
        self.source = source
        self.queries = queries
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily("dnsfail_build_info", "dnsfail version and the Python that "
                                  "runs it; always 1.", labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        yield GaugeMetricFamily("dnsfail_ready", "1 once zones are loaded and the first probe "
                                "round is over (as GET /readyz), else 0.",
                                value=1 if self.source.ready else 0)
        q = self.queries.merged(self.workers())
        queries = CounterMetricFamily("dnsfail_queries", "DNS messages answered, by zone "
                                      "(empty: not ours), query type and rcode.",
                                      labels=["zone", "qtype", "rcode"])
        for key, count in zip(list(q.keys), list(q.counts), strict=False):
            queries.add_metric(list(key), count)
        yield queries
        paths = CounterMetricFamily(
            "dnsfail_answers_by_path", "DNS messages by how the reply was found: exact "
            "(the same bytes seen before, but for the ID), keyed (a known question in a new "
            "ID, letter case or client), splice (a new ECS network of a known block), "
            "template (a new name of a common shape: NXDOMAIN, NODATA, wildcard, not ours), "
            "plan (a new first label under a known parent, no scan), fold (a known "
            "question in a new letter case or ECS network, no scan), "
            "full (parsed, decided, rendered; dropped messages too), signed (DNSSEC).",
            labels=["path"])
        for path, count in q.by_path().items():
            paths.add_metric([path], count)
        yield paths
        yield CounterMetricFamily("dnsfail_dropped_messages", "Messages dropped unanswered "
                                  "(shorter than a header, or not a query).", value=q.dropped)
        yield CounterMetricFamily("dnsfail_internal_errors", "Messages answered SERVFAIL "
                                  "because answering raised (a bug; logged rate-limited).",
                                  value=q.internal_errors)
        yield from _rrl_families(q.limited)
        cumulative, total = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), q.latency, strict=True):
            total += count
            cumulative.append((str(bound) if bound != float("inf") else "+Inf", total))
        yield HistogramMetricFamily(
            "dnsfail_answer_latency_seconds",
            f"Time spent answering one message, sampled 1 in {SAMPLE_EVERY}.",
            buckets=cumulative, sum_value=q.latency_sum,
        )
        source = self.source
        yield GaugeMetricFamily("dnsfail_tcp_connections_open", "Open DNS TCP connections.",
                                value=source.tcp_open)
        yield CounterMetricFamily("dnsfail_udp_dropped_sends", "UDP replies dropped because "
                                  "the socket buffer was full.", value=source.udp_dropped_sends)
        yield _by_reason("dnsfail_tcp_closed", "DNS TCP connections the server ended, by "
                         "reason (idle, stalled: idle with replies unread, input_limit, "
                         "output_limit, connection_limit: refused, none idle to evict, "
                         "per_source_limit: refused, evicted: idle the longest at the limit, "
                         "malformed).", source.tcp_closed)
        yield _by_reason("dnsfail_control_closed", "Control-API connections closed by its "
                         "limits, by reason (over_cap: past --control-max-connections; "
                         "head_timeout: no complete request head in --control-head-timeout).",
                         source.control_closed)
        yield from _cookie_families(source.cookie_counts)
        yield from _cluster_families(cluster_of(source))
        yield GaugeMetricFamily("dnsfail_config_generation", "Zone sets loaded so far (1 at "
                                "start, +1 per successful reload).",
                                value=source.config_generation)
        store = source.store
        if store is None:
            return
        snap = store.snapshot
        yield GaugeMetricFamily("dnsfail_snapshot_generation", "Answer snapshots published "
                                "(zones, health or overrides changed).", value=snap.generation)
        serial = GaugeMetricFamily("dnsfail_zone_serial", "SOA serial of each zone served.",
                                   labels=["zone"])
        records = GaugeMetricFamily("dnsfail_zone_records", "Records in each zone served.",
                                    labels=["zone"])
        for origin, zone in store.configured.items():
            serial.add_metric([origin], zone.serial)
            records.add_metric([origin], zone.record_count)
        yield serial
        yield records
        yield GaugeMetricFamily("dnsfail_overrides_active", "Operator overrides in force.",
                                value=len(store.overrides))


def _cluster_families(cluster: ClusterPort | None) -> Iterator[Metric]:
    """An NS set member's agreement: degraded, each peer's reachability, the epoch, refusals."""
    if cluster is None:
        return
    yield GaugeMetricFamily("dnsfail_cluster_degraded", "1 while this instance has heard too "
                            "few instances of its NS set for too long (no quorum).",
                            value=1.0 if cluster.degraded else 0.0)
    reachable = GaugeMetricFamily("dnsfail_cluster_peer_reachable", "1 while a peer's "
                                  "messages arrive (within the freshness window).",
                                  labels=["peer"])
    for url, ok in sorted(cluster.reachable().items()):
        reachable.add_metric([url], 1.0 if ok else 0.0)
    yield reachable
    offsets = GaugeMetricFamily("dnsfail_cluster_peer_clock_offset_seconds", "A peer's wall "
                                "clock minus this instance's, at its last message (votes do "
                                "not depend on it; drain expiry does).", labels=["peer"])
    for url, offset in sorted(cluster.clock_offsets().items()):
        offsets.add_metric([url], offset)
    yield offsets
    info = GaugeMetricFamily("dnsfail_cluster_epoch_info", "The epoch (hash of the health "
                             "answers use and the drains): equal on instances that answer "
                             "alike.", labels=["epoch"])
    info.add_metric([cluster.epoch], 1.0)
    yield info
    yield _by_reason("dnsfail_cluster_rejected", "Peer messages refused, by reason (replayed "
                     "or reordered, older boot, not a configured peer).", cluster.rejected)
    errors = CounterMetricFamily("dnsfail_cluster_peer_errors", "Failed exchanges with a peer, "
                                 "by kind (unreachable, timeout, unauthorized, bad message, "
                                 "message refused, push failed).", labels=["peer", "kind"])
    for (url, kind), count in sorted(cluster.errors.items()):
        errors.add_metric([url, kind], count)
    yield errors


#: The cookie stage's query states (cookies.stage.COUNTERS but its two reply counters).
_COOKIE_STATES = ("none", "client_only", "valid", "invalid", "malformed")


def _cookie_families(counts: Mapping[str, int]) -> Iterator[Metric]:
    """DNS Cookies: queries by the state of their COOKIE option, BADCOOKIE replies, and UDP
    replies the size cap truncated.  Nothing when cookies and the cap are off."""
    if not counts:
        return
    states = CounterMetricFamily("dnsfail_cookie_queries", "Queries by their DNS Cookie: "
                                 "none, client_only (a client cookie alone), valid, invalid "
                                 "(a server cookie not ours or expired), malformed (FORMERR).",
                                 labels=["state"])
    for state in _COOKIE_STATES:
        states.add_metric([state], counts.get(state, 0))
    yield states
    yield CounterMetricFamily("dnsfail_cookie_badcookie_replies", "BADCOOKIE replies sent "
                              "(with a fresh server cookie): cookie-only queries with an "
                              "invalid cookie, and rate-limited clients that sent a cookie.",
                              value=counts.get("badcookie", 0))
    yield CounterMetricFamily("dnsfail_udp_capped_replies", "UDP replies sent truncated "
                              "because they exceeded --udp-size-cap-without-cookie and the "
                              "client had no valid server cookie.", value=counts.get("capped", 0))


def _rrl_families(limited: Mapping[str, int]) -> Iterator[Metric]:
    """What response-rate limiting did (``dnsfail.rrl``): replies by action and class, and
    the table's buckets reused while still in use (grow ``--rrl-table-size`` if it rises)."""
    responses = CounterMetricFamily(
        "dnsfail_rrl_responses", "UDP replies response-rate limiting acted on, by action "
        "(dropped, slipped: sent truncated; would_drop, would_slip: --rrl-log-only) and "
        "class (answer, nodata, nxdomain, referral, error).", labels=["action", "class"])
    evicted = 0
    for key, count in limited.items():
        action, _, cls = key.partition(":")
        if action == "evicted":
            evicted += count
        else:
            responses.add_metric([action, cls], count)
    yield responses
    yield CounterMetricFamily("dnsfail_rrl_table_evictions", "Rate-limit buckets reused while "
                              "their stream still had debt or credit in use.", value=evicted)


def _by_reason(name: str, documentation: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """One counter family with a ``reason`` label, a sample per reason."""
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for reason, count in counts.items():
        family.add_metric([reason], count)
    return family
