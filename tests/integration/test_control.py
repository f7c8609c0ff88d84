"""The control API and its CLI against a real ``dnsfail serve``: auth, drains, reload, metrics.

The zone's three "sites" are plain listening TCP sockets on 127.0.0.61-63
(a TCP probe only needs the handshake, which the kernel completes from the
listen backlog), so the targets are up without any HTTP server.  Every
request goes through a real HTTP client (urllib) to the server's control
port; every DNS check is a real query to its DNS port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, DnsfailProcess, free_port
from .ctl_server import EU, QNAME, SITES, TOKEN, Ctl, scrape, wait_for, zone_text

# --- health, readiness, status ---------------------------------------------------------------


def test_health_ready_and_status(start: Callable[..., Ctl], site_port: int) -> None:
    ctl = start()
    assert ctl.get("/healthz") == (200, {"ok": True})
    code, ready = ctl.get("/readyz")
    assert (code, ready["ready"], ready["first_probe_round"]) == (200, True, "complete")
    code, status = ctl.get("/v1/status")
    assert code == 200
    [zone] = status["zones"]
    assert (zone["zone"], zone["records"]) == ("ctl.test.", 4)
    assert zone["serial"] > 0
    assert zone["loaded_at"] <= time.time()
    assert status["config_generation"] == 1
    targets = {t["target"]: t for t in status["targets"]}
    assert set(targets) == {f"{s}:{site_port}" for s in SITES}
    for t in targets.values():
        assert (t["state"], t["real_state"], t["overrides"], t["transitions"]) == (
            "up", "up", [], 0)
        assert t["last_probe"]["ok"] is True
        assert t["last_probe"]["detail"] == "connected"
        assert abs(t["last_probe"]["at"] - time.time()) < 10
        assert t["last_probe"]["latency_ms"] >= 0
    assert ctl.answer() == EU


def test_unknown_paths_and_methods_are_json_errors(start: Callable[..., Ctl]) -> None:
    ctl = start()
    assert ctl.get("/v1/nothing")[0] == 404
    code, body = ctl.get("/v1/drain")
    assert code == 405
    assert "error" in body


# --- drains -----------------------------------------------------------------------------------


def test_drain_changes_the_next_answer_then_undrain(start: Callable[..., Ctl],
                                                    site_port: int) -> None:
    ctl = start()
    before = time.time()
    code, body = ctl.post("/v1/drain", {"target": SITES[0], "for": "10m", "reason": "patching"})
    assert code == 200, body
    assert ctl.answer() == [SITES[1]]  # the very next query
    assert ctl.answer("edge.ctl.test.") == [SITES[1]]
    o = body["override"]
    assert (o["selector"], o["state"], o["reason"]) == (SITES[0], "down", "patching")
    assert before <= o["created"] <= time.time()
    assert o["expires"] == pytest.approx(o["created"] + 600)
    # Complete after the A record's TTL (30 s), not the CNAME's 300: the CNAME answer is
    # cached separately and its A part carries the record's own TTL.
    assert body["max_ttl"] == 30
    assert body["complete_at"] == pytest.approx(o["created"] + 30)
    assert [m["target"] for m in body["matched"]] == [f"{SITES[0]}:{site_port}"]

    status = ctl.get("/v1/status")[1]
    target = next(t for t in status["targets"] if t["target"].startswith(SITES[0]))
    assert (target["state"], target["real_state"]) == ("down", "up")
    [shown] = target["overrides"]
    assert shown["reason"] == "patching"
    assert shown["complete"] is False
    assert status["overrides"][0]["expires_in"] > 590

    # A pool of one record, by name: the fallback pool answers.
    assert ctl.post("/v1/drain", {"target": "api.ctl.test/eu", "for": 60,
                                  "reason": "eu pool"})[0] == 200
    assert ctl.answer() == [SITES[2]]
    code, body = ctl.post("/v1/undrain", {"target": "API.ctl.test./eu"})
    assert code == 200
    assert [o["selector"] for o in body["removed"]] == ["api.ctl.test/eu"]
    assert ctl.answer() == [SITES[1]]
    assert ctl.post("/v1/undrain", {"target": SITES[0]})[0] == 200
    assert ctl.answer() == EU
    code, body = ctl.post("/v1/undrain", {"target": SITES[0]})
    assert code == 404
    assert body["active"] == []
    ctl.server.wait_for_log(f"drain {SITES[0]} (1 value(s)) for 600s")
    ctl.server.wait_for_log(f"undrain {SITES[0]} by ")


def test_force_up_overrides_a_down_probe(start: Callable[..., Ctl], site_port: int) -> None:
    ctl = start()
    # 127.0.0.64 is not a site of the zone, so nothing matches: 400, nothing changes.
    code, body = ctl.post("/v1/drain", {"target": "127.0.0.64", "for": 60, "reason": "x"})
    assert code == 400
    assert "matches no pool value" in body["error"]
    code, _ = ctl.post("/v1/drain", {"target": "pool:eu", "for": 60, "reason": "test",
                                     "state": "down"})
    assert ctl.answer() == [SITES[2]]
    code, body = ctl.post("/v1/drain", {"target": f"{SITES[0]}:{site_port}", "for": 60,
                                        "reason": "force", "state": "up"})
    assert code == 200
    assert body["override"]["state"] == "up"
    assert ctl.answer() == [SITES[0]]  # the newest override wins for that value


def test_drains_expire_by_themselves(start: Callable[..., Ctl]) -> None:
    ctl = start()
    code, _body = ctl.post("/v1/drain", {"target": "pool:eu", "for": "2s", "reason": "short"})
    assert code == 200
    assert ctl.answer() == [SITES[2]]
    took = wait_for(lambda: ctl.answer() == EU, 5.0, "the drain to expire")
    assert 1.0 < took < 4.0
    ctl.server.wait_for_log("override expired: pool:eu DOWN")
    assert ctl.get("/v1/status")[1]["overrides"] == []


def test_drains_survive_a_restart(start: Callable[..., Ctl], tmp_path: Path) -> None:
    state = tmp_path / "kept.json"
    first = start(state=state)
    assert first.post("/v1/drain", {"target": SITES[1], "for": 60, "reason": "kept",
                                    "by": "tester"})[0] == 200
    assert first.answer() == [SITES[0]]
    assert first.server.stop() == 0
    saved = json.loads(state.read_text())
    assert [o["selector"] for o in saved["overrides"]] == [SITES[1]]

    second = start(state=state)
    second.server.wait_for_log(f"override restored from {state}: {SITES[1]} DOWN")
    assert second.answer() == [SITES[0]]
    [o] = second.get("/v1/status")[1]["overrides"]
    assert (o["selector"], o["reason"], o["by"]) == (SITES[1], "kept", "tester")
    assert 50 < o["expires_in"] <= 60


def test_a_damaged_state_file_is_moved_aside(start: Callable[..., Ctl], tmp_path: Path) -> None:
    state = tmp_path / "bad.json"
    state.write_text('{"version": 1, "overrides": [{"selector": 5}')
    ctl = start(state=state)
    ctl.server.wait_for_log("state file ignored")
    assert (tmp_path / "bad.json.corrupt").exists()
    assert ctl.answer() == EU


BAD_BODIES = [
    (b"", "body must be a JSON object"),
    (b"not json", "body is not JSON"),
    (b"[1, 2]", "body must be a JSON object"),
    (b'{"target": "127.0.0.61", "for": "10m"}', "missing field(s): reason"),
    (b'{"target": "127.0.0.61", "for": "10m", "reason": "x", "until": 5}',
     "unknown field(s): until"),
    (b'{"target": "127.0.0.61", "for": "10m", "reason": "  "}', "reason must not be empty"),
    (b'{"target": 5, "for": "10m", "reason": "x"}', "target must be a string"),
    (b'{"target": "eu-west", "for": "10m", "reason": "x"}', "is not a selector"),
    (b'{"target": "127.0.0.61", "for": "soon", "reason": "x"}', "is not seconds or like"),
    (b'{"target": "127.0.0.61", "for": -1, "reason": "x"}', "must be more than 0"),
    (b'{"target": "127.0.0.61", "for": "90d", "reason": "x"}', "30-day limit"),
    (b'{"target": "127.0.0.61", "for": 60, "reason": "x", "state": "obey"}',
     "state must be 'down' or 'up'"),
    (b'{"target": "127.0.0.61", "for": 60, "reason": "a\\nb"}', "control characters"),
    (b'{"target": "127.0.0.64", "for": 60, "reason": "x"}', "matches no pool value"),
]


def test_bad_bodies_get_400_with_a_reason_and_change_nothing(start: Callable[..., Ctl]) -> None:
    ctl = start()
    generation = ctl.get("/v1/status")[1]["generation"]
    for raw, reason in BAD_BODIES:
        code, body = ctl.post("/v1/drain", raw=raw)
        assert code == 400, (raw, body)
        assert reason in body["error"], (raw, body)
    code, body = ctl.post("/v1/undrain", raw=b'{"target": "127.0.0.61", "for": 1}')
    assert code == 400
    assert "unknown field(s): for" in body["error"]
    assert ctl.post("/v1/drain", raw=b"x" * 70_000)[0] == 413
    status = ctl.get("/v1/status")[1]
    assert status["overrides"] == []
    assert status["generation"] == generation
    assert ctl.answer() == EU


# --- reload and explain -------------------------------------------------------------------------


def test_reload_all_or_nothing(start: Callable[..., Ctl], tmp_path: Path, site_port: int) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    zone = zones / "ctl.test.yaml"
    zone.write_text(zone_text(site_port))
    ctl = start(zones=zones)
    zone.write_text(zone_text(site_port) + "added:\n  type: A\n  value: 192.0.2.7\n")
    code, body = ctl.post("/v1/reload")
    assert code == 200
    assert body["ok"] is True
    assert body["config_generation"] == 2
    assert ctl.answer("added.ctl.test.") == ["192.0.2.7"]
    zone.write_text(zone_text(site_port) + "broken:\n  type: A\n  value: 192.0.2.300\n")
    code, body = ctl.post("/v1/reload")
    assert code == 422
    assert body["ok"] is False
    assert any("broken" in p and "192.0.2.300" in p for p in body["problems"])
    assert ctl.answer("added.ctl.test.") == ["192.0.2.7"]  # the previous zones still serve
    status = ctl.get("/v1/status")[1]
    assert status["config_generation"] == 2
    assert status["reload"]["ok"] is False
    result = ctl.cli("reload")
    assert result.returncode == 1
    assert "192.0.2.300" in result.stdout
    assert "reload rejected" in result.stderr


def test_explain_matches_the_cli(start: Callable[..., Ctl]) -> None:
    ctl = start()
    code, text = ctl.get(f"/v1/explain?name={QNAME}&type=A&client=192.0.2.1")
    assert code == 200
    assert f"query {QNAME} A from client 192.0.2.1" in text
    assert "pool eu (fallback us)" in text
    assert "answer: 127.0.0.61, 127.0.0.62" in text
    ctl.post("/v1/drain", {"target": SITES[0], "for": 60, "reason": "explained"})
    code, text = ctl.get(f"/v1/explain?name={QNAME}&ecs=198.51.100.0/24")
    assert "answer: 127.0.0.62" in text
    assert "explained" in text
    for query, reason in [("", "name is required"), (f"name={QNAME}&type=BOGUS", "type"),
                          (f"name={QNAME}&client=nope", "client 'nope'"),
                          (f"name={QNAME}&ecs=1.2.3.4/99", "ecs")]:
        code, body = ctl.get(f"/v1/explain?{query}")
        assert code == 400, (query, body)
        assert reason in body["error"], (query, body)


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_count_known_traffic(start: Callable[..., Ctl], site_port: int) -> None:
    ctl = start()
    before = scrape(ctl)

    def count(got: dict[Any, float], name: str, **labels: str) -> float:
        return got.get((name, frozenset(labels.items())), 0.0)

    for _ in range(25):
        ctl.server.query(QNAME, "A")
    for _ in range(10):
        ctl.server.query("nope.ctl.test.", "TXT")
    for _ in range(4):
        ctl.server.query("example.org.", "MX", tcp=True)
    after = scrape(ctl)
    key = "dnsfail_queries_total"
    assert count(after, key, zone="ctl.test.", qtype="A", rcode="NOERROR") - count(
        before, key, zone="ctl.test.", qtype="A", rcode="NOERROR") == 25
    assert count(after, key, zone="ctl.test.", qtype="TXT", rcode="NXDOMAIN") - count(
        before, key, zone="ctl.test.", qtype="TXT", rcode="NXDOMAIN") == 10
    assert count(after, key, zone="", qtype="MX", rcode="REFUSED") - count(
        before, key, zone="", qtype="MX", rcode="REFUSED") == 4
    target = f"{SITES[0]}:{site_port}"
    assert count(after, "dnsfail_probes_total", target=target, result="ok") >= 1
    assert count(after, "dnsfail_probe_latency_seconds_count", target=target) >= 1
    assert count(after, "dnsfail_target_state", target=target, state="up") == 1
    assert count(after, "dnsfail_target_transitions_total", target=target) == 0
    assert count(after, "dnsfail_config_generation") == 1
    assert count(after, "dnsfail_zone_records", zone="ctl.test.") == 4
    assert ("dnsfail_tcp_connections_open", frozenset()) in after
    # 39 queries, 1 in 16 of the handler's and 1 in 16 of the compiled drain's own hits
    # (two countdowns: 39 = 15 + 24 gives one sample at the least)
    assert count(after, "dnsfail_answer_latency_seconds_count") >= 1

    ctl.post("/v1/drain", {"target": SITES[0], "for": 60, "reason": "m"})
    ctl.post("/v1/reload")
    after = scrape(ctl)
    assert count(after, "dnsfail_target_effective_state", target=target, state="down") == 1
    assert count(after, "dnsfail_target_state", target=target, state="up") == 1
    assert count(after, "dnsfail_overrides_active") == 1
    assert count(after, "dnsfail_override_changes_total", action="set") == 1
    assert count(after, "dnsfail_reloads_total", result="ok") == 1
    assert count(after, "dnsfail_config_generation") == 2


# --- security ------------------------------------------------------------------------------------


def test_a_token_is_required_once_configured(start: Callable[..., Ctl], tmp_path: Path) -> None:
    ctl = start(token=TOKEN)
    drain = {"target": SITES[0], "for": 60, "reason": "intruder"}
    for token in (None, "wrong", TOKEN + "x", ""):
        for method, path, body in [("GET", "/v1/status", None), ("POST", "/v1/drain", drain),
                                   ("POST", "/v1/reload", {}), ("GET", "/metrics", None),
                                   ("GET", f"/v1/explain?name={QNAME}", None),
                                   ("POST", "/v1/undrain", {"target": SITES[0]})]:
            code, reply = ctl.call(method, path, body, token=token)
            assert code == 401, (method, path, token)
            assert "unauthorized" in reply["error"]
    assert ctl.answer() == EU  # no unauthorized drain took effect
    assert ctl.get("/healthz", token=None)[0] == 200  # probes need no secret
    assert ctl.get("/readyz", token=None)[0] == 200
    assert ctl.get("/v1/status")[1]["overrides"] == []
    assert ctl.post("/v1/drain", drain)[0] == 200
    assert ctl.answer() == [SITES[1]]
    # 24 refusals from one address, one line (the first); the rest are counted, not logged.
    ctl.server.wait_for_log("control: refused GET /v1/status from 127.0.0.1: no bearer token")
    assert sum("control: refused" in line for line in ctl.server.lines) == 1, ctl.server.log

    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(TOKEN + "\n")
    bad.write_text("nope\n")
    result = ctl.cli("status", token_file=good)
    assert result.returncode == 0
    assert "127.0.0.61" in result.stdout
    result = ctl.cli("status", token_file=bad)
    assert result.returncode == 2
    assert "token was rejected" in result.stderr
    result = ctl.cli("status")
    assert result.returncode == 2
    assert "wants a token" in result.stderr


def test_binding_beyond_loopback_without_a_token_refuses_to_start(
    zone_dir: Path, tmp_path: Path
) -> None:
    """Nothing is bound: the check runs before any socket is opened."""
    port = free_port()
    server = DnsfailProcess([str(zone_dir), "--control", f"0.0.0.0:{port}",
                             "--state-file", str(tmp_path / "s.json")])
    try:
        assert server.proc.wait(timeout=20) == 1
    finally:
        server.stop()
    assert "needs a bearer token" in server.log
    assert "listening on" not in server.log
    assert "control API on http" not in server.log


def test_an_empty_token_file_refuses_to_start(zone_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    server = DnsfailProcess([str(zone_dir), "--control-token-file", str(tmp_path / "empty")])
    try:
        assert server.proc.wait(timeout=20) == 1
    finally:
        server.stop()
    assert "is empty" in server.log


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_status_drain_undrain(start: Callable[..., Ctl]) -> None:
    ctl = start()
    result = ctl.cli("drain", SITES[0], "--for", "30m", "--reason", "cli drain")
    assert result.returncode == 0, result.stderr
    assert f"drained {SITES[0]} until" in result.stdout
    assert "drain complete at" in result.stdout
    assert "in 30s" in result.stdout
    assert ctl.answer() == [SITES[1]]
    result = ctl.cli("status")
    assert result.returncode == 0
    assert "DOWN*" in result.stdout
    assert "cli drain" in result.stdout
    assert "ctl.test." in result.stdout
    result = ctl.cli("status", "--json")
    assert json.loads(result.stdout)["overrides"][0]["reason"] == "cli drain"
    result = ctl.cli("drain", SITES[0], "--for", "forever", "--reason", "x")
    assert result.returncode == 2
    assert "is not seconds" in result.stderr
    result = ctl.cli("drain", "10.9.9.9", "--for", "1m", "--reason", "x")
    assert result.returncode == 2
    assert "matches no pool value" in result.stderr
    result = ctl.cli("undrain", SITES[0])
    assert result.returncode == 0
    assert f"undrained {SITES[0]}" in result.stdout
    assert ctl.answer() == EU
    result = ctl.cli("undrain", SITES[0])
    assert result.returncode == 1
    assert "no override for" in result.stderr
    result = ctl.cli("reload")
    assert result.returncode == 0
    assert "config generation 2" in result.stdout


def test_cli_says_when_the_server_is_unreachable() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "dnsfail", "status", "--control", f"127.0.0.1:{port}"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert f"cannot reach the control API at http://127.0.0.1:{port}" in result.stderr
    assert "connection refused" in result.stderr


def test_json_logs_carry_event_fields(start: Callable[..., Ctl]) -> None:
    ctl = start("--log-format", "json")
    ctl.post("/v1/drain", {"target": SITES[0], "for": 60, "reason": "json", "by": "me"})
    line = ctl.server.wait_for_log('"event": "drain"')
    event = json.loads(line)
    assert (event["selector"], event["reason"], event["by"], event["max_ttl"]) == (
        SITES[0], "json", "me", 30)
    assert event["level"] == "warning"
    assert event["logger"] == "dnsfail.serve.drains"
    first = json.loads(ctl.server.lines[0])
    assert {"ts", "level", "logger", "msg"} <= first.keys()
