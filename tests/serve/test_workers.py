"""The worker channel and mirror without processes: what a worker rebuilds is what was sent."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from dnsfail.model import Zone
from dnsfail.serve.workers import Mirror, Publish, changes, encode, receive
from dnsfail.state import Store
from dnsfail.steering.health import Health, TargetHealth
from dnsfail.zonefile import load_zones
from tests.conftest import DATA, ROOT

#: The example zones (health-checked records) and the test zones (several zones).
ZONES = load_zones([str(ROOT / "zones"), str(DATA / "zones")])


def roundtrip(message: object) -> object:
    async def go() -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(encode(message))
        reader.feed_eof()
        first = await receive(reader)
        assert await receive(reader) is None, "EOF after the last frame"
        return first

    return asyncio.run(go())


def test_zones_survive_the_channel() -> None:
    # Zones hold mapping proxies, which plain pickle refuses.
    with pytest.raises(TypeError):
        pickle.dumps(ZONES)
    got = roundtrip(Publish(3, tuple(ZONES), ZONES, {}))
    assert isinstance(got, Publish)
    assert got.changed == ZONES
    assert got.generation == 3


def test_a_truncated_frame_reads_as_closed() -> None:
    async def go() -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(encode(("applied", 1))[:-2])
        reader.feed_eof()
        return await receive(reader)

    assert asyncio.run(go()) is None


def test_only_changed_zones_are_sent_and_the_mirror_rebuilds_the_snapshot() -> None:
    store = Store(ZONES)
    mirror = Mirror()
    sent: dict[str, Zone] = {}

    def publish() -> None:
        snap = store.snapshot
        changed = changes(snap, sent)
        mirror.apply(Publish(snap.generation, tuple(snap.zones), changed, dict(snap.health)))
        sent.clear()
        sent.update(snap.zones)

    publish()
    assert mirror.snapshot.zones == store.snapshot.zones
    assert list(mirror.snapshot.zones) == list(store.snapshot.zones), "order kept"

    # A health change sends no zone at all; the mirror still has every zone and the health.
    spec = next(iter(store.targets))
    for _ in range(3):
        store.observe(spec, False, "refused", 0.01, 1.0)
    assert changes(store.snapshot, sent) == {}
    publish()
    assert mirror.snapshot.generation == store.snapshot.generation
    assert mirror.snapshot.health[spec].state is Health.DOWN
    assert mirror.snapshot.zones == store.snapshot.zones

    # A reload that drops a zone and changes another sends just the changed one.
    keep, *rest = sorted(ZONES)
    store.replace_zones({keep: ZONES[keep]})
    assert set(changes(store.snapshot, sent)) <= {keep}
    publish()
    assert set(mirror.snapshot.zones) == {keep}
    assert mirror.snapshot.health == store.snapshot.health
    assert rest, "the test data has more than one zone"


def test_health_is_plain_data() -> None:
    health = {next(iter(Store(ZONES).targets)): TargetHealth(Health.UP, successes=2)}
    got = roundtrip(Publish(1, (), {}, health))
    assert isinstance(got, Publish)
    assert got.health == health
