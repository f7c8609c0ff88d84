"""``cancel_all``: every owned task ends, and one that had died of a bug is logged, not raised."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dnsfail.tasks import cancel_all


async def _broken() -> None:
    raise RuntimeError("a bug")


async def test_cancels_waits_and_logs_a_failed_task(caplog: pytest.LogCaptureFixture) -> None:
    sleeping = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
    broken = asyncio.create_task(_broken(), name="broken")
    finished = asyncio.create_task(asyncio.sleep(0), name="finished")
    await asyncio.sleep(0.01)  # broken has died and finished has ended before shutdown
    with caplog.at_level(logging.ERROR, logger="dnsfail.tasks"):
        await cancel_all([sleeping, broken, finished])
    assert sleeping.cancelled()
    assert broken.done()
    assert isinstance(broken.exception(), RuntimeError)
    assert finished.done()
    assert not finished.cancelled()
    assert [r.getMessage() for r in caplog.records] == ["task broken had failed"]


async def test_no_tasks() -> None:
    await cancel_all([])
