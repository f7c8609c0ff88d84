"""The shared bucket table: fixed size, bounded probes, shared by processes through its fd."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.rrl.table import PROBES, WORDS, Table


@pytest.fixture
def table() -> Table:
    return Table.create(1024)


def put(table: Table, key: int, tat: float, now: float = 100.0) -> int:
    q, found, _ = table.find(key, now)
    if not found:
        table.put(q, key, tat)
    return q


def test_keys_with_one_home_share_its_probe_window(table: Table) -> None:
    home = 5
    offsets = [put(table, home + n * 1024, 101.0) for n in range(PROBES)]
    assert offsets == [(home + i) * WORDS for i in range(PROBES)]
    for n in range(PROBES):
        assert table.find(home + n * 1024, 100.0)[:2] == (offsets[n], True)


def test_a_full_window_gives_up_the_bucket_nearest_to_full(table: Table) -> None:
    home = 7
    for n in range(PROBES):  # all in debt, the fourth the least
        put(table, home + n * 1024, 103.0 if n != 3 else 101.5)
    offset, found, evicted = table.find(home + PROBES * 1024, 100.0)
    assert (offset, found, evicted) == ((home + 3) * WORDS, False, True)


def test_a_bucket_full_again_is_taken_without_loss(table: Table) -> None:
    home = 9
    for n in range(PROBES):
        put(table, home + n * 1024, 103.0 if n != 6 else 99.0)  # the seventh is full again
    offset, found, evicted = table.find(home + PROBES * 1024, 100.0)
    assert (offset, found, evicted) == ((home + 6) * WORDS, False, False)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 2**64 - 1), min_size=1, max_size=3000))
def test_any_flood_of_keys_keeps_the_table_its_size(keys: list[int]) -> None:
    """Random spoofed sources: every new key finds a bucket in its window; nothing grows."""
    table = Table.create(1024)
    length = len(table.buffer)
    assert length == (1024 + PROBES) * WORDS * 8
    for i, key in enumerate(keys):
        q = put(table, key, 100.0 + i, now=100.0 + i)
        home = (key & table.mask) * WORDS
        assert home <= q < home + PROBES * WORDS
        assert table.get(q)[0] == key
    assert len(table.buffer) == length == Table.length(1024)
    table.close()


def test_another_process_sees_the_same_buckets(table: Table) -> None:
    """What ``--workers`` relies on: a child maps the inherited fd and writes a bucket."""
    child = textwrap.dedent(f"""
        from dnsfail.rrl.table import Table
        table = Table.attach(1024, {table.fd})
        key, tat, slips, flags = table.get(8)
        table.put(8, key + 1, tat * 2, slips + 1, flags | 4)
    """)
    table.put(8, 41, 1.5, 2, 1)
    subprocess.run([sys.executable, "-c", child], pass_fds=[table.fd], check=True, timeout=30)
    assert table.get(8) == (42, 3.0, 3, 5)


def test_attach_refuses_a_descriptor_of_another_size(table: Table) -> None:
    with pytest.raises(ValueError, match="not"):
        Table.attach(2048, table.fd)
