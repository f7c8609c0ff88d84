"""The source a client address counts against (``dnsfail.addresses.source_of``): the TCP
per-source limits and the failed-login limit share it."""

from __future__ import annotations

import pytest

from dnsfail.addresses import source_of


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.2", "192.0.2.2"),  # IPv4: each address on its own
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # same /64
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64 is another source
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: the IPv4 address
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("", ""),
        ("not an address", "not an address"),
    ],
)
def test_source_of(address: str, source: str) -> None:
    assert source_of(address) == source
