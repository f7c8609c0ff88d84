"""A zone of many health-checked targets and a set of drains over it, for the size tests.

Issue 11: ``GET /v1/status`` re-matched every override against every pool
value for every target; these build the size it was measured at (1,000
targets, 100 drains) without any file or socket, so the status, metrics and
explain views can be timed in-process.
"""

from __future__ import annotations

from dnsfail.model import Status, Zone
from dnsfail.steering.overrides import Override, parse_selector
from dnsfail.zonefile import parse_zone

ORIGIN = "big.test."
PORT = 443


def address(k: int) -> str:
    """The k-th site: 10.0.0.1, 10.0.0.2, ... (250 to a /24)."""
    return f"10.{k // 62500}.{k // 250 % 250}.{k % 250 + 1}"


def big_zone_text(targets: int) -> str:
    """``targets // 2`` dynamic records of two pools of two sites; each site in two records."""
    lines = ["'':", "  type: NS", "  value: ns1.big.test.", "ns1:", "  type: A",
             "  value: 192.0.2.1"]
    for i in range(targets // 2):
        eu = [address(2 * i % targets), address((2 * i + 1) % targets)]
        us = [address((2 * i + 2) % targets), address((2 * i + 3) % targets)]
        lines += [
            f"r{i}:",
            "  dynamic:",
            "    pools:",
            f"      eu: {{fallback: us, values: [{{value: {eu[0]}}}, {{value: {eu[1]}}}]}}",
            f"      us: {{values: [{{value: {us[0]}}}, {{value: {us[1]}}}]}}",
            "    rules:",
            "    - pool: eu",
            "  octodns:",
            f"    healthcheck: {{port: {PORT}, protocol: TCP}}",
            "  ttl: 30",
            "  type: A",
            "  values: [192.0.2.99]",
        ]
    return "\n".join(lines) + "\n"


def big_zones(targets: int) -> dict[str, Zone]:
    return {ORIGIN: parse_zone(big_zone_text(targets), "big.test.yaml", ORIGIN, serial=1)}


def drain_selectors(targets: int, drains: int) -> list[str]:
    """``drains`` selectors of every kind: 70 % sites, 20 % targets, the rest record pools,
    and one ``pool:us`` (which touches half the values: every target shows it)."""
    out = ["pool:us"]
    sites, probes = drains * 7 // 10, drains * 2 // 10
    out += [address(k * 7 % targets) for k in range(sites)]
    out += [f"{address((k * 7 + 3) % targets)}:{PORT}" for k in range(probes)]
    out += [f"r{k * 3 % (targets // 2)}.big.test/eu" for k in range(drains - len(out))]
    return out[:drains]


def big_drains(targets: int, drains: int, now: float, seconds: float = 3600.0) -> list[Override]:
    """Active overrides for :func:`drain_selectors`, created a second apart (oldest first)."""
    return [
        Override(parse_selector(text).text, Status.DOWN, f"test drain {n}", now - drains + n,
                 now + seconds, "test")
        for n, text in enumerate(drain_selectors(targets, drains))
    ]
