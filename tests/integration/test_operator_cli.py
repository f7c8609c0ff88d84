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


def test_explain_server_asks_the_running_server_and_names_it(
        start: Callable[..., Ctl], zone_dir: Path, tmp_path: Path) -> None:
    """``explain --server`` shows the live drain (the offline mode cannot know it)."""
    ctl = start("--identity", "ns-explain-1", token="explain-token")
    token = tmp_path / "token"
    done = ctl.cli("drain", SITES[1], "--for", "5m", "--reason", "explain test",
                   token_file=token)
    assert done.returncode == 0, done.stderr
    done = ctl.cli("explain", "api.ctl.test", "--client", "192.0.2.7", token_file=token)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("server ns-explain-1 (pid "), done.stdout
    assert_names_server(done.stdout, ctl, zone_dir)
    drained = [x.split() for x in done.stdout.splitlines() if x.strip().startswith(SITES[1])]
    assert drained, done.stdout
    assert drained[0][1:4] == ["DOWN", "(status:", "down,"], done.stdout
    assert f"answer: {SITES[0]}, ttl" in done.stdout
    assert f"override {SITES[1]} DOWN until" in done.stdout
    assert "query api.ctl.test. A from client 192.0.2.7" in done.stdout

    refused = ctl.cli("explain", "api.ctl.test", "--server", token_file=tmp_path / "none")
    assert refused.returncode == 2
    assert "token" in refused.stderr
    assert "Traceback" not in refused.stderr
    (tmp_path / "wrong").write_text("wrong\n")
    refused = ctl.cli("explain", "api.ctl.test", token_file=tmp_path / "wrong")
    assert refused.returncode == 2
    assert "the token was rejected" in refused.stderr
    bad = ctl.cli("explain", "a..b", token_file=token)
    assert bad.returncode == 2
    assert f"127.0.0.1:{ctl.port} answered 400" in bad.stderr, bad.stderr
    mixed = ctl.cli("explain", "api.ctl.test", "--no-probe", token_file=token)
    assert mixed.returncode == 2
    assert "--no-probe: offline options" in mixed.stderr
