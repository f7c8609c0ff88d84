"""The streamed load: a zone file read in pieces gives the zone (or problems) the whole text does.

``load_zones`` reads a file in pieces (``files.ZoneFile.pieces``) with the
strict reader, packing plain address records as they come, and falls back to
the whole text wherever that cannot be done.  Here every file is loaded both
ways, with pieces cut as small as a few octets so that every entry boundary is
a cut somewhere, and the results must be equal: the same ``Zone``, or the same
problems word for word.  And a reload of a big zone must not hold its text.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.errors import ConfigError
from dnsfail.model import Zone
from dnsfail.zonefile import files, load_zones, parse_zone
from dnsfail.zonefile.files import open_zone_file
from dnsfail.zonefile.packed import ZoneNodes
from tests.zonefile.test_packed import APEX, ORIGIN, records

#: Entries of other shapes: generic ones, ones libyaml reads alone, ones that send the
#: whole file to libyaml (anchors, non-ASCII, a document marker), problems, duplicates.
OTHERS = [
    "# a comment in column 0\n\n",
    "txt:\n  type: TXT\n  value: >-\n    folded\n    text\n",
    "list:\n- type: A\n  value: 192.0.2.7\n- type: TXT\n  values: [a, b]\n",
    "gen:\n  type: TXT\n  value: x  # trailing comment\n",
    "anchor:\n  type: A\n  value: &v 192.0.2.8\n",
    "uni:\n  type: TXT\n  value: caf\u00e9\n",
    "...\n",
    "h1:\n  type: A\n  value: 192.0.2.9\n",
    "bad:\n  type: A\n  value: nope\n",
    "ttl:\n  ttl: 99999999999999999999999\n  type: A\n  value: 192.0.2.1\n",
    "'q':\n  type: A\n  value: 192.0.2.3\n",
    "- 1\n",
]


def whole(text: str, source: Path) -> Zone | list[str]:
    """The zone as ``parse_zone`` reads the whole text (the path ``check`` always had)."""
    try:
        return parse_zone(text, str(source), ORIGIN, serial=int(os.stat(source).st_mtime))
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


def streamed(path: Path, text: str, piece: int) -> Zone | list[str]:
    """The zone as ``load_zones`` reads the file in pieces of ``piece`` octets."""
    path.write_bytes(text.encode())
    with mock.patch.object(files, "PIECE_BYTES", piece):
        try:
            return load_zones([str(path)])[ORIGIN]
        except ConfigError as exc:
            return [str(p) for p in exc.problems]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(records(), st.sampled_from(OTHERS)), max_size=10),
       st.integers(1, 200), st.booleans(), st.booleans())  # fmt: skip
def test_a_streamed_file_loads_as_its_whole_text(
    texts: list[str], piece: int, crlf: bool, marker: bool
) -> None:
    glue = "ns1:\n  type: A\n  value: 192.0.2.1\n"
    text = ("---\n" if marker else "") + APEX + "".join(texts) + glue
    if crlf:
        text = text.replace("\n", "\r\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.test.yaml"
        got, other = streamed(path, text, piece), whole(text, path)
    assert got == other
    if isinstance(got, Zone):
        assert isinstance(other, Zone)
        assert dict(got.nodes.items()) == dict(other.nodes.items())
        assert set(got.names) == set(other.names)


@pytest.mark.parametrize("piece", [1, 7, 64, 1 << 20])
def test_pieces_end_where_top_level_entries_start(tmp_path: Path, piece: int) -> None:
    text = ("# head\n---\n'':\n  type: NS\n  value: ns1.p.test.\n# between\n\n"
            "a:\n  type: A\n  value: 192.0.2.1\nb:\n- type: A\n  value: 192.0.2.2\n"
            "c:\r\n  type: A\r\n  value: 192.0.2.3\r\n\r\nd:\n  type: TXT\n  value: end")
    path = tmp_path / "p.test.yaml"
    path.write_text(text, newline="")
    opened = open_zone_file(str(path))
    assert isinstance(opened, files.ZoneFile)
    with opened, mock.patch.object(files, "PIECE_BYTES", piece):
        pieces = list(opened.pieces())
        assert opened.count(b"type: ") == text.count("type: ")
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(p for p in pieces if p) == text
    for before, after in itertools.pairwise(pieces):
        assert before is not None
        assert after is not None
        assert before.endswith("\n"), before
        assert after[0] not in " \n#-\r", after
    if piece == 1:  # every entry start is a cut
        assert [p.split(":")[0] for p in pieces if p] == ["# head\n---\n", "''", "a", "b", "c", "d"]


def test_pieces_stop_where_the_file_leaves_ascii(tmp_path: Path) -> None:
    path = tmp_path / "p.test.yaml"
    path.write_text(APEX + "uni:\n  type: TXT\n  value: caf\u00e9\n")
    opened = open_zone_file(str(path))
    assert isinstance(opened, files.ZoneFile)
    with opened, mock.patch.object(files, "PIECE_BYTES", 8):
        assert list(opened.pieces())[-1] is None


def test_a_reload_holds_no_more_of_the_file_than_a_few_pieces(tmp_path: Path) -> None:
    """The old zone stays alive (it is being served); the load may hold the new zone and a
    few pieces beside it, never the file as text or bytes (1 MB here)."""
    records = 20_000
    path = tmp_path / "p.test.yaml"
    path.write_text(APEX + "".join(f"h{i:06d}:\n  ttl: 300\n  type: A\n  value: "
                                   f"198.18.{i // 256 % 256}.{i % 256}\n"
                                   for i in range(records)))  # fmt: skip
    size = path.stat().st_size
    piece = 16 * 1024
    with mock.patch.object(files, "PIECE_BYTES", piece):
        first = load_zones([str(path)])
        tracemalloc.start()
        try:
            second = load_zones([str(path)], first)
            retained, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert second == first
    nodes = second[ORIGIN].nodes
    assert isinstance(nodes, ZoneNodes)
    assert nodes.packed.owners == records
    transient = peak - retained
    assert transient < 8 * piece, (transient, size)
    assert size > 5 * 8 * piece  # the whole text would be five times the bound
