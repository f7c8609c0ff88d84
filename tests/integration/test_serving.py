"""What each record answers now, through a real server: /v1/status, the metric, the text status.

Drains move api.ctl.test from its pool to its fallback, then to its backup;
each view must say so, and agree with the DNS answer.
"""

from __future__ import annotations

from collections.abc import Callable

from .ctl_server import EU, SITES, Ctl, scrape


def _serving(ctl: Ctl) -> dict[str, object]:
    code, status = ctl.get("/v1/status")
    assert code == 200
    [record] = status["records"]
    assert (record["zone"], record["name"], record["type"]) == ("ctl.test.", "api.ctl.test.",
                                                                "A")
    [rule] = record["rules"]
    assert rule["serving"] == record["serving"]
    return dict(rule)


def _gauge(ctl: Ctl) -> dict[str, float]:
    got = scrape(ctl)
    return {dict(labels)["serving"]: value for (name, labels), value in got.items()
            if name == "dnsfail_record_serving" and dict(labels)["record"] == "api.ctl.test."}


def test_pools_then_fallback_then_backup(start: Callable[..., Ctl]) -> None:
    ctl = start()
    rule = _serving(ctl)
    assert (rule["serving"], rule["pool"], rule["addresses"]) == ("pools", "eu", EU)
    assert rule["why"] == "pool eu: 2/2 up"
    assert _gauge(ctl) == {"pools": 1.0, "fallback": 0.0, "backup": 0.0, "all_down": 0.0}
    text = ctl.cli("status").stdout
    assert f"record api.ctl.test A now answers pool eu: {', '.join(EU)}, ttl" in text

    for site in EU:
        assert ctl.post("/v1/drain", {"target": site, "for": "10m", "reason": "t"})[0] == 200
    rule = _serving(ctl)
    assert (rule["serving"], rule["pool"], rule["addresses"]) == ("fallback", "us", [SITES[2]])
    assert ctl.answer() == [SITES[2]]
    assert _gauge(ctl)["fallback"] == 1.0
    assert "now answers pool us (FALLBACK)" in ctl.cli("status").stdout

    assert ctl.post("/v1/drain", {"target": SITES[2], "for": "10m", "reason": "t",
                                  "force": True})[0] == 200  # strands the record: on purpose
    rule = _serving(ctl)
    assert (rule["serving"], rule["pool"], rule["addresses"]) == ("backup", None, ["192.0.2.99"])
    assert ctl.answer() == ["192.0.2.99"]
    assert _gauge(ctl) == {"pools": 0.0, "fallback": 0.0, "backup": 1.0, "all_down": 0.0}
    text = ctl.cli("status").stdout
    assert "record api.ctl.test A now answers BACKUP values: 192.0.2.99" in text
    assert "why: pool eu: 0/2 up -> fallback us: 0/1 up -> all down: backup values" in text
