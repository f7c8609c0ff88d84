"""The strict reader: octoDNS's own layout of YAML, read line by line without libyaml.

Owns ``read_strict`` and ``StrictReader`` (a zone file's top-level entries, whole or piece
by piece, or None when the text
leaves the subset and libyaml must read it), its regexes of the subset, the
plain-scalar resolution it shares with PyYAML's resolver, and the fast
record path: a record of only scalars comes back as a ``located.Simple``.
What it returns is exactly what ``libyaml.read_libyaml`` would (checked by
tests/zonefile/test_strict.py).

Imports ``yaml`` (the resolver's tables; single entries handed to ``libyaml``),
``located``, ``libyaml`` and ``rdata`` (the IPv4 text rule).  It must not import
``records`` or anything above it: it reads, it does not judge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import MappingProxyType
from typing import NamedTuple

import yaml

from dnsfail.zonefile.libyaml import NUMBER_TAGS, Composer, FastLoader, TooDeep, single_node
from dnsfail.zonefile.located import (
    MAX_DEPTH,
    MAX_NUMBER_TEXT,
    SINK_DUPLICATE,
    SINK_LEFT,
    SINK_TAKEN,
    Entry,
    Problems,
    Scalar,
    Simple,
    SimpleList,
    Sink,
    YEntry,
    YMap,
    YNode,
    YScalar,
    YSeq,
)
from dnsfail.zonefile.rdata import IPV4_TEXT_RE

#
# Composing a 100,000-record zone with libyaml costs seconds before a single record is checked:
# PyYAML makes a Python node, two marks and a resolver call for every scalar.  Zone files are
# nearly always written the way octoDNS dumps them (block style, two-space indent, one scalar
# per line), so this reader recognises that strict subset of YAML line by line.  A top-level
# entry outside it is composed by libyaml on its own where that gives the same result
# (``_libyaml_entry``); anything else makes the reader give up (``_Bail``) and ``libyaml``
# read the whole file.  What it returns is exactly what ``libyaml`` would (checked by
# tests/zonefile/test_strict.py), except that a record mapping in octoDNS's canonical layout
# of only scalars, the overwhelmingly common shape, is returned as a ``Simple`` instead of
# nodes; ``Simple.node`` gives the nodes when a record needs the general checks.
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
#: The types of ``rdata.TEXT_PARSERS`` (test_strict checks that they agree).
SIMPLE_TYPES = ("AAAA", "ALIAS", "CNAME", "PTR", "TXT", "NS", "A")


def _fast_fields(first: str, indent: str) -> str:
    """``ttl``, ``type`` and ``value``/``values`` lines; groups ttl, type, value, values."""
    item = f"- {_SCALAR}\n"
    values = rf"((?P<ind>{indent}(?:  )?){item}(?:(?P=ind){item})*+)"
    return (
        rf"{first}(?:ttl: (0|[1-9][0-9]{{0,17}})\n{indent})?type: ({'|'.join(SIMPLE_TYPES)})\n"
        rf"{indent}(?:value: ({_SCALAR})\n|values:\n{values})"
    )


#: A key holding one record, octoDNS-style; groups key, ttl, type, value, values.
_FAST_ONE_RE = re.compile(_FAST_KEY + _fast_fields("  ", "  ") + _FAST_END)
#: A key holding a list of records, then each ``- `` item.
_FAST_LIST_RE = re.compile(_FAST_KEY + r"(?=- )")
_FAST_ITEM_RE = re.compile(_fast_fields("- ", "  ") + rf"(?:(?=- )|{_FAST_END})")
_VALUES_ITEM_RE = re.compile(rf" *- ({_SCALAR})\n")
#: The commonest record of all, offered to a ``Sink`` with one match: a lower-case relative
#: key, an optional TTL, ``type: A`` and one IPv4 address; groups key, ttl, address.
_SINK_A_RE = re.compile(
    r"([a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*+):\n  (?:ttl: (0|[1-9][0-9]{0,17})\n  )?"
    rf"type: A\n  value: ({IPV4_TEXT_RE.pattern})\n{_FAST_END}"
)

STR_TAG = "tag:yaml.org,2002:str"
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


def plain_tag(text: str) -> str:
    """The tag the safe loader resolves a plain scalar to (``Resolver.resolve``'s rules)."""
    for tag, regexp in _RESOLVERS.get(text[:1], _WILDCARD_RESOLVERS):
        if regexp.match(text):
            return str(tag)
    return STR_TAG


def _plain_is_str(text: str) -> bool:
    """Whether a plain scalar resolves to a string: ``plain_tag(text) == STR_TAG``, faster."""
    first = text[:1]
    if first not in _RESOLVERS:
        return not _WILDCARD_RESOLVERS or plain_tag(text) == STR_TAG
    pattern = _NOT_STR[first]
    if pattern is None:
        return plain_tag(text) == STR_TAG
    return pattern.match(text) is None


def _plain_value(text: str) -> Scalar:
    """A plain scalar's value as ``Composer._scalar`` gives it; ``_Bail`` where it reports."""
    tag = plain_tag(text)
    if tag == STR_TAG:
        return text
    if tag in NUMBER_TAGS and len(text) > MAX_NUMBER_TEXT:
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
    """A mapping key's text, as ``Composer._mapping`` takes it; a merge key bails."""
    text = _unquote(raw)
    if text is not None:
        return text
    if plain_tag(raw) == _MERGE_KEY_TAG:
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
        #: up, and ``libyaml`` reports the depth (recursing no deeper than that).
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
    problems = Problems("")
    try:
        node, loader = single_node(FastLoader, text)
    except (yaml.YAMLError, TooDeep) as exc:
        raise _Bail from exc
    try:
        root = None if node is None else Composer(loader, problems, line).convert(node)
    finally:
        loader.dispose()
    if problems.items or not isinstance(root, YMap) or len(root.entries) != 1:
        raise _Bail
    ((key, entry),) = root.entries.items()
    if entry.key_line != line:
        raise _Bail
    return key, entry.value


def string(raw: str) -> str | None:
    """A one-line scalar's value if it is a string: quoted, or plain and not resolved
    to a number, boolean, null and the like (those are typed by the generic reader)."""
    first = raw[0]
    if first == "'":
        return raw[1:-1].replace("''", "'")
    if first == '"':
        return raw[1:-1]
    if IPV4_TEXT_RE.fullmatch(raw):
        # The commonest value, and always a string: none of YAML's int, float and timestamp
        # forms has three dots (test_strict checks it against the resolver itself).
        return raw
    return raw if _plain_is_str(raw) else None


def _simple(m: re.Match[str], line: int, first: int, ttls: dict[str, int]) -> Simple | None:
    """A ``Simple`` from a ``_fast_fields`` match (groups from ``first``) at ``line``.

    ``ttls`` shares one int object per distinct TTL across the file.
    """
    ttl, rtype, value, values = m.group(first, first + 1, first + 2, first + 3)
    if values is None:
        text = string(value)
        if text is None:
            return None
        strings: tuple[str, ...] = (text,)
    else:
        found = [string(raw) for raw in _VALUES_ITEM_RE.findall(values)]
        if None in found:
            return None
        strings = tuple(text for text in found if text is not None)
    number = None
    if ttl is not None:
        number = ttls.get(ttl)
        if number is None:
            number = ttls[ttl] = int(ttl)
    return Simple(line, number, rtype, strings, values is not None)


def _offer(sink: Sink, key: str, m: re.Match[str]) -> int:
    """Hand a ``_FAST_ONE_RE`` record of plain string values to ``sink``; what it says."""
    if key[0] == "'":
        return SINK_LEFT
    ttl, rtype, value, values = m.group(2, 3, 4, 5)
    raws = (value,) if values is None else tuple(_VALUES_ITEM_RE.findall(values))
    if rtype != "A":  # the sink takes an A value only if it is an IPv4 address, a string
        for raw in raws:
            if raw[0] in "'\"" or string(raw) is None:
                return SINK_LEFT
    return sink.take(key, ttl, rtype, raws)


def _fast_list(
    text: str, pos: int, line: int, ttls: dict[str, int]
) -> tuple[SimpleList, int] | None:
    """The ``- `` items after a key line at ``pos``, all ``Simple``: (them, end), or None."""
    records: list[Simple] = []
    end = pos
    while (item := _FAST_ITEM_RE.match(text, end)) is not None:
        simple = _simple(item, line + text.count("\n", pos, end), 1, ttls)
        if simple is None:
            return None
        records.append(simple)
        end = item.end()
    if not records or text.startswith("- ", end):
        return None
    return SimpleList(tuple(records)), end


def read_strict(
    text: str, *, entry_by_libyaml: bool = True, sink: Sink | None = None
) -> list[Entry] | None:
    """The top-level entries of ``text`` if it is in the strict subset, else None.

    With ``entry_by_libyaml``, an entry outside the subset is composed by
    libyaml on its own where that is safe (``_libyaml_entry``) rather than
    sending the whole file to libyaml.  With a ``sink``, each record in
    octoDNS's canonical one-record layout is offered to it first, and the
    ones it takes are left out of the entries (see ``located.Sink``); a key
    it took twice makes the reader give up.  Keys it took are not checked
    against the other keys: the caller does that, by owner name.
    """
    reader = StrictReader(entry_by_libyaml=entry_by_libyaml, sink=sink)
    return reader.entries() if reader.feed(text) else None


class StrictReader:
    """``read_strict`` over a text given in pieces, so that a big file is never held whole.

    Each piece but the last must end where a top-level entry ends: after a
    newline, before a line that starts with a key (not a space, ``#``, ``-``,
    newline or CR; ``files.ZoneFile.pieces`` cuts there).  Nothing of the
    strict subset reads across such a point but the key set, the shared TTLs
    and the line count, which the reader carries, so the entries are those
    ``read_strict`` gives for the whole text (tests/zonefile/test_stream.py).
    """

    def __init__(self, *, entry_by_libyaml: bool = True, sink: Sink | None = None) -> None:
        self.entry_by_libyaml = entry_by_libyaml
        self.sink = sink
        self._entries: list[Entry] = []
        self._keys: set[str] = set()
        self._ttls: dict[str, int] = {}
        #: Line of the next piece's first line; 0 before the first piece.
        self._line = 0
        #: The text has left the subset: no piece is read any more.
        self.failed = False

    def entries(self) -> list[Entry] | None:
        """The entries read, or None if the text left the subset or held none."""
        return None if self.failed else self._entries or None

    def feed(self, text: str) -> bool:
        """Read one piece; False (now and for every later piece) once the text leaves the
        subset."""
        if self.failed:
            return False
        if "\r" in text:
            # CRLF line ends (a file edited on Windows): YAML counts and folds CRLF as it does
            # LF, so the text means the same with LF.  A lone CR still bails.
            text = text.replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"
        pos = 0
        if not self._line:
            start = _START_RE.match(text)
            assert start is not None
            pos = start.end()
            self._line = 1
        if _outside_subset(text, pos):
            self.failed = True
            return False
        gap = _GAP_RE.match(text, pos)
        assert gap is not None
        pos = gap.end()
        self._line += text.count("\n", 0, pos)
        try:
            self._line = self._read(text, pos, self._line)
        except _Bail:
            self.failed = True
            return False
        return True

    def _read(self, text: str, pos: int, line: int) -> int:
        """The entries of ``text`` from ``pos`` (at ``line``) to its end; the line after it."""
        entries, keys, ttls, sink = self._entries, self._keys, self._ttls, self.sink
        while pos < len(text):
            value: YNode | Simple | SimpleList | None = None
            if sink is not None:
                # A run of the commonest records, in a loop of its own: lines counted once.
                run_from, take_a, match = pos, sink.take_a, _SINK_A_RE.match
                while (m := match(text, pos)) is not None:
                    key, ttl, address = m.groups()
                    taken = take_a(key, ttl, address)
                    if taken != SINK_TAKEN:
                        if taken == SINK_DUPLICATE:
                            raise _Bail
                        break
                    pos = m.end()
                if pos != run_from:
                    line += text.count("\n", run_from, pos)
                    continue
            if (m := _FAST_ONE_RE.match(text, pos)) is not None:
                key, end = m.group(1), m.end()
                if sink is not None and (taken := _offer(sink, key, m)) != SINK_LEFT:
                    if taken == SINK_DUPLICATE:
                        raise _Bail
                    line += text.count("\n", pos, end)
                    pos = end
                    continue
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
                    if not self.entry_by_libyaml:
                        raise
                    key, value = _libyaml_entry(text[pos:end], line)
            if key in keys:
                raise _Bail
            keys.add(key)
            entries.append((key, line, value))
            line += text.count("\n", pos, end)
            pos = end
        return line
