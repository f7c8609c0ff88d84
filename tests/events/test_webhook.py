"""Webhooks against real local aiohttp receivers: fine, slow, failing (500), refusing, down."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dnsfail.events import webhook
from dnsfail.events.log import EventLog
from dnsfail.events.payload import parse_target
from dnsfail.events.webhook import Webhooks

SECRET_PATH = "/services/T000/B000/very-secret-token"


@dataclass
class Receiver:
    """Answers each POST with the next status of ``plan`` (200 when it runs out), after
    ``delay`` seconds for the ones listed in ``slow``."""

    plan: list[int] = field(default_factory=list)
    slow: set[int] = field(default_factory=set)
    delay: float = 0.0
    got: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        n = len(self.got)
        self.got.append((time.monotonic(), await request.json()))
        if n in self.slow:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.plan[n] if n < len(self.plan) else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Receiver]]:
    servers: list[TestServer] = []
    made: list[Receiver] = []

    async def make(**kw: Any) -> Receiver:
        r = Receiver(**kw)
        app = web.Application()
        app.router.add_post(SECRET_PATH, r.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        r.url = str(server.make_url(SECRET_PATH))
        made.append(r)
        return r

    yield make  # type: ignore[misc]
    for server in servers:
        await server.close()


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(webhook, "WEBHOOK_TIMEOUT", 0.5)
    monkeypatch.setattr(webhook, "WEBHOOK_ATTEMPTS", 4)


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll counters the hooks' tasks update (they have no event to await)."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def started(urls: list[str], **kw: Any) -> tuple[EventLog, Webhooks]:
    events = EventLog()
    hooks = Webhooks([parse_target(u) for u in urls], events, "ns1", **kw)
    await hooks.start()
    return events, hooks


def transition(events: EventLog) -> None:
    events.emit("transition", target="192.0.2.1:443", protocol="HTTPS", detail="HTTP 503",
                used_by=["api.example.com pool eu"], **{"from": "up", "to": "down"})


async def test_json_and_slack_bodies(receiver: Callable[..., Any]) -> None:
    plain, slack = await receiver(), await receiver()
    events, hooks = await started([plain.url, "slack+" + slack.url])
    transition(events)
    events.emit("reload", ok=False, trigger="SIGHUP", problems=["a.yaml:3: bad"],
                config_generation=1)
    await until(lambda: [h.sent for h in hooks.hooks] == [2, 2])
    await hooks.stop()
    body = plain.got[0][1]
    assert (body["source"], body["identity"], body["event"]["kind"]) == ("dnsfail", "ns1",
                                                                         "transition")
    assert body["event"]["to"] == "down"
    assert body["text"] == ("dnsfail ns1: target 192.0.2.1:443 is DOWN (was up): HTTP 503; "
                            "serves api.example.com pool eu")
    assert [b for _, b in slack.got] == [
        {"text": body["text"]},
        {"text": "dnsfail ns1: reload REJECTED, 1 problem(s): a.yaml:3: bad"}]
    [first, _] = hooks.describe()
    assert (first["sent"], first["failed"], first["queued"]) == (2, 0, 0)
    assert SECRET_PATH not in str(hooks.describe())


async def test_failing_receiver_is_retried_with_growing_backoff(
        receiver: Callable[..., Any]) -> None:
    r = await receiver(plan=[500, 503, 500])
    events, hooks = await started([r.url])
    transition(events)
    await until(lambda: len(r.got) == 4)
    await until(lambda: hooks.hooks[0].sent == 1)
    await hooks.stop()
    times = [t for t, _ in r.got]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.05 * 0.8
    assert gaps[1] >= 0.10 * 0.8
    assert gaps[2] >= 0.20 * 0.8
    assert hooks.hooks[0].last_error == "HTTP 500"


async def test_slow_receiver_times_out_and_is_retried(receiver: Callable[..., Any]) -> None:
    r = await receiver(slow={0}, delay=2.0)
    events, hooks = await started([r.url])
    started_at = time.monotonic()
    transition(events)  # emit returns at once: delivery is the hook's task's business
    assert time.monotonic() - started_at < 0.05
    await until(lambda: hooks.hooks[0].sent == 1)
    await hooks.stop()
    assert len(r.got) == 2
    assert hooks.hooks[0].last_error is not None
    assert "timeout" in hooks.hooks[0].last_error


async def test_refusing_receiver_is_not_retried(receiver: Callable[..., Any],
                                                caplog: pytest.LogCaptureFixture) -> None:
    r = await receiver(plan=[400])
    events, hooks = await started([r.url])
    with caplog.at_level(logging.WARNING):
        transition(events)
        await until(lambda: hooks.hooks[0].failed == 1)
    await hooks.stop()
    assert len(r.got) == 1
    assert "HTTP 400 (not retried)" in caplog.text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_down_receiver_fails_then_drops_the_oldest_and_never_logs_the_secret(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(webhook, "WEBHOOK_QUEUE", 3)
    url = f"http://user:pw@127.0.0.1:{closed_port()}{SECRET_PATH}?token=abc"
    events, hooks = await started([url])
    hook = hooks.hooks[0]
    with caplog.at_level(logging.INFO):
        transition(events)
        await until(lambda: hook.failed == 1)
        assert hook.last_error is not None
        assert "connect failed" in hook.last_error
        for _ in range(10):
            transition(events)
        await hooks.stop()
    assert hook.dropped >= 6  # 3 queued, at most one in flight
    assert len(hook.queue) == 3
    assert [e.id for e in hook.queue] == [9, 10, 11]  # the newest kept
    assert caplog.text.count("dropping the oldest") == 1  # one line, not one per event
    assert "not delivered after 4 attempt(s)" in caplog.text
    for secret in ("very-secret-token", "token=abc", "user", "pw@"):
        assert secret not in caplog.text
        assert secret not in str(hooks.describe())
    assert not hooks.tasks
    assert hooks.session is None


async def test_only_the_chosen_kinds_are_sent(receiver: Callable[..., Any]) -> None:
    r = await receiver()
    events = EventLog()
    hooks = Webhooks([replace(parse_target(r.url), kinds=frozenset({"drain"}))], events, "ns1")
    await hooks.start()
    transition(events)
    events.emit("drain", selector="192.0.2.1", state="down", expires=0.0, by="me", reason="x")
    await until(lambda: len(r.got) == 1)
    await hooks.stop()
    assert r.got[0][1]["event"]["kind"] == "drain"


@pytest.mark.parametrize(("text", "fmt", "error"), [
    ("https://hooks.example/x", "json", None),
    ("slack+https://hooks.example/services/x", "slack", None),
    ("ftp://hooks.example/secret", None, "not an http:// or https:// URL"),
    ("slack+mailto:me@example.com", None, "not an http:// or https:// URL"),
    ("https://h:99999/secret", None, "not a URL"),
])
def test_urls(text: str, fmt: str | None, error: str | None) -> None:
    if error is None:
        assert parse_target(text).format == fmt
    else:
        with pytest.raises(ValueError, match=error) as info:
            parse_target(text)
        assert "secret" not in str(info.value)


async def test_an_endless_reply_body_is_not_read(receiver: Callable[..., Any]) -> None:
    """A receiver that answers 200 and then streams forever: the status is all we need; the
    body was read whole (memory grew at loopback speed for WEBHOOK_TIMEOUT, then the
    delivery counted as a timeout and was retried)."""
    import tracemalloc

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        chunk = b"x" * 65536
        chunks = 0
        try:
            while chunks < 100_000:  # ~6 GiB unless the client hangs up
                await resp.write(chunk)
                chunks += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/hook", endless)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        tracemalloc.start()
        events, hooks = await started([str(server.make_url("/hook"))])
        transition(events)
        await until(lambda: hooks.hooks[0].sent + hooks.hooks[0].failed >= 1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert hooks.hooks[0].sent == 1, hooks.hooks[0].last_error
        assert peak < 8 * 1024 * 1024
        await hooks.stop()
    finally:
        await server.close()
