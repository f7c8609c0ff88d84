"""Target state changes as ``transition`` events: a watcher on ``state.Store.changes``.

Every path that changes a target's state goes through the store (a probe
result, or a cluster's verdict), so watching the store catches them all.
A first result is told only when it is DOWN: a target coming up at start is
no news, a target down at start is.

Pure: no I/O.
"""

from __future__ import annotations

import functools

from dnsfail.events.log import EventLog
from dnsfail.model import ProbeSpec
from dnsfail.state import Store
from dnsfail.steering.health import Health, TargetHealth


def watch(events: EventLog, store: Store) -> None:
    """Tell ``events`` every state change of ``store``'s targets from now on."""
    store.changes.append(functools.partial(tell, events, store))


def tell(events: EventLog, store: Store, spec: ProbeSpec, before: TargetHealth,
         after: TargetHealth) -> None:
    was = before.state
    if was is Health.UNKNOWN and after.state is not Health.DOWN:
        return
    last = after.last
    events.emit("transition", target=spec.label, protocol=spec.protocol.value,
                **{"from": was.value, "to": after.state.value},
                detail=last.detail if last else "",
                latency_ms=round(last.latency * 1000, 3) if last else None,
                used_by=store.targets.get(spec, []), transitions=after.transitions)
