"""The default state file: the rule as a table (pure), and a real server that keeps drains
where the rule says, whatever its working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnsfail.cli.ctl import render_status
from dnsfail.host.paths import SYSTEM_STATE_DIR, default_state_file, state_file
from tests.conftest import DnsfailProcess, free_port
from tests.integration.ctl_server import SITES, Ctl, zone_text


def _never(path: Path) -> bool:
    return False


def _always(path: Path) -> bool:
    return True


@pytest.mark.parametrize(
    ("env", "euid", "writable", "want"),
    [
        # systemd's StateDirectory= wins over everything, for root and users alike.
        ({"STATE_DIRECTORY": "/var/lib/dnsfail"}, 0, _never, "/var/lib/dnsfail/state.json"),
        ({"STATE_DIRECTORY": "/var/lib/private/dnsfail"}, 61234, _never,
         "/var/lib/private/dnsfail/state.json"),
        ({"STATE_DIRECTORY": "/srv/a:/srv/b"}, 1000, _never, "/srv/a/state.json"),
        ({"STATE_DIRECTORY": "/s", "XDG_STATE_HOME": "/x"}, 1000, _never, "/s/state.json"),
        # root: the system directory, even before it exists.
        ({}, 0, _never, "/var/lib/dnsfail/state.json"),
        ({"XDG_STATE_HOME": "/x"}, 0, _never, "/var/lib/dnsfail/state.json"),
        # a user who may write /var/lib/dnsfail (a container image, a dedicated account).
        ({}, 999, _always, "/var/lib/dnsfail/state.json"),
        # everyone else: XDG.
        ({}, 1000, _never, "/home/u/.local/state/dnsfail/state.json"),
        ({"XDG_STATE_HOME": "/x/state"}, 1000, _never, "/x/state/dnsfail/state.json"),
        ({"XDG_STATE_HOME": "relative/dir"}, 1000, _never,
         "/home/u/.local/state/dnsfail/state.json"),
        ({"XDG_STATE_HOME": ""}, 1000, _never, "/home/u/.local/state/dnsfail/state.json"),
        ({"STATE_DIRECTORY": ""}, 1000, _never, "/home/u/.local/state/dnsfail/state.json"),
    ],
)
def test_the_default_rule(env: dict[str, str], euid: int, writable: object, want: str) -> None:
    assert default_state_file(env, euid, "/home/u", writable) == Path(want)  # type: ignore[arg-type]


def test_the_rule_asks_about_the_system_directory_only() -> None:
    asked: list[Path] = []

    def writable(path: Path) -> bool:
        asked.append(path)
        return False

    default_state_file({}, 1000, "/home/u", writable)
    assert asked == [SYSTEM_STATE_DIR]


@pytest.mark.parametrize(
    ("explicit", "env", "want"),
    [
        ("/given.json", {"DNSFAIL_STATE_FILE": "/env.json", "STATE_DIRECTORY": "/s"},
         "/given.json"),
        ("", {"DNSFAIL_STATE_FILE": "/env.json"}, None),  # --state-file '': memory only
        (None, {"DNSFAIL_STATE_FILE": "/env.json", "STATE_DIRECTORY": "/s"}, "/env.json"),
        (None, {"DNSFAIL_STATE_FILE": ""}, None),
        (None, {"STATE_DIRECTORY": "/s"}, "/s/state.json"),
        ("relative.json", {}, "relative.json"),  # an explicit relative path is the user's
    ],
)
def test_explicit_paths_override_the_rule(explicit: str | None, env: dict[str, str],
                                          want: str | None) -> None:
    got = state_file(explicit, env)
    assert got == (Path(want) if want is not None else None)


def test_status_says_where_drains_are_kept() -> None:
    base = {"identity": "ns1", "ready": True, "zones": [], "targets": [], "overrides": []}
    assert "drains kept in: /s/state.json" in render_status({**base, "state_file": "/s/state.json"})
    assert "drains kept in: memory only" in render_status({**base, "state_file": None})


def _serve(tmp_path: Path, env: dict[str, str | None], *, user: int | None = None) -> Ctl:
    """A real server whose state file is left to the rule (no --state-file, no env)."""
    zones = tmp_path / "zones"
    zones.mkdir()
    site = free_port()  # nothing listens: the targets are down, which is all this needs
    (zones / "ctl.test.yaml").write_text(zone_text(site))
    control = free_port()

    def drop() -> None:  # in the child, before exec: become that user
        assert user is not None
        os.setgroups([])
        os.setgid(user)
        os.setuid(user)

    unset: dict[str, str | None] = {"DNSFAIL_STATE_FILE": None, "STATE_DIRECTORY": None,
                                    "XDG_STATE_HOME": None}
    server = DnsfailProcess([str(zones), "--control", f"127.0.0.1:{control}"],
                            env={**unset, **env}, preexec_fn=drop if user is not None else None)
    return Ctl(server, control)


def _drain_and_find(ctl: Ctl, want: Path) -> None:
    """The server says where drains go, a drain lands there, and status shows the path."""
    try:
        ctl.server.wait_ready()
        assert f"drains are kept in {want}" in ctl.server.log
        code, body = ctl.call("POST", "/v1/drain", {"target": SITES[0], "for": "5m",
                                                     "reason": "state path test"})
        assert code == 200, body
        assert "state path test" in want.read_text()
        code, status = ctl.call("GET", "/v1/status")
        assert status["state_file"] == str(want)
    finally:
        ctl.server.stop()


def test_a_server_under_systemd_keeps_drains_in_its_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state-directory"
    state.mkdir()
    _drain_and_find(_serve(tmp_path, {"STATE_DIRECTORY": str(state)}), state / "state.json")


NOBODY = 65534


def _runs_as_nobody() -> str | None:
    """Why a server cannot run as nobody here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root to start the server as nobody"
    if os.access(SYSTEM_STATE_DIR, os.F_OK):
        return f"{SYSTEM_STATE_DIR} exists: the rule could pick it"

    def drop() -> None:
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    try:
        done = subprocess.run([sys.executable, "-c", "import dnsfail.host.paths"],
                              preexec_fn=drop, capture_output=True, timeout=30,
                              env={**os.environ, "HOME": "/nonexistent"})
    except OSError as exc:
        return f"nobody cannot run {sys.executable}: {exc.strerror}"
    return None if done.returncode == 0 else "nobody cannot import dnsfail from here"


def test_a_user_server_makes_its_xdg_state_directory(tmp_path: Path) -> None:
    """Not root, /var/lib/dnsfail not writable: $XDG_STATE_HOME/dnsfail, made 0700."""
    reason = _runs_as_nobody()
    if reason is not None:
        pytest.skip(reason)
    tmp_path.chmod(0o755)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    os.chown(xdg, NOBODY, NOBODY)
    _drain_and_find(_serve(tmp_path, {"XDG_STATE_HOME": str(xdg), "HOME": "/nonexistent"},
                           user=NOBODY), xdg / "dnsfail" / "state.json")
    assert (xdg / "dnsfail").stat().st_mode & 0o777 == 0o700
