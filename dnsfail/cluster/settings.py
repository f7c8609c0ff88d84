"""What ``--peer`` and its options configure (pure data; parsed by ``cluster.options``)."""

from __future__ import annotations

from dataclasses import dataclass

from dnsfail.cluster.quorum import Fallback

#: Most peers one instance may be given (a full mesh: N x (N-1) requests per interval).
MAX_PEERS = 16


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    #: Control API base URLs of the NS set, this instance's own included or not.
    peers: tuple[str, ...]
    fallback: Fallback = Fallback.HOLD
    #: Seconds between pulls; None: the fastest probe interval.
    interval: float | None = None
    #: TEST ONLY (env DNSFAIL_TEST_CLOCK_SKEW): seconds added to this instance's wall clock
    #: in the cluster layer, to show that votes are judged without comparing clocks.
    clock_skew: float = 0.0
