"""Refusal logging is bounded: per address once per interval with the held-back count, and a
cap over all addresses (control.auth.RefusalLog), over a fake clock."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from dnsfail.control.auth import REFUSALS, SESSIONS, TOKEN, RefusalLog, Sessions, auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_refusal_is_logged_then_one_line_per_interval_with_the_count() -> None:
    clock = Clock()
    log = RefusalLog(interval=60.0, lines=30, clock=clock)
    assert log.note("10.0.0.4") == (True, 0, 0)
    for _ in range(119):  # a peer pulling twice a second for a minute
        clock.now += 0.5
        assert log.note("10.0.0.4")[0] is False
    clock.now += 0.5
    assert log.note("10.0.0.4") == (True, 119, 0)
    clock.now += 0.5
    assert log.note("10.0.0.4") == (False, 0, 0)


def test_each_address_has_its_own_window() -> None:
    clock = Clock()
    log = RefusalLog(interval=60.0, clock=clock)
    assert log.note("10.0.0.4")[0]
    assert log.note("10.0.0.5")[0]  # another address is not hidden by the first
    assert not log.note("10.0.0.4")[0]
    clock.now += 60.0
    assert log.note("10.0.0.5") == (True, 0, 0)


def test_many_addresses_are_capped_and_the_cap_is_counted() -> None:
    clock = Clock()
    log = RefusalLog(interval=60.0, lines=3, clock=clock)
    shown = [log.note(f"2001:db8::{i:x}")[0] for i in range(10)]
    assert shown == [True] * 3 + [False] * 7
    clock.now += 60.0
    assert log.note("2001:db8::ff") == (True, 0, 7)
    assert log.note("2001:db8::5") == (True, 0, 0)  # capped before, never logged: a first


def test_the_table_is_bounded() -> None:
    clock = Clock()
    log = RefusalLog(interval=60.0, lines=10**6, sources=100, clock=clock)
    for i in range(1000):
        log.note(f"10.{i // 256}.{i % 256}.1")
    assert len(log.by_source) == 100


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 30)), max_size=200))
def test_one_line_per_address_per_interval_and_every_refusal_is_accounted(
        events: list[tuple[int, float]]) -> None:
    clock = Clock()
    log = RefusalLog(interval=60.0, lines=4, clock=clock)
    last: dict[int, float] = {}
    accounted = 0
    for source, step in events:
        clock.now += step
        show, held, capped = log.note(f"10.0.0.{source}")
        if show:
            assert clock.now - last.get(source, -1e9) >= 60.0
            last[source] = clock.now
            accounted += 1 + held + capped
        else:
            assert (held, capped) == (0, 0)
    pending = sum(int(e[1]) for e in log.by_source.values()) + log.capped
    assert accounted + pending == len(events)


async def test_the_middleware_logs_the_first_refusal_then_the_count(
        caplog: pytest.LogCaptureFixture) -> None:
    """Through a real aiohttp endpoint on loopback: what the operator reads in the log."""
    clock = Clock()
    app = web.Application(middlewares=[auth])
    app[TOKEN] = "right"
    app[SESSIONS] = Sessions()
    app[REFUSALS] = RefusalLog(interval=60.0, clock=clock)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/v1/status", ok)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        with caplog.at_level(logging.WARNING, logger="dnsfail.control.auth"):
            for _ in range(5):
                resp = await client.get("/v1/status", headers={"Authorization": "Bearer no"})
                assert resp.status == 401
            clock.now += 61
            assert (await client.get("/v1/status")).status == 401
            good = await client.get("/v1/status", headers={"Authorization": "Bearer right"})
            assert good.status == 200
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "control: refused GET /v1/status from 127.0.0.1: wrong bearer token "
        "(logged at most once per 60s per address)",
        "control: refused GET /v1/status from 127.0.0.1: no bearer token "
        "(4 more from this address not logged)",
    ]
