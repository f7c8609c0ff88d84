"""The peer message: one instance's votes, drains and epoch, as JSON, parsed with bounds.

Served by ``GET /v1/cluster/votes`` (a pull) and sent by
``POST /v1/cluster/push`` (a change, at once).  Everything a peer sends is
checked here before anything uses it: unknown versions, wrong types, too many
votes or drains, non-finite numbers are a :class:`MessageError` with the
reason, never an exception elsewhere.

Core: pure, no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from dnsfail.cluster.drainset import MAX_DRAINS, MAX_ID, DrainRecord
from dnsfail.errors import DnsfailError
from dnsfail.steering.health import Health
from dnsfail.steering.overrides import OverrideError

VERSION = 1
#: Largest message read from a peer, pushed or pulled (1,000 targets and drains take ~150 KB).
MAX_MESSAGE = 1024 * 1024
#: Most votes one message may carry (one per target).
MAX_VOTES = 10_000
#: Longest target label accepted ("[v6 address]:port" is at most ~47).
MAX_LABEL = 100


class MessageError(DnsfailError, ValueError):
    """A peer message that cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class PeerVote:
    target: str
    state: Health
    #: Seconds since the voter's last probe result, on its clock, when it sent this.
    age: float


@dataclass(frozen=True, slots=True)
class Message:
    instance: str
    boot: str
    seq: int
    epoch: str
    degraded: bool
    votes: tuple[PeerVote, ...]
    #: None: not included (the receiver's digest matched); else the sender's whole set.
    drains: tuple[DrainRecord, ...] | None
    drains_digest: str
    #: The sender's wall clock at send time: shown as a clock offset, never used to judge.
    sent_at: float
    #: The peer URLs the sender was configured with (for ``status --cluster``).
    peers: tuple[str, ...] = ()


def encode(m: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dnsfail_cluster": VERSION, "instance": m.instance, "boot": m.boot, "seq": m.seq,
        "epoch": m.epoch, "degraded": m.degraded, "sent_at": m.sent_at,
        "votes": [{"target": v.target, "state": v.state.value, "age": round(v.age, 3)}
                  for v in m.votes],
        "drains_digest": m.drains_digest, "peers": list(m.peers),
    }
    if m.drains is not None:
        body["drains"] = [r.to_json() for r in m.drains]
    return body


def _text(data: dict[str, Any], key: str, limit: int = MAX_ID) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MessageError(f"{key} must be a string of 1-{limit} characters")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MessageError(f"{what} must be a finite number")
    try:  # an int beyond a float's range is an OverflowError here
        if math.isfinite(value):
            return float(value)
    except OverflowError:
        pass
    raise MessageError(f"{what} must be a finite number")


def decode(raw: bytes) -> Message:
    """Parse a peer's message; MessageError says what is wrong with it."""
    if len(raw) > MAX_MESSAGE:
        raise MessageError(f"message larger than {MAX_MESSAGE} octets")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MessageError(f"not JSON: {str(exc)[:100]}") from None
    if not isinstance(data, dict) or data.get("dnsfail_cluster") != VERSION:
        raise MessageError(f"not a version {VERSION} dnsfail cluster message")
    seq = data.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MessageError("seq must be a non-negative integer")
    votes_in = data.get("votes")
    if not isinstance(votes_in, list) or len(votes_in) > MAX_VOTES:
        raise MessageError(f"votes must be a list of at most {MAX_VOTES}")
    votes = []
    for item in votes_in:
        if not isinstance(item, dict):
            raise MessageError("a vote is not an object")
        try:
            state = Health(item.get("state"))
        except ValueError:
            raise MessageError(f"vote state {str(item.get('state'))[:20]!r}") from None
        age = _number(item.get("age"), "vote age")
        if age < 0:
            raise MessageError("vote age must not be negative")
        votes.append(PeerVote(_text(item, "target", MAX_LABEL), state, age))
    drains: tuple[DrainRecord, ...] | None = None
    if "drains" in data:
        items = data["drains"]
        if not isinstance(items, list) or len(items) > MAX_DRAINS:
            raise MessageError(f"drains must be a list of at most {MAX_DRAINS}")
        try:
            drains = tuple(DrainRecord.from_json(item) for item in items)
        except OverrideError as exc:
            raise MessageError(str(exc)) from None
    peers = data.get("peers", [])
    if not isinstance(peers, list) or len(peers) > 64 or not all(
            isinstance(p, str) and len(p) <= 500 for p in peers):
        raise MessageError("peers must be a list of at most 64 URLs")
    return Message(
        instance=_text(data, "instance"), boot=_text(data, "boot"), seq=seq,
        epoch=str(data.get("epoch", ""))[:64], degraded=data.get("degraded") is True,
        votes=tuple(votes), drains=drains,
        drains_digest=str(data.get("drains_digest", ""))[:64],
        sent_at=_number(data.get("sent_at", 0.0), "sent_at"), peers=tuple(peers),
    )
