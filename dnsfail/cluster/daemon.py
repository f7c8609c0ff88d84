"""The daemon with peers: ``serve.app.Daemon`` plus the node, the exchange and replicated drains.

``dnsfail serve --peer URL ...`` runs this class instead of ``Daemon``
(``serve.app.run(settings, ClusterDaemon)``); without ``--peer`` nothing here
is imported, so a standalone instance behaves exactly as before.  What it
changes: probe results go to the node (own rise/fall, then the quorum
verdict into the store), drains go through :class:`ClusterDrains`, and the
exchange's tasks start with the daemon and are cancelled before it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from dnsfail.cluster.drains import ClusterDrains
from dnsfail.cluster.exchange import REQUEST_TIMEOUT, Exchange
from dnsfail.cluster.node import Node, status
from dnsfail.cluster.settings import ClusterSettings
from dnsfail.model import ProbeSpec
from dnsfail.serve.app import Daemon, Settings

log = logging.getLogger("dnsfail.cluster")


class ClusterDaemon(Daemon):
    """A member of an NS set (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        assert settings.cluster is not None
        cs: ClusterSettings = settings.cluster
        self.node = Node(cs, settings.identity, lambda: self.store)
        self.drains = ClusterDrains(self.state_path, self.metrics, self.node)
        self.drains.events = self.events  # drains are events here too (/v1/events, webhooks)
        self.exchange = Exchange(self.node, settings.control_token, self.drains.merge_remote)
        self.drains.push = self.exchange.push_all

    @property
    def cluster(self) -> ClusterFacade:
        return ClusterFacade(self)

    def _on_probe(self, spec: ProbeSpec, ok: bool, detail: str, latency: float,
                  at: float) -> None:
        self.metrics.observe_probe(spec, ok, latency)
        self.node.observe(spec, ok, detail, latency, at)

    async def _first_probe_round(self) -> None:
        await self.exchange.start()
        await super()._first_probe_round()
        await self.exchange.first_round(REQUEST_TIMEOUT)
        log.info("cluster: %d configured instance(s), hearing %d; instance %s boot %s",
                 self.node.n, self.node.heard(self.node.mono()), self.node.instance,
                 self.node.boot)

    async def _targets_changed(self, targets: Iterable[ProbeSpec]) -> None:
        specs = set(targets)
        self.node.retarget(specs)
        await super()._targets_changed(specs)

    async def stop(self) -> None:
        await self.exchange.stop()
        await super().stop()


class ClusterFacade:
    """What the control API asks of a clustered instance (``control.port.ClusterPort``)."""

    def __init__(self, daemon: ClusterDaemon) -> None:
        self.node = daemon.node
        self.exchange = daemon.exchange

    def message(self, peer_digest: str | None) -> dict[str, Any]:
        return self.node.encoded(peer_digest)

    async def receive(self, raw: bytes) -> str | None:
        """A pushed message; None when taken, else why it was refused."""
        ok = await self.exchange.take(raw, None)
        return None if ok else "refused (see the log and dnsfail_cluster_rejected_total)"

    def status(self) -> dict[str, Any]:
        return status(self.node)

    def explain(self, spec: ProbeSpec) -> str | None:
        return self.node.explain(spec)

    @property
    def degraded(self) -> bool:
        return self.node.degraded(self.node.mono())

    @property
    def epoch(self) -> str:
        return self.node.epoch()

    def reachable(self) -> dict[str, bool]:
        now = self.node.mono()
        return {p.url: self.node.reachable(p, now) for p in self.node.others}

    def clock_offsets(self) -> dict[str, float]:
        """Each heard peer's wall clock minus ours, seconds (its last message)."""
        return {p.url: p.clock_offset for p in self.node.others if p.clock_offset is not None}

    @property
    def rejected(self) -> dict[str, int]:
        return dict(self.node.rejected)

    @property
    def errors(self) -> dict[tuple[str, str], int]:
        return dict(self.node.errors)
