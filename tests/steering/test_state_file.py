"""Any state file, however damaged, is an OverrideError with a reason (the server moves it
aside and starts without overrides), never another exception: steering.overrides.load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.steering import overrides
from dnsfail.steering.overrides import MAX_STATE_FILE, OverrideError, load

NOW = 1.8e9
GOOD = {"selector": "192.0.2.10", "state": "down", "reason": "r", "created": NOW - 10,
        "expires": NOW + 600, "by": "ops"}


def state(*items: object) -> bytes:
    return json.dumps({"version": 1, "overrides": list(items)}).encode()


DAMAGED = [
    (b'{"version": 1, "overrides": [], "x": "\xff"}', "utf-8"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"version": 1, "overrides": [], "x": ' + b"9" * 5000 + b"}", "4300 digits"),
    (state(GOOD)[:-5], "not JSON"),
    (b"\x00" * 100, "not JSON"),
    (b'{"version":1,"overrides":[{"selector":"192.0.2.10","state":"down","reason":"r",'
     b'"created":NaN,"expires":Infinity}]}', "is not a time"),
    (state({**GOOD, "created": 1e300, "expires": 1e301}), "is not a time"),
    (state({**GOOD, "created": True}), "is not a time"),
    (state({**GOOD, "expires": [1]}), "expires"),
    (state({**GOOD, "reason": "x" * 100_000, "selector": []}), "is not a selector"),
]


@pytest.mark.parametrize(("content", "reason"), DAMAGED)
def test_a_damaged_file_is_refused_with_the_reason(tmp_path: Path, content: bytes,
                                                   reason: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(OverrideError, match=reason) as caught:
        load(path, NOW)
    assert len(str(caught.value)) < 1000  # the log line names the problem, not the file


def test_a_file_past_the_size_limit_is_not_read(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overrides, "MAX_STATE_FILE", 1000)
    path = tmp_path / "state.json"
    path.write_bytes(state(*[GOOD] * 20))
    with pytest.raises(OverrideError, match="larger than 1000 octets"):
        load(path, NOW)
    assert MAX_STATE_FILE >= 10_000 * 300  # the largest drain set fits


def test_reasons_and_authors_read_back_cannot_forge_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(state({**GOOD, "reason": "a\nFAKE\x1b[2J\u202e", "by": "x" * 10_000}))
    [o] = load(path, NOW)
    assert o.reason == "a\ufffdFAKE\ufffd[2J\ufffd"
    assert len(o.by) == overrides.MAX_BY


@given(st.binary(max_size=300) | st.builds(
    lambda v: json.dumps({"version": 1, "overrides": [v]}).encode(),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                 lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=10)))
def test_any_file_loads_or_is_refused(content: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        path.write_bytes(content)
        try:
            got = load(path, time.time())
        except OverrideError:
            return
        assert isinstance(got, list)
