"""The default state file: where drains are kept when ``--state-file`` is not given.

The old default, ``./dnsfail-state.json``, depended on the working directory: a
drain set by a server started from one directory was gone when it was started
from another.  The rule follows where other daemons keep their state:

1. ``$STATE_DIRECTORY/state.json``: systemd sets ``STATE_DIRECTORY`` for a unit
   with ``StateDirectory=dnsfail`` (``/var/lib/dnsfail``, or a private one under
   ``DynamicUser=``); with several directories it is colon-separated, the first wins
   (systemd.exec(5), "RuntimeDirectory=, StateDirectory=...");
2. ``/var/lib/dnsfail/state.json`` when running as root, or when that directory
   already exists and is writable by this user (a system service, a container image);
3. ``$XDG_STATE_HOME/dnsfail/state.json``, ``~/.local/state/dnsfail/state.json``
   when ``XDG_STATE_HOME`` is unset or not absolute (XDG Base Directory
   Specification 0.8: "$XDG_STATE_HOME defines the base directory relative to which
   user-specific state files should be stored", relative values "should be ignored").

``--state-file PATH`` and ``DNSFAIL_STATE_FILE`` still override it (``''``: in
memory only).  ``default_state_file`` is pure (the environment, the user id and a
"is this directory writable" answer are arguments); ``state_file`` asks the host.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

#: The system-wide state directory (FHS 3.0 section 5.8: /var/lib holds "state
#: information pertaining to an application"); systemd's StateDirectory=dnsfail is it.
SYSTEM_STATE_DIR = Path("/var/lib/dnsfail")
#: The file's name inside whichever directory the rule picks.
STATE_FILE_NAME = "state.json"
#: Mode of a state directory dnsfail creates itself: the drains' reasons and authors are
#: nobody else's business (XDG asks for 0700 on the directories it defines).
STATE_DIR_MODE = 0o700


def default_state_file(env: Mapping[str, str], euid: int, home: str,
                       writable: Callable[[Path], bool]) -> Path:
    """The state file the rule of this module's docstring picks, for this environment."""
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / STATE_FILE_NAME
    if euid == 0 or writable(SYSTEM_STATE_DIR):
        return SYSTEM_STATE_DIR / STATE_FILE_NAME
    xdg = env.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(home) / ".local" / "state"
    return base / "dnsfail" / STATE_FILE_NAME


def state_file(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    """``--state-file`` if given, else ``$DNSFAIL_STATE_FILE``, else the default rule;
    None (memory only) for an empty value."""
    env = os.environ if env is None else env
    chosen = explicit if explicit is not None else env.get("DNSFAIL_STATE_FILE")
    if chosen is not None:
        return Path(chosen) if chosen else None
    try:
        home = str(Path.home())
    except (KeyError, RuntimeError):  # no $HOME and no passwd entry (a dynamic user)
        home = "/"
    return default_state_file(env, os.geteuid(), home, _writable_dir)


def prepare_state_dir(path: Path | None) -> None:
    """Make the state file's directory (``~/.local/state/dnsfail`` is often missing) and
    log where drains are kept.  A directory that cannot be made is a warning (drains will
    be refused until it exists), not a reason to serve no DNS."""
    if path is None:
        log.info("drains are kept in memory only (--state-file '')")
        return
    try:
        path.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("state file %s: cannot create its directory: %s; drains will fail until "
                    "it exists", path, exc.strerror or exc)
        return
    log.info("drains are kept in %s", path)


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
