"""Owned asyncio tasks: how an owner ends them on shutdown or reconfiguration.

Every task has an owner (the daemon, the prober, the worker supervisor) that
cancels it and waits for it.  Waiting matters: a task still running after its
owner stopped could touch a closed session or socket.  A task that had
already died of a bug is logged here rather than raised, so one broken task
cannot keep its owner from closing everything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended; log any that had failed."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    for task, outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, Exception):
            log.error("task %s had failed", task.get_name(), exc_info=outcome)
