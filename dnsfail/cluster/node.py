"""This instance in its NS set: its own votes, what it heard from each peer, and the verdicts.

The node is the state between the pure rule (``cluster.quorum``) and the
store: probe results come in (:meth:`Node.observe`, which runs this
instance's own rise/fall), peer messages come in (:meth:`Node.receive`), and
every target's verdict goes out through ``Store.set_health``, so answers, the
TTL clamp and the all-down policy use it exactly as they used the local state.

It does no network I/O (``cluster.exchange`` does) and owns no task.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dnsfail.cluster import messages
from dnsfail.cluster.drainset import DrainRecord, digest
from dnsfail.cluster.epoch import epoch
from dnsfail.cluster.messages import Message, PeerVote
from dnsfail.cluster.quorum import (
    Judgement,
    QuorumClock,
    Seen,
    Vote,
    accept,
    degraded_after,
    describe,
    fresh_window,
    judge,
    majority,
    tally,
)
from dnsfail.cluster.settings import ClusterSettings
from dnsfail.model import ProbeSpec
from dnsfail.state import Store
from dnsfail.steering.health import Health, TargetHealth, observe

log = logging.getLogger("dnsfail.cluster")

#: A peer's clock offset is warned about past this fraction of the freshness window of the
#: fastest check.  Votes never compare clocks (``cluster.quorum``), but drains do: their
#: absolute expiry and the last-writer-wins order of concurrent edits use each instance's
#: wall clock, so past this a drain ends at visibly different times on two instances.
CLOCK_OFFSET_FRACTION = 0.5


@dataclass(slots=True)
class Peer:
    """What this instance knows of one ``--peer`` URL."""

    url: str
    instance: str | None = None
    #: When its last accepted message arrived (this instance's monotonic clock).
    heard_at: float | None = None
    epoch: str = ""
    degraded: bool = False
    #: Target label -> (state, observed on this instance's monotonic clock).
    votes: dict[str, tuple[Health, float]] = field(default_factory=dict)
    #: Its wall clock minus ours when it sent its last message (shown, never used to judge).
    clock_offset: float | None = None
    #: The offset is past the bound and has been warned about (re-armed once back within half).
    offset_warned: bool = False
    peers: tuple[str, ...] = ()
    #: The boot id of its last accepted message (a second URL answering it is an alias).
    boot: str | None = None


class Node:
    """This instance's side of the NS set (see the module docstring)."""

    def __init__(self, settings: ClusterSettings, identity: str,
                 store: Callable[[], Store | None], *,
                 mono: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.instance = identity
        self._store = store
        self.mono = mono
        self._wall = wall
        self.boot = f"{int(self.wall() * 1000)}-{secrets.token_hex(4)}"
        self.seq = 0
        self.peers = {url: Peer(url) for url in settings.peers}
        #: URLs that turned out to be this instance (same boot id answered).
        self.self_urls: set[str] = set()
        #: URLs that turned out to be another peer's (same boot id as that URL's): alias -> it.
        self.alias_urls: dict[str, str] = {}
        self.own: dict[ProbeSpec, TargetHealth] = {}
        self.agreed: dict[ProbeSpec, Health] = {}
        self.judged: dict[ProbeSpec, Judgement] = {}
        self.since: dict[ProbeSpec, float] = {}
        self.clock = QuorumClock()
        self.drains: dict[str, DrainRecord] = {}
        self._seen: dict[str, Seen] = {}
        #: Refused peer messages by reason, and refusals/failures by (peer, kind).
        self.rejected: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self._logged: set[tuple[str, str]] = set()
        #: Called when this instance's own vote changes (the exchange pushes at once).
        self.on_change: Callable[[], None] = lambda: None

    def wall(self) -> float:
        """The wall clock (plus the test-only skew): drains and the shown clock offset only."""
        return self._wall() + self.settings.clock_skew

    # --- facts -----------------------------------------------------------------------------

    @property
    def others(self) -> list[Peer]:
        return [p for url, p in self.peers.items()
                if url not in self.self_urls and url not in self.alias_urls]

    @property
    def n(self) -> int:
        """Configured instances: the peer URLs that are not this one, plus this one."""
        return len(self.others) + 1

    def _targets(self) -> list[ProbeSpec]:
        store = self._store()
        return list(store.targets) if store is not None else []

    def heard_window(self) -> float:
        specs = self._targets()
        if not specs:
            return fresh_window(self.interval(), 2.0)
        fastest = min(specs, key=lambda s: s.interval)
        return fresh_window(fastest.interval, fastest.timeout)

    def clock_offset_bound(self) -> float:
        """Seconds of peer clock offset past which a warning is logged (once per peer)."""
        return CLOCK_OFFSET_FRACTION * self.heard_window()

    def interval(self) -> float:
        """Seconds between pulls: ``--peer-interval``, else the fastest probe interval."""
        if self.settings.interval is not None:
            return self.settings.interval
        return min((s.interval for s in self._targets()), default=5.0)

    def reachable(self, p: Peer, now: float) -> bool:
        return p.heard_at is not None and now - p.heard_at <= self.heard_window()

    def heard(self, now: float) -> int:
        return 1 + sum(1 for p in self.others if self.reachable(p, now))

    def degraded(self, now: float) -> bool:
        after = degraded_after(s.interval for s in self._targets())
        return self.clock.degraded(now, after)

    def epoch(self) -> str:
        store = self._store()
        return epoch(store.snapshot) if store is not None else ""

    # --- inputs ----------------------------------------------------------------------------

    def observe(self, spec: ProbeSpec, ok: bool, detail: str, latency: float,
                at: float) -> None:
        """One probe result: this instance's own rise/fall, then the verdict."""
        store = self._store()
        if store is None or spec not in store.targets:
            return
        before = self.own.get(spec, TargetHealth())
        after = observe(before, ok, detail, latency, at, rise=spec.rise, fall=spec.fall)
        self.own[spec] = after
        if after.state is not before.state:
            log.info("own vote on %s: %s -> %s (%s)", spec.label, before.state.name,
                     after.state.name, detail, extra={"fields": {
                         "event": "own_vote", "target": spec.label, "to": after.state.value}})
            self.on_change()
        self.judge(spec, self.mono())

    def retarget(self, specs: set[ProbeSpec]) -> None:
        """A reload changed the targets: forget the ones no zone probes any more."""
        for table in (self.own, self.agreed, self.judged, self.since):
            for spec in [s for s in table if s not in specs]:
                del table[spec]

    def refuse(self, url: str, kind: str, detail: str) -> None:
        """Count a failure with a peer; log it once per peer and kind until it recovers."""
        self.errors[(url, kind)] += 1
        if (url, kind) not in self._logged:
            self._logged.add((url, kind))
            log.warning("peer %s: %s (%s); logged once until it recovers", url, kind, detail,
                        extra={"fields": {"event": "peer_error", "peer": url, "kind": kind}})

    def _recovered(self, url: str) -> None:
        if any(u == url for u, _ in self._logged):
            self._logged = {(u, k) for u, k in self._logged if u != url}
            log.info("peer %s answers again", url,
                     extra={"fields": {"event": "peer_recovered", "peer": url}})

    def receive(self, m: Message, url: str | None, now: float) -> str | None:
        """A peer's message (pulled from ``url``, or pushed: None); None or why it was refused."""
        if m.boot == self.boot:
            if url is not None and url not in self.self_urls:
                self.self_urls.add(url)
                log.info("peer %s is this instance; N = %d", url, self.n)
            return "self"
        if url is not None and is_alias(self, url, m):
            return "alias"
        peer = self.peers.get(url) if url is not None else None
        if peer is None:
            peer = next((p for p in self.others if p.instance == m.instance), None)
        if peer is None:
            # keyed by "push", not by the name the sender chose: bounded errors and log lines
            return self._reject(url or "push", f"not a configured peer (not pulled yet: "
                                f"{m.instance[:60]!r})")
        if peer.instance is not None and peer.instance != m.instance:
            log.warning("peer %s was %s, now answers as %s", peer.url, peer.instance, m.instance)
            self._seen.pop(peer.instance, None)
        why = accept(self._seen.get(m.instance), m.boot, m.seq, self.wall() * 1000)
        if why is not None:
            return self._reject(peer.url, why)
        self._seen[m.instance] = Seen(m.boot, m.seq)
        peer.instance, peer.heard_at, peer.epoch, peer.degraded = m.instance, now, m.epoch, \
            m.degraded
        peer.boot = m.boot
        peer.votes = {v.target: (v.state, now - v.age) for v in m.votes}
        peer.clock_offset = m.sent_at - self.wall()
        check_offset(self, peer)
        peer.peers = m.peers
        self._recovered(peer.url)
        self.judge_all(now)
        return None

    def _reject(self, who: str, why: str) -> str:
        self.rejected[why.split(" (")[0]] += 1
        self.refuse(who, "message refused", why)
        return why

    # --- verdicts --------------------------------------------------------------------------

    def judge_all(self, now: float) -> None:
        """Re-judge every target (votes age even when no message arrives)."""
        was = self.degraded(now)
        self.clock = self.clock.step(self.heard(now) >= majority(self.n), now)
        is_degraded = self.degraded(now)
        if is_degraded != was:
            level = logging.WARNING if is_degraded else logging.INFO
            log.log(level, "cluster %s: hearing %d of %d instances (quorum %d)",
                    "degraded" if is_degraded else "quorum regained", self.heard(now), self.n,
                    majority(self.n), extra={"fields": {"event": "cluster_degraded",
                                                        "degraded": is_degraded}})
        for spec in self._targets():
            self.judge(spec, now)

    def votes_for(self, spec: ProbeSpec) -> list[Vote]:
        out = []
        own = self.own.get(spec)
        if own is not None and own.last is not None:
            out.append(Vote(self.instance, own.state, own.last.at))
        for p in self.others:
            got = p.votes.get(spec.label)
            if got is not None:
                out.append(Vote(p.instance or p.url, got[0], got[1]))
        return out

    def judge(self, spec: ProbeSpec, now: float) -> None:
        store = self._store()
        own = self.own.get(spec)
        if store is None or own is None:
            return
        window = fresh_window(spec.interval, spec.timeout)
        t = tally(self.votes_for(spec), self.n, spec.quorum, now, window)
        j = judge(t, own.state, heard=self.heard(now), agreed=self.agreed.get(spec),
                  degraded=self.degraded(now), fallback=self.settings.fallback)
        if j.basis == "quorum" and j.state is not Health.UNKNOWN:
            self.agreed[spec] = j.state
        before = self.judged.get(spec)
        self.judged[spec] = j
        if before is None or before.state is not j.state:
            self.since[spec] = now
            if before is not None:
                log.warning("target %s verdict %s -> %s", spec.label, before.state.name,
                            describe(j, now, window), extra={"fields": {
                                "event": "verdict", "target": spec.label,
                                "to": j.state.value, "basis": j.basis}})
        store.set_health(spec, replace(own, state=j.state, since=self.since[spec]))

    def explain(self, spec: ProbeSpec) -> str | None:
        """The votes behind a target's state, for ``explain``; None if not judged yet."""
        j = self.judged.get(spec)
        if j is None:
            return None
        now = self.mono()
        window = fresh_window(spec.interval, spec.timeout)
        text = describe(j, now, window)
        return text + ("; this instance is degraded" if self.degraded(now) else "")

    # --- outputs ---------------------------------------------------------------------------

    def message(self, peer_digest: str | None = None) -> Message:
        """This instance's message; drains left out when the asker's digest already matches."""
        self.seq += 1
        now = self.mono()
        votes = tuple(PeerVote(spec.label, h.state, now - h.last.at)
                      for spec, h in self.own.items() if h.last is not None)
        mine = digest(self.drains)
        drains = None if peer_digest == mine else tuple(self.drains.values())
        return Message(self.instance, self.boot, self.seq, self.epoch(), self.degraded(now),
                       votes, drains, mine, self.wall(), tuple(self.settings.peers))

    def message_digest(self) -> str:
        return digest(self.drains)

    def encoded(self, peer_digest: str | None = None) -> dict[str, Any]:
        return messages.encode(self.message(peer_digest))


def check_offset(node: Node, peer: Peer) -> None:
    """Warn once when a peer's clock is past the bound; re-armed once back within half."""
    offset, bound = peer.clock_offset, node.clock_offset_bound()
    if offset is None:
        return
    if not peer.offset_warned and abs(offset) > bound:
        peer.offset_warned = True
        log.warning("peer %s (%s): its clock is %+.1f s off ours, past %.1f s (half the "
                    "freshness window); votes are unaffected, but drains expire and "
                    "order by wall clock: synchronise the clocks (NTP); logged once",
                    peer.url, peer.instance, offset, bound, extra={"fields": {
                        "event": "peer_clock_offset", "peer": peer.url,
                        "offset": round(offset, 3), "bound": round(bound, 3)}})
    elif peer.offset_warned and abs(offset) <= bound / 2:
        peer.offset_warned = False
        log.info("peer %s (%s): clock offset back to %+.1f s", peer.url, peer.instance,
                 offset, extra={"fields": {"event": "peer_clock_offset_ok",
                                           "peer": peer.url, "offset": round(offset, 3)}})


def is_alias(node: Node, url: str, m: Message) -> bool:
    """Whether ``url`` is another configured URL of a peer already heard (the same boot id
    answers both): two spellings of one instance must vote once and count once in N."""
    if url in node.alias_urls:
        return True
    if url not in node.peers:
        return False
    twin = next((p for p in node.others if p.url != url and p.boot == m.boot), None)
    if twin is None:
        return False
    node.alias_urls[url] = twin.url
    node.peers[url] = Peer(url)
    log.warning("peer %s is the same instance as %s (%s): counted once; N = %d", url,
                twin.url, m.instance[:60], node.n,
                extra={"fields": {"event": "peer_alias", "peer": url, "same_as": twin.url}})
    return True


def status(node: Node) -> dict[str, Any]:
    """The ``cluster`` object of ``/v1/status`` (its shape is read by other tools)."""
    now = node.mono()
    degraded = node.degraded(now)
    lost = node.clock.lost_since
    since = None
    if degraded and lost is not None:
        since = round(node.wall() - (now - lost), 3)
    peers = [{
        "url": p.url, "instance": p.instance, "reachable": node.reachable(p, now),
        "last_heard_ago": None if p.heard_at is None else round(now - p.heard_at, 3),
        "epoch": p.epoch or None, "degraded": p.degraded,
        "clock_offset": None if p.clock_offset is None else round(p.clock_offset, 3),
    } for p in node.others]
    votes = {
        spec.label: [{"instance": v.origin, "state": v.state.value,
                      "age": round(v.age(now), 3)} for v in node.votes_for(spec)]
        for spec in sorted(node._targets(), key=lambda s: s.label)
    }
    return {
        "instance": node.instance, "epoch": node.epoch(), "degraded": degraded,
        "degraded_since": since, "peers": peers, "votes": votes,
        "configured": node.n, "heard": node.heard(now), "quorum": majority(node.n),
        "fallback": node.settings.fallback.value, "boot": node.boot,
        "clock_offset_bound": round(node.clock_offset_bound(), 3),
        "self_urls": sorted(node.self_urls),
        "alias_urls": dict(sorted(node.alias_urls.items())),
        "rejected": dict(node.rejected),
        "verdicts": {spec.label: {"state": j.state.value, "basis": j.basis}
                     for spec, j in sorted(node.judged.items(), key=lambda i: i[0].label)},
    }
