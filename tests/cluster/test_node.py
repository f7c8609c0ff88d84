"""The node without sockets: own rise/fall, peer messages, the verdict in the store, epochs."""

from __future__ import annotations

import dataclasses
import json
import logging

import dns.message
import pytest

from dnsfail.cluster.epoch import epoch
from dnsfail.cluster.messages import Message, PeerVote, decode, encode
from dnsfail.cluster.node import Node, status
from dnsfail.cluster.quorum import Fallback
from dnsfail.cluster.settings import ClusterSettings
from dnsfail.dns.handler import Handler
from dnsfail.model import ProbeSpec, Zone
from dnsfail.state import Store
from dnsfail.steering.health import Health

from ..test_state import spec_of
from ..test_state import zone as zone

PEERS = ("http://ns1:8053", "http://ns2:8053", "http://ns3:8053")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup(zone: Zone) -> tuple[Node, Store, Clock]:
    store = Store({"dual.test.": zone})
    clock = Clock()
    node = Node(ClusterSettings(PEERS, Fallback.HOLD), "ns1", lambda: store, mono=clock,
                wall=lambda: 5e8 + clock.t)
    node.self_urls.add(PEERS[0])
    return node, store, clock


def peer_message(name: str, spec: ProbeSpec, state: Health, seq: int, age: float = 0.1,
                 boot: str = "100-x") -> Message:
    return Message(name, f"{boot}{name}", seq, "", False, (PeerVote(spec.label, state, age),),
                   None, "", 0.0)


def probe(node: Node, clock: Clock, spec: ProbeSpec, ok: bool, times: int = 1) -> None:
    for _ in range(times):
        node.observe(spec, ok, "HTTP 200" if ok else "refused", 0.01, clock.t)


def test_own_down_vote_is_outvoted_and_a_majority_withdraws(setup: tuple[Node, Store, Clock]
                                                             ) -> None:
    node, store, clock = setup
    spec = spec_of(store, "192.0.2.10")
    for s in store.targets:
        probe(node, clock, s, True)
    assert node.receive(peer_message("ns2", spec, Health.UP, 1), PEERS[1], clock.t) is None
    assert node.receive(peer_message("ns3", spec, Health.UP, 1), PEERS[2], clock.t) is None
    probe(node, clock, spec, False, 3)  # own rise/fall says DOWN
    assert node.own[spec].state is Health.DOWN
    assert store.snapshot.is_up(spec) is True  # 1 of 3
    assert node.receive(peer_message("ns2", spec, Health.DOWN, 2), PEERS[1], clock.t) is None
    assert store.snapshot.is_up(spec) is False  # 2 of 3
    text = node.explain(spec)
    assert text is not None
    assert text.startswith("DOWN (2 of 3 fresh votes: ns1 DOWN")


def test_replayed_message_changes_nothing(setup: tuple[Node, Store, Clock]) -> None:
    node, store, clock = setup
    spec = spec_of(store, "192.0.2.10")
    probe(node, clock, spec, False, 3)
    old = peer_message("ns2", spec, Health.DOWN, 5)
    assert node.receive(old, PEERS[1], clock.t) is None
    assert node.receive(peer_message("ns2", spec, Health.UP, 6), PEERS[1], clock.t) is None
    assert node.receive(old, PEERS[1], clock.t) is not None
    assert node.rejected["replayed or reordered"] == 1
    assert node.votes_for(spec)[1].state is Health.UP


def test_stale_peer_votes_expire_and_the_last_agreed_state_is_held(
        setup: tuple[Node, Store, Clock]) -> None:
    node, store, clock = setup
    spec = spec_of(store, "192.0.2.10")
    for s in store.targets:
        probe(node, clock, s, False, 3)
    for i, name in ((1, "ns2"), (2, "ns3")):
        node.receive(peer_message(name, spec, Health.DOWN, 1), PEERS[i], clock.t)
    assert store.snapshot.is_up(spec) is False  # agreed DOWN
    clock.t += 30  # peers silent: their votes and their reachability expire
    probe(node, clock, spec, True, 3)  # own vote UP: alone, it must not restore
    node.judge_all(clock.t)
    assert node.heard(clock.t) == 1
    assert store.snapshot.is_up(spec) is False
    assert node.judged[spec].basis == "held"
    clock.t += 30
    node.judge_all(clock.t)
    facts = status(node)
    assert facts["degraded"] is True
    assert facts["degraded_since"] is not None


def test_self_is_recognised_by_its_boot(setup: tuple[Node, Store, Clock]) -> None:
    node, _, clock = setup
    node.self_urls.clear()
    assert node.n == 4
    assert node.receive(decode(json.dumps(node.encoded()).encode()), PEERS[0],
                        clock.t) == "self"
    assert node.n == 3


def test_message_round_trip_and_drains_left_out_when_digests_match(
        setup: tuple[Node, Store, Clock]) -> None:
    node, store, clock = setup
    for s in store.targets:
        probe(node, clock, s, True)
    full = decode(json.dumps(encode(node.message())).encode())
    assert full.drains == ()
    assert decode(json.dumps(node.encoded(full.drains_digest)).encode()).drains is None
    assert {v.target for v in full.votes} == {s.label for s in store.targets}


def test_epoch_is_answered_over_chaos_and_follows_the_verdict(
        setup: tuple[Node, Store, Clock]) -> None:
    node, store, clock = setup
    handler = Handler(lambda: store.snapshot)
    spec = spec_of(store, "192.0.2.10")
    for s in store.targets:
        probe(node, clock, s, True)

    def chaos() -> str:
        q = dns.message.make_query("epoch.dnsfail.", "TXT", "CH")
        reply = handler.handle(q.to_wire())
        assert reply is not None
        return dns.message.from_wire(reply).answer[0][0].strings[0].decode()

    before = chaos()
    assert before == epoch(store.snapshot) == node.epoch()
    for i, name in ((1, "ns2"), (2, "ns3")):
        node.receive(peer_message(name, spec, Health.DOWN, 1), PEERS[i], clock.t)
    assert chaos() != before


def test_a_clock_offset_past_the_bound_is_warned_once_and_again_after_recovering(
        setup: tuple[Node, Store, Clock], caplog: pytest.LogCaptureFixture) -> None:
    node, store, clock = setup
    spec = spec_of(store, "192.0.2.10")
    probe(node, clock, spec, True)
    bound = node.clock_offset_bound()
    assert bound == pytest.approx(0.5 * (3 * 2 + 1))  # half the window: interval 2, timeout 1
    # (offset, whether this message adds a warning): once past, then only after recovering
    for seq, (offset, warns) in enumerate([(1.0, False), (bound + 1, True), (bound + 2, False),
                                           (bound * 0.75, False), (-bound - 1, False),
                                           (0.2, False), (-bound - 1, True)], start=1):
        m = dataclasses.replace(peer_message("ns2", spec, Health.UP, seq),
                                sent_at=node.wall() + offset)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dnsfail.cluster"):
            assert node.receive(m, PEERS[1], clock.t) is None
        warned = [r for r in caplog.records if r.levelno == logging.WARNING
                  and "clock is" in r.getMessage()]
        assert len(warned) == int(warns), (offset, [r.getMessage() for r in caplog.records])
        assert node.peers[PEERS[1]].clock_offset == pytest.approx(offset, abs=0.01)
    assert status(node)["clock_offset_bound"] == pytest.approx(bound)


def test_pushes_from_unknown_instances_do_not_grow_the_error_table(
        setup: tuple[Node, Store, Clock], caplog: pytest.LogCaptureFixture) -> None:
    """The instance name of a refused push is the sender's to choose: keyed by it, every
    new name was a new error entry, metric series and warning."""
    node, store, clock = setup
    spec = spec_of(store, "192.0.2.10")
    with caplog.at_level("WARNING", logger="dnsfail.cluster"):
        for i in range(1000):
            assert node.receive(peer_message(f"stranger{i}", spec, Health.DOWN, 1), None,
                                clock.t) is not None
    assert len(node.errors) == 1
    assert sum(node.errors.values()) == 1000
    assert len(caplog.records) == 1


def test_a_boot_from_the_future_does_not_lock_out_the_instance(
        setup: tuple[Node, Store, Clock]) -> None:
    """A boot id stamped years ahead (a forged message, or a clock that was wrong at start)
    made every later real boot "older": the instance was refused until we restarted."""
    node, store, clock = setup
    spec = spec_of(store, "192.0.2.10")
    future = peer_message("ns2", spec, Health.DOWN, 1, boot=f"{10**15}-")
    assert node.receive(future, PEERS[1], clock.t) is None
    real = peer_message("ns2", spec, Health.UP, 1, boot=f"{int(5e11)}-")
    assert node.receive(real, PEERS[1], clock.t) is None
    assert node.receive(peer_message("ns2", spec, Health.UP, 2, boot=f"{int(5e11)}-"),
                        PEERS[1], clock.t) is None
    older = peer_message("ns2", spec, Health.UP, 9, boot="100-")  # a genuinely older boot
    assert node.receive(older, PEERS[1], clock.t) == "from an older boot of that instance"


def test_one_peer_under_two_urls_votes_once(zone: Zone) -> None:
    """``--peer http://ns2:8053 --peer http://ns2.example:8053``: two spellings of one instance
    (the same boot id answers both) are one vote and one of N, else ns2 alone would make a
    majority of "3" and withdraw a site this instance sees up."""
    store = Store({"dual.test.": zone})
    clock = Clock()
    urls = (PEERS[0], PEERS[1], "http://ns2.example:8053")
    node = Node(ClusterSettings(urls, Fallback.HOLD), "ns1", lambda: store, mono=clock,
                wall=lambda: 5e8 + clock.t)
    node.self_urls.add(PEERS[0])
    spec = spec_of(store, "192.0.2.10")
    for s in store.targets:
        probe(node, clock, s, True)
    assert node.receive(peer_message("ns2", spec, Health.DOWN, 1), urls[1], clock.t) is None
    assert node.receive(peer_message("ns2", spec, Health.DOWN, 2), urls[2], clock.t) == "alias"
    assert node.n == 2
    assert [v.origin for v in node.votes_for(spec)] == ["ns1", "ns2"]
    assert store.snapshot.is_up(spec) is True  # 1 DOWN of 2: no majority
    assert node.receive(peer_message("ns2", spec, Health.DOWN, 3), urls[2], clock.t) == "alias"
    assert status(node)["alias_urls"] == {urls[2]: urls[1]}
    assert [p.url for p in node.others] == [urls[1]]
