"""docker/: the files agree with each other and with the daemon, without a Docker engine.
The image is built, run and drilled for real by .ci/docker-drill (a job of its own: it
takes minutes, see the README's Docker section)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfail.cli.main import build_parser
from dnsfail.model import pool_values
from dnsfail.zonefile import load_zones

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
#: The only address space the project's Docker networks may use.
ALLOWED = ipaddress.ip_network("172.29.0.0/16")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def _address(service: dict[str, Any]) -> str:
    return str(service["networks"]["drill"]["ipv4_address"])


def test_networks_stay_in_172_29(compose: dict[str, Any]) -> None:
    (subnet,) = [ipaddress.ip_network(c["subnet"])
                 for c in compose["networks"]["drill"]["ipam"]["config"]]
    assert subnet.subnet_of(ALLOWED)  # type: ignore[arg-type]
    for name, service in compose["services"].items():
        assert ipaddress.ip_address(_address(service)) in subnet, name
    for script in (DOCKER / "drill.sh", ROOT / ".ci" / "docker-drill"):
        for found in re.findall(r"\b172\.\d+\.\d+\.\d+(?:/\d+)?", script.read_text()):
            assert ipaddress.ip_network(found, strict=False).subnet_of(ALLOWED), found  # type: ignore[arg-type]


def test_compose_1_29_can_read_it(compose: dict[str, Any]) -> None:
    """docker-compose 1.29 rejects a top-level ``name:`` (v2 only); drill.sh passes -p."""
    assert "name" not in compose
    assert "-p dnsfail-drill" in (DOCKER / "drill.sh").read_text()


def test_every_dnsfail_service_has_one_capability_and_valid_arguments(
        compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("image") != "dnsfail:drill":
            continue
        assert service["cap_drop"] == ["ALL"], name
        assert service["cap_add"] == ["NET_BIND_SERVICE"], name
        args = build_parser().parse_args(service["command"])
        assert args.command in ("serve", "site"), name


def test_the_drill_zone_points_at_the_compose_sites(compose: dict[str, Any]) -> None:
    zones = load_zones([str(DOCKER / "zones")])
    values = {v.value for _, _, _, v in pool_values(zones)}
    sites = {_address(s) for n, s in compose["services"].items() if n.startswith("site-")}
    assert {str(v) for v in values} == sites
    drill = (DOCKER / "drill.sh").read_text()
    ns = re.search(r"^NS=\((.*)\)$", drill, re.M)
    assert ns is not None
    assert ns[1].split() == [_address(compose["services"][n]) for n in ("ns1", "ns2")]
    assert f"EU={_address(compose['services']['site-eu'])}" in drill


def test_the_base_is_an_argument_defaulting_to_the_official_image() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.12-slim$", text, re.M)
    assert re.search(r"^FROM \$\{BASE\}$", text, re.M)
    assert re.search(r"^USER \d+:\d+$", text, re.M)


@pytest.mark.parametrize("ignored", [".git", ".venv", "**/__pycache__", ".pytest_cache",
                                     ".mypy_cache", ".hypothesis", "tests", "*.egg-info"])
def test_dockerignore_keeps_the_context_small(ignored: str) -> None:
    assert ignored in (ROOT / ".dockerignore").read_text().splitlines()
