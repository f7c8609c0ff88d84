"""steering.stranded: which records a prospective drain leaves with no healthy pool value."""

from __future__ import annotations

import pytest

from dnsfail.model import ProbeSpec, Status
from dnsfail.steering.overrides import Override, ValueIndex, apply, parse_selector
from dnsfail.steering.stranded import WouldStrand, has_healthy_value, stranded
from dnsfail.zonefile import load_zones

ZONE = """\
'':
  type: NS
  value: ns1.s.test.
api:
  dynamic:
    pools:
      eu: {fallback: us, values: [{value: 192.0.2.1}, {value: 192.0.2.2}]}
      us: {values: [{value: 192.0.2.3}]}
    rules:
    - pool: eu
  octodns:
    healthcheck: {port: 80, protocol: TCP}
  ttl: 30
  type: A
  values: [192.0.2.99]
web:
  dynamic:
    pools:
      one: {values: [{value: 192.0.2.3}]}
    rules:
    - pool: one
  octodns:
    healthcheck: {port: 80, protocol: TCP}
  ttl: 30
  type: A
  values: [192.0.2.98]
plain:
  dynamic:
    pools:
      only: {values: [{value: 192.0.2.7}]}
    rules:
    - pool: only
  ttl: 30
  type: A
  values: [192.0.2.97]
ns1:
  type: A
  value: 192.0.2.53
"""


@pytest.fixture(scope="module")
def zones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    path = tmp_path_factory.mktemp("stranded") / "s.test.yaml"
    path.write_text(ZONE)
    return dict(load_zones([str(path)]))


def health(down: set[str], unknown: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    def is_up(spec: ProbeSpec) -> bool | None:
        if spec.address in unknown:
            return None
        return spec.address not in down
    return is_up


def check(zones: dict[str, object], drains: list[str], selector: str, down: set[str],
          unknown: frozenset[str] = frozenset()) -> list[str]:
    """What ``drain selector`` strands, with ``drains`` already in force."""
    values = ValueIndex.build(zones)  # type: ignore[arg-type]
    now = 1000.0
    existing = [Override(s, Status.DOWN, "t", now - 1, now + 60) for s in drains]
    before = apply(zones, existing, now, values)  # type: ignore[arg-type]
    touched = values.lookup(parse_selector(selector))
    got = stranded(before, health(down, unknown), touched)
    # The same verdict as applying the new override to every zone (what answers will use).
    new = Override(selector, Status.DOWN, "t", now, now + 60)
    after = apply(zones, [*existing, new], now, values)  # type: ignore[arg-type]
    is_up = health(down, unknown)
    for m in touched:
        record = after[m.zone].dynamic[(m.record.name, m.record.rtype)]  # type: ignore[attr-defined]
        healthy_before = has_healthy_value(
            before[m.zone].dynamic[(m.record.name, m.record.rtype)], is_up)
        lost = healthy_before and not has_healthy_value(record, is_up)
        assert (f"{m.record.name} {m.record.rtype.name}" in got) == lost
    return got


@pytest.mark.parametrize(("drains", "selector", "down", "unknown", "want"), [
    # One eu value: eu still has the other, nothing stranded.
    ([], "192.0.2.1", set(), frozenset(), []),
    # The whole eu pool: us (the fallback) still answers.
    ([], "api.s.test/eu", set(), frozenset(), []),
    # us serves api (fallback) and web (only pool): web is stranded, api keeps eu.
    ([], "192.0.2.3", set(), frozenset(), ["web.s.test. A"]),
    # eu already drained; draining us leaves api nothing (and web nothing).
    (["api.s.test/eu"], "192.0.2.3", set(), frozenset(), ["api.s.test. A", "web.s.test. A"]),
    # eu's values are down by probe, not drained: draining us strands api just the same.
    ([], "192.0.2.3", {"192.0.2.1", "192.0.2.2"}, frozenset(),
     ["api.s.test. A", "web.s.test. A"]),
    # A target not probed yet counts as up (selection serves it): not stranded.
    ([], "api.s.test/us", {"192.0.2.1"}, frozenset({"192.0.2.2"}), []),
    # Everything already down: draining a dead site is not what strands the record.
    ([], "192.0.2.3", {"192.0.2.1", "192.0.2.2", "192.0.2.3"}, frozenset(), []),
    # A value without a health check is always up; draining it strands its record.
    ([], "192.0.2.7", set(), frozenset(), ["plain.s.test. A"]),
])
def test_stranded(zones: dict[str, object], drains: list[str], selector: str, down: set[str],
                  unknown: frozenset[str], want: list[str]) -> None:
    assert check(zones, drains, selector, down, unknown) == want


def test_refusal_names_the_records() -> None:
    exc = WouldStrand("192.0.2.3", ["web.s.test. A"])
    assert exc.records == ["web.s.test. A"]
    assert "192.0.2.3 would leave web.s.test. A with no healthy pool value" in str(exc)
