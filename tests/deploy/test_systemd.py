"""deploy/systemd/dnsfail.service: what the unit promises, checked by systemd's own tools."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from dnsfail.cli.main import build_parser

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "dnsfail.service"
#: ExecStart's program as the unit names it; replaced by a stub for ``verify``, which
#: insists that it exists.
PROGRAM = "/opt/dnsfail/bin/dnsfail"
#: Highest ``systemd-analyze security`` exposure accepted (0 best, 10 worst; "OK" < 4).
MAX_EXPOSURE = 2.0


def settings() -> dict[str, list[str]]:
    """``Key=value`` assignments of the unit (every section), repeated keys in order."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_a_notify_service_with_one_capability() -> None:
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["DynamicUser"] == ["yes"]
    assert s["StateDirectory"] == ["dnsfail"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert s["SystemCallFilter"][0] == "@system-service"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "MemoryDenyWriteExecute"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert "-HUP $MAINPID" in s["ExecReload"][0]
    assert re.fullmatch(r"\d+s", s["WatchdogSec"][0])


def test_exec_start_is_a_valid_serve_command_line() -> None:
    """The unit's command line parses with dnsfail's own parser, and names no state
    file: $STATE_DIRECTORY (StateDirectory=) gives it."""
    argv = shlex.split(settings()["ExecStart"][0].replace("%H", "host"))
    assert argv[0] == PROGRAM
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.state_file is None
    assert ("0.0.0.0", 53) in args.listen


def _stubbed(tmp_path: Path) -> Path:
    stub = tmp_path / "dnsfail"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "dnsfail.service"
    unit.write_text(UNIT.read_text().replace(PROGRAM, str(stub)))
    return unit


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return found


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    done = subprocess.run([_analyze(), "verify", str(_stubbed(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not done.stderr.strip(), done.stderr


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    done = subprocess.run([_analyze(), "security", "--offline=yes", "--no-pager",
                           str(_stubbed(tmp_path))], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline is not supported: {done.stderr[:200]}")
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout
