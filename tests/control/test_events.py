"""``/v1/events`` and its live stream over real loopback HTTP (aiohttp's test server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dnsfail.control import events as sse
from dnsfail.events.log import EventLog


@pytest.fixture
async def served() -> AsyncIterator[tuple[EventLog, str, web.Application]]:
    log = EventLog()
    app = web.Application()
    sse.add_routes(app, log)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield log, str(server.make_url("")), app
    app[sse.STREAMS].close_all()
    await server.close()


async def blocks(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Each SSE block as its fields; comments as {"comment": text}."""
    fields: dict[str, Any] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            key, _, value = line.partition(": ")
            fields[key] = json.loads(value) if key == "data" else value


async def take(it: AsyncIterator[dict[str, Any]], n: int, skip_comments: bool = True,
               ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        async for block in it:
            if skip_comments and ("comment" in block or "retry" in block):
                continue
            out.append(block)
            if len(out) == n:
                break
    return out


async def test_history_pages_by_cursor(served: tuple[EventLog, str, web.Application]) -> None:
    log, base, _ = served
    for i in range(5):
        log.emit("drain", selector=f"s{i}")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/events?after=2&limit=2") as resp:
            body = await resp.json()
        assert [e["selector"] for e in body["events"]] == ["s2", "s3"]
        assert (body["next"], body["last_id"], body["missed"]) == (4, 5, False)
        for query in ("after=x", "after=-1", "limit=0", "limit=100000", "after=9" * 30):
            async with http.get(f"{base}/v1/events?{query}") as resp:
                assert resp.status == 400, query
                assert "error" in await resp.json()


async def test_the_stream_replays_then_follows_and_resumes(
        served: tuple[EventLog, str, web.Application]) -> None:
    log, base, _ = served
    log.emit("drain", selector="before")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/events/stream") as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            it = blocks(resp)
            [first] = await take(it, 1)
            assert (first["id"], first["event"], first["data"]["selector"]) == (
                "1", "drain", "before")
            log.emit("transition", target="t:1", to="down")
            [live] = await take(it, 1)
            assert (live["id"], live["event"], live["data"]["to"]) == ("2", "transition", "down")
        log.emit("reload", ok=True)
        log.emit("reload", ok=False)
        async with http.get(f"{base}/v1/events/stream",
                            headers={"Last-Event-ID": "2"}) as resp:
            got = await take(blocks(resp), 2)
            assert [(b["id"], b["data"]["ok"]) for b in got] == [("3", True), ("4", False)]


async def test_heartbeats_on_an_idle_stream(served: tuple[EventLog, str, web.Application],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, base, _ = served
    monkeypatch.setattr(sse, "HEARTBEAT", 0.05)
    async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/events/stream") as resp:
        got = await take(blocks(resp), 3, skip_comments=False)
    assert {"comment": "heartbeat"} in got


async def test_a_slow_reader_is_dropped_and_the_loop_never_waits(
        served: tuple[EventLog, str, web.Application]) -> None:
    log, base, app = served
    streams = app[sse.STREAMS]
    async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/events/stream") as resp:
        await take(blocks(resp), 1, skip_comments=False)
        assert len(streams.queues) == 1  # the first block came: the stream is registered
        # No awaiting between the emits: the reader cannot keep up by construction.
        for i in range(sse.STREAM_BUFFER + 10):
            log.emit("drain", selector=f"s{i}", padding="x" * 100)
        assert streams.dropped == 1
        assert not streams.queues or all(q.qsize() <= 1 for q in streams.queues)
        got = [b async for b in blocks(resp) if "event" in b]
    assert got[-1]["event"] == "reconnect"
    assert len(got) < sse.STREAM_BUFFER  # the backlog was thrown away, not sent


async def test_streams_are_bounded_and_end_at_shutdown(
        served: tuple[EventLog, str, web.Application],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, base, app = served
    streams = app[sse.STREAMS]
    streams.limit = 2
    async with aiohttp.ClientSession() as http:
        opened = [await http.get(f"{base}/v1/events/stream") for _ in range(2)]
        async with http.get(f"{base}/v1/events/stream") as extra:
            assert extra.status == 503
            assert "too many event streams" in (await extra.json())["error"]
        streams.close_all()
        for resp in opened:
            async with asyncio.timeout(5):
                got = [b async for b in blocks(resp) if "event" in b]
            assert got == [{"event": "reconnect", "data": {}}]
            resp.release()


async def test_unicode_digits_are_a_bad_cursor_not_a_server_error(
        served: tuple[EventLog, str, web.Application]) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` raises: these were HTTP 500s."""
    _, base, _ = served
    async with aiohttp.ClientSession() as http:
        for query in ("after=%C2%B2", "limit=%C2%B9", "after=%E2%91%A0"):
            async with http.get(f"{base}/v1/events?{query}") as resp:
                assert resp.status == 400, query
        for header in ("\u00b2", "\u00b9\u00b2"):
            async with http.get(f"{base}/v1/events/stream",
                                headers={"Last-Event-ID": header}) as resp:
                assert resp.status == 400, header
