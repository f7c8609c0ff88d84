"""The CLI names the server it reached, and ``serve`` never starts without the control API
it was told to have (issue 17): against real ``dnsfail serve`` processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..conftest import DnsfailProcess
from .ctl_server import SITES, Ctl


def assert_names_server(out: str, ctl: Ctl, zone_dir: Path) -> None:
    line = next((x for x in out.splitlines() if x.startswith("server ")), None)
    assert line is not None, out
    assert f"(pid {ctl.server.proc.pid}, dnsfail " in line
    assert f"DNS {ctl.server.host}:{ctl.server.port}" in line
    assert f"control 127.0.0.1:{ctl.port}" in line
    assert f"zones {zone_dir.resolve()}" in line


def test_status_and_every_write_name_the_server(start: Callable[..., Ctl],
                                                zone_dir: Path) -> None:
    ctl = start("--identity", "ns-ops-1")
    done = ctl.cli("status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("server ns-ops-1 (pid ")
    assert_names_server(done.stdout, ctl, zone_dir)
    code, status = ctl.get("/v1/status")
    assert code == 200
    assert status["server"]["pid"] == ctl.server.proc.pid
    assert status["server"]["zone_paths"] == [str(zone_dir.resolve())]

    done = ctl.cli("drain", SITES[2], "--for", "5m", "--reason", "ops test")
    assert done.returncode == 0, done.stderr
    assert_names_server(done.stdout, ctl, zone_dir)
    done = ctl.cli("undrain", SITES[2])
    assert done.returncode == 0, done.stderr
    assert_names_server(done.stdout, ctl, zone_dir)
    done = ctl.cli("undrain", SITES[2])  # nothing left to undrain: still says where it asked
    assert done.returncode == 1
    assert_names_server(done.stdout, ctl, zone_dir)
    done = ctl.cli("reload")
    assert done.returncode == 0, done.stderr
    assert_names_server(done.stdout, ctl, zone_dir)


def test_a_busy_control_address_fails_the_start(start: Callable[..., Ctl], zone_dir: Path,
                                                spawn: Callable[..., DnsfailProcess]) -> None:
    first = start()
    second = spawn([str(zone_dir), "--control", f"127.0.0.1:{first.port}",
                    "--state-file", ""])
    assert second.proc.wait(timeout=30) == 1
    assert (f"control API address 127.0.0.1:{first.port} is already in use"
            in second.log), second.log
    assert "--no-control" in second.log
    assert "listening on" not in second.log
    # The first server is untouched, and still the one the CLI reaches.
    assert first.cli("status").returncode == 0


def test_no_control_runs_without_one(spawn: Callable[..., DnsfailProcess],
                                     zone_dir: Path) -> None:
    server = spawn([str(zone_dir), "--no-control", "--state-file", ""]).wait_ready()
    assert "control API on" not in server.log
    assert server.query("ns1.ctl.test.", "A").answer


def test_drain_that_strands_a_record_is_refused_unless_forced(start: Callable[..., Ctl]) -> None:
    ctl = start()
    done = ctl.cli("drain", "api.ctl.test/eu", "--for", "5m", "--reason", "eu maintenance")
    assert done.returncode == 0, done.stderr  # us, the fallback, still answers
    assert ctl.answer() == [SITES[2]]

    done = ctl.cli("drain", SITES[2], "--for", "5m", "--reason", "us too")
    assert done.returncode == 1
    assert "would leave api.ctl.test. A with no healthy pool value" in done.stderr
    assert "  api.ctl.test. A: no healthy pool value left" in done.stderr
    assert "--force" in done.stderr
    assert ctl.answer() == [SITES[2]]  # nothing changed
    code, body = ctl.post("/v1/drain", {"target": SITES[2], "for": "5m", "reason": "api"})
    assert code == 409
    assert body["records"] == ["api.ctl.test. A"]
    code, body = ctl.post("/v1/drain", {"target": SITES[2], "for": "5m", "reason": "api",
                                        "force": "yes"})
    assert code == 400
    assert body["error"] == "force must be true or false"

    done = ctl.cli("drain", SITES[2], "--for", "5m", "--reason", "us too", "--force")
    assert done.returncode == 0, done.stderr
    assert ctl.answer() == ["192.0.2.99"]  # the backup values: what the operator forced
