"""The status view model: the JSON documents of ``GET /v1/status`` and ``dnsfail status``.

Pure: it reads a :class:`~dnsfail.control.port.ControlPort` (the store's
snapshot, the drain service, the reload record) and builds plain data; the
HTTP side (``control.api``) serialises it.  Each override is described once
and shared by every target it touches (``Store.index``), so the view costs
what it shows, not targets x overrides x values (issue 11).

It imports no aiohttp and nothing from ``serve``.
"""

from __future__ import annotations

import time
from typing import Any

from dnsfail.control.metrics import SERVING_VIEW, effective_state, value_statuses
from dnsfail.control.port import ControlPort, DrainService, cluster_of
from dnsfail.logs import iso
from dnsfail.model import Status
from dnsfail.steering.health import Health, TargetHealth
from dnsfail.steering.overrides import Override
from dnsfail.steering.serving import RecordServing


def iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def override_json(o: Override, drains: DrainService) -> dict[str, Any]:
    """An override as the API shows it, with how far its drain has come."""
    now = time.time()
    complete = drains.drain_complete_at(o)
    return {
        **o.to_json(),
        "created_iso": iso(o.created),
        "expires_iso": iso(o.expires),
        "expires_in": max(0.0, round(o.expires - now, 3)),
        "complete_at": complete,
        "complete_at_iso": iso(complete),
        "complete": complete <= now,
        "matches": len(drains.override_matches(o)),
    }


def health_json(h: TargetHealth | None) -> dict[str, Any]:
    if h is None or h.last is None:
        return {"last_probe": None, "transitions": 0, "since": None}
    # Probe times are monotonic; show them on the wall clock.
    offset = time.time() - time.monotonic()
    return {
        "last_probe": {
            "ok": h.last.ok, "detail": h.last.detail,
            "latency_ms": round(h.last.latency * 1000, 3),
            "at": round(h.last.at + offset, 3), "at_iso": iso(h.last.at + offset),
        },
        "consecutive_successes": h.successes,
        "consecutive_failures": h.failures,
        "transitions": h.transitions,
        "since": round(h.since + offset, 3),
    }


def record_json(r: RecordServing) -> dict[str, Any]:
    """One dynamic record and what each of its rules answers now (``steering.serving``)."""
    return {
        "zone": r.zone, "name": r.name, "type": r.rtype, "serving": r.serving,
        "rules": [{"rule": x.rule, "matches": x.matches, "serving": x.serving, "pool": x.pool,
                   "addresses": list(x.addresses), "ttl": x.ttl, "servfail": x.servfail,
                   "why": x.why} for x in r.rules],
    }


def status(port: ControlPort) -> dict[str, Any]:
    """Everything ``GET /v1/status`` and ``dnsfail status`` show."""
    store = port.store
    assert store is not None
    snap = store.snapshot
    statuses = value_statuses(snap.zones)
    configured = value_statuses(store.configured)
    loaded = port.reloads.zone_loaded
    zones = [
        {
            "zone": origin, "serial": zone.serial, "records": zone.record_count,
            "source": zone.source, "loaded_at": loaded.get(origin),
            "loaded_at_iso": iso_or_none(loaded.get(origin)),
        }
        for origin, zone in sorted(store.configured.items())
    ]
    shown = {o.selector: override_json(o, port.drains) for o in store.overrides}
    touching = store.index.by_target
    targets = []
    for spec, users in sorted(store.targets.items(), key=lambda item: item[0].label):
        h = snap.health.get(spec)
        real = h.state if h is not None else Health.UNKNOWN
        forced_in_zone = configured.get(spec, set()) - {Status.OBEY}
        targets.append({
            "target": spec.label,
            "protocol": spec.protocol.value,
            "used_by": users,
            "state": effective_state(statuses.get(spec, set()), real),
            "real_state": real.value,
            "zone_status": sorted(s.value for s in forced_in_zone),
            "overrides": [shown[o.selector] for o in touching.get(spec, ())],
            **health_json(h),
        })
    body = {
        "identity": port.identity,
        "server": port.about(),
        "ready": port.ready,
        "generation": snap.generation,
        "config_generation": port.reloads.config_generation,
        "reload": port.reloads.last_reload,
        "zones": zones,
        "records": [record_json(r)
                    for r in SERVING_VIEW.view(snap.zones, snap.generation, snap)],
        "targets": targets,
        "overrides": list(shown.values()),
        "state_file": str(port.state_path) if port.state_path is not None else None,
        "workers": port.workers_status(),
        "webhooks": [w for sink in port.events.sinks for w in sink.describe()],
    }
    if (cluster := cluster_of(port)) is not None:
        body["cluster"] = cluster.status()
    return body
