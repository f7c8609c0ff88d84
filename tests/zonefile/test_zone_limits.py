"""Hostile zone files: every one gives exact ``file:line: record: reason`` problems, no exception.

Tables of (zone text, expected problems) loaded with ``load_zones`` from a real
directory, and of directory entries that are not regular files (issue 11,
items 6, 7, 8 and 10).  No sockets, no sleeps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsfail.errors import ConfigError
from dnsfail.serve import reload
from dnsfail.zonefile import files as zonefiles
from dnsfail.zonefile import load_zones, parse_zone
from dnsfail.zonefile.libyaml import FastLoader, SafeLoader, TooDeep, single_node
from dnsfail.zonefile.located import MAX_DEPTH, MAX_PROBLEM_CHARS
from dnsfail.zonefile.strict import read_strict

APEX = "'':\n  type: NS\n  value: ns1.x.test.\n"  # lines 1-3


def _deep_block(levels: int) -> str:
    """Block mappings nested ``levels`` deep from line 4, in the strict reader's layout."""
    lines = [f"{'  ' * i}k{i}:" for i in range(levels)]
    return APEX + "\n".join(lines) + " x\n"


def _merge_bomb(levels: int) -> str:
    """Each level merges the one before twice: 2**levels entries in PyYAML < 6.0.4."""
    lines = ["l0: &l0 {k: v}"]
    lines += [f"l{n}: &l{n} {{<<: [*l{n - 1}, *l{n - 1}]}}" for n in range(1, levels + 1)]
    return APEX + "\n".join(lines) + "\n"


def _merge_chain(length: int) -> str:
    """Each mapping merges the one before: flattening recurses ``length`` deep."""
    lines = ["m0: &m0 {k0: v}"]
    lines += [f"m{n}: &m{n} {{<<: *m{n - 1}, k{n}: v}}" for n in range(1, length + 1)]
    return APEX + "\n".join(lines) + "\n"


TOO_DEEP = "(yaml): collections nested deeper than 64 levels"
MERGES = "(yaml): merge keys ('<<') copy more than 100000 entries or nest deeper than 64"
RDLENGTH = "more than the 65535 RDLENGTH allows (RFC 1035 section 3.2.1)"
ROOM = "more than the 65264 a 65535-octet message has room for (RFC 1035 section 4.2.2)"

HOSTILE: list[tuple[str, str | bytes, list[str]]] = [
    # (id, file content, expected problems without the "<dir>/" prefix)
    ("deep-flow", APEX + "a: " + "[" * 600 + "]" * 600 + "\n", [f"x.test.yaml:4: {TOO_DEEP}"]),
    ("deep-block", _deep_block(600), [f"x.test.yaml:68: {TOO_DEEP}"]),
    ("deep-dashes", APEX + "a:\n" + "- " * 600 + "x\n", [f"x.test.yaml:5: {TOO_DEEP}"]),
    ("ttl-5000-digits", APEX + "a:\n  ttl: " + "9" * 5000 + "\n  type: A\n  value: 192.0.2.1\n",
     ["x.test.yaml:5: a A: ttl has more than 10 digits"]),
    ("ttl-quoted-digits", APEX + "a:\n  ttl: '" + "1" * 5000 + "'\n  type: A\n"
     "  value: 192.0.2.1\n", ["x.test.yaml:5: a A: ttl has more than 10 digits"]),
    ("ttl-11-digits", APEX + "a:\n  ttl: 99999999999\n  type: A\n  value: 192.0.2.1\n",
     ["x.test.yaml:5: a A: ttl has more than 10 digits"]),
    ("ttl-hex", APEX + "a:\n  ttl: 0x" + "f" * 5000 + "\n  type: A\n  value: 192.0.2.1\n",
     [f"x.test.yaml:5: a A: ttl must be an integer, not '0x{'f' * 38}'... (5002 characters)"]),
    ("ttl-sexagesimal", APEX + "a:\n  ttl: 1" + ":00" * 3000 + "\n  type: A\n"
     "  value: 192.0.2.1\n",
     [f"x.test.yaml:5: a A: ttl must be an integer, not '1{':00' * 13}'... (9001 characters)"]),
    ("port-digits", APEX + "_s._tcp:\n  type: SRV\n  value: {port: " + "7" * 5000
     + ", priority: 1, target: s.x.test., weight: 1}\n",
     ["x.test.yaml:6: _s._tcp SRV: port has more than 10 digits"]),
    ("merge-bomb", _merge_bomb(40),
     [f"x.test.yaml:20: {MERGES}"]  # l16: 2**17 entries copied by then
     + [f"x.test.yaml:{line}: l{line - 4}: missing 'type'" for line in range(4, 45)]),
    ("merge-chain", _merge_chain(2000),
     [f"x.test.yaml:451: {MERGES}"]  # m447: 447 * 448 / 2 entries copied by then
     + [f"x.test.yaml:{line}: m{line - 4}: missing 'type'" for line in range(4, 2005)]),
    ("txt-100000", APEX + "a:\n  type: TXT\n  value: " + "a" * 100_000 + "\n",
     [f"x.test.yaml:6: a TXT: TXT value is 100393 octets on the wire, {RDLENGTH}"]),
    ("txt-rrset", APEX + "t:\n  type: TXT\n  values:\n"
     + "".join(f"  - {n:03d}{'a' * 247}\n" for n in range(300)),
     [f"x.test.yaml:4: t TXT: the 300 value(s) take 78900 octets in a reply, {ROOM}"]),
    ("txt-one-too-big-for-a-reply", APEX + "t:\n  type: TXT\n  value: " + "a" * 65_000 + "\n",
     [f"x.test.yaml:4: t TXT: the 1 value(s) take 65267 octets in a reply, {ROOM}"]),
    ("caa-70000", APEX + "caa:\n  type: CAA\n  value:\n    tag: issue\n    value: "
     + "c" * 70_000 + "\n",
     [f"x.test.yaml:8: caa CAA: CAA value is 70007 octets on the wire, {RDLENGTH}"]),
    ("invalid-utf8", APEX.encode() + b"a:\n  type: TXT\n  value: ab\xffcd\n",
     ["x.test.yaml:6: (zone): invalid UTF-8 (byte 0xff at column 12)"]),
    ("invalid-utf8-after-text", APEX.encode() + "a:\n  type: TXT\n  value: é\n".encode()
     + b"b:\n  type: TXT\n  value: \xc3(\n",
     ["x.test.yaml:9: (zone): invalid UTF-8 (byte 0xc3 at column 10)"]),
]  # fmt: skip


def _load(directory: Path) -> list[str]:
    """The problems ``load_zones`` raises for ``directory``, without its path."""
    with pytest.raises(ConfigError) as caught:
        load_zones([str(directory)])
    return [str(p).removeprefix(f"{directory}/") for p in caught.value.problems]


@pytest.mark.parametrize(("content", "expected"),
                         [pytest.param(c, e, id=i) for i, c, e in HOSTILE])
def test_hostile_zone_file(tmp_path: Path, content: str | bytes, expected: list[str]) -> None:
    path = tmp_path / "x.test.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    started = time.monotonic()
    assert _load(tmp_path) == sorted(expected, key=_order)
    assert time.monotonic() - started < 5.0


def _order(problem: str) -> tuple[int, str]:
    _file, line, rest = problem.split(":", 2)
    return int(line), rest


def test_deep_nesting_is_found_by_the_strict_reader_and_libyaml_alike() -> None:
    """The strict reader gives up past MAX_DEPTH; libyaml (and PyYAML's Python loader, when
    libyaml refuses the text) report the same depth problem at the same line."""
    text = _deep_block(70)
    assert read_strict(text) is None
    for loader in (FastLoader, SafeLoader):
        with pytest.raises(TooDeep) as caught:
            single_node(loader, text)
        assert caught.value.line == 68
    assert read_strict(_deep_block(MAX_DEPTH - 1)) is not None


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "x.test.yaml"
    with path.open("wb") as f:
        f.truncate(zonefiles.MAX_ZONE_FILE_BYTES + 1)  # sparse: costs no disk
    assert _load(tmp_path) == [
        f"x.test.yaml:1: (zone): file is {zonefiles.MAX_ZONE_FILE_BYTES + 1} octets, more than "
        "the limit of 64 MiB"
    ]


def test_long_soa_rname_from_a_long_origin(tmp_path: Path) -> None:
    origin = ".".join(["a" * 60] * 4)  # 243 characters: a valid zone, but hostmaster. is not
    (tmp_path / f"{origin}.yaml").write_text("'':\n  type: NS\n  value: ns1.example.\n")
    assert _load(tmp_path) == [
        f"{origin}.yaml:1: @ SOA: the default SOA rname 'hostmaster.{origin}.' is longer than "
        "255 octets: set octodns.dnsfail.soa.rname"
    ]


def test_long_values_are_not_echoed_whole() -> None:
    text = APEX + "a:\n  type: TXT\n  value: " + "x;" * 50_000 + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_zone(text, "z.yaml", "x.test.", serial=1)
    (problem,) = caught.value.problems
    assert len(problem.reason) < MAX_PROBLEM_CHARS + 50
    assert problem.reason.endswith("more characters)")


# --- directory entries that are not regular files (item 7) ---------------------------------

GOOD = "'':\n  type: NS\n  value: ns1.good.test.\n"


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere.yaml")


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


ENTRIES: list[tuple[str, Callable[[Path], None], str]] = [
    ("dangling-symlink", _dangling,
     "x.test.yaml:1: (zone): dangling symlink to '{dir}/nowhere.yaml'"),
    ("symlink-loop", _loop, "x.test.yaml:1: (zone): symlink loop"),
    ("fifo", _fifo, "x.test.yaml:1: (zone): not a regular file (a FIFO)"),
    ("directory", _directory, "x.test.yaml:1: (zone): not a regular file (a directory)"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "expected"), [pytest.param(m, e, id=i) for i, m, e in ENTRIES])
def test_unreadable_entry_is_a_problem(tmp_path: Path, make: Callable[[Path], None],
                                       expected: str) -> None:
    """An entry that exists but is not a readable regular file rejects the whole load (and so
    a reload), beside a good zone; a FIFO is never opened for a blocking read."""
    (tmp_path / "good.test.yaml").write_text(GOOD)
    make(tmp_path / "x.test.yaml")
    started = time.monotonic()
    assert _load(tmp_path) == [expected.format(dir=tmp_path)]
    assert time.monotonic() - started < 5.0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "good.test.yaml").write_text(GOOD)
    path = tmp_path / "x.test.yaml"
    path.write_text(GOOD)
    path.chmod(0)
    assert _load(tmp_path) == ["x.test.yaml:1: (zone): cannot read: Permission denied"]


def test_hidden_entries_are_not_zone_files(tmp_path: Path) -> None:
    """Editor lock files (Emacs: a dangling symlink ``.#name.yaml``) are not zones."""
    (tmp_path / "good.test.yaml").write_text(GOOD)
    (tmp_path / ".#good.test.yaml").symlink_to("root@host.1234:1700000000")
    (tmp_path / ".hidden.test.yaml").write_text("not: [a zone\n")
    assert list(load_zones([str(tmp_path)])) == ["good.test."]


def test_missing_or_unlistable_zone_directory_is_a_problem(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    assert _load_paths([str(gone)]) == [f"{gone}:1: (zone): no such file or directory"]
    (tmp_path / "link").symlink_to(gone)
    assert _load_paths([str(tmp_path / "link")]) == [
        f"{tmp_path}/link:1: (zone): dangling symlink to '{gone}'"
    ]


def _load_paths(paths: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_zones(paths)
    return [str(p) for p in caught.value.problems]


def test_watch_sees_the_files_the_loader_reads(tmp_path: Path) -> None:
    """One discovery rule: ``--watch`` looks at exactly what ``load_zones`` reads, and an
    entry it cannot stat (a dangling symlink) is still watched."""
    (tmp_path / "good.test.yaml").write_text(GOOD)
    (tmp_path / "b.test.yml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".#good.test.yaml").symlink_to("nowhere")
    _dangling(tmp_path / "x.test.yaml")
    files, _ = zonefiles.discover([str(tmp_path)])
    watched = reload.zone_files([str(tmp_path)])
    assert sorted(watched) == sorted(files) == [
        str(tmp_path / name) for name in ("b.test.yml", "good.test.yaml", "x.test.yaml")
    ]
    assert watched[str(tmp_path / "x.test.yaml")] is None
    assert watched[str(tmp_path / "good.test.yaml")] is not None


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300).map(lambda tail: APEX.encode() + tail))
def test_any_bytes_give_zones_or_located_problems(tmp_path: Path, content: bytes) -> None:
    """Whatever the bytes, ``load_zones`` returns zones or raises ``ConfigError``."""
    path = tmp_path / "x.test.yaml"
    path.write_bytes(content)
    problems = []
    try:
        load_zones([str(tmp_path)])
    except ConfigError as exc:
        problems = exc.problems
        if not problems:
            raise
    assert all(p.source == str(path) and p.line >= 1 for p in problems)
