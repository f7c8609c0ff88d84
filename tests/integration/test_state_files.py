"""A real server started on a damaged or huge state file starts and serves (the file moved
aside), with no traceback; a large one is restored with a bounded log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dnsfail.serve.drains import RESTORED_LOG_LINES

from .ctl_server import EU, SITES, Ctl


@pytest.mark.parametrize("content", [
    b'{"version": 1, "overrides": [], "x": "\xff"}',  # was a UnicodeDecodeError at start
    b"[" * 100_000,  # RecursionError
    b'{"version":1,"overrides":[{"selector":"127.0.0.61","state":"down","reason":"r",'
    b'"created":1e300,"expires":1e301,"by":"b"}]}',  # OverflowError formatting the expiry
], ids=["not-utf8", "nested", "year-1e300"])
def test_a_damaged_state_file_does_not_stop_the_start(
        start: Callable[..., Ctl], tmp_path: Path, content: bytes) -> None:
    state = tmp_path / "state.json"
    state.write_bytes(content)
    ctl = start(state=state)
    ctl.server.wait_for_log("state file ignored")
    assert (tmp_path / "state.json.corrupt").read_bytes() == content
    assert ctl.answer() == EU
    assert "Traceback" not in ctl.server.log


def test_many_restored_overrides_are_logged_boundedly(start: Callable[..., Ctl],
                                                      tmp_path: Path) -> None:
    now = time.time()
    items = [{"selector": f"10.0.{i // 256}.{i % 256}", "state": "down", "reason": "r",
              "created": now, "expires": now + 600, "by": "b"} for i in range(500)]
    items.append({"selector": SITES[0], "state": "down", "reason": "kept\nFORGED LINE",
                  "created": now, "expires": now + 600, "by": "b"})
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "overrides": items}))
    ctl = start(state=state)
    ctl.server.wait_for_log("more override(s) restored")
    assert ctl.server.log.count("override restored from") == RESTORED_LOG_LINES
    assert len(ctl.get("/v1/status")[1]["overrides"]) == 501
    assert ctl.answer() == [SITES[1]]
    assert not any(line.startswith("FORGED LINE") for line in ctl.server.lines)
