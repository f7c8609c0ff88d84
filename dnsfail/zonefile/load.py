"""Zone files in octoDNS's YamlProvider format -> validated, immutable ``model.Zone`` objects.

This module owns reading configuration.  It imports ``yaml``, ``model`` and
``errors`` and nothing that does I/O beyond reading the files it is given:
``dnsfail check``, startup and reload all run ``load_zones``, so what
``check`` accepts is exactly what the server will serve.

How it reads a file:

1. YAML is *composed* into located nodes (``YMap``/``YSeq``/``YScalar``), so
   every key, value and list item knows its line.  Parse errors, duplicate
   keys and unsupported tags become problems rather than exceptions.  Files
   in octoDNS's own layout are read by a strict reader of that subset of
   YAML instead of libyaml, with the same result, several times faster.
2. Each key of the top-level mapping is an owner name relative to the zone;
   it holds one record mapping or a list of them.  Every record is checked
   on its own (type, TTL, values), then the records are checked together
   (CNAME exclusivity, delegations, ALIAS), then dynamic records and the SOA.
   The common plain record (``ttl``, ``type``, ``value(s)`` of a string-valued
   type) is checked straight from its strings; anything doubtful about it
   goes through the located checks, which word every problem.
3. Every problem is collected as ``errors.Problem`` and raised together as one
   ``ConfigError``; nothing is built unless the whole file is clean, so a
   reload is all-or-nothing.

Where octoDNS defines a rule (value shapes, ``\\;`` in TXT, dynamic-record
validation, healthcheck defaults) it is followed, so one file serves both.
dnsfail-only knobs live under ``octodns: {dnsfail: ...}``, a namespace
octoDNS passes through untouched.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import NamedTuple

import yaml

from dnsfail.errors import ConfigError, Problem
from dnsfail.model import (
    AAAA,
    CAA,
    CNAME,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    AllDown,
    DynamicRecord,
    Pool,
    PoolValue,
    ProbeProtocol,
    ProbeSpec,
    Rdata,
    RRset,
    RRType,
    Rule,
    Status,
    Zone,
    parent_names,
)
from dnsfail.zonefile.files import discover, read_zone_file
from dnsfail.zonefile.wiresize import (
    MAX_RDATA,
    RR_OVERHEAD,
    RRSET_BUDGET,
    rdata_length,
    rrset_length,
)

__all__ = ["load_zones", "parse_zone"]

#: octoDNS's default record TTL (``Record.__init__``: ``data.get('ttl', 3600)``).
DEFAULT_TTL = 3600
#: TTLs are 0..2**31-1; larger values are treated as zero (RFC 2181 section 8).
MAX_TTL = 2**31 - 1
#: SOA serials are unsigned 32-bit, compared by RFC 1982 serial arithmetic.
MAX_SERIAL = 2**32 - 1

# Limits on hostile or broken files: each gives a located problem, never an exception.
# (The file size limit is ``zonefiles.MAX_ZONE_FILE_BYTES``.)

#: Deepest nesting of YAML collections (mappings and lists).  A zone needs 7 (a dynamic
#: record's pool values); libyaml composes nodes by recursion in C, so about 100,000
#: levels (a 200 KB file) overflow the C stack and kill the process, and Python's
#: composer and ours recurse too.  Enforced before any recursion (``_nesting``).
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

_RECORD_KEYS = frozenset({"type", "ttl", "value", "values", "octodns", "dynamic"})
#: Types whose record holds exactly one ``value`` (octoDNS ``ValueMixin``).
_SINGLE_VALUE = frozenset({"ALIAS", "CNAME"})
#: ``octodns.dnsfail`` knobs that only make sense on a dynamic record.
_DYNAMIC_ONLY_KEYS = ("all_down", "ttl_floor", "healthcheck", "rules", "ipv6", "coordinates")
_DNSFAIL_KEYS = frozenset({"soa", *_DYNAMIC_ONLY_KEYS})
_SOA_KEYS = frozenset({"mname", "rname", "serial", "refresh", "retry", "expire", "minimum", "ttl"})

_LABEL_RE = re.compile(r"^[a-z0-9_-]+$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]+(?<!-)$")
_POOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_CAA_TAG_RE = re.compile(r"^[a-zA-Z0-9]{1,15}$")
#: Continent, continent-country, continent-country-subdivision (octoDNS ``GeoCodes``).
_GEO_RE = re.compile(r"^(AF|AN|AS|EU|NA|OC|SA)(-[A-Z]{2}(-[A-Z0-9]{1,3})?)?$")
#: octoDNS rejects a ``;`` right after a word character: it must be written ``\;``.
_UNESCAPED_SEMICOLON_RE = re.compile(r"\w;")

_MAP_TAG = "tag:yaml.org,2002:map"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# --- located YAML --------------------------------------------------------------------

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


class _Problems:
    """Collects every problem of one source file; raised together at the end."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[Problem] = []

    def add(self, line: int, record: str, reason: str) -> None:
        self.items.append(Problem(self.source, line, _clip(record), _clip(reason)))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(self.items)


def _clip(text: str) -> str:
    """``text`` cut to ``MAX_PROBLEM_CHARS``, saying how much was cut."""
    if len(text) <= MAX_PROBLEM_CHARS:
        return text
    return f"{text[:MAX_PROBLEM_CHARS]}... ({len(text) - MAX_PROBLEM_CHARS} more characters)"


class _Composer:
    """Turns a composed YAML node graph into located ``YNode`` values.

    Walking nodes ourselves (rather than ``yaml.safe_load``) is what gives
    every value its line, and lets duplicate keys be reported: PyYAML keeps
    the last one silently.  Aliases are converted once and shared; a
    recursive alias is reported instead of recursing forever.
    """

    def __init__(self, loader: yaml.SafeLoader, problems: _Problems, first_line: int = 1) -> None:
        self._loader = loader
        self._problems = problems
        #: Line number of the text's first line (it may be one entry of a bigger file).
        self._offset = first_line
        self._done: dict[int, YNode] = {}
        self._active: set[int] = set()
        #: Entries each mapping has once its merge keys are flattened (``_merged_size``).
        self._sizes: dict[int, int] = {}
        self._merged = 0

    def convert(self, node: yaml.Node) -> YNode:
        key = id(node)
        done = self._done.get(key)
        if done is not None:
            return done
        line = node.start_mark.line + self._offset
        if key in self._active:
            self._problems.add(line, "(yaml)", "recursive alias")
            return YScalar(line, None, "")
        self._active.add(key)
        try:
            result = self._convert(node, line)
        finally:
            self._active.discard(key)
        self._done[key] = result
        return result

    def _convert(self, node: yaml.Node, line: int) -> YNode:
        if isinstance(node, yaml.MappingNode):
            self._check_tag(node, _MAP_TAG, line)
            return self._mapping(node, line)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQ_TAG, line)
            return YSeq(line, tuple(self.convert(item) for item in node.value))
        return self._scalar(node, line)

    def _check_tag(self, node: yaml.Node, expected: str, line: int) -> None:
        if node.tag != expected:
            self._problems.add(line, "(yaml)", f"unsupported tag {node.tag!r}")

    def _scalar(self, node: yaml.Node, line: int) -> YScalar:
        text = str(node.value)
        if node.tag in _NUMBER_TAGS and len(text) > MAX_NUMBER_TEXT:
            return YScalar(line, text, text)  # not built: see MAX_NUMBER_TEXT
        try:
            value: object = self._loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self._problems.add(line, "(yaml)", _yaml_message(exc))
            return YScalar(line, None, text)
        except ValueError:
            # An impossible date (``2001-02-30``) still looks like a timestamp: keep its text
            # as for any timestamp below, rather than let the whole load fail.
            return YScalar(line, text, text)
        if value is None or isinstance(value, str | int | float | bool):
            return YScalar(line, value, text)
        # Timestamps, binary and the like: keep the text, every field wants a string anyway.
        return YScalar(line, text, text)

    def _mapping(self, node: yaml.MappingNode, line: int) -> YMap:
        own = sum(1 for key, _ in node.value if key.tag != _MERGE_TAG)
        if own != len(node.value) and not self._merge_allowed(node, own, line):
            node.value = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        try:
            self._loader.flatten_mapping(node)  # resolves ``<<`` merge keys, merged ones first
        except yaml.YAMLError as exc:
            self._problems.add(line, "(yaml)", _yaml_message(exc))
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        first_own = len(pairs) - own
        entries: dict[str, YEntry] = {}
        own_lines: dict[str, int] = {}
        for index, (key_node, value_node) in enumerate(pairs):
            key_line = key_node.start_mark.line + self._offset
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.add(key_line, "(yaml)", "mapping keys must be scalars")
                continue
            key = str(key_node.value)
            if index >= first_own:
                if key in own_lines:
                    self._problems.add(
                        key_line,
                        "(yaml)",
                        f"duplicate key {key!r} (first at line {own_lines[key]})",
                    )
                    continue
                own_lines[key] = key_line
            # Later entries win: own keys override merged ones, as in YAML merge semantics.
            entries[key] = YEntry(key_line, self.convert(value_node))
        return YMap(line, MappingProxyType(entries))


    def _merge_allowed(self, node: yaml.MappingNode, own: int, line: int) -> bool:
        """Whether flattening ``node``'s merge keys stays within ``MAX_MERGED_ENTRIES`` for
        the file and ``MAX_DEPTH`` merges deep; else one problem, and its merges are dropped."""
        if self._merged <= MAX_MERGED_ENTRIES:
            self._merged += self._merged_size(node, 1) - own
            if self._merged <= MAX_MERGED_ENTRIES:
                return True
            self._problems.add(line, "(yaml)", f"merge keys ('<<') copy more than "
                               f"{MAX_MERGED_ENTRIES} entries or nest deeper than {MAX_DEPTH}")
        return False

    def _merged_size(self, node: yaml.MappingNode, depth: int) -> int:
        """Entries of ``node`` after flattening, counted as PyYAML before 6.0.4 copies them
        (once per mention); linear, memoized by node.  Too deep or a cycle counts as too many."""
        too_many = MAX_MERGED_ENTRIES + 1
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            return too_many
        self._sizes[id(node)] = too_many  # until counted: a merge of itself is too many
        size = 0
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                size += 1
                continue
            seq = isinstance(value_node, yaml.SequenceNode)
            sources = value_node.value if seq else [value_node]
            for source in sources:
                if isinstance(source, yaml.MappingNode) and size <= MAX_MERGED_ENTRIES:
                    size += self._merged_size(source, depth + 1)
        self._sizes[id(node)] = size = min(size, too_many)
        return size


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or "invalid YAML"
        return f"{exc.context}, {problem}" if exc.context else problem
    if isinstance(exc, yaml.reader.ReaderError):
        return str(exc.reason)
    return str(exc)


def _yaml_line(exc: yaml.YAMLError, text: str) -> int:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return int(mark.line) + 1
    if isinstance(exc, yaml.reader.ReaderError):
        return text.count("\n", 0, exc.position) + 1
    return 1


def _compose(text: str, problems: _Problems) -> YNode | None:
    """Parse one YAML document into located nodes; None for an empty or unparsable file.

    libyaml's parser (when PyYAML has it) composes about three times faster
    than PyYAML's Python one, which matters for zones of 100k records.  A
    document it rejects is parsed again by the Python parser, whose messages
    are clearer ("expected the node content, but found '<stream end>'") and
    which also rejects unprintable characters, so the reported problem is the
    same either way.
    """
    try:
        try:
            return _compose_with(_FastLoader, text, problems)
        except yaml.YAMLError:
            return _compose_with(_SafeLoader, text, problems)
    except yaml.YAMLError as exc:
        problems.add(_yaml_line(exc, text), "(yaml)", _yaml_message(exc))
    except _TooDeep as exc:
        problems.add(exc.line, "(yaml)", _TOO_DEEP)
    return None


_FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_with(
    loader_type: type[yaml.SafeLoader], text: str, problems: _Problems
) -> YNode | None:
    node, loader = _single_node(loader_type, text)
    try:
        return None if node is None else _Composer(loader, problems).convert(node)
    finally:
        loader.dispose()


_TOO_DEEP = f"collections nested deeper than {MAX_DEPTH} levels"


class _TooDeep(Exception):
    """The text nests collections deeper than ``MAX_DEPTH``, first at ``line`` (from 1)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's Python loader, refusing to compose collections nested past ``MAX_DEPTH``.

    Its composer recurses once per level (several Python frames each), so the
    depth is counted where it recurses, before it does.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        opens = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if opens and self._depth >= MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark.line + 1)  # type: ignore[no-untyped-call]
        self._depth += opens
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= opens


_OPENS = {yaml.MappingStartEvent: 1, yaml.SequenceStartEvent: 1,
          yaml.MappingEndEvent: -1, yaml.SequenceEndEvent: -1}  # fmt: skip


def _single_node(
    loader_type: type[yaml.SafeLoader], text: str
) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The one document of ``text`` composed by ``loader_type``; and the loader, to dispose.

    libyaml composes by recursion in C, past any Python check, so for it the
    events are read first (its parser keeps its own stack, so that is safe)
    and nesting past ``MAX_DEPTH`` raises ``_TooDeep`` before composing;
    ``_SafeLoader`` counts as it composes.  YAML errors are raised by the
    composing, as before, so they read the same.
    """
    if loader_type is not _SafeLoader:
        scan = loader_type(text)
        try:
            depth = 0
            while (event := scan.get_event()) is not None:  # type: ignore[no-untyped-call]
                depth += _OPENS.get(type(event), 0)
                if depth > MAX_DEPTH:
                    raise _TooDeep(event.start_mark.line + 1)
        except yaml.YAMLError:
            pass  # reported by composing below: it stops at the same place
        finally:
            scan.dispose()
    loader = loader_type(text)
    try:
        return loader.get_single_node(), loader
    except BaseException:
        loader.dispose()
        raise


# --- strict reader: octoDNS's own layout, without libyaml ------------------------------------
#
# Composing a 100,000-record zone with libyaml costs seconds before a single record is checked:
# PyYAML makes a Python node, two marks and a resolver call for every scalar.  Zone files are
# nearly always written the way octoDNS dumps them (block style, two-space indent, one scalar
# per line), so this reader recognises that strict subset of YAML line by line.  A top-level
# entry outside it is composed by libyaml on its own where that gives the same result
# (``_libyaml_entry``); anything else makes the reader give up (``_Bail``) and ``_compose``
# read the whole file.  What it returns is exactly what ``_compose`` would (checked by
# tests/test_config_reader.py), except that a record mapping in octoDNS's canonical layout
# of only scalars, the overwhelmingly common shape, is returned as a ``_Simple`` instead of
# nodes; ``_Simple.node`` gives the nodes when a record needs the general checks.
#
# The subset: printable ASCII without tabs (lines may end in CRLF); comments; an optional
# ``---`` first; a top-level mapping; block mappings and sequences by indentation; keys that
# are plain or quoted scalars followed by ``: `` or a line end; values that are one-line
# plain, single-quoted or escape-free double-quoted scalars, or one-line flow sequences
# and mappings of those.  Entries with tags, block or multi-line scalars, empty values and
# the like go to libyaml one by one; anchors and aliases, more documents, duplicate keys
# and YAML errors anywhere send the whole file (so every problem is reported, and worded,
# by the one code that reports it).


class _Bail(Exception):
    """The text leaves the strict subset: read it with libyaml instead."""


class _Simple(NamedTuple):
    """A record mapping of only scalars in octoDNS's layout, read without nodes.

    ``ttl`` (optional), ``type`` and then ``value`` or ``values``, one per
    line from ``line`` on, with ``values`` items on the lines after it; the
    type is one of ``_TEXT_PARSERS`` and every value is a string.
    """

    line: int
    ttl: int | None
    rtype: str
    values: tuple[str, ...]
    #: Written as ``values:`` (a list), not ``value:``.
    listed: bool

    def node(self) -> YMap:
        """The located nodes ``_compose`` would have made of the same lines."""
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


class _SimpleList(NamedTuple):
    """A list of ``_Simple`` records under one key, each ``- `` item starting its ``line``."""

    records: tuple[_Simple, ...]

    def node(self) -> YSeq:
        return YSeq(self.records[0].line, tuple(record.node() for record in self.records))


#: One top-level entry: its key, the key's line, and its value.
_Entry = tuple[str, int, "YNode | _Simple | _SimpleList"]

#: The characters of the subset: printable ASCII and newlines (no tabs, carriage returns...).
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\n"
#: A document marker (``---`` or ``...`` at the start of a line), beyond the optional first.
_MARKER_RE = re.compile(r"(?:---|\.\.\.)(?=[ \n]|\Z)")


def _outside_subset(text: str, start: int) -> bool:
    """Whether ``text`` has a character outside the subset, or a document marker after
    ``start``.  Searched with ``str`` methods: a regex scan of a big file costs more."""
    if not text.isascii() or text.encode("ascii").translate(None, _PRINTABLE):
        return True
    for marker in ("\n---", "\n..."):
        at = text.find(marker, max(start - 1, 0))
        while at != -1:
            if _MARKER_RE.match(text, at + 1):
                return True
            at = text.find(marker, at + 1)
    return _MARKER_RE.match(text, start) is not None
#: Blank and comment lines.
_GAP_RE = re.compile(r"(?: *(?:#[^\n]*)?\n)*")
_GAP_LINE_RE = re.compile(r" *(?:#.*)?")
_START_RE = re.compile(r"(?: *(?:#[^\n]*)?\n)*(?:---(?: +#[^\n]*| *)\n)?")
#: A plain scalar on one line in block context: no indicator first (but ``-`` before a
#: non-space), no ``: `` or `` #`` inside, no space at its end (YAML 1.1 section 9.1.3).
_PLAIN = (r"""(?:[^ \n\-?:,\[\]{}#&*!|>'"%@`]|-(?=[^ \n]))"""
          r"(?:[^ \n:#]++|:(?=[^ \n])|(?<=[^ ])#| ++(?=[^ \n#:]|:[^ \n]))*+")
_SINGLE = r"'(?:[^'\n]|'')*'"
_DOUBLE = r'"[^"\\\n]*"'
_SCALAR = f"(?:{_PLAIN}|{_SINGLE}|{_DOUBLE})"
#: Inside ``[...]`` and ``{...}``: plain scalars without spaces, colons or flow indicators.
_FLOW_SCALAR = (r"""(?:(?:[^ \n\-?:,\[\]{}#&*!|>'"%@`]|-(?=[^ \n:,\[\]{}#]))"""
                rf"[^ \n:,\[\]{{}}#]*+|{_SINGLE}|{_DOUBLE})")
_FLOW_SEQ = rf"\[ *(?:{_FLOW_SCALAR} *(?:, *{_FLOW_SCALAR} *)*)?\]"
_FLOW_PAIR = rf"{_FLOW_SCALAR}: +{_FLOW_SCALAR}"
_FLOW_MAP = rf"\{{ *(?:{_FLOW_PAIR} *(?:, *{_FLOW_PAIR} *)*)?\}}"
_FLOW_SCALAR_RE = re.compile(_FLOW_SCALAR)
#: One content line: indentation, an optional ``- ``, then ``key:`` with an optional value,
#: or a value alone; then an optional comment.
_LINE_RE = re.compile(
    rf"( *)(- +)?(?:({_SCALAR}):(?: +({_SCALAR}|{_FLOW_SEQ}|{_FLOW_MAP}))?"
    rf"|({_SCALAR}|{_FLOW_SEQ}|{_FLOW_MAP}))(?: +#.*| *)"
)
#: A top-level key that starts a new entry (or the text's end): where a generic entry ends.
_NEXT_ENTRY_RE = re.compile(r"\n(?=[^ \n#\-])")
#: After an entry read by the fast regexes: its trailing gap, then a new entry or the end.
_FAST_END = r"(?: *+(?:#[^\n]*+)?\n)*+(?=[^ \n#\-]|\Z)"
#: A plain key of these characters is its own text (it cannot be a merge key ``<<``).
_FAST_KEY = rf"([A-Za-z0-9_][A-Za-z0-9_.*-]*+|{_SINGLE}):\n"
#: The types of ``_TEXT_PARSERS`` (defined with the record values below).
_SIMPLE_TYPES = ("AAAA", "ALIAS", "CNAME", "PTR", "TXT", "NS", "A")


def _fast_fields(first: str, indent: str) -> str:
    """``ttl``, ``type`` and ``value``/``values`` lines; groups ttl, type, value, values."""
    item = f"- {_SCALAR}\n"
    values = rf"((?P<ind>{indent}(?:  )?){item}(?:(?P=ind){item})*+)"
    return (
        rf"{first}(?:ttl: (0|[1-9][0-9]{{0,17}})\n{indent})?type: ({'|'.join(_SIMPLE_TYPES)})\n"
        rf"{indent}(?:value: ({_SCALAR})\n|values:\n{values})"
    )


#: A key holding one record, octoDNS-style; groups key, ttl, type, value, values.
_FAST_ONE_RE = re.compile(_FAST_KEY + _fast_fields("  ", "  ") + _FAST_END)
#: A key holding a list of records, then each ``- `` item.
_FAST_LIST_RE = re.compile(_FAST_KEY + r"(?=- )")
_FAST_ITEM_RE = re.compile(_fast_fields("- ", "  ") + rf"(?:(?=- )|{_FAST_END})")
_VALUES_ITEM_RE = re.compile(rf" *- ({_SCALAR})\n")

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_KEY_TAG = "tag:yaml.org,2002:merge"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


#: The safe loader's implicit resolvers by first character, wildcards (key None) appended:
#: the list ``Resolver.resolve`` tries for a plain scalar, found with one lookup.
_RESOLVERS: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: (*resolvers, *yaml.resolver.Resolver.yaml_implicit_resolvers.get(None, ()))
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    if first is not None
}
_WILDCARD_RESOLVERS = tuple(yaml.resolver.Resolver.yaml_implicit_resolvers.get(None, ()))


def _any_of(resolvers: Sequence[tuple[str, re.Pattern[str]]]) -> re.Pattern[str] | None:
    """One pattern that matches where any of ``resolvers`` does (None if they differ in flags)."""
    flags = {regexp.flags for _tag, regexp in resolvers}
    if len(flags) != 1:
        return None
    return re.compile("|".join(f"(?:{regexp.pattern})" for _tag, regexp in resolvers), flags.pop())


#: Per first character, whether a plain scalar resolves to anything but a string, in one
#: regex call: the hot question of the fast path (a value must be a string).
_NOT_STR: dict[str, re.Pattern[str] | None] = {
    first: _any_of(resolvers) for first, resolvers in _RESOLVERS.items()
}


def _plain_tag(text: str) -> str:
    """The tag the safe loader resolves a plain scalar to (``Resolver.resolve``'s rules)."""
    for tag, regexp in _RESOLVERS.get(text[:1], _WILDCARD_RESOLVERS):
        if regexp.match(text):
            return str(tag)
    return _STR_TAG


def _plain_is_str(text: str) -> bool:
    """Whether a plain scalar resolves to a string: ``_plain_tag(text) == _STR_TAG``, faster."""
    first = text[:1]
    if first not in _RESOLVERS:
        return not _WILDCARD_RESOLVERS or _plain_tag(text) == _STR_TAG
    pattern = _NOT_STR[first]
    if pattern is None:
        return _plain_tag(text) == _STR_TAG
    return pattern.match(text) is None


def _plain_value(text: str) -> Scalar:
    """A plain scalar's value as ``_Composer._scalar`` gives it; ``_Bail`` where it reports."""
    tag = _plain_tag(text)
    if tag == _STR_TAG:
        return text
    if tag in _NUMBER_TAGS and len(text) > MAX_NUMBER_TEXT:
        raise _Bail  # the composer keeps it as text and says why where it is used
    construct = _CONSTRUCTOR.yaml_constructors.get(tag)
    if construct is None:
        raise _Bail
    try:
        value: object = construct(_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    except Exception as exc:  # whatever the composer does with it, it is done there
        raise _Bail from exc
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return text


def _unquote(raw: str) -> str | None:
    """A quoted scalar's value; None for a plain one."""
    if raw[0] == "'":
        return raw[1:-1].replace("''", "'")
    if raw[0] == '"':
        return raw[1:-1]
    return None


def _key(raw: str) -> str:
    """A mapping key's text, as ``_Composer._mapping`` takes it; a merge key bails."""
    text = _unquote(raw)
    if text is not None:
        return text
    if _plain_tag(raw) == _MERGE_KEY_TAG:
        raise _Bail
    return raw


def _inline(raw: str, line: int) -> YNode:
    """A value written on one line: a scalar, ``[...]`` or ``{...}``."""
    if raw[0] == "[":
        items = _FLOW_SCALAR_RE.findall(raw, 1, len(raw) - 1)
        return YSeq(line, tuple(_inline(item, line) for item in items))
    if raw[0] == "{":
        tokens = _FLOW_SCALAR_RE.findall(raw, 1, len(raw) - 1)
        entries: dict[str, YEntry] = {}
        for key_raw, value_raw in zip(tokens[::2], tokens[1::2], strict=True):
            key = _key(key_raw)
            if key in entries:
                raise _Bail
            entries[key] = YEntry(line, _inline(value_raw, line))
        return YMap(line, MappingProxyType(entries))
    text = _unquote(raw)
    if text is not None:
        return YScalar(line, text, text)
    return YScalar(line, _plain_value(raw), raw)


class _Token(NamedTuple):
    """One content line: where it starts and what it holds."""

    line: int
    #: Column of the line's first character (its ``-`` if any).
    indent: int
    dash: bool
    #: Column of what follows the ``- `` (``indent`` when there is no dash).
    column: int
    key: str | None
    #: The value's source text: after ``key: ``, or the whole item; None after a bare ``key:``.
    value: str | None


def _tokens(lines: Sequence[str], first_line: int) -> list[_Token]:
    tokens: list[_Token] = []
    for number, text in enumerate(lines, first_line):
        if _GAP_LINE_RE.fullmatch(text):
            continue
        m = _LINE_RE.fullmatch(text)
        if m is None:
            raise _Bail
        indent, dash, key, value, item = m.groups()
        column = len(indent) + len(dash or "")
        if key is not None:
            tokens.append(_Token(number, len(indent), bool(dash), column, _key(key), value))
        else:
            tokens.append(_Token(number, len(indent), bool(dash), column, None, item))
    return tokens


class _Block:
    """Located nodes from tokens, by indentation (YAML 1.1 section 9.3, block collections)."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.next = 0
        #: Collections open around the one being read; past ``MAX_DEPTH`` the reader gives
        #: up, and ``_compose`` reports the depth (recursing no deeper than that).
        self.depth = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.next] if self.next < len(self.tokens) else None

    def mapping(self, column: int) -> YMap:
        """The mapping whose first key is the next token, at ``column`` (maybe after a dash)."""
        first = self.tokens[self.next]
        entries: dict[str, YEntry] = {}
        token: _Token | None = first
        self._enter()
        while token is not None:
            if token.key is None or token.key in entries:
                raise _Bail
            self.next += 1
            if token.value is not None:
                node = _inline(token.value, token.line)
            else:
                node = self._nested(column)
            entries[token.key] = YEntry(token.line, node)
            token = self._peek()
            if token is None or token.indent < column:
                break
            if token.indent > column or token.dash:
                raise _Bail
        self.depth -= 1
        return YMap(first.line, MappingProxyType(entries))

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Bail

    def _nested(self, column: int) -> YNode:
        """The value of a bare ``key:`` at ``column``, on the lines below it."""
        token = self._peek()
        if token is not None and token.dash and token.indent >= column:
            return self._sequence(token.indent)
        if token is not None and not token.dash and token.indent > column:
            return self.mapping(token.indent)
        raise _Bail  # an empty (null) value

    def _sequence(self, indent: int) -> YSeq:
        first_line = self.tokens[self.next].line
        items: list[YNode] = []
        token = self._peek()
        self._enter()
        while token is not None and token.dash and token.indent == indent:
            if token.key is not None:
                items.append(self.mapping(token.column))
            else:
                assert token.value is not None
                items.append(_inline(token.value, token.line))
                self.next += 1
            token = self._peek()
        if token is not None and token.indent > indent:
            raise _Bail
        self.depth -= 1
        return YSeq(first_line, tuple(items))


def _generic_entry(text: str, pos: int, end: int, line: int) -> tuple[str, YNode]:
    """The one top-level entry in ``text[pos:end]`` (which starts at ``line``), as nodes."""
    tokens = _tokens(text[pos:end].split("\n"), line)
    if not tokens or tokens[0].indent != 0 or tokens[0].dash:
        raise _Bail
    block = _Block(tokens)
    root = block.mapping(0)
    if block.next != len(tokens) or len(root.entries) != 1:
        raise _Bail
    ((key, entry),) = root.entries.items()
    return key, entry.value


def _libyaml_entry(text: str, line: int) -> tuple[str, YNode]:
    """One top-level entry the strict reader declines, composed by libyaml on its own.

    For an entry such as a long TXT value folded over lines, an empty value or
    a ``!!str`` tag, so that one of them does not send a whole big file to
    libyaml.  Reading the entry alone gives what reading the file gives: it
    starts with its key in column 0 where the entry before it ended, it ends
    where a line starts a new key in column 0, which no scalar or collection
    of the entry can continue into, and nothing outside it can change how it
    reads, but for anchors and aliases, which reach across entries.  So an
    entry that starts indented or has ``&`` or ``*`` bails, as does one in
    which libyaml finds any problem: then the whole file is read again and
    the problem reported as usual.
    """
    if text.startswith(" ") or "&" in text or "*" in text:
        raise _Bail
    problems = _Problems("")
    try:
        node, loader = _single_node(_FastLoader, text)
    except (yaml.YAMLError, _TooDeep) as exc:
        raise _Bail from exc
    try:
        root = None if node is None else _Composer(loader, problems, line).convert(node)
    finally:
        loader.dispose()
    if problems.items or not isinstance(root, YMap) or len(root.entries) != 1:
        raise _Bail
    ((key, entry),) = root.entries.items()
    if entry.key_line != line:
        raise _Bail
    return key, entry.value


def _string(raw: str) -> str | None:
    """A one-line scalar's value if it is a string: quoted, or plain and not resolved
    to a number, boolean, null and the like (those are typed by the generic reader)."""
    first = raw[0]
    if first == "'":
        return raw[1:-1].replace("''", "'")
    if first == '"':
        return raw[1:-1]
    if _IPV4_TEXT_RE.fullmatch(raw):
        # The commonest value, and always a string: none of YAML's int, float and timestamp
        # forms has three dots (test_config_reader checks it against the resolver itself).
        return raw
    return raw if _plain_is_str(raw) else None


def _simple(m: re.Match[str], line: int, first: int, ttls: dict[str, int]) -> _Simple | None:
    """A ``_Simple`` from a ``_fast_fields`` match (groups from ``first``) at ``line``.

    ``ttls`` shares one int object per distinct TTL across the file.
    """
    ttl, rtype, value, values = m.group(first, first + 1, first + 2, first + 3)
    if values is None:
        text = _string(value)
        if text is None:
            return None
        strings: tuple[str, ...] = (text,)
    else:
        found = [_string(raw) for raw in _VALUES_ITEM_RE.findall(values)]
        if None in found:
            return None
        strings = tuple(text for text in found if text is not None)
    number = None
    if ttl is not None:
        number = ttls.get(ttl)
        if number is None:
            number = ttls[ttl] = int(ttl)
    return _Simple(line, number, rtype, strings, values is not None)


def _fast_list(
    text: str, pos: int, line: int, ttls: dict[str, int]
) -> tuple[_SimpleList, int] | None:
    """The ``- `` items after a key line at ``pos``, all ``_Simple``: (them, end), or None."""
    records: list[_Simple] = []
    end = pos
    while (item := _FAST_ITEM_RE.match(text, end)) is not None:
        simple = _simple(item, line + text.count("\n", pos, end), 1, ttls)
        if simple is None:
            return None
        records.append(simple)
        end = item.end()
    if not records or text.startswith("- ", end):
        return None
    return _SimpleList(tuple(records)), end


def _read_strict(text: str, *, entry_by_libyaml: bool = True) -> list[_Entry] | None:
    """The top-level entries of ``text`` if it is in the strict subset, else None.

    With ``entry_by_libyaml``, an entry outside the subset is composed by
    libyaml on its own where that is safe (``_libyaml_entry``) rather than
    sending the whole file to libyaml.
    """
    if "\r" in text:
        # CRLF line ends (a file edited on Windows): YAML counts and folds CRLF as it does
        # LF, so the text means the same with LF.  A lone CR still bails.
        text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    start = _START_RE.match(text)
    assert start is not None
    if _outside_subset(text, start.end()):
        return None
    gap = _GAP_RE.match(text, start.end())
    assert gap is not None
    pos = gap.end()
    line = 1 + text.count("\n", 0, pos)
    entries: list[_Entry] = []
    keys: set[str] = set()
    ttls: dict[str, int] = {}
    try:
        while pos < len(text):
            value: YNode | _Simple | _SimpleList | None = None
            if (m := _FAST_ONE_RE.match(text, pos)) is not None:
                key, end = m.group(1), m.end()
                if key[0] == "'":
                    key = _key(key)
                value = _simple(m, line + 1, 2, ttls)
            elif (m := _FAST_LIST_RE.match(text, pos)) is not None:
                key = _key(m.group(1))
                if (items := _fast_list(text, m.end(), line + 1, ttls)) is not None:
                    value, end = items
            if value is None:  # not the fast shapes: read this one entry line by line
                after = _NEXT_ENTRY_RE.search(text, pos)
                end = after.end() if after is not None else len(text)
                try:
                    key, value = _generic_entry(text, pos, end, line)
                except _Bail:
                    if not entry_by_libyaml:
                        raise
                    key, value = _libyaml_entry(text[pos:end], line)
            if key in keys:
                raise _Bail
            keys.add(key)
            entries.append((key, line, value))
            line += text.count("\n", pos, end)
            pos = end
    except _Bail:
        return None
    return entries or None


# --- typed access with problems ----------------------------------------------------------


def _show(node: YNode) -> str:
    """How a reason quotes a value it rejects."""
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    if isinstance(node.value, str) and len(node.value) > 60:  # a long value is not echoed
        return f"{node.value[:40]!r}... ({len(node.value)} characters)"
    return repr(node.value)


@dataclass(frozen=True, slots=True)
class _Scope:
    """Typed reads from located YAML on behalf of one record label (``api A``).

    Each reader returns None after reporting a problem, so callers carry on
    and keep finding problems instead of stopping at the first.
    """

    problems: _Problems
    label: str

    def error(self, line: int, reason: str) -> None:
        self.problems.add(line, self.label, reason)

    def string(self, node: YNode, what: str) -> str | None:
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.value
        self.error(node.line, f"{what} must be a string, not {_show(node)}")
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
            self.error(node.line, f"{what} must be an integer, not {_show(node)}")
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
            self.error(node.line, f"{what} must be a number, not {_show(node)}")
            return None
        value = float(node.value)
        if not low <= value <= high:
            self.error(node.line, f"{what} {node.text} is out of range {low:g}..{high:g}")
            return None
        return value

    def flag(self, node: YNode, what: str) -> bool | None:
        if isinstance(node, YScalar) and isinstance(node.value, bool):
            return node.value
        self.error(node.line, f"{what} must be true or false, not {_show(node)}")
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
            self.error(node.line, f"{what} must be a mapping, not {_show(node)}")
            return None
        if allowed is not None:
            for key, entry in node.entries.items():
                if key not in allowed:
                    self.error(entry.key_line, f"unknown key {key!r} in {what}")
        return node

    def sequence(self, node: YNode, what: str) -> tuple[YNode, ...] | None:
        """A non-empty list."""
        if not isinstance(node, YSeq):
            self.error(node.line, f"{what} must be a list, not {_show(node)}")
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


# --- names ----------------------------------------------------------------------------------


def _relative(name: str, origin: str) -> str:
    """``api.gw.example.com.`` -> ``api``; the apex is ``@`` as in master files."""
    if name == origin:
        return "@"
    return name[: -len(origin) - 1]


def _within(name: str, ancestor: str) -> bool:
    """Whether ``name`` is ``ancestor`` or below it (both absolute)."""
    return ancestor == "." or name == ancestor or name.endswith("." + ancestor)


def _name_problem(name: str) -> str | None:
    """Why an absolute owner name is invalid (RFC 1035 section 2.3.4), or None.

    A ``*`` is a wildcard only as the whole leftmost label (RFC 4592 section 2.1.1).
    """
    if len(name) + 1 > 255:
        return f"name {name!r} is longer than 255 octets"
    labels = name[:-1].split(".") if name != "." else []
    for index, label in enumerate(labels):
        if not label:
            return f"name {name!r} has an empty label"
        if len(label) > 63:
            return f"label {label!r} is longer than 63 octets"
        if label == "*" and index == 0:
            continue
        if "*" in label:
            return f"'*' is only a wildcard as the whole leftmost label, not in {name!r}"
        if not _LABEL_RE.match(label):
            return f"label {label!r} has characters other than letters, digits, '-' and '_'"
    return None


#: A key that is certainly a valid relative name already in lower case: 1-63 octet labels of
#: ``_LABEL_RE``'s characters.  (Length of the whole name is still checked.)
_PLAIN_OWNER_RE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def _owner_name(key: str, origin: str) -> tuple[str | None, str | None]:
    """A record key -> (absolute owner name, None) or (None, reason)."""
    if _PLAIN_OWNER_RE.fullmatch(key) and len(key) + len(origin) + 2 <= 255:
        return f"{key}.{origin}", None  # what the general rules below give, quicker
    lowered = key.lower()
    if lowered == "@":
        return None, "invalid name '@', use '' for the apex (octoDNS)"
    if lowered.endswith("."):
        if not _within(lowered, origin):
            return None, f"{key!r} is outside the zone {origin}"
        name = lowered
    else:
        name = f"{lowered}.{origin}" if lowered else origin
    reason = _name_problem(name)
    return (None, reason) if reason else (name, None)


def _host_problem(target: str, allow_root: bool) -> str | None:
    """Why a target is not an absolute host name, or None (RFC 1123 section 2.1)."""
    if target == ".":
        return None if allow_root else "'.' is not a valid target here"
    try:
        ipaddress.ip_address(target.rstrip("."))
    except ValueError:
        pass
    else:
        return f"{target!r} is an IP address, not a host name"
    if not target.endswith("."):
        return f"{target!r} must be an absolute name ending with '.'"
    if len(target) + 1 > 255:
        return f"{target!r} is longer than 255 octets"
    for label in target[:-1].split("."):
        if len(label) > 63 or not _HOST_LABEL_RE.match(label):
            return f"{target!r} is not a valid host name"
    return None


def _target(scope: _Scope, node: YNode, what: str, *, allow_root: bool = False) -> str | None:
    text = scope.string(node, what)
    if text is None:
        return None
    reason = _host_problem(text.lower(), allow_root)
    if reason:
        scope.error(node.line, reason)
        return None
    return text.lower()


# --- record values --------------------------------------------------------------------------

#: An IPv4 address as ``str(IPv4Address)`` writes it: four decimal octets, no leading zeros.
#: Text that matches is valid and already normal, so ``ipaddress`` need not parse it.
_IPV4_TEXT_RE = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                           r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")  # fmt: skip


def _ip_text(text: str, version: int) -> str | None:
    """``text`` as an IP address of the given family, normalised (RFC 5952 for IPv6); or None."""
    if version == 4 and _IPV4_TEXT_RE.fullmatch(text):
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(address) if address.version == version else None


def _address(scope: _Scope, node: YNode, version: int, what: str = "value") -> str | None:
    """An IP address of the given family, normalised (RFC 5952 text for IPv6)."""
    text = scope.string(node, what)
    if text is None:
        return None
    address = _ip_text(text, version)
    if address is None:
        scope.error(node.line, f"{text!r} is not a valid IPv{version} address")
    return address


# Rdata from one string value, or the reason it is invalid.  The general path (located nodes)
# and the fast path (``_simple_record``) both call these, so they cannot disagree.


def _text_a(text: str) -> Rdata | str:
    if _IPV4_TEXT_RE.fullmatch(text):
        return A(text)  # the common case: valid and normal already
    address = _ip_text(text, 4)
    return A(address) if address else f"{text!r} is not a valid IPv4 address"


def _text_aaaa(text: str) -> Rdata | str:
    address = _ip_text(text, 6)
    return AAAA(address) if address else f"{text!r} is not a valid IPv6 address"


def _text_cname(text: str) -> Rdata | str:
    target = text.lower()
    return _host_problem(target, False) or CNAME(target)


def _text_ns(text: str) -> Rdata | str:
    target = text.lower()
    return _host_problem(target, False) or NS(target)


def _text_ptr(text: str) -> Rdata | str:
    target = text.lower()
    return _host_problem(target, False) or PTR(target)


def _text_txt(text: str) -> Rdata | str:
    """One TXT value -> one TXT rdata of 255-octet character-strings (RFC 1035 section 3.3.14).

    octoDNS writes ``;`` as ``\\;`` in YAML (it starts a comment in master
    files) and rejects non-ASCII text; both rules are kept so a file means
    the same to octoDNS and to dnsfail.
    """
    if _UNESCAPED_SEMICOLON_RE.search(text):
        return f"unescaped ';' in {text!r} (write '\\;')"
    try:
        data = text.replace("\\;", ";").encode("ascii")
    except UnicodeEncodeError:
        return f"non-ASCII character in {text!r}"
    chunks = tuple(data[i : i + 255] for i in range(0, len(data), 255)) or (b"",)
    if len(data) + len(chunks) > MAX_RDATA:
        return _rdata_too_long("TXT", len(data) + len(chunks))
    return TXT(chunks)


def _rdata_too_long(rtype: str, octets: int) -> str:
    return (f"{rtype} value is {octets} octets on the wire, more than the {MAX_RDATA} "
            "RDLENGTH allows (RFC 1035 section 3.2.1)")


#: Values of one record that fit ``RRSET_BUDGET`` whatever they are, but for TXT and CAA
#: (the longest other rdata is an SRV with a 255-octet target): no need to count them.
_SAFE_VALUES = RRSET_BUDGET // (RR_OVERHEAD + 6 + 255)


def _rrset_problem(rtype: str, rdatas: Sequence[Rdata]) -> str | None:
    """Why one record's values cannot be sent in one reply, even over TCP, or None.

    The rule: the RRset alone, with a header and the longest possible
    question, must fit a 65,535-octet message (RFC 1035 section 4.2.2).
    """
    if len(rdatas) <= _SAFE_VALUES and rtype not in ("TXT", "CAA"):
        return None
    octets = rrset_length(rdatas)
    if octets <= RRSET_BUDGET:
        return None
    return (f"the {len(rdatas)} value(s) take {octets} octets in a reply, more than the "
            f"{RRSET_BUDGET} a 65535-octet message has room for (RFC 1035 section 4.2.2)")


#: Record types whose every value is one string, each parsed by a ``_text_*`` function.
_TEXT_PARSERS: Mapping[str, Callable[[str], Rdata | str]] = {
    "A": _text_a,
    "AAAA": _text_aaaa,
    "ALIAS": _text_cname,
    "CNAME": _text_cname,
    "NS": _text_ns,
    "PTR": _text_ptr,
    "TXT": _text_txt,
}


_ValueParser = Callable[[_Scope, YNode], Rdata | None]


def _string_value(parse: Callable[[str], Rdata | str]) -> _ValueParser:
    """The located form of a ``_text_*`` parser: a string node, its problem at its line."""

    def parser(scope: _Scope, node: YNode) -> Rdata | None:
        text = scope.string(node, "value")
        if text is None:
            return None
        result = parse(text)
        if isinstance(result, str):
            scope.error(node.line, result)
            return None
        return result

    return parser


def _fields(scope: _Scope, node: YNode, rtype: str, allowed: frozenset[str]) -> YMap | None:
    return scope.mapping(node, f"{rtype} value", allowed)


def _required(scope: _Scope, value: YMap, key: str, rtype: str) -> YNode | None:
    node = value.get(key)
    if node is None:
        scope.error(value.line, f"missing {key!r} in {rtype} value")
    return node


def _parse_mx(scope: _Scope, node: YNode) -> Rdata | None:
    """MX as ``preference``/``exchange``, or octoDNS's legacy ``priority``/``value``.

    A null MX (exchange ``.``, RFC 7505) is accepted.
    """
    value = _fields(scope, node, "MX", frozenset({"preference", "exchange", "priority", "value"}))
    if value is None:
        return None
    legacy = "preference" not in value.entries and "priority" in value.entries
    pref_key = "priority" if legacy else "preference"
    exch_key = (
        "value" if "exchange" not in value.entries and "value" in value.entries else "exchange"
    )
    pref_node = _required(scope, value, pref_key, "MX")
    exch_node = _required(scope, value, exch_key, "MX")
    preference = scope.integer(pref_node, pref_key, 0, 65535) if pref_node else None
    exchange = _target(scope, exch_node, exch_key, allow_root=True) if exch_node else None
    if preference is None or exchange is None:
        return None
    return MX(preference, exchange)


def _parse_srv(scope: _Scope, node: YNode) -> Rdata | None:
    """SRV fields per RFC 2782; target ``.`` means "no such service"."""
    value = _fields(scope, node, "SRV", frozenset({"priority", "weight", "port", "target"}))
    if value is None:
        return None
    numbers: list[int | None] = []
    for key in ("priority", "weight", "port"):
        field_node = _required(scope, value, key, "SRV")
        numbers.append(scope.integer(field_node, key, 0, 65535) if field_node else None)
    target_node = _required(scope, value, "target", "SRV")
    target = _target(scope, target_node, "target", allow_root=True) if target_node else None
    priority, weight, port = numbers
    if priority is None or weight is None or port is None or target is None:
        return None
    return SRV(priority, weight, port, target)


def _parse_caa(scope: _Scope, node: YNode) -> Rdata | None:
    """CAA per RFC 8659 section 4.1: flags octet, alphanumeric tag of 1..15, value."""
    value = _fields(scope, node, "CAA", frozenset({"flags", "tag", "value"}))
    if value is None:
        return None
    flags_node = value.get("flags")
    flags = scope.integer(flags_node, "flags", 0, 255) if flags_node else 0
    tag_node = _required(scope, value, "tag", "CAA")
    tag = scope.string(tag_node, "tag") if tag_node else None
    if tag is not None and tag_node is not None and not _CAA_TAG_RE.match(tag):
        scope.error(tag_node.line, f"CAA tag {tag!r} must be 1 to 15 letters or digits")
        tag = None
    text_node = _required(scope, value, "value", "CAA")
    text = scope.string(text_node, "value") if text_node else None
    if flags is None or tag is None or text is None:
        return None
    caa = CAA(flags, tag, text)
    if rdata_length(caa) > MAX_RDATA and text_node is not None:
        scope.error(text_node.line, _rdata_too_long("CAA", rdata_length(caa)))
        return None
    return caa


_PARSERS: Mapping[str, _ValueParser] = {
    **{rtype: _string_value(parse) for rtype, parse in _TEXT_PARSERS.items()},
    "CAA": _parse_caa,
    "MX": _parse_mx,
    "SRV": _parse_srv,
}


def _show_rdata(rdata: Rdata) -> str:
    """How a duplicate value is quoted: the single field, or the fields."""
    fields = [getattr(rdata, slot) for slot in type(rdata).__slots__]
    if len(fields) == 1:
        only = fields[0]
        if isinstance(only, tuple):
            return repr(b"".join(only).decode("ascii"))
        return repr(only)
    return repr(" ".join(str(f) for f in fields))


# --- records ----------------------------------------------------------------------------------


class _Record(NamedTuple):
    """One record mapping of the file, checked on its own.

    A NamedTuple rather than a dataclass: a big zone makes one per record,
    and only the zone-wide checks read it before it is dropped.
    """

    name: str
    rel: str
    rtype: str
    ttl: int
    rdatas: tuple[Rdata, ...]
    line: int
    #: The values of the record's ``octodns`` and ``dynamic`` keys, None when absent.
    octodns: YNode | None = None
    dynamic: YNode | None = None

    @property
    def label(self) -> str:
        return f"{self.rel} {self.rtype}"

    @property
    def is_dynamic(self) -> bool:
        return self.dynamic is not None


def _record_bodies(scope: _Scope, key_line: int, node: YNode) -> list[tuple[int, YMap]]:
    """A key holds one record mapping or a list of them; each with the line it starts on."""
    if isinstance(node, YMap):
        return [(key_line, node)]
    if isinstance(node, YSeq):
        if not node.items:
            scope.error(key_line, "empty list of records")
        bodies: list[tuple[int, YMap]] = []
        for item in node.items:
            body = scope.mapping(item, "record")
            if body is not None:
                bodies.append((item.line, body))
        return bodies
    scope.error(key_line, f"expected a record mapping or a list of them, not {_show(node)}")
    return []


def _value_nodes(scope: _Scope, rtype: str, line: int, body: YMap) -> tuple[YNode, ...]:
    """The ``value`` or ``values`` of a record, as a tuple of nodes."""
    value, values = body.get("value"), body.get("values")
    if value is not None and values is not None:
        scope.error(line, "give 'value' or 'values', not both")
        return ()
    if value is None and values is None:
        if "dynamic" in body.entries:
            scope.error(line, "missing 'values' (a dynamic record's backup answer)")
        else:
            scope.error(line, "missing 'value' or 'values'")
        return ()
    if value is not None:
        return (value,)
    assert values is not None
    if rtype in _SINGLE_VALUE:
        scope.error(body.key_line("values"), f"{rtype} takes a single 'value', not 'values'")
        return ()
    return scope.sequence(values, "values") or ()


def _parse_rdatas(scope: _Scope, rtype: str, nodes: tuple[YNode, ...]) -> tuple[Rdata, ...]:
    """Each value parsed, in file order; bad and duplicate values reported and left out."""
    parser = _PARSERS[rtype]
    rdatas: list[Rdata] = []
    for node in nodes:
        rdata = parser(scope, node)
        if rdata is not None and rdata in rdatas:
            scope.error(node.line, f"duplicate value {_show_rdata(rdata)}")
        elif rdata is not None:
            rdatas.append(rdata)
    return tuple(rdatas)


def _parse_record(
    problems: _Problems, name: str, rel: str, line: int, body: YMap
) -> _Record | None:
    """One record mapping: type, TTL and values.  None if it cannot be typed at all."""
    type_node = body.get("type")
    if type_node is None:
        problems.add(line, rel, "missing 'type'")
        return None
    rtype = _Scope(problems, rel).string(type_node, "type")
    if rtype is None:
        return None
    scope = _Scope(problems, f"{rel} {rtype}")
    if rtype not in _PARSERS:
        scope.error(type_node.line, f"unknown record type {rtype!r}")
        return None
    for key, entry in body.entries.items():
        if key not in _RECORD_KEYS:
            scope.error(entry.key_line, f"unknown key {key!r} in record")
    ttl_node = body.get("ttl")
    # RFC 2181 section 8: a TTL is 0..2**31-1.
    ttl = scope.integer(ttl_node, "ttl", 0, MAX_TTL) if ttl_node else DEFAULT_TTL
    rdatas = _parse_rdatas(scope, rtype, _value_nodes(scope, rtype, line, body))
    if (too_big := _rrset_problem(rtype, rdatas)) is not None:
        scope.error(line, too_big)
    if rtype == "SRV" and not re.match(r"^(\*|_[^.]+)\.[^.]+", "" if rel == "@" else rel):
        scope.error(line, "SRV owner must look like _service._proto (RFC 2782)")
    if "dynamic" in body.entries and rtype not in ("A", "AAAA"):
        scope.error(body.key_line("dynamic"), "dynamic is only supported on A and AAAA records")
    return _Record(
        name, rel, rtype, ttl if ttl is not None else DEFAULT_TTL, rdatas, line,
        body.get("octodns"), body.get("dynamic"),
    )  # fmt: skip


def _simple_record(name: str, rel: str, line: int, simple: _Simple) -> _Record | None:
    """The record ``_parse_record`` would make of ``simple``, or None if it might object.

    Only the clean case is decided here: a known string-valued type, a TTL
    in range, every value valid and distinct.  Anything else goes to
    ``_parse_record`` with located nodes, so each problem is found and
    worded in one place.
    """
    parse = _TEXT_PARSERS.get(simple.rtype)
    ttl = DEFAULT_TTL if simple.ttl is None else simple.ttl
    if parse is None or ttl > MAX_TTL or (simple.listed and simple.rtype in _SINGLE_VALUE):
        return None
    if len(simple.values) == 1:
        rdata = parse(simple.values[0])
        if isinstance(rdata, str) or (simple.rtype == "TXT" and _rrset_problem("TXT", (rdata,))):
            return None
        return _Record(name, rel, simple.rtype, ttl, (rdata,), line)
    rdatas: list[Rdata] = []
    for text in simple.values:
        rdata = parse(text)
        if isinstance(rdata, str) or rdata in rdatas:
            return None
        rdatas.append(rdata)
    if _rrset_problem(simple.rtype, rdatas) is not None:
        return None
    return _Record(name, rel, simple.rtype, ttl, tuple(rdatas), line)


def _parse_records(problems: _Problems, entries: Iterable[_Entry], origin: str) -> list[_Record]:
    records: list[_Record] = []
    for key, key_line, value in entries:
        name, reason = _owner_name(key, origin)
        if name is None:
            problems.add(key_line, key or "@", reason or "invalid name")
            continue
        rel = _relative(name, origin)
        if isinstance(value, _Simple):
            record = _simple_record(name, rel, key_line, value)
            if record is None:
                record = _parse_record(problems, name, rel, key_line, value.node())
            if record is not None:
                records.append(record)
            continue
        if isinstance(value, _SimpleList):
            for simple in value.records:
                record = _simple_record(name, rel, simple.line, simple)
                if record is None:
                    record = _parse_record(problems, name, rel, simple.line, simple.node())
                if record is not None:
                    records.append(record)
            continue
        for line, body in _record_bodies(_Scope(problems, rel), key_line, value):
            record = _parse_record(problems, name, rel, line, body)
            if record is not None:
                records.append(record)
    return records


# --- zone rules ----------------------------------------------------------------------------------


def _index(problems: _Problems, records: list[_Record]) -> dict[str, dict[str, _Record]]:
    """Owner -> type -> record; a second record of one type at one name is a problem."""
    index: dict[str, dict[str, _Record]] = {}
    for record in records:
        at_name = index.setdefault(record.name, {})
        first = at_name.get(record.rtype)
        if first is not None:
            problems.add(
                record.line,
                record.label,
                f"duplicate {record.rtype} record (first at line {first.line})",
            )
            continue
        at_name[record.rtype] = record
    return index


def _check_exclusive(
    problems: _Problems, index: dict[str, dict[str, _Record]], origin: str
) -> None:
    """CNAME and ALIAS placement (RFC 1034 section 3.6.2, RFC 2181 section 10.1)."""
    for name, by_type in index.items():
        cname = by_type.get("CNAME")
        if cname is not None and name == origin:
            problems.add(cname.line, cname.label, "CNAME is not allowed at the apex (use ALIAS)")
        elif cname is not None and len(by_type) > 1:
            others = ", ".join(sorted(t for t in by_type if t != "CNAME"))
            problems.add(
                cname.line, cname.label, f"CNAME cannot coexist with other records ({others})"
            )
        alias = by_type.get("ALIAS")
        if alias is not None and name != origin:
            problems.add(alias.line, alias.label, "ALIAS is only allowed at the apex")
        elif alias is not None and ("A" in by_type or "AAAA" in by_type):
            problems.add(alias.line, alias.label, "ALIAS cannot coexist with A or AAAA records")
        ns = by_type.get("NS")
        if ns is not None and name.startswith("*."):
            problems.add(
                ns.line, ns.label, "NS is not allowed on a wildcard (RFC 4592 section 4.2)"
            )


def _delegations(
    problems: _Problems, index: dict[str, dict[str, _Record]], origin: str
) -> set[str]:
    """Delegation points, and problems for the data they hide (RFC 1034 section 4.2.1).

    Below a cut only address records may remain, as glue for the child's
    name servers; at the cut itself NS and glue.  Anything else would never
    be answered authoritatively.
    """
    cuts = {name for name, by_type in index.items() if name != origin and "NS" in by_type}
    if not cuts:
        return cuts
    for name, by_type in index.items():
        # Ancestors, not every cut: linear in the zone's size however many delegations it has.
        above = [parent for parent in parent_names(name) if parent in cuts]
        allowed = {"A", "AAAA"} if above else {"A", "AAAA", "NS"}
        at = above or ([name] if name in cuts else [])
        if not at:
            continue
        cut = min(at, key=len)
        for rtype, record in by_type.items():
            if rtype not in allowed or record.is_dynamic:
                problems.add(record.line, record.label, f"occluded by delegation at {cut}")
    return {c for c in cuts if not any(parent in cuts for parent in parent_names(c))}


def _zone_names(owners: Sequence[str], origin: str) -> frozenset[str]:
    """Every owner and every empty non-terminal between it and the apex (RFC 4592 section 2.2.2)."""
    names = {origin, *owners}
    suffix = "." + origin
    for owner in owners:
        # Only an owner two or more labels below the apex has empty non-terminals above it.
        rel = owner[: -len(suffix)] if owner.endswith(suffix) else ""
        while "." in rel:
            rel = rel.split(".", 1)[1]
            names.add(rel + suffix)
    return frozenset(names)


def _check_alias_target(
    problems: _Problems, alias: _Record, origin: str, names: frozenset[str]
) -> None:
    """ALIAS is answered from in-zone data, so its target must exist in this zone."""
    if not alias.rdatas:
        return
    rdata = alias.rdatas[0]
    assert isinstance(rdata, CNAME)
    target = rdata.target
    if target == origin or not _within(target, origin):
        problems.add(
            alias.line, alias.label, f"ALIAS target {target!r} must be a name inside the zone"
        )
    elif target not in names and not any(
        "*." + parent in names for parent in parent_names(target) if _within(parent, origin)
    ):
        problems.add(alias.line, alias.label, f"ALIAS target {target!r} does not exist in the zone")


# --- octodns / dnsfail options ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    """A record's ``octodns`` mapping, split into the parts dnsfail reads."""

    healthcheck: YMap | None = None
    dnsfail: YMap | None = None

    def dnsfail_node(self, key: str) -> YNode | None:
        return self.dnsfail.get(key) if self.dnsfail is not None else None


_NO_OPTIONS = _Options()


def _options(problems: _Problems, record: _Record, origin: str) -> _Options:
    node = record.octodns
    if node is None:
        return _NO_OPTIONS
    scope = _Scope(problems, record.label)
    octodns = scope.mapping(node, "octodns")
    if octodns is None:
        return _Options()
    health = octodns.get("healthcheck")
    health_map = scope.mapping(health, "octodns.healthcheck") if health is not None else None
    knobs = octodns.get("dnsfail")
    dnsfail = scope.mapping(knobs, "octodns.dnsfail", _DNSFAIL_KEYS) if knobs is not None else None
    if dnsfail is not None:
        if not record.is_dynamic:
            for key in _DYNAMIC_ONLY_KEYS:
                if key in dnsfail.entries:
                    scope.error(dnsfail.key_line(key), f"{key!r} only applies to dynamic records")
        if "soa" in dnsfail.entries and record.name != origin:
            scope.error(dnsfail.key_line("soa"), "'soa' is only allowed on apex records")
    return _Options(health_map, dnsfail)


# --- SOA ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SoaFields:
    """The synthesized SOA: dnsfail's defaults, each overridable from the file."""

    mname: str
    rname: str
    refresh: int = 3600
    retry: int = 600
    expire: int = 604800
    #: Negative-caching TTL (RFC 2308 section 4); short, so a name added after a miss appears soon.
    minimum: int = 60
    ttl: int = 3600
    serial: int | None = None


def _soa_name(scope: _Scope, node: YNode, what: str) -> str | None:
    """SOA names; an ``rname`` may be written as a mail address (RFC 1035 section 8)."""
    text = scope.string(node, what)
    if text is not None and what == "rname" and "@" in text:
        local, _, domain = text.partition("@")
        if "." not in local:
            text = f"{local}.{domain.rstrip('.')}."
    if text is None:
        return None
    return _target(scope, YScalar(node.line, text, text), what)


def _soa(
    problems: _Problems,
    index: dict[str, dict[str, _Record]],
    origin: str,
    options: Mapping[tuple[str, str], _Options],
) -> _SoaFields:
    apex = index.get(origin, {})
    ns = apex.get("NS")
    first = ns.rdatas[0] if ns is not None and ns.rdatas else None
    fields = _SoaFields(
        mname=first.target if isinstance(first, NS) else origin, rname=f"hostmaster.{origin}"
    )
    if len(fields.rname) + 1 > 255:  # the default, from a long origin
        line = min((record.line for record in apex.values()), default=1)
        problems.add(line, "@ SOA", f"the default SOA rname {fields.rname!r} is longer than "
                     "255 octets: set octodns.dnsfail.soa.rname")
    seen: _Record | None = None
    for record in apex.values():
        node = options.get((record.name, record.rtype), _NO_OPTIONS).dnsfail_node("soa")
        if node is None:
            continue
        scope = _Scope(problems, record.label)
        if seen is not None:
            scope.error(node.line, f"SOA override already given on '{seen.label}'")
            continue
        seen = record
        soa = scope.mapping(node, "soa", _SOA_KEYS)
        if soa is not None:
            fields = _soa_override(scope, soa, fields)
    return fields


def _soa_override(scope: _Scope, soa: YMap, fields: _SoaFields) -> _SoaFields:
    names: dict[str, str] = {}
    for key in ("mname", "rname"):
        if (node := soa.get(key)) is not None and (name := _soa_name(scope, node, key)):
            names[key] = name
    numbers: dict[str, int] = {}
    for key in ("serial", "refresh", "retry", "expire", "minimum", "ttl"):
        high = MAX_SERIAL if key == "serial" else MAX_TTL
        node = soa.get(key)
        number = scope.integer(node, key, 0, high) if node is not None else None
        if number is not None:
            numbers[key] = number
    return _SoaFields(
        mname=names.get("mname", fields.mname),
        rname=names.get("rname", fields.rname),
        refresh=numbers.get("refresh", fields.refresh),
        retry=numbers.get("retry", fields.retry),
        expire=numbers.get("expire", fields.expire),
        minimum=numbers.get("minimum", fields.minimum),
        ttl=numbers.get("ttl", fields.ttl),
        serial=numbers.get("serial", fields.serial),
    )


# --- dynamic records -------------------------------------------------------------------------


#: octoDNS's health-check defaults (HTTPS to port 443, path /_dns) with dnsfail's timing;
#: a record's check starts from this template, with the address filled in per value.
_OCTODNS_CHECK = ProbeSpec(ProbeProtocol.HTTPS, "", 443, path="/_dns")


def _probe_for(check: ProbeSpec, address: str) -> ProbeSpec:
    """The probe for one address; TCP drops the HTTP knobs so equal TCP probes dedupe."""
    if check.protocol is ProbeProtocol.TCP:
        return ProbeSpec(
            check.protocol, address, check.port, interval=check.interval,
            timeout=check.timeout, rise=check.rise, fall=check.fall,
        )  # fmt: skip
    return replace(check, address=address)


_OCTODNS_HEALTH_KEYS = frozenset({"host", "path", "port", "protocol"})
_DNSFAIL_HEALTH_KEYS = frozenset(
    {"interval", "timeout", "rise", "fall", "expect_status", "body_match", "headers",
     "verify_tls", "ca_file", "probe_addresses"}
)  # fmt: skip


def _octodns_health(scope: _Scope, node: YMap | None, health: ProbeSpec) -> ProbeSpec:
    """octoDNS's ``octodns.healthcheck``: protocol, port, host and path."""
    if node is None or scope.mapping(node, "octodns.healthcheck", _OCTODNS_HEALTH_KEYS) is None:
        return health
    choices = [p.value for p in ProbeProtocol]
    if (n := node.get("protocol")) and (
        protocol := scope.choice(n, "healthcheck protocol", choices)
    ):
        health = replace(health, protocol=ProbeProtocol(protocol))
    if (n := node.get("port")) and (port := scope.integer(n, "healthcheck port", 1, 65535)):
        health = replace(health, port=port)
    if (n := node.get("host")) and (host := scope.string(n, "healthcheck host")):
        health = replace(health, host=host)
    if (n := node.get("path")) and (path := scope.string(n, "healthcheck path")) is not None:
        if path.startswith("/"):
            health = replace(health, path=path)
        else:
            scope.error(n.line, f"healthcheck path {path!r} must start with '/'")
    return health


def _dnsfail_timing(scope: _Scope, node: YMap, health: ProbeSpec) -> ProbeSpec:
    """How often to probe and the anti-flap thresholds (rise successes up, fall failures down)."""
    if (n := node.get("interval")) and (interval := scope.number(n, "interval", 0.5, 3600)):
        health = replace(health, interval=interval)
    if (n := node.get("timeout")) and (timeout := scope.number(n, "timeout", 0.001, 3600)):
        health = replace(health, timeout=timeout)
    if (n := node.get("rise")) and (rise := scope.integer(n, "rise", 1, 100)):
        health = replace(health, rise=rise)
    if (n := node.get("fall")) and (fall := scope.integer(n, "fall", 1, 100)):
        health = replace(health, fall=fall)
    if health.timeout >= health.interval:
        line = node.key_line("timeout" if "timeout" in node.entries else "interval")
        scope.error(
            line, f"timeout {health.timeout:g} must be shorter than interval {health.interval:g}"
        )
    return health


def _dnsfail_http(scope: _Scope, node: YMap, health: ProbeSpec) -> ProbeSpec:
    """What counts as a healthy HTTP(S) answer, and how TLS is verified."""
    if (n := node.get("expect_status")) is not None:
        items = n.items if isinstance(n, YSeq) else (n,)
        codes = [scope.integer(item, "expect_status", 100, 599) for item in items]
        if not items:
            scope.error(n.line, "expect_status is empty")
        health = replace(health, expect_status=tuple(c for c in codes if c is not None))
    if (n := node.get("body_match")) and (body := scope.string(n, "body_match")) is not None:
        health = replace(health, body_match=body)
    if (n := node.get("verify_tls")) and (verify := scope.flag(n, "verify_tls")) is not None:
        health = replace(health, verify_tls=verify)
    if (n := node.get("ca_file")) and (ca_file := scope.string(n, "ca_file")) is not None:
        health = replace(health, ca_file=ca_file)
    if (n := node.get("headers")) and (headers := scope.mapping(n, "headers")):
        pairs = [(k, scope.string(e.value, f"header {k!r}")) for k, e in headers.entries.items()]
        health = replace(health, headers=tuple((k, v) for k, v in pairs if v is not None))
    return health


def _health(
    scope: _Scope, record: _Record, options: _Options
) -> tuple[ProbeSpec, dict[str, tuple[int, str]]]:
    """The record's health check, and ``probe_addresses`` (value -> (line, probed address)).

    octoDNS's defaults (HTTPS, port 443, path ``/_dns``, host = the record's
    name) come first, then ``octodns.healthcheck``, then dnsfail's knobs.
    """
    start = replace(_OCTODNS_CHECK, host=record.name.rstrip("."))
    health = _octodns_health(scope, options.healthcheck, start)
    knobs = options.dnsfail_node("healthcheck")
    if knobs is None:
        return health, {}
    knob_map = scope.mapping(knobs, "octodns.dnsfail.healthcheck", _DNSFAIL_HEALTH_KEYS)
    if knob_map is None:
        return health, {}
    health = _dnsfail_http(scope, knob_map, _dnsfail_timing(scope, knob_map, health))
    addresses = knob_map.get("probe_addresses")
    return health, _probe_addresses(scope, addresses) if addresses is not None else {}


def _probe_addresses(scope: _Scope, node: YNode) -> dict[str, tuple[int, str]]:
    """dnsfail extension: probe another address than the one answered (e.g. a backend)."""
    out: dict[str, tuple[int, str]] = {}
    table = scope.mapping(node, "probe_addresses")
    for key, entry in table.entries.items() if table else ():
        try:
            value = str(ipaddress.ip_address(key))
        except ValueError:
            scope.error(entry.key_line, f"probe_addresses key {key!r} is not an IP address")
            continue
        text = scope.string(entry.value, f"probe address for {key!r}")
        try:
            out[value] = (entry.key_line, str(ipaddress.ip_address(text or "")))
        except ValueError:
            if text is not None:
                scope.error(entry.value.line, f"{text!r} is not a valid IP address")
    return out


@dataclass(frozen=True, slots=True)
class _PoolDraft:
    pool: Pool
    line: int
    fallback_line: int


def _pool_value(
    scope: _Scope, node: YNode, where: str, version: int, health: ProbeSpec,
    addresses: Mapping[str, tuple[int, str]],
) -> PoolValue | None:  # fmt: skip
    item = scope.mapping(node, where, frozenset({"value", "weight", "status"}))
    if item is None:
        return None
    value_node = item.get("value")
    if value_node is None:
        scope.error(item.line, f"missing 'value' in {where}")
        return None
    address = _address(scope, value_node, version, f"{where} value")
    weight_node, status_node = item.get("weight"), item.get("status")
    weight = scope.integer(weight_node, f"{where} weight", 1, 100) if weight_node else 1
    status = (
        scope.choice(status_node, f"{where} status", [s.value for s in Status])
        if status_node
        else "obey"
    )
    if address is None or weight is None or status is None:
        return None
    probed = addresses.get(address, (0, address))[1]
    return PoolValue(address, weight, Status(status), _probe_for(health, probed))


def _pool(
    scope: _Scope, name: str, entry: YEntry, version: int, health: ProbeSpec,
    addresses: Mapping[str, tuple[int, str]],
) -> _PoolDraft | None:  # fmt: skip
    if not _POOL_NAME_RE.match(name):
        scope.error(entry.key_line, f"invalid pool name {name!r}")
    body = scope.mapping(entry.value, f"pool {name!r}", frozenset({"fallback", "values"}))
    if body is None:
        return None
    values_node = body.get("values")
    if values_node is None:
        scope.error(entry.key_line, f"pool {name!r} is missing 'values'")
        return None
    values: list[PoolValue] = []
    items = scope.sequence(values_node, f"pool {name!r} values") or ()
    for number, node in enumerate(items, 1):
        value = _pool_value(
            scope, node, f"pool {name!r} value {number}", version, health, addresses
        )
        if value is not None and any(v.value == value.value for v in values):
            scope.error(node.line, f"duplicate value {value.value!r} in pool {name!r}")
        elif value is not None:
            values.append(value)
    if len(items) == 1 and values and values[0].weight != 1:
        scope.error(entry.key_line, f"pool {name!r} has a single value with weight != 1 (octoDNS)")
    fallback_node = body.get("fallback")
    fallback = None
    if fallback_node is not None and not (
        isinstance(fallback_node, YScalar) and fallback_node.value is None
    ):
        fallback = scope.string(fallback_node, f"pool {name!r} fallback")
    return _PoolDraft(
        Pool(name, tuple(values), fallback), entry.key_line, body.key_line("fallback")
    )


def _check_fallbacks(
    scope: _Scope, drafts: Mapping[str, _PoolDraft], defined: frozenset[str]
) -> set[str]:
    """Fallbacks must name pools and never loop; returns the pools used as a fallback."""
    used: set[str] = set()
    reported: set[frozenset[str]] = set()
    for name, draft in drafts.items():
        fallback = draft.pool.fallback
        if fallback is None:
            continue
        if fallback not in defined:
            scope.error(draft.fallback_line, f"pool {name!r}: fallback {fallback!r} is not a pool")
            continue
        used.add(fallback)
        chain = [name]
        current: str | None = fallback
        while current is not None and current in drafts and current not in chain:
            chain.append(current)
            current = drafts[current].pool.fallback
        if current in chain:
            loop = frozenset(chain[chain.index(current) :])
            if loop not in reported and name in loop:
                reported.add(loop)
                shown = " -> ".join([*chain[chain.index(current) :], current])
                scope.error(draft.fallback_line, f"loop in pool fallbacks: {shown}")
    return used


@dataclass(frozen=True, slots=True)
class _RuleDraft:
    number: int
    line: int
    pool: str | None
    geos: tuple[str, ...]
    subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    #: Whether the rule targets by geo / subnet at all (even if an entry was invalid).
    by_geo: bool
    by_subnet: bool

    @property
    def rank(self) -> int:
        """octoDNS's order: subnet-only, subnet+geo, geo-only, catch-all."""
        if self.by_subnet:
            return 1 if self.by_geo else 0
        return 2 if self.by_geo else 3


def _rule(scope: _Scope, number: int, node: YNode, geoip: bool) -> _RuleDraft | None:
    body = scope.mapping(node, f"rule {number}", frozenset({"pool", "geos", "subnets"}))
    if body is None:
        return None
    pool_node = body.get("pool")
    pool = scope.string(pool_node, f"rule {number} pool") if pool_node is not None else None
    if pool_node is None:
        scope.error(body.line, f"rule {number} has no 'pool'")
    geos: list[str] = []
    geos_node = body.get("geos")
    if geos_node is not None and not geoip:
        scope.error(body.key_line("geos"),
                    f"rule {number} has geos but no GeoIP database is configured (--geoip PATH)")
    for item, geo in scope.strings(geos_node, f"rule {number} geos") if geos_node else ():
        if _GEO_RE.match(geo):
            geos.append(geo)
        else:
            scope.error(item.line, f"rule {number}: invalid geo code {geo!r}")
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    subnets_node = body.get("subnets")
    for item, text in scope.strings(subnets_node, f"rule {number} subnets") if subnets_node else ():
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            scope.error(item.line, f"rule {number}: {text!r} is not a valid subnet")
            continue
        if network.network_address != ipaddress.ip_address(text.partition("/")[0]):
            scope.error(item.line, f"rule {number}: subnet {text!r} has host bits set")
            continue
        subnets.append(network)
    return _RuleDraft(
        number, body.line, pool, tuple(geos), tuple(subnets),
        by_geo=geos_node is not None, by_subnet=subnets_node is not None,
    )  # fmt: skip


def _check_rules(scope: _Scope, rules: Sequence[_RuleDraft], pools: frozenset[str]) -> None:
    """octoDNS's rule checks: known pools, one rule per pool, order, one final catch-all."""
    used_by: dict[str, int] = {}
    worst = 0
    catch_all: _RuleDraft | None = None
    for position, rule in enumerate(rules):
        if rule.pool is not None and rule.pool not in pools:
            scope.error(rule.line, f"rule {rule.number}: pool {rule.pool!r} is not defined")
        elif rule.pool is not None and rule.pool in used_by and rule.rank < 3:
            scope.error(
                rule.line,
                f"rule {rule.number}: pool {rule.pool!r} is already used by rule "
                f"{used_by[rule.pool]} (a pool may back only one rule besides the catch-all)",
            )
        if rule.pool is not None:
            used_by.setdefault(rule.pool, rule.number)
        if rule.rank == 3:
            if catch_all is not None:
                scope.error(rule.line, f"rule {rule.number} is a second catch-all rule")
            elif any(later.rank < 3 for later in rules[position + 1 :]):
                scope.error(
                    rule.line, f"rule {rule.number} is a catch-all but is not the last rule"
                )
            catch_all = catch_all or rule
        elif rule.rank < worst:
            scope.error(rule.line, f"rule {rule.number} is out of order: {_ORDER}")
        worst = max(worst, rule.rank) if rule.rank < 3 else worst
    if rules and catch_all is None:
        scope.error(
            rules[-1].line, "no catch-all rule (the last rule must have no geos and no subnets)"
        )
    _check_shadowing(scope, rules)


_ORDER = "subnet-only rules come first, then subnet+geo rules, then geo-only rules"


def _check_shadowing(scope: _Scope, rules: Sequence[_RuleDraft]) -> None:
    """A geo or subnet already matched by an earlier rule can never match again (octoDNS)."""
    geos_seen: dict[str, int] = {}
    nets_seen: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = {}
    for rule in rules:
        for geo in sorted(rule.geos):
            for seen, number in geos_seen.items():
                if geo == seen or geo.startswith(seen + "-"):
                    scope.error(
                        rule.line,
                        f"rule {rule.number}: geo {geo} is already covered by {seen} "
                        f"in rule {number}",
                    )
        geos_seen.update((geo, rule.number) for geo in rule.geos if geo not in geos_seen)
        for net in rule.subnets:
            for seen_net, number in nets_seen.items():
                if _subnet_of(net, seen_net):
                    scope.error(
                        rule.line,
                        f"rule {rule.number}: subnet {net} is already covered by {seen_net} "
                        f"in rule {number}",
                    )
        nets_seen.update((net, rule.number) for net in rule.subnets if net not in nets_seen)


def _subnet_of(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    other: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if isinstance(net, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return net.subnet_of(other)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return net.subnet_of(other)
    return False


def _rule_pools(
    scope: _Scope, node: YNode | None, rules: Sequence[_RuleDraft], count: int,
    defined: frozenset[str], located: frozenset[str], geoip: bool,
) -> tuple[list[tuple[str, ...]], list[bool]]:  # fmt: skip
    """Per rule, the ordered pools it tries (its ``pool``, or dnsfail's ordered list),
    and whether it orders them by distance to the client.

    ``octodns.dnsfail.rules[i].pools`` (a dnsfail extension) replaces rule i's
    single pool with an ordered list, e.g. ``[eu, us]``; octoDNS itself only
    sees ``pool`` and the fallback chain.  ``nearest: true`` tries those
    pools nearest first, by the ``coordinates`` of each pool.
    """
    default: list[tuple[str, ...]] = [(rule.pool,) if rule.pool else () for rule in rules]
    nearest = [False] * len(rules)
    if node is None:
        return default, nearest
    items = scope.sequence(node, "octodns.dnsfail.rules")
    if items is None:
        return default, nearest
    if len(items) != count:
        scope.error(
            node.line, f"octodns.dnsfail.rules has {len(items)} entries, dynamic.rules has {count}"
        )
        return default, nearest
    ordered = list(default)
    for index, item in enumerate(items[: len(rules)]):
        what = f"octodns.dnsfail.rules item {index + 1}"
        body = scope.mapping(item, what, frozenset({"pools", "nearest"}))
        if body is not None and (flag := body.get("nearest")) is not None:
            nearest[index] = bool(scope.flag(flag, f"{what} nearest"))
            if nearest[index] and not geoip:
                scope.error(flag.line, f"{what}: nearest needs a GeoIP City database (--geoip)")
        pools_node = body.get("pools") if body is not None else None
        if body is not None and pools_node is None:
            scope.error(body.line, f"{what} has no 'pools'")
        names: list[str] = []
        for pool_node, name in scope.strings(pools_node, f"{what} pools") if pools_node else ():
            if name not in defined:
                scope.error(pool_node.line, f"{what}: pool {name!r} is not defined")
            elif name in names:
                scope.error(pool_node.line, f"{what}: pool {name!r} is listed twice")
            else:
                names.append(name)
        ordered[index] = tuple(names) or default[index]
        missing = [p for p in ordered[index] if p not in located]
        if nearest[index] and missing and body is not None:
            scope.error(body.line, f"{what} is nearest but pools {', '.join(missing)} "
                                   "have no coordinates")
    return ordered, nearest


def _coordinates(
    scope: _Scope, node: YNode | None, defined: frozenset[str]
) -> tuple[dict[str, tuple[float, float]], frozenset[str]]:
    """``octodns.dnsfail.coordinates``: ``{pool: [latitude, longitude]}`` for nearest mode.

    Returns the valid coordinates and the names given at all, so a bad
    coordinate is reported once, not again as missing.
    """
    out: dict[str, tuple[float, float]] = {}
    table = scope.mapping(node, "coordinates") if node is not None else None
    given = frozenset(table.entries) if table is not None else frozenset()
    for name, entry in table.entries.items() if table is not None else ():
        if name not in defined:
            scope.error(entry.key_line, f"coordinates: pool {name!r} is not defined")
            continue
        pair = scope.sequence(entry.value, f"coordinates of {name!r}")
        if pair is None or len(pair) != 2:
            scope.error(entry.value.line, f"coordinates of {name!r} must be [latitude, longitude]")
            continue
        lat = scope.number(pair[0], f"latitude of {name!r}", -90.0, 90.0)
        lon = scope.number(pair[1], f"longitude of {name!r}", -180.0, 180.0)
        if lat is not None and lon is not None:
            out[name] = (lat, lon)
    return out, given


def _dynamic_knobs(scope: _Scope, record: _Record, options: _Options) -> tuple[AllDown, int]:
    all_down, ttl_floor = AllDown.BACKUP, 5
    if (node := options.dnsfail_node("all_down")) is not None:
        choice = scope.choice(node, "all_down", [a.value for a in AllDown])
        all_down = AllDown(choice) if choice else all_down
    if (node := options.dnsfail_node("ttl_floor")) is not None:
        floor = scope.integer(node, "ttl_floor", 0, MAX_TTL)
        if floor is not None and floor > record.ttl:
            scope.error(node.line, f"ttl_floor {floor} is above the record's ttl {record.ttl}")
        ttl_floor = floor if floor is not None else ttl_floor
    return all_down, ttl_floor


def _dynamic(
    problems: _Problems, record: _Record, options: _Options, geoip: bool
) -> DynamicRecord | None:
    """octoDNS's ``dynamic`` block, validated as octoDNS does, plus dnsfail's knobs."""
    scope = _Scope(problems, record.label)
    node = record.dynamic
    body = scope.mapping(node, "dynamic", frozenset({"pools", "rules"})) if node else None
    health, addresses = _health(scope, record, options)
    all_down, ttl_floor = _dynamic_knobs(scope, record, options)
    if body is None:
        return None
    pools_node, rules_node = body.get("pools"), body.get("rules")
    for key, present in (("pools", pools_node), ("rules", rules_node)):
        if present is None:
            scope.error(body.line, f"dynamic has no {key!r}")
    pools_map = scope.mapping(pools_node, "pools") if pools_node else None
    if pools_map is not None and not pools_map.entries:
        scope.error(pools_map.line, "pools is empty")
    defined = frozenset(pools_map.entries if pools_map else ())
    version = 4 if record.rtype == "A" else 6
    drafts: dict[str, _PoolDraft] = {}
    for name, entry in pools_map.entries.items() if pools_map else ():
        if (draft := _pool(scope, name, entry, version, health, addresses)) is not None:
            drafts[name] = draft
    rule_items = (scope.sequence(rules_node, "rules") if rules_node else None) or ()
    rules = [
        r for n, item in enumerate(rule_items, 1) if (r := _rule(scope, n, item, geoip)) is not None
    ]
    _check_rules(scope, rules, defined)
    used = _check_fallbacks(scope, drafts, defined)
    coordinates, located = _coordinates(scope, options.dnsfail_node("coordinates"), defined)
    ordered, nearest = _rule_pools(
        scope, options.dnsfail_node("rules"), rules, len(rule_items), defined, located, geoip
    )
    used |= {name for pools in ordered for name in pools}
    for name, draft in drafts.items():
        if name not in used:
            scope.error(draft.line, f"pool {name!r} is not used by any rule or fallback")
    values = {v.value for draft in drafts.values() for v in draft.pool.values}
    for value, (line, _) in addresses.items():
        if value not in values:
            scope.error(line, f"probe_addresses names {value!r}, which is in no pool")
    backup = tuple(r.address for r in record.rdatas if isinstance(r, A | AAAA))
    return DynamicRecord(
        name=record.name,
        rtype=RRType[record.rtype],
        ttl=record.ttl,
        pools=MappingProxyType({name: draft.pool for name, draft in drafts.items()}),
        rules=tuple(
            Rule(pools, r.geos, r.subnets, near)
            for pools, r, near in zip(ordered, rules, nearest, strict=True)
        ),
        backup=backup,
        all_down=all_down,
        ttl_floor=ttl_floor,
        coordinates=MappingProxyType(coordinates),
    )


# --- assembly ----------------------------------------------------------------------------------


def _nodes(
    index: Mapping[str, Mapping[str, _Record]],
) -> tuple[Mapping[str, Mapping[RRType, RRset]], int]:
    """Owner -> type -> RRset for every record except ALIAS (which is ``Zone.alias``),
    and how many rdatas they hold.

    A dynamic record's backup ``values`` are here too, so type existence
    (NODATA, CNAME exclusivity, ANY) is uniform; ``Zone.dynamic`` decides the answer.
    """
    nodes: dict[str, Mapping[RRType, RRset]] = {}
    count = 0
    for name, by_type in index.items():
        rrsets: dict[RRType, RRset] = {}
        for rtype, record in by_type.items():
            if rtype != "ALIAS":
                qtype = _RRTYPES[rtype]
                rrsets[qtype] = RRset(name, qtype, record.ttl, record.rdatas)
                count += len(record.rdatas)
        if rrsets:
            nodes[name] = MappingProxyType(rrsets)
    return MappingProxyType(nodes), count


#: ``RRType[name]`` without the enum machinery's per-call cost.
_RRTYPES: Mapping[str, RRType] = {rtype.name: rtype for rtype in RRType}


def _soa_rrset(origin: str, fields: _SoaFields, serial: int) -> RRset:
    rdata = SOA(
        fields.mname, fields.rname, serial, fields.refresh, fields.retry, fields.expire,
        fields.minimum,
    )  # fmt: skip
    return RRset(origin, RRType.SOA, fields.ttl, (rdata,))


def _same_content(old: Zone, new: Zone) -> bool:
    """Whether two zones serve the same data but for the SOA serial (which may differ).

    Compared in place, node by node, rather than by building serial-free
    copies of both zones: a reload of a big zone should not double its memory
    just to find out whether the serial moves.
    """
    old_soa, new_soa = old.soa.rdatas[0], new.soa.rdatas[0]
    assert isinstance(old_soa, SOA)
    assert isinstance(new_soa, SOA)
    if (old.alias, old.dynamic, old.cuts, old.soa.ttl, replace(old_soa, serial=0)) != (
        new.alias, new.dynamic, new.cuts, new.soa.ttl, replace(new_soa, serial=0)
    ):
        return False
    if old.nodes.keys() != new.nodes.keys():
        return False
    for name, by_type in new.nodes.items():
        before = old.nodes[name]
        if by_type != before and _without_soa(by_type) != _without_soa(before):
            return False
    return True


def _without_soa(by_type: Mapping[RRType, RRset]) -> dict[RRType, RRset]:
    return {rtype: rrset for rtype, rrset in by_type.items() if rtype != RRType.SOA}


def _serial(zone: Zone, fields: _SoaFields, serial: int, previous: Zone | None) -> int:
    """The zone's serial: explicit, else unchanged content keeps it, else it grows.

    Secondaries and caches compare serials with RFC 1982 arithmetic, so a
    serial never goes backwards for changed content: ``max(previous + 1,
    serial)``, wrapped to 32 bits.
    """
    if fields.serial is not None:
        return fields.serial
    if previous is None:
        return serial
    if _same_content(previous, zone):
        return previous.serial
    return max(previous.serial + 1, serial) & MAX_SERIAL


def _build(
    origin: str, index: dict[str, dict[str, _Record]], cuts: set[str], names: frozenset[str],
    dynamic: dict[tuple[str, RRType], DynamicRecord], fields: _SoaFields, source: str,
) -> Zone:  # fmt: skip
    nodes, count = _nodes(index)
    alias_record = index.get(origin, {}).get("ALIAS")
    alias = None
    if alias_record is not None:
        alias = RRset(origin, RRType.CNAME, alias_record.ttl, alias_record.rdatas)
    return Zone(
        origin=origin,
        soa=_soa_rrset(origin, fields, 0),
        nodes=nodes,
        names=names,
        cuts=frozenset(cuts),
        alias=alias,
        dynamic=MappingProxyType(dynamic),
        source=source,
        record_count=count + (1 if alias else 0),
    )


def _dual_stack(
    scope: _Scope, record: DynamicRecord, node: YNode, line: int, has_aaaa: bool
) -> DynamicRecord | None:
    """dnsfail's dual-stack shorthand: the AAAA twin of a dynamic A record.

    ``octodns: dnsfail: ipv6: {192.0.2.10: 2001:db8::10, ...}`` gives every
    site its IPv6 address once; the AAAA record gets the same pools, rules,
    fallbacks, policy and health-check settings, and each IPv6 address is
    probed on its own, so a site whose IPv6 path fails leaves the AAAA answers
    only (per-family health, as gdnsd's ``addrs_v6``).  octoDNS itself needs
    two records with duplicated rules for this.
    """
    if record.rtype != RRType.A:
        scope.error(line, "'ipv6' applies to A records only")
        return None
    if has_aaaa:
        scope.error(line, "'ipv6' would create an AAAA record beside the one already here")
        return None
    table = scope.mapping(node, "ipv6")
    if table is None:
        return None
    mapping: dict[str, str] = {}
    given: set[str] = set()
    for key, entry in table.entries.items():
        text = scope.string(entry.value, f"ipv6 address for {key!r}")
        try:
            v4 = str(ipaddress.IPv4Address(key))
        except ValueError:
            scope.error(entry.key_line, f"ipv6 key {key!r} is not an IPv4 address")
            continue
        given.add(v4)
        try:
            mapping[v4] = str(ipaddress.IPv6Address(text or ""))
        except ValueError:
            scope.error(entry.value.line, f"{text!r} is not a valid IPv6 address")
    used = [v.value for pool in record.pools.values() for v in pool.values] + list(record.backup)
    missing = sorted(set(used) - given)
    if missing:
        scope.error(line, f"ipv6 has no address for {', '.join(missing)}")
    unused = sorted(given - set(used))
    if unused:
        scope.error(line, f"ipv6 maps {', '.join(unused)}, which is not a value of the record")
    if missing or unused or len(mapping) != len(table.entries):
        return None

    def twin(value: PoolValue) -> PoolValue:
        v6 = mapping[value.value]
        probe = replace(value.probe, address=v6) if value.probe is not None else None
        return replace(value, value=v6, probe=probe)

    pools = {
        name: replace(pool, values=tuple(twin(v) for v in pool.values))
        for name, pool in record.pools.items()
    }
    return replace(
        record,
        rtype=RRType.AAAA,
        pools=MappingProxyType(pools),
        backup=tuple(mapping[v] for v in record.backup),
    )


def _is_dynamic_address(record: _Record) -> bool:
    return record.is_dynamic and record.rtype in ("A", "AAAA")


def _check_apex_ns(problems: _Problems, index: dict[str, dict[str, _Record]], origin: str) -> None:
    """An authoritative zone names its servers at the apex (RFC 1034 section 4.2.1)."""
    apex = index.get(origin, {})
    if "NS" not in apex:
        line = min((record.line for record in apex.values()), default=1)
        problems.add(line, "@ NS", "the apex has no NS record")


# --- public API --------------------------------------------------------------------------------


def parse_zone(
    text: str,
    source: str,
    origin: str,
    *,
    serial: int,
    previous: Zone | None = None,
    geoip: bool = True,
) -> Zone:
    """Parse and validate one zone file's text into a ``Zone``.

    ``origin`` is the zone's absolute name (``gw.example.com.``).  ``serial``
    is used when the file sets none and there is no ``previous`` zone (the
    one being replaced on reload) to compare with: see ``_serial``.  ``geoip``
    says whether a GeoIP database is configured; without one, ``geos`` rules
    could never match and are problems.  Raises ``ConfigError`` carrying every
    problem in the file.
    """
    with _collector_paused():
        return _parse_zone(text, source, origin, serial, previous, geoip, _read)


#: How a zone file's text becomes its top-level entries: ``_read`` or ``_read_libyaml``.
_Reader = Callable[[str, _Problems], list[_Entry]]


def _parse_zone(
    text: str, source: str, origin: str, serial: int, previous: Zone | None, geoip: bool,
    read: _Reader,
) -> Zone:  # fmt: skip
    """``parse_zone`` with the YAML reader given: tests compare ``_read`` with ``_read_libyaml``."""
    origin = origin.lower() if origin.endswith(".") else origin.lower() + "."
    problems = _Problems(source)
    index = _index(problems, _parse_records(problems, read(text, problems), origin))
    _check_apex_ns(problems, index, origin)
    _check_exclusive(problems, index, origin)
    cuts = _delegations(problems, index, origin)
    names = _zone_names(list(index), origin)
    alias = index.get(origin, {}).get("ALIAS")
    if alias is not None:
        _check_alias_target(problems, alias, origin, names)
    options = {
        (record.name, rtype): _options(problems, record, origin)
        for by_type in index.values()
        for rtype, record in by_type.items()
        if record.octodns is not None
    }
    dynamic: dict[tuple[str, RRType], DynamicRecord] = {}
    for name, by_type in index.items():
        for rtype, record in by_type.items():
            if not _is_dynamic_address(record):
                continue
            opts = options.get((name, rtype), _NO_OPTIONS)
            built = _dynamic(problems, record, opts, geoip)
            if built is None:
                continue
            dynamic[(name, RRType[rtype])] = built
            ipv6 = opts.dnsfail_node("ipv6")
            if ipv6 is None:
                continue
            line = opts.dnsfail.key_line("ipv6") if opts.dnsfail else ipv6.line
            twin = _dual_stack(_Scope(problems, record.label), built, ipv6, line, "AAAA" in by_type)
            if twin is not None:
                dynamic[(name, RRType.AAAA)] = twin
    fields = _soa(problems, index, origin, options)
    problems.raise_if_any()
    zone = _build(origin, index, cuts, names, dynamic, fields, source)
    soa = _soa_rrset(origin, fields, _serial(zone, fields, serial, previous))
    return _with_soa(zone, soa)


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a zone is built.

    A zone is several objects per record and none of them is in a cycle, yet
    every few thousand new objects make the collector walk all those alive,
    the zone being replaced included: a third of a 100,000-record load.
    Counted, so that loads in several threads at once (``load_zones`` runs in
    a worker thread) turn it back on only when the last one ends, and only if
    it was on.
    """
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


def _read(text: str, problems: _Problems) -> list[_Entry]:
    """The top-level entries of a zone file: by the strict reader if it can, else libyaml.

    Raises ``ConfigError`` if the text is not YAML or not a mapping.
    """
    entries = _read_strict(text)
    return entries if entries is not None else _read_libyaml(text, problems)


def _read_libyaml(text: str, problems: _Problems) -> list[_Entry]:
    """``_read`` for any YAML: composed by libyaml into located nodes."""
    root = _compose(text, problems)
    if root is None:
        problems.raise_if_any()  # unparsable: nothing more to check
        return []
    if not isinstance(root, YMap):
        problems.add(root.line, "(zone)", f"the top level must be a mapping, not {_show(root)}")
        problems.raise_if_any()
    assert isinstance(root, YMap)
    return [(key, entry.key_line, entry.value) for key, entry in root.entries.items()]


def _with_soa(zone: Zone, soa: RRset) -> Zone:
    """Publish the SOA both as ``Zone.soa`` and as ordinary apex data.

    The resolver then answers ``SOA`` queries like any other RRset
    (RFC 1035 section 3.3.13) instead of special-casing it.
    """
    apex = dict(zone.nodes.get(zone.origin, {}))
    apex[RRType.SOA] = soa
    nodes = dict(zone.nodes)
    nodes[zone.origin] = MappingProxyType(apex)
    return replace(zone, soa=soa, nodes=MappingProxyType(nodes))


def _origin_of(path: str) -> tuple[str | None, str | None]:
    """``zones/gw.example.com.yaml`` -> ``gw.example.com.`` (octoDNS's one file per zone)."""
    base = os.path.basename(path)
    stem, dot, ext = base.rpartition(".")
    if not dot or ext not in ("yaml", "yml") or not stem:
        return None, f"zone file {base!r} must be named <zone>.yaml"
    origin = stem.lower().rstrip(".") + "."
    reason = _name_problem(origin)
    if reason is not None or origin == ".":
        return None, f"file name {base!r} is not a zone name: {reason or 'root zone'}"
    return origin, None


def load_zones(
    paths: Sequence[str], previous: Mapping[str, Zone] | None = None, *, geoip: bool = True
) -> dict[str, Zone]:
    """Load every zone file under ``paths`` (files, or directories read non-recursively).

    Returns origin -> Zone.  Raises one ``ConfigError`` listing every problem
    in every file, so ``dnsfail check``, startup and reload agree, and a
    reload either takes the whole new configuration or none of it.
    ``previous`` (the zones being served) lets unchanged zones keep their serial.
    """
    zones: dict[str, Zone] = {}
    defined_in: dict[str, str] = {}
    files, problems = discover(paths)
    if not files and not problems:
        # A server with no zones would refuse every query; say why instead.
        where = ", ".join(paths) or "(no paths)"
        problems.append(Problem(where, 1, "(zone)", "no zone files (*.yaml, *.yml) found"))
    for path in files:
        origin, reason = _origin_of(path)
        if origin is None:
            problems.append(Problem(path, 1, "(zone)", reason or "bad file name"))
            continue
        if origin in defined_in:
            problems.append(
                Problem(path, 1, "(zone)", f"zone {origin} is also defined in {defined_in[origin]}")
            )
            continue
        defined_in[origin] = path
        read = read_zone_file(path)
        if read is None:
            continue  # unlinked since it was listed: removed on purpose (zonefiles.py)
        if isinstance(read, Problem):
            problems.append(read)
            continue
        last = previous.get(origin) if previous is not None else None
        try:
            zones[origin] = parse_zone(
                read.text, path, origin, serial=read.mtime, previous=last, geoip=geoip
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
        except Exception as exc:  # the outermost loader boundary: a located problem, no trace
            problems.append(Problem(path, 1, "(zone)", f"cannot load: internal error "
                                    f"{type(exc).__name__}: {_clip(str(exc))}"))
    if problems:
        raise ConfigError(problems)
    return zones
