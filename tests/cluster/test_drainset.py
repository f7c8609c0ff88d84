"""Replicated drains: last writer wins on (created, origin), tombstones, bounds."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.cluster import drainset
from dnsfail.cluster.drainset import REMOVED, DrainRecord, digest, merge, overrides, prune
from dnsfail.cluster.messages import MessageError, decode
from dnsfail.steering.overrides import MAX_DURATION, OverrideError


def rec(sel: str, state: str, created: float, origin: str, expires: float = 1e9) -> DrainRecord:
    return DrainRecord(sel, state, "r", "by", created, expires, origin)


def test_newer_wins_in_any_order() -> None:
    a, b = rec("192.0.2.1", "down", 10, "ns1"), rec("192.0.2.1", "up", 20, "ns2")
    one, _ = merge({}, [a, b], 0)
    two, _ = merge({}, [b, a], 0)
    assert one == two == {"192.0.2.1": b}


def test_origin_breaks_ties() -> None:
    a, b = rec("192.0.2.1", "down", 10, "ns1"), rec("192.0.2.1", "up", 10, "ns2")
    assert merge({"192.0.2.1": b}, [a], 0)[0]["192.0.2.1"] == b


def test_tombstone_beats_older_and_outlives_them() -> None:
    drain = rec("192.0.2.1", "down", 10, "ns1", expires=10 + MAX_DURATION)
    tomb = DrainRecord.tombstone("192.0.2.1", "op", 20, "ns2")
    merged, _ = merge({"192.0.2.1": tomb}, [drain], 30)
    assert merged["192.0.2.1"].state == REMOVED
    assert overrides(merged, 30) == []
    assert tomb.expires >= drain.expires


def test_expired_records_are_not_taken_and_are_pruned() -> None:
    old = rec("192.0.2.1", "down", 10, "ns1", expires=50)
    assert merge({}, [old], 60)[0] == {}
    assert prune({"192.0.2.1": old}, 60) == {}


def test_digest_depends_on_versions() -> None:
    a = {"x": rec("192.0.2.1", "down", 10, "ns1")}
    assert digest(a) == digest(dict(a))
    assert digest(a) != digest({"x": rec("192.0.2.1", "down", 11, "ns1")})


records = st.builds(rec, st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
                    st.sampled_from(["down", "up", REMOVED]), st.integers(0, 5).map(float),
                    st.sampled_from(["ns1", "ns2", "ns3"]))


@given(st.lists(records, max_size=12), st.randoms())
def test_merge_is_order_independent(items: list[DrainRecord], rnd: object) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert merge({}, items, 0)[0] == merge({}, shuffled, 0)[0]


@pytest.mark.parametrize("body", [
    b"", b"[]", b'{"dnsfail_cluster": 2}', b'{"dnsfail_cluster": 1, "seq": -1}',
    b'{"dnsfail_cluster": 1, "seq": 1, "votes": "x"}',
    b'{"dnsfail_cluster": 1, "seq": 1, "votes": [{"target": "a", "state": "up", "age": NaN}]}',
    b'{"dnsfail_cluster": 1, "seq": 1, "votes": [], "instance": "a", "boot": "1-a",'
    b' "drains": [{"selector": "not a selector!!", "state": "down"}]}',
    b"[" * 100000,
    # integers too large for a float (OverflowError, a traceback, before)
    b'{"dnsfail_cluster": 1, "seq": 1, "instance": "a", "boot": "1-a", "sent_at": 1'
    + b"0" * 400 + b', "votes": []}',
    b'{"dnsfail_cluster": 1, "seq": 1, "instance": "a", "boot": "1-a",'
    b' "votes": [{"target": "a", "state": "up", "age": 1' + b"0" * 400 + b'}]}',
    b'{"dnsfail_cluster": 1, "seq": 1, "instance": "a", "boot": "1-a", "votes": [],'
    b' "drains": [{"selector": "192.0.2.1", "state": "down", "created": 1' + b"0" * 400
    + b', "expires": 1, "origin": "a"}]}',
])
def test_bad_messages_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(MessageError):
        decode(body)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))
def test_any_json_decodes_or_is_refused(value: object) -> None:
    with contextlib.suppress(MessageError):
        decode(json.dumps(value).encode())


@pytest.mark.parametrize(("created", "expires"), [
    (10.0, float("inf")), (10.0, 1e308), (10.0, 10 + MAX_DURATION + 3600), (10.0, float("nan")),
])
def test_a_drain_that_would_never_end_is_refused(created: float, expires: float) -> None:
    """A drain nobody remembers must still end: a peer's record lasting over MAX_DURATION
    (or forever) is refused, as the local API refuses one."""
    data = rec("192.0.2.1", "down", created, "ns1", expires).to_json()
    with pytest.raises(OverrideError, match="drain record"):
        DrainRecord.from_json(data)


def test_a_drain_created_in_the_future_is_not_taken_until_its_time() -> None:
    """A record created far ahead of our clock would win every later change (its version
    is the larger) and outlive MAX_DURATION: it waits until it is within MAX_AHEAD."""
    now = 1_000_000.0
    ahead = rec("192.0.2.1", "down", now + 10 * 86400, "ns1", now + 11 * 86400)
    assert merge({}, [ahead], now)[0] == {}
    assert merge({}, [ahead], now + 10 * 86400)[0] == {"192.0.2.1": ahead}
    near = rec("192.0.2.1", "down", now + getattr(drainset, "MAX_AHEAD", 0) - 1, "ns1", now + 86400)
    assert merge({}, [near], now)[0] == {"192.0.2.1": near}


def test_the_cluster_file_round_trips_and_a_damaged_one_is_ignored(tmp_path: object) -> None:
    from pathlib import Path

    from dnsfail.cluster.drains import cluster_path, load_records, save_records

    path = cluster_path(Path(str(tmp_path)) / "state.json")
    assert path is not None
    assert path.name == "state.json.cluster.json"
    records = [rec("192.0.2.1", "down", 10, "ns1", 10 + MAX_DURATION),
               DrainRecord.tombstone("192.0.2.2", "op", 20, "ns2")]
    save_records(path, records)
    assert load_records(path, 30) == {r.selector: r for r in records}
    path.write_text("{not json")
    assert load_records(path, 30) == {}


@pytest.mark.parametrize("content", [b"[" * 100_000, b'{"drains": "\xff"}',
                                     b'{"drains": [' + b"9" * 5000 + b"]}",
                                     b'{"drains": [{"selector": "192.0.2.1", "reason": "\\n"}]}'])
def test_any_damaged_cluster_file_is_ignored_not_raised(tmp_path: object,
                                                        content: bytes) -> None:
    """The cluster file is read at start: a RecursionError there stopped the start."""
    from pathlib import Path

    from dnsfail.cluster.drains import load_records

    path = Path(str(tmp_path)) / "state.json.cluster.json"
    path.write_bytes(content)
    assert load_records(path, 30) == {}


def test_replicated_reasons_cannot_forge_log_lines() -> None:
    r = DrainRecord.from_json({"selector": "192.0.2.1", "state": "down", "created": 10,
                               "expires": 20, "origin": "ns2", "reason": "x\nFORGED",
                               "by": "\u202eop"})
    assert (r.reason, r.by) == ("x\ufffdFORGED", "\ufffdop")
