"""The text ``dnsfail status`` from a status document: the record and worker lines."""

from __future__ import annotations

from dnsfail.cli.ctl import render_status

RULE = {"rule": 1, "matches": "catch-all", "serving": "pools", "pool": "eu",
        "addresses": ["192.0.2.1"], "ttl": 30, "servfail": False, "why": "pool eu: 1/1 up"}


def doc(**extra: object) -> dict[str, object]:
    return {"identity": "ns1", "ready": True, "generation": 3, "config_generation": 1,
            "zones": [], "targets": [], **extra}


def test_each_rule_of_each_record_says_what_it_answers() -> None:
    geo = {**RULE, "rule": 1, "matches": "geos EU", "serving": "fallback", "pool": "us",
           "addresses": ["198.51.100.1"], "why": "pool eu: 0/1 up -> fallback us: 1/1 up"}
    records = [
        {"zone": "a.", "name": "api.a.", "type": "A", "serving": "pools", "rules": [RULE]},
        {"zone": "a.", "name": "geo.a.", "type": "AAAA", "serving": "fallback",
         "rules": [geo, {**RULE, "rule": 2}]},
        {"zone": "a.", "name": "b.a.", "type": "A", "serving": "backup", "rules": [
            {**RULE, "serving": "backup", "pool": None, "addresses": ["192.0.2.99"]}]},
        {"zone": "a.", "name": "s.a.", "type": "A", "serving": "all_down", "rules": [
            {**RULE, "serving": "all_down", "pool": None, "addresses": [], "servfail": True}]},
    ]
    text = render_status(doc(records=records), now=0.0)
    assert "record api.a A now answers pool eu: 192.0.2.1, ttl 30" in text
    assert ("record geo.a AAAA rule 1 (geos EU) now answers pool us (FALLBACK): 198.51.100.1"
            in text)
    assert "record geo.a AAAA rule 2 (catch-all) now answers pool eu" in text
    assert "record b.a A now answers BACKUP values: 192.0.2.99" in text
    assert "record s.a A now answers SERVFAIL (all pools down)" in text
    assert "  why: pool eu: 0/1 up -> fallback us: 1/1 up" in text


def test_workers_show_in_the_text_status() -> None:
    workers = [{"index": 1, "pid": 4242, "alive": True, "ready": True, "generation": 3,
                "restarts": 0, "queries": 17, "tcp_open": 2, "reported_at": 9.0},
               {"index": 2, "pid": None, "alive": False, "ready": False, "generation": 0,
                "restarts": 4, "queries": 0, "tcp_open": 0, "reported_at": None}]
    lines = render_status(doc(workers=workers), now=10.0).splitlines()
    assert lines[-3].split() == ["WORKER", "PID", "STATE", "GENERATION", "RESTARTS", "QUERIES",
                                 "TCP", "REPORTED"]
    assert lines[-2].split() == ["1", "4242", "ready", "3", "0", "17", "2", "1s", "ago"]
    assert lines[-1].split() == ["2", "-", "DEAD", "0", "4", "0", "0", "-"]
    assert "WORKER" not in render_status(doc(), now=0.0)
