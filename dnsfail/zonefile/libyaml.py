"""The libyaml path: any YAML composed into located nodes, guarded against hostile input.

Owns the ``Composer`` (a PyYAML node graph -> located nodes, with duplicate
keys, unsupported tags and recursive aliases as problems), the depth guard
(``MAX_DEPTH`` enforced before libyaml's C recursion or PyYAML's Python one),
the merge-key guard (``MAX_MERGED_ENTRIES``), and ``read_libyaml``, the reader
of last resort for a whole file.  The strict reader (``strict``) uses it for
single entries it declines.

Imports ``yaml`` and ``located``.  It must not import ``strict`` (which falls
back to it) nor anything that checks records: it reads, it does not judge.
"""

from __future__ import annotations

from types import MappingProxyType

import yaml

from dnsfail.zonefile.located import (
    MAX_DEPTH,
    MAX_MERGED_ENTRIES,
    MAX_NUMBER_TEXT,
    Entry,
    Problems,
    YEntry,
    YMap,
    YNode,
    YScalar,
    YSeq,
    show,
)

_MAP_TAG = "tag:yaml.org,2002:map"
NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Composer:
    """Turns a composed YAML node graph into located ``YNode`` values.

    Walking nodes ourselves (rather than ``yaml.safe_load``) is what gives
    every value its line, and lets duplicate keys be reported: PyYAML keeps
    the last one silently.  Aliases are converted once and shared; a
    recursive alias is reported instead of recursing forever.
    """

    def __init__(self, loader: yaml.SafeLoader, problems: Problems, first_line: int = 1) -> None:
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
        if node.tag in NUMBER_TAGS and len(text) > MAX_NUMBER_TEXT:
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


def _compose(text: str, problems: Problems) -> YNode | None:
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
            return _compose_with(FastLoader, text, problems)
        except yaml.YAMLError:
            return _compose_with(SafeLoader, text, problems)
    except yaml.YAMLError as exc:
        problems.add(_yaml_line(exc, text), "(yaml)", _yaml_message(exc))
    except TooDeep as exc:
        problems.add(exc.line, "(yaml)", _TOO_DEEP)
    return None


FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose_with(
    loader_type: type[yaml.SafeLoader], text: str, problems: Problems
) -> YNode | None:
    node, loader = single_node(loader_type, text)
    try:
        return None if node is None else Composer(loader, problems).convert(node)
    finally:
        loader.dispose()


_TOO_DEEP = f"collections nested deeper than {MAX_DEPTH} levels"


class TooDeep(Exception):
    """The text nests collections deeper than ``MAX_DEPTH``, first at ``line`` (from 1)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class SafeLoader(yaml.SafeLoader):
    """PyYAML's Python loader, refusing to compose collections nested past ``MAX_DEPTH``.

    Its composer recurses once per level (several Python frames each), so the
    depth is counted where it recurses, before it does.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        opens = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if opens and self._depth >= MAX_DEPTH:
            raise TooDeep(self.peek_event().start_mark.line + 1)  # type: ignore[no-untyped-call]
        self._depth += opens
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= opens


_OPENS = {yaml.MappingStartEvent: 1, yaml.SequenceStartEvent: 1,
          yaml.MappingEndEvent: -1, yaml.SequenceEndEvent: -1}  # fmt: skip


def single_node(
    loader_type: type[yaml.SafeLoader], text: str
) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The one document of ``text`` composed by ``loader_type``; and the loader, to dispose.

    libyaml composes by recursion in C, past any Python check, so for it the
    events are read first (its parser keeps its own stack, so that is safe)
    and nesting past ``MAX_DEPTH`` raises ``TooDeep`` before composing;
    ``SafeLoader`` counts as it composes.  YAML errors are raised by the
    composing, as before, so they read the same.
    """
    if loader_type is not SafeLoader:
        scan = loader_type(text)
        try:
            depth = 0
            while (event := scan.get_event()) is not None:  # type: ignore[no-untyped-call]
                depth += _OPENS.get(type(event), 0)
                if depth > MAX_DEPTH:
                    raise TooDeep(event.start_mark.line + 1)
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


def read_libyaml(text: str, problems: Problems) -> list[Entry]:
    """``load.read_entries`` for any YAML: composed by libyaml into located nodes."""
    root = _compose(text, problems)
    if root is None:
        problems.raise_if_any()  # unparsable: nothing more to check
        return []
    if not isinstance(root, YMap):
        problems.add(root.line, "(zone)", f"the top level must be a mapping, not {show(root)}")
        problems.raise_if_any()
    assert isinstance(root, YMap)
    return [(key, entry.key_line, entry.value) for key, entry in root.entries.items()]
