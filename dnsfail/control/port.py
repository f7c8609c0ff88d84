"""What the control API and the metrics may ask of the server: the ``ControlPort`` protocol.

``control`` never imports ``serve``: the daemon (``serve.app.Daemon``)
implements these protocols structurally, and ``control.api``,
``control.status`` and ``control.metrics`` see only what is written here.
A second implementation (a test double, or a cluster of instances sharing
drains) needs nothing else.

* :class:`Counters`: what a Prometheus scrape reads besides the query
  counters (``metrics.Source`` is this protocol);
* :class:`DrainService`: set and end operator overrides, and say what an
  override matches and when its drain is complete;
* :class:`ReloadService`: reload the zones, and the facts of the last reload;
* :class:`ControlPort`: all of it, plus the status facts of the process.

Typing only: this module imports no I/O library and nothing from ``serve``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from dnsfail.dns.explain import Answerer
from dnsfail.events.log import EventLog
from dnsfail.model import ProbeSpec, Status, Zone
from dnsfail.state import Store
from dnsfail.steering.overrides import Match, Override, Selector


class Counters(Protocol):
    """What the metrics collector reads from the server at scrape time."""

    @property
    def store(self) -> Store | None: ...

    @property
    def ready(self) -> bool: ...

    @property
    def tcp_open(self) -> int: ...

    @property
    def config_generation(self) -> int: ...

    @property
    def udp_dropped_sends(self) -> int: ...

    @property
    def tcp_closed(self) -> Mapping[str, int]: ...

    @property
    def control_closed(self) -> Mapping[str, int]: ...

    @property
    def cookie_counts(self) -> Mapping[str, int]:
        """The cookie stage's counters summed over processes (cookies.stage.COUNTERS)."""
        ...


class DrainService(Protocol):
    """Operator overrides: the one writer of drains (``serve.drains.Drains``)."""

    def override_matches(self, o: Override) -> tuple[Match, ...]: ...

    def drain_complete_at(self, o: Override) -> float: ...

    async def drain(self, selector: Selector, state: Status, seconds: float, reason: str,
                    by: str, force: bool = False) -> dict[str, Any]: ...

    async def undrain(self, selector: Selector, by: str) -> dict[str, Any]: ...


class ReloadService(Protocol):
    """All-or-nothing zone reloads and their record (``serve.reload.Reloader``)."""

    @property
    def last_reload(self) -> dict[str, Any] | None: ...

    @property
    def config_generation(self) -> int: ...

    @property
    def zone_loaded(self) -> Mapping[str, float]: ...

    async def reload(self, trigger: str = "") -> list[str]: ...


class Exposition(Protocol):
    """The metrics registry, rendered for ``GET /metrics``."""

    def render(self) -> bytes: ...


class ClusterPort(Protocol):
    """A member of an NS set (``cluster.daemon.ClusterFacade``); standalone has none.

    Found as ``port.cluster`` by :func:`cluster_of`, so the standalone daemon needs no
    attribute for it.
    """

    def message(self, peer_digest: str | None) -> dict[str, Any]: ...

    async def receive(self, raw: bytes) -> str | None: ...

    def status(self) -> dict[str, Any]: ...

    def explain(self, spec: ProbeSpec) -> str | None: ...

    @property
    def degraded(self) -> bool: ...

    @property
    def epoch(self) -> str: ...

    def reachable(self) -> dict[str, bool]: ...

    def clock_offsets(self) -> dict[str, float]: ...

    @property
    def rejected(self) -> dict[str, int]: ...

    @property
    def errors(self) -> dict[tuple[str, str], int]: ...


def cluster_of(port: object) -> ClusterPort | None:
    """The port's cluster side, or None for a standalone instance."""
    found: ClusterPort | None = getattr(port, "cluster", None)
    return found


class ControlPort(Counters, Protocol):
    """Everything the control API reads or asks of the server."""

    @property
    def identity(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    @property
    def first_round(self) -> str: ...

    @property
    def state_path(self) -> Path | None: ...

    @property
    def zones(self) -> dict[str, Zone]: ...

    @property
    def overrides(self) -> list[Override]: ...

    @property
    def handler(self) -> Answerer | None: ...

    @property
    def drains(self) -> DrainService: ...

    @property
    def reloads(self) -> ReloadService: ...

    @property
    def metrics(self) -> Exposition: ...

    @property
    def events(self) -> EventLog: ...

    def workers_status(self) -> list[dict[str, Any]]: ...

    def about(self) -> dict[str, Any]:
        """Which server this is: identity, pid, version, listen and control addresses,
        zone paths and state file (named by ``dnsfail status`` and every CLI write)."""
        ...
