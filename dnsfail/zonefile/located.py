"""Located YAML: what a zone file is read into, the problems found in it, typed reads.

Owns the located nodes (``YMap``/``YSeq``/``YScalar``: every key, value and
list item knows its line), the compact ``Simple`` form the strict reader
gives for octoDNS's commonest record shape, the top-level ``Entry``, the
``Problems`` collector (every problem of a file, raised together as one
``ConfigError``), ``Scope`` (typed reads that report a located problem and
carry on), and the limits every reader keeps against hostile files.

Imports ``errors`` only.  It must not import ``yaml`` (the strict reader builds
these nodes without it) nor any other module of ``zonefile``: they all build on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, Protocol

from dnsfail.errors import ConfigError, Problem

# Limits on hostile or broken files: each gives a located problem, never an exception.
# (The file size limit is ``zonefiles.MAX_ZONE_FILE_BYTES``.)

#: Deepest nesting of YAML collections (mappings and lists).  A zone needs 7 (a dynamic
#: record's pool values); libyaml composes nodes by recursion in C, so about 100,000
#: levels (a 200 KB file) overflow the C stack and kill the process, and Python's
#: composer and ours recurse too.  Enforced before any recursion (``libyaml.single_node``).
MAX_DEPTH = 64
#: Most digits of an integer field (TTL, serial, port, ...): the largest, a serial, has 10.
#: Checked before ``int()``, which refuses 4,300 digits and is quadratic below that.
MAX_INTEGER_DIGITS = 10
#: Longest plain scalar resolved as a YAML number: longer ones are kept as text.  PyYAML
#: builds a sexagesimal integer (``1:00:00:...``) in time quadratic in its length.
MAX_NUMBER_TEXT = 64
#: Most mapping entries YAML merge keys (``<<``) may copy in one file.  PyYAML before 6.0.4
#: copies an aliased mapping once per mention, so ``<<: [*a, *a]`` nested 30 deep would
#: be a billion entries from a kilobyte of text (pyyaml issue 897).
MAX_MERGED_ENTRIES = 100_000
#: Longest reason or record label a problem carries: a 60 MB value quoted back in a
#: problem would flood the log (the text is cut, with how much was left out).
MAX_PROBLEM_CHARS = 1000


Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class YScalar:
    """A YAML scalar, resolved by the safe loader's rules, and its source text."""

    line: int
    value: Scalar
    text: str


@dataclass(frozen=True, slots=True)
class YSeq:
    line: int
    items: tuple[YNode, ...]


@dataclass(frozen=True, slots=True)
class YEntry:
    """One mapping entry: the line of its key and its value."""

    key_line: int
    value: YNode


@dataclass(frozen=True, slots=True)
class YMap:
    """A YAML mapping with string keys (the source text of each key)."""

    line: int
    entries: Mapping[str, YEntry]

    def get(self, key: str) -> YNode | None:
        entry = self.entries.get(key)
        return entry.value if entry is not None else None

    def key_line(self, key: str) -> int:
        entry = self.entries.get(key)
        return entry.key_line if entry is not None else self.line


YNode = YScalar | YSeq | YMap


class Problems:
    """Collects every problem of one source file; raised together at the end."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Problem] = []

    def add(self, line: int, record: str, reason: str) -> None:
        self.items.append(Problem(self.source, line, clip(record), clip(reason)))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def clip(text: str) -> str:
    """``text`` cut to ``MAX_PROBLEM_CHARS``, saying how much was cut."""
    if len(text) <= MAX_PROBLEM_CHARS:
        return text
    return f"{text[:MAX_PROBLEM_CHARS]}... ({len(text) - MAX_PROBLEM_CHARS} more characters)"


class Simple(NamedTuple):
    """A record mapping of only scalars in octoDNS's layout, read without nodes.

    ``ttl`` (optional), ``type`` and then ``value`` or ``values``, one per
    line from ``line`` on, with ``values`` items on the lines after it; the
    type is one of ``rdata.TEXT_PARSERS`` and every value is a string.
    """

    line: int
    ttl: int | None
    rtype: str
    values: tuple[str, ...]
    #: Written as ``values:`` (a list), not ``value:``.
    listed: bool

    def node(self) -> YMap:
        """The located nodes ``libyaml.read_libyaml`` would have made of the same lines."""
        entries: dict[str, YEntry] = {}
        line = self.line
        if self.ttl is not None:
            entries["ttl"] = YEntry(line, YScalar(line, self.ttl, str(self.ttl)))
            line += 1
        entries["type"] = YEntry(line, YScalar(line, self.rtype, self.rtype))
        line += 1
        if self.listed:
            items = tuple(YScalar(line + 1 + n, v, v) for n, v in enumerate(self.values))
            entries["values"] = YEntry(line, YSeq(line + 1, items))
        else:
            entries["value"] = YEntry(line, YScalar(line, self.values[0], self.values[0]))
        return YMap(self.line, MappingProxyType(entries))


class SimpleList(NamedTuple):
    """A list of ``Simple`` records under one key, each ``- `` item starting its ``line``."""

    records: tuple[Simple, ...]

    def node(self) -> YSeq:
        return YSeq(self.records[0].line, tuple(record.node() for record in self.records))


#: What a reader's record sink says of a record it is handed: left for the general path,
#: taken (the reader forgets it), or a second record of a key it already took, or one it
#: cannot index (``packed.MAX_PROBES``): the reader gives up.
SINK_LEFT, SINK_TAKEN, SINK_DUPLICATE = 0, 1, 2


class Sink(Protocol):
    """Where ``strict.read_strict`` offers records of octoDNS's canonical layout
    (``packed.PackedBuilder``); each method returns a ``SINK_*`` value."""

    def take(self, key: str, ttl: str | None, rtype: str, values: tuple[str, ...]) -> int:
        """A record of plain string values; the sink checks key, TTL text and values."""

    def take_a(self, key: str, ttl: str | None, address: str) -> int:
        """One A record whose key is lower-case labels of 1..63 octets of ``[a-z0-9_-]``
        and whose address matches ``rdata.IPV4_TEXT_RE`` (the reader checked both)."""

#: One top-level entry: its key, the key's line, and its value.
Entry = tuple[str, int, "YNode | Simple | SimpleList"]


def show(node: YNode) -> str:
    """How a reason quotes a value it rejects."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    if isinstance(node.value, str) and len(node.value) > 60:  # a long value is not echoed
        return f"{node.value[:40]!r}... ({len(node.value)} characters)"
    return repr(node.value)


@dataclass(frozen=True, slots=True)
class Scope:
    """Typed reads from located YAML on behalf of one record label (``api A``).

    Each reader returns None after reporting a problem, so callers carry on
    and keep finding problems instead of stopping at the first.
    """

    problems: Problems
    label: str

    def error(self, line: int, reason: str) -> None:
        self.problems.add(line, self.label, reason)

    def string(self, node: YNode, what: str) -> str | None:
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.value
        self.error(node.line, f"{what} must be a string, not {show(node)}")
        return None

    def integer(self, node: YNode, what: str, low: int, high: int) -> int | None:
        value: int | None = None
        if isinstance(node, YScalar):
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                value = node.value
            elif isinstance(node.value, str) and re.fullmatch(r"-?[0-9]+", node.value):
                if len(node.value.lstrip("-0")) > MAX_INTEGER_DIGITS:
                    self.error(node.line, f"{what} has more than {MAX_INTEGER_DIGITS} digits")
                    return None
                value = int(node.value)  # octoDNS calls int() on these, so "300" is fine
        if value is None:
            self.error(node.line, f"{what} must be an integer, not {show(node)}")
            return None
        if abs(value) >= 10**MAX_INTEGER_DIGITS:  # not printed: str() refuses 4,300 digits
            self.error(node.line, f"{what} has more than {MAX_INTEGER_DIGITS} digits")
            return None
        if not low <= value <= high:
            self.error(node.line, f"{what} {value} is out of range {low}..{high}")
            return None
        return value

    def number(self, node: YNode, what: str, low: float, high: float) -> float | None:
        if (
            not isinstance(node, YScalar)
            or isinstance(node.value, bool)
            or not isinstance(node.value, int | float)
        ):
            self.error(node.line, f"{what} must be a number, not {show(node)}")
            return None
        value = float(node.value)
        if not low <= value <= high:
            self.error(node.line, f"{what} {node.text} is out of range {low:g}..{high:g}")
            return None
        return value

    def flag(self, node: YNode, what: str) -> bool | None:
        if isinstance(node, YScalar) and isinstance(node.value, bool):
            return node.value
        self.error(node.line, f"{what} must be true or false, not {show(node)}")
        return None

    def choice(self, node: YNode, what: str, choices: Sequence[str]) -> str | None:
        text = self.string(node, what)
        if text is not None and text not in choices:
            self.error(node.line, f"{what} {text!r} is not one of {', '.join(choices)}")
            return None
        return text

    def mapping(self, node: YNode, what: str, allowed: frozenset[str] | None = None) -> YMap | None:
        """A mapping; with ``allowed``, every other key is reported (typos lose nothing)."""
        if not isinstance(node, YMap):
            self.error(node.line, f"{what} must be a mapping, not {show(node)}")
            return None
        if allowed is not None:
            for key, entry in node.entries.items():
                if key not in allowed:
                    self.error(entry.key_line, f"unknown key {key!r} in {what}")
        return node

    def sequence(self, node: YNode, what: str) -> tuple[YNode, ...] | None:
        """A non-empty list."""
        if not isinstance(node, YSeq):
            self.error(node.line, f"{what} must be a list, not {show(node)}")
            return None
        if not node.items:
            self.error(node.line, f"{what} is empty")
            return None
        return node.items

    def strings(self, node: YNode, what: str) -> list[tuple[YNode, str]]:
        """A non-empty list of strings, each with its node (for its line)."""
        out: list[tuple[YNode, str]] = []
        for item in self.sequence(node, what) or ():
            text = self.string(item, f"each of {what}")
            if text is not None:
                out.append((item, text))
        return out
