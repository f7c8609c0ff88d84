"""Types of the compiled UDP drain (``_datagrams.c``); see ``serve.server.UdpListener``."""

from collections.abc import Callable

from dnsfail.state import Snapshot

#: Datagrams per recvmmsg/sendmmsg call.
BATCH: int
#: Bytes per receive slot: the largest UDP payload.
SLOT: int

class Datagrams:
    def __init__(
        self,
        fd: int,
        handle: Callable[[bytes, bool, str], bytes | None],
        snapshot: Callable[[], Snapshot] | None,
        counts: list[int],
        timer: Callable[[float], None],
        report: Callable[[BaseException, int], None],
        sample_every: int,
        plain_counts: list[int] | None = None,
        plain_slot: int = 0,
    ) -> None: ...
    def drain(self, limit: int, /) -> tuple[int, int, int]:
        """Answer up to ``limit`` datagrams: (read, dropped sends, failed sends)."""
