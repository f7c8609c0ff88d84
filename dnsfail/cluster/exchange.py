"""The exchange: pull every peer's message each interval, push a change at once, over HTTP.

Peers talk over the control API with the shared bearer token
(``--control-token-file``).  Every request has a timeout
(:data:`REQUEST_TIMEOUT`), every body read is bounded
(``messages.MAX_MESSAGE``), a failing peer is retried with bounded
exponential backoff (:data:`BACKOFF_MAX`), and every task is owned here and
cancelled by :meth:`Exchange.stop`.  Failures are logged once per peer and
kind (``Node.refuse``) and counted for the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from dnsfail.cluster.drainset import DrainRecord
from dnsfail.cluster.messages import MAX_MESSAGE, MessageError, decode
from dnsfail.cluster.node import Node
from dnsfail.tasks import cancel_all

log = logging.getLogger("dnsfail.cluster")

#: Seconds one peer request may take, connect to last byte: a hung peer costs its own loop
#: this long, never the answers (the loop is its own task).
REQUEST_TIMEOUT = 2.0
#: Longest wait between two tries of a failing peer: reconnection (and the drain catch-up
#: that comes with it) is noticed within this, however long the peer was gone.
BACKOFF_MAX = 10.0
#: Largest message parsed on the event loop; a larger one is parsed in a thread: a 1 MB
#: message (7,000 drains) takes 0.3 s of CPU, which DNS answers and probes must not wait out.
DECODE_INLINE = 64 * 1024
#: How often verdicts are re-judged without any message (votes age, degraded times out).
TICK = 0.25

MergeDrains = Callable[[Iterable[DrainRecord]], Awaitable[None]]


async def read_bounded(content: aiohttp.StreamReader, limit: int = MAX_MESSAGE) -> bytes:
    """At most ``limit`` octets of a body; MessageError beyond (the rest is never read)."""
    chunks, size = [], 0
    while chunk := await content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise MessageError(f"body larger than {limit} octets")
        chunks.append(chunk)
    return b"".join(chunks)


class Exchange:
    """The pull loops (one per peer URL), the push task and the judging tick."""

    def __init__(self, node: Node, token: str | None, merge: MergeDrains,
                 rng: random.Random | None = None) -> None:
        self.node = node
        self.token = token
        self.merge = merge
        self.rng = rng or random.Random()
        self.tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()

    def _headers(self) -> dict[str, str]:
        head = {"Content-Type": "application/json"}
        if self.token:
            head["Authorization"] = f"Bearer {self.token}"
        return head

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            cookie_jar=aiohttp.DummyCookieJar(), headers=self._headers())
        self.node.on_change = self._wake.set
        for url in self.node.peers:
            self.tasks.append(asyncio.create_task(self._pull_forever(url), name=f"pull {url}"))
        self.tasks.append(asyncio.create_task(self._push_forever(), name="cluster-push"))
        self.tasks.append(asyncio.create_task(self._tick_forever(), name="cluster-tick"))

    async def stop(self) -> None:
        self.node.on_change = lambda: None
        await cancel_all(self.tasks)
        self.tasks = []
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def first_round(self, timeout: float) -> None:  # noqa: ASYNC109
        """One pull of every peer before answering (cold start), within ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(self.pull(url) for url in self.node.peers))

    # --- pull ------------------------------------------------------------------------------

    async def pull(self, url: str) -> bool:
        """GET one peer's message and take it in; False (logged, counted) if that failed."""
        assert self.session is not None
        node = self.node
        digest = node.message_digest()
        try:
            async with self.session.get(f"{url}/v1/cluster/votes",
                                        params={"drains_digest": digest}) as resp:
                if resp.status == 401:
                    node.refuse(url, "unauthorized", "the peer refused our token")
                    return False
                if resp.status != 200:
                    node.refuse(url, f"HTTP {resp.status}", resp.reason or "")
                    return False
                raw = await read_bounded(resp.content)
        except TimeoutError:
            node.refuse(url, "timeout", f"no answer in {REQUEST_TIMEOUT:g}s")
            return False
        except (aiohttp.ClientError, OSError) as exc:
            node.refuse(url, "unreachable", f"{type(exc).__name__}: {exc}"[:200])
            return False
        except MessageError as exc:
            node.refuse(url, "bad message", str(exc))
            return False
        return await self.take(raw, url)

    async def take(self, raw: bytes, url: str | None) -> bool:
        """A message's bytes (pulled from ``url``, or pushed): votes, then drains."""
        try:
            m = decode(raw) if len(raw) <= DECODE_INLINE else await asyncio.to_thread(
                decode, raw)
        except MessageError as exc:
            self.node.refuse(url or "push", "bad message", str(exc))
            return False
        why = self.node.receive(m, url, time.monotonic())
        if why is not None:
            return why in ("self", "alias")
        if m.drains is not None:
            await self.merge(m.drains)
        return True

    async def _pull_forever(self, url: str) -> None:
        failures = 0
        while url not in self.node.self_urls and url not in self.node.alias_urls:
            ok = await self.pull(url)
            failures = 0 if ok else failures + 1
            interval = self.node.interval()
            delay = interval * self.rng.uniform(0.9, 1.1)
            if failures > 1:
                delay = min(interval * 2 ** (failures - 1), max(BACKOFF_MAX, interval))
            await asyncio.sleep(delay)

    # --- push ------------------------------------------------------------------------------

    async def push_all(self, timeout: float = REQUEST_TIMEOUT) -> dict[str, bool]:  # noqa: ASYNC109
        """Send this instance's message to every other peer now; which ones took it."""
        urls = [p.url for p in self.node.others]
        results = await asyncio.gather(*(self._push(url, timeout) for url in urls))
        return dict(zip(urls, results, strict=True))

    async def _push(self, url: str, timeout: float) -> bool:  # noqa: ASYNC109
        assert self.session is not None
        body: dict[str, Any] = self.node.encoded()
        try:
            async with self.session.post(f"{url}/v1/cluster/push", json=body,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await read_bounded(resp.content, 64 * 1024)
                if resp.status == 401:
                    self.node.refuse(url, "unauthorized", "the peer refused our token")
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError, MessageError) as exc:
            self.node.refuse(url, "push failed", f"{type(exc).__name__}: {exc}"[:200])
            return False

    def poke(self) -> None:
        self._wake.set()

    async def _push_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.push_all()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.node.judge_all(time.monotonic())
