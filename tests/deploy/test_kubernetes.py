"""deploy/kubernetes/dnsfail.yaml: parses, and what it wires (probes, ports, zones, token,
security context) matches what the daemon and its image do.  kubectl is not available on
this machine, so the manifest is checked here rather than applied to a cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfail.cli.main import build_parser
from dnsfail.zonefile import load_zones

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "dnsfail.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def objects() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {d["kind"]: d for d in docs}


def _container(objects: dict[str, Any]) -> dict[str, Any]:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def _args(objects: dict[str, Any]) -> Any:
    argv = [a.replace("$(POD_NAME)", "dnsfail-0") for a in _container(objects)["args"]]
    return build_parser().parse_args(argv)


def test_the_manifest_has_what_it_says(objects: dict[str, Any]) -> None:
    assert set(objects) == {"ConfigMap", "Deployment", "Service"}


def test_args_are_a_valid_serve_command_line(objects: dict[str, Any]) -> None:
    args = _args(objects)
    assert args.command == "serve"
    assert args.control == ("0.0.0.0", 8053)
    assert args.control_token_file, "a control API beyond loopback needs a token"
    assert ("0.0.0.0", 53) in args.listen


def test_probes_reach_healthz_and_readyz_on_the_control_port(objects: dict[str, Any]) -> None:
    c = _container(objects)
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["control"]["containerPort"] == _args(objects).control[1]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "control"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "control"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "control"}


def test_dns_ports_match_listen_and_the_service(objects: dict[str, Any]) -> None:
    c = _container(objects)
    listen_ports = {port for _, port in _args(objects).listen}
    ports = {p["name"]: p for p in c["ports"]}
    assert {ports["dns-udp"]["protocol"], ports["dns-tcp"]["protocol"]} == {"UDP", "TCP"}
    assert {ports["dns-udp"]["containerPort"], ports["dns-tcp"]["containerPort"]} == listen_ports
    service = objects["Service"]["spec"]
    assert service["selector"] == objects["Deployment"]["spec"]["selector"]["matchLabels"]
    got = {(p["port"], p["protocol"], p["targetPort"]) for p in service["ports"]}
    assert got == {(53, "UDP", "dns-udp"), (53, "TCP", "dns-tcp")}


def test_volumes_hold_the_zones_the_token_and_the_state(objects: dict[str, Any]) -> None:
    c = _container(objects)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in objects["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    args = _args(objects)
    assert args.paths == [mounts["zones"]]
    assert volumes["zones"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert Path(args.control_token_file).parent == Path(mounts["control-token"])
    assert volumes["control-token"]["secret"]["secretName"] == "dnsfail-control"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert Path(env["DNSFAIL_STATE_FILE"]).parent == Path(mounts["state"])


def test_the_zones_in_the_configmap_load(objects: dict[str, Any], tmp_path: Path) -> None:
    for name, text in objects["ConfigMap"]["data"].items():
        (tmp_path / name).write_text(text)
    zones = load_zones([str(tmp_path)])
    assert "gw.example.com." in zones


def test_it_runs_as_the_images_user_with_one_capability(objects: dict[str, Any]) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    c = _container(objects)["securityContext"]
    assert pod["runAsNonRoot"] is True
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.M)
    assert user is not None, "the image's USER must be numeric for runAsNonRoot"
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(user[1]), int(user[2]))
    assert c["readOnlyRootFilesystem"] is True
    assert c["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    # no_new_privs would make the kernel ignore the image's file capability.
    assert c["allowPrivilegeEscalation"] is True

