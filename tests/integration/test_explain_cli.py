"""``dnsfail explain`` as a new user types it: what it says without --client, and the
clear refusals of a bad --client, --ecs or --type (issue 17)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import ROOT

ZONES = str(ROOT / "zones")


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsfail", "explain", "api.gw.example.com",
                           "--zones", ZONES, "--no-probe", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_without_client_no_ecs_is_mentioned() -> None:
    done = explain()
    assert done.returncode == 0, done.stderr
    assert "ECS source prefix" not in done.stdout
    assert "from no client address" in done.stdout
    assert "placement: no client address; rule 1 (catch-all) matched" in done.stdout


def test_with_ecs_prefix_zero_it_is_named() -> None:
    done = explain("--ecs", "0.0.0.0/0")
    assert done.returncode == 0, done.stderr
    assert "client unknown (ECS source prefix 0)" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--client", "notanip"], "--client 'notanip' is not an IP address"),
    (["--client", "192.0.2.300"], "--client '192.0.2.300' is not an IP address"),
    (["--ecs", "nonsense/99"], "--ecs 'nonsense/99' is not a subnet like 192.0.2.0/24"),
    (["--type", "BOGUS"], "--type 'BOGUS' is not a query type: one of A, NS, CNAME"),
])
def test_bad_options_are_refused_clearly(args: list[str], message: str) -> None:
    done = explain(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_type_is_case_insensitive() -> None:
    done = explain("--type", "aaaa")
    assert done.returncode == 0, done.stderr
    assert "api.gw.example.com. AAAA" in done.stdout
