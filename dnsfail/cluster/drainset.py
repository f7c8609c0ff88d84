"""Drains replicated over the NS set: a versioned set, merged last-writer-wins.

Each drain (or force-up) and each undrain is a :class:`DrainRecord` for one
selector, versioned by ``(created, origin)``: the record with the larger
version wins, on every instance, in any order of arrival (a CRDT register per
selector, the rule Consul's anti-entropy and the current single-instance
"most recently created wins" share).  An undrain is a tombstone (state
``removed``), kept until ``created + MAX_DURATION``: every drain it may have to
beat was created before it and expires within MAX_DURATION of its creation,
so a returning instance cannot resurrect an ended drain.  Expiry is absolute
wall time, so every instance ends a drain at the same moment without talking
(give or take the skew of their clocks).

Core: pure, no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dnsfail.model import Status
from dnsfail.steering.overrides import (
    MAX_DURATION,
    MAX_REASON,
    Override,
    OverrideError,
    parse_selector,
    printable,
)

#: Most selectors a drain set holds (drains plus tombstones): a peer cannot grow it beyond.
MAX_DRAINS = 10_000
#: Longest instance id or author kept.
MAX_ID = 200
REMOVED = "removed"
#: Seconds a record's creation may lie ahead of our clock (clock skew between instances):
#: one created further ahead would win every later change (its version is the larger) and
#: outlive MAX_DURATION, so it is not taken until our clock is within this of it.
MAX_AHEAD = 300.0


@dataclass(frozen=True, slots=True)
class DrainRecord:
    selector: str
    #: "down", "up", or "removed" (an undrain's tombstone).
    state: str
    reason: str
    by: str
    created: float
    expires: float
    origin: str

    @property
    def version(self) -> tuple[float, str, str, float, str, str]:
        """(created, origin), then the content: a total order, so merging is order-free."""
        return (self.created, self.origin, self.state, self.expires, self.reason, self.by)

    def to_json(self) -> dict[str, Any]:
        return {"selector": self.selector, "state": self.state, "reason": self.reason,
                "by": self.by, "created": self.created, "expires": self.expires,
                "origin": self.origin}

    @classmethod
    def from_json(cls, data: object) -> DrainRecord:
        """Parse and bound a record from a peer or the cluster file; OverrideError if unusable."""
        if not isinstance(data, dict):
            raise OverrideError("drain record is not an object")
        try:
            selector = parse_selector(str(data["selector"])).text
            state = str(data["state"])
            if state not in ("down", "up", REMOVED):
                raise ValueError(f"state {state!r}")
            created, expires = float(data["created"]), float(data["expires"])
            if not (math.isfinite(created) and math.isfinite(expires)):
                raise ValueError("not a finite number")
            if expires - created > MAX_DURATION + 1:  # a drain nobody remembers must end
                raise ValueError(f"lasts over {MAX_DURATION:g} s")
            reason = printable(str(data.get("reason", "")), MAX_REASON)
            by = printable(str(data.get("by", "")), MAX_ID)
            origin = str(data["origin"])[:MAX_ID]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise OverrideError(f"drain record: {exc}") from None
        return cls(selector, state, reason, by, created, expires, origin)

    @classmethod
    def of(cls, o: Override, origin: str) -> DrainRecord:
        return cls(o.selector, o.state.value, o.reason, o.by, o.created, o.expires, origin)

    @classmethod
    def tombstone(cls, selector: str, by: str, now: float, origin: str) -> DrainRecord:
        return cls(selector, REMOVED, "undrain", by, now, now + MAX_DURATION, origin)


def merge(
    mine: Mapping[str, DrainRecord], theirs: Iterable[DrainRecord], now: float
) -> tuple[dict[str, DrainRecord], list[DrainRecord]]:
    """``mine`` with every newer record of ``theirs``; returns (the set, the records taken)."""
    out = dict(mine)
    taken = []
    for r in theirs:
        if r.expires <= now or r.created > now + MAX_AHEAD:
            continue
        have = out.get(r.selector)
        if have is not None and have.version >= r.version:
            continue
        if have is None and len(out) >= MAX_DRAINS:
            continue
        out[r.selector] = r
        taken.append(r)
    return out, taken


def prune(records: Mapping[str, DrainRecord], now: float) -> dict[str, DrainRecord]:
    """Drop what has run out (drains at their expiry, tombstones after MAX_DURATION)."""
    return {k: r for k, r in records.items() if r.expires > now}


def overrides(records: Mapping[str, DrainRecord], now: float) -> list[Override]:
    """The drains in force, as the store takes them."""
    return [Override(r.selector, Status(r.state), r.reason, r.created, r.expires, r.by)
            for r in records.values() if r.state != REMOVED and r.expires > now]


def digest(records: Mapping[str, DrainRecord]) -> str:
    """A short hash of the set's versions: equal digests need no exchange of drains."""
    h = hashlib.blake2s(digest_size=8)
    for key in sorted(records):
        r = records[key]
        h.update(f"{r.selector} {r.state} {r.created!r} {r.origin} {r.expires!r}\n".encode())
    return h.hexdigest()
