"""What the operator sets for response-rate limiting, and the limits behind the defaults.

The defaults are BIND's (``rate-limit``: window 15, slip 2, IPv4 /24, IPv6
/56, per-class rates equal to ``responses-per-second`` unless given), the
table is larger than BIND's because it costs 32 octets a bucket and is never
resized: see :data:`DEFAULT_TABLE_SIZE`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds of debt a block can run up (BIND ``window``, default 15, range 1-3600): a block
#: that keeps flooding stays limited, and one that goes quiet for ``window`` seconds is
#: forgiven.
DEFAULT_WINDOW = 15
MAX_WINDOW = 3600
#: Every SLIP-th limited response is sent truncated (TC=1, no records) instead of dropped,
#: so a real resolver behind a spoofed block retries over TCP (BIND and NSD default 2;
#: 0 never, 1 always; BIND allows up to 10).
DEFAULT_SLIP = 2
MAX_SLIP = 10
#: Source blocks (BIND and Knot: /24 and /56; NSD uses /64 for IPv6).
DEFAULT_IPV4_PREFIX = 24
DEFAULT_IPV6_PREFIX = 56
#: Highest rate accepted, responses per second per block and class: a typo guard; a rate
#: this high limits nothing a single process can send.
MAX_RATE = 10_000_000
#: Buckets in the shared table (a power of two, 32 octets each: 8 MiB).  BIND's default is
#: 20,000 entries that it grows on demand; this table never grows, so it is sized for the
#: worst case: at 100k queries a second (more than two processes answer) from random spoofed
#: sources, each inserting a bucket, an idle bucket survives 2.6 s on average, while a
#: stream worth limiting is written many times a second and is never the oldest in its
#: probe window (``table.PROBES``), so it keeps its debt.
DEFAULT_TABLE_SIZE = 1 << 18
MIN_TABLE_SIZE = 1 << 10
MAX_TABLE_SIZE = 1 << 24


@dataclass(frozen=True)
class RrlSettings:
    """Response-rate limiting, BIND's ``rate-limit`` options under dnsfail's names.

    ``rate`` is ``responses-per-second``: positive answers a block receives per
    second for one qname and qtype.  The other classes default to ``rate`` (as
    BIND's do); 0 means that class is never limited.
    """

    rate: int
    slip: int = DEFAULT_SLIP
    window: int = DEFAULT_WINDOW
    log_only: bool = False
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    nodata_rate: int | None = None
    nxdomain_rate: int | None = None
    referral_rate: int | None = None
    error_rate: int | None = None
    table_size: int = DEFAULT_TABLE_SIZE

    def rates(self) -> tuple[int, int, int, int, int]:
        """Rates by class, in ``account`` order: answer, NODATA, NXDOMAIN, referral, error."""
        def pick(value: int | None) -> int:
            return self.rate if value is None else value

        return (self.rate, pick(self.nodata_rate), pick(self.nxdomain_rate),
                pick(self.referral_rate), pick(self.error_rate))

    def problems(self) -> list[str]:
        """What is wrong with these settings, one sentence each (empty when usable)."""
        out = []
        if not 1 <= self.rate <= MAX_RATE:
            out.append(f"--rrl-rate must be 1-{MAX_RATE}, not {self.rate}")
        for name, value in (("nodata", self.nodata_rate), ("nxdomain", self.nxdomain_rate),
                            ("referral", self.referral_rate), ("error", self.error_rate)):
            if value is not None and not 0 <= value <= MAX_RATE:
                out.append(f"--rrl-{name}-rate must be 0-{MAX_RATE}, not {value}")
        if not 0 <= self.slip <= MAX_SLIP:
            out.append(f"--rrl-slip must be 0-{MAX_SLIP}, not {self.slip}")
        if not 1 <= self.window <= MAX_WINDOW:
            out.append(f"--rrl-window must be 1-{MAX_WINDOW} seconds, not {self.window}")
        if not 0 <= self.ipv4_prefix <= 32:
            out.append(f"--rrl-ipv4-prefix must be 0-32, not {self.ipv4_prefix}")
        if not 0 <= self.ipv6_prefix <= 128:
            out.append(f"--rrl-ipv6-prefix must be 0-128, not {self.ipv6_prefix}")
        size = self.table_size
        if not MIN_TABLE_SIZE <= size <= MAX_TABLE_SIZE or size & (size - 1):
            out.append(f"--rrl-table-size must be a power of two, {MIN_TABLE_SIZE}-"
                       f"{MAX_TABLE_SIZE}, not {size}")
        return out
