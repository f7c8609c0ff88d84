"""The epoch: a short hash of what answers depend on, equal on instances that answer alike.

Computed from a snapshot alone (every target's state answers use, and every
pool value an operator drain or the zone file forces up or down), so the
main process, a worker process and ``dig @ns1 epoch.dnsfail CH TXT`` all
give the same string for one snapshot.  Two instances with equal epochs give
the same answers to the same question (same zones assumed); reasons, authors
and expiry times of drains do not enter it.

Core: pure, no I/O.
"""

from __future__ import annotations

import hashlib

from dnsfail.model import Status, pool_values
from dnsfail.state import Snapshot

#: Hex digits shown: 48 bits, collisions between two real states are negligible.
EPOCH_DIGITS = 12


def epoch(snap: Snapshot) -> str:
    """The epoch of ``snap`` (see the module docstring)."""
    h = hashlib.blake2s(digest_size=EPOCH_DIGITS // 2)
    for label, state in sorted((s.label, t.state.value) for s, t in snap.health.items()):
        h.update(f"t {label} {state}\n".encode())
    forced = sorted(
        f"v {origin} {record.name} {record.rtype.name} {pool.name} {value.value} "
        f"{value.status.value}"
        for origin, record, pool, value in pool_values(snap.zones)
        if value.status is not Status.OBEY
    )
    for line in forced:
        h.update(line.encode() + b"\n")
    return h.hexdigest()
