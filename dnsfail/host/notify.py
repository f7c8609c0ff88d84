"""The service manager's notification protocol (``sd_notify``), written by hand.

systemd starts a ``Type=notify`` service with ``$NOTIFY_SOCKET`` naming a Unix
datagram socket, and reads newline-separated ``KEY=VALUE`` assignments from it
(sd_notify(3)):

* ``READY=1``: start-up is finished.  dnsfail sends it at the moment ``/readyz``
  turns ready: zones loaded, sockets bound, the first probe round done (or timed
  out), DNS answered.  Until then ``systemctl start`` waits, and units ordered
  ``After=dnsfail.service`` do not start yet;
* ``STATUS=...``: one line for ``systemctl status`` (zones, targets up and down,
  drains, the last reload);
* ``STOPPING=1``: shutdown has begun;
* ``WATCHDOG=1``: the event loop is alive; sent every half ``$WATCHDOG_USEC``
  (sd_watchdog_enabled(3) recommends half), only if ``$WATCHDOG_PID`` is unset or
  is this process.  A stalled loop sends nothing and systemd restarts the service
  (``WatchdogSec=`` in the unit).

An address starting with ``@`` is in the abstract namespace (the ``@`` stands for a
leading NUL byte); one starting with ``/`` is a path; anything else (``vsock:``)
is not supported and is ignored with a warning.  No library: it is one
``sendto`` of at most ``MAX_DATAGRAM`` bytes, never blocking, never raising: a
manager that cannot be told must not stop DNS.

The pure part (``parse_address``, ``message``, ``watchdog_interval``) has no I/O;
``Notifier`` is the adapter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping

log = logging.getLogger(__name__)

#: Largest datagram sent.  systemd reads up to its pipe buffer (far more), but a
#: ``STATUS=`` line is for a terminal: a longer one is cut, never split over datagrams.
MAX_DATAGRAM = 4096
#: Longest ``STATUS=`` text, in characters (``systemctl status`` shows one line).
MAX_STATUS = 400
#: Seconds between checks of whether the status line changed (when no watchdog asks for
#: a shorter period): often enough for ``systemctl status`` during a drill.
STATUS_INTERVAL = 5.0
#: The variables the protocol uses; removed from the environment once read, so that
#: no child process (a ``--workers`` process) speaks for the service (sd_notify(3)'s
#: ``unset_environment``).
VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def parse_address(text: str) -> str | bytes | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address; None if it is not one we can use."""
    if text.startswith("@") and len(text) > 1:
        return b"\0" + os.fsencode(text[1:])
    if text.startswith("/"):
        return text
    return None


def message(**fields: str) -> bytes:
    """One datagram of ``KEY=VALUE`` lines; a value cannot break the line it is on."""
    lines = []
    for key, value in fields.items():
        value = " ".join(value.split())  # no newline may start a forged assignment
        if key == "STATUS" and len(value) > MAX_STATUS:
            value = value[: MAX_STATUS - 3] + "..."
        lines.append(f"{key}={value}")
    return "\n".join(lines).encode("utf-8", "replace")[:MAX_DATAGRAM]


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the manager's timeout), or None."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 2e6


class Notifier:
    """Tells the service manager how dnsfail is; does nothing without ``$NOTIFY_SOCKET``."""

    def __init__(self, address: str | bytes | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None
        self._sock: socket.socket | None = None
        self._warned = False
        self._last_status = ""
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> Notifier:
        """From ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``, which are then unset."""
        env = os.environ if env is None else env
        found = {name: env.pop(name) for name in VARIABLES if name in env}
        text = found.get("NOTIFY_SOCKET", "")
        address = parse_address(text) if text else None
        if text and address is None:
            log.warning("NOTIFY_SOCKET=%s: only /path and @abstract sockets are supported; "
                        "not notifying the service manager", text)
        return cls(address, watchdog_interval(found, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram; False (logged once) when the manager cannot be reached."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto(message(**fields), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify the service manager at NOTIFY_SOCKET: %s",
                            exc.strerror or exc)
            return False
        return True

    def status(self, text: str) -> None:
        """``STATUS=text``, if it differs from the last one sent."""
        if text != self._last_status:
            self._last_status = text
            self.send(STATUS=text)

    def ready(self, text: str) -> None:
        self._last_status = text
        self.send(READY="1", STATUS=text)

    def stopping(self) -> None:
        self._last_status = "stopping"
        self.send(STOPPING="1", STATUS="stopping")

    async def keep_alive(self, describe: Callable[[], str]) -> None:
        """Forever: ``WATCHDOG=1`` every half watchdog period, and ``STATUS=`` whenever
        ``describe()`` changes (checked at least every ``STATUS_INTERVAL``)."""
        period = min(STATUS_INTERVAL, self.watchdog or STATUS_INTERVAL)
        while True:
            if self.watchdog is not None:
                self.send(WATCHDOG="1")
            self.status(describe())
            await asyncio.sleep(period)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
