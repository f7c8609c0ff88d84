"""The strict YAML reader and the fast record path of dnsfail.zonefile give what libyaml gives.

``read_strict`` reads octoDNS's own layout without libyaml, and
``simple_record`` checks the common record shape without located
nodes.  Both only speed things up: for every text, either the strict reader
declines (and libyaml reads it) or its entries equal libyaml's, line numbers
included; and a zone parses to the same ``Zone``, or the same problems, by
either route.  Tables of tricky inputs and generated documents check that.
No sockets, no sleeps.
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfail.errors import ConfigError
from dnsfail.model import TXT, RRType, Zone
from dnsfail.zonefile import parse_zone
from dnsfail.zonefile.libyaml import read_libyaml
from dnsfail.zonefile.load import Reader, parse_zone_with, read_entries
from dnsfail.zonefile.located import Entry, Problems, Simple, SimpleList, YMap, YScalar, YSeq
from dnsfail.zonefile.rdata import TEXT_PARSERS
from dnsfail.zonefile.strict import SIMPLE_TYPES, STR_TAG, plain_tag, read_strict, string
from tests.zonefile.test_load import (
    APEX,
    BAD_DYNAMIC,
    BAD_KNOBS,
    BAD_RECORDS,
    BASE,
    DUAL,
    DYNAMIC,
    ORIGIN,
    P2,
    R2,
    _dyn,
    _knobs,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))
import compare_zone  # noqa: E402  (a sibling script, not a package)

# --- helpers ---------------------------------------------------------------------------------


def shape(value: object) -> object:
    """A located node (or fast-path value) as nested lists, in order, with every line.

    ``YMap`` compares its entries as a dict (ignoring order) and NaN is not
    equal to itself, so the trees are compared through this instead.
    """
    if isinstance(value, Simple | SimpleList):
        value = value.node()
    if isinstance(value, YMap):
        pairs = [[key, entry.key_line, shape(entry.value)] for key, entry in value.entries.items()]
        return ["map", value.line, pairs]
    if isinstance(value, YSeq):
        return ["seq", value.line, [shape(item) for item in value.items]]
    assert isinstance(value, YScalar)
    v = value.value
    shown = "nan" if isinstance(v, float) and math.isnan(v) else repr(v)
    return ["scalar", value.line, type(v).__name__, shown, value.text]


def entries_shape(entries: list[Entry]) -> list[object]:
    return [[key, line, shape(value)] for key, line, value in entries]


def libyaml(text: str) -> tuple[list[object] | None, list[str]]:
    """What the general path reads: (entries, or None if it raises; its problems)."""
    problems = Problems("z.yaml")
    try:
        entries = read_libyaml(text, problems)
    except ConfigError:
        return None, [str(p) for p in problems.items]
    return entries_shape(entries), [str(p) for p in problems.items]


def assert_reads_alike(text: str) -> bool:
    """The strict reader declines ``text`` or agrees with libyaml; returns whether it read it."""
    strict = read_strict(text)
    if strict is None:
        return False
    entries, problems = libyaml(text)
    assert problems == [], f"the strict reader accepted what libyaml objects to: {problems}"
    assert entries_shape(strict) == entries
    return True


def outcome(text: str, read: Reader) -> Zone | list[str]:
    """The zone ``text`` makes with the given reader, or its problems."""
    try:
        return parse_zone_with(text, "z.yaml", ORIGIN, 1, None, True, read)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]


def assert_parses_alike(text: str) -> None:
    assert outcome(text, read_entries) == outcome(text, read_libyaml)


# --- octoDNS's layout is read by the strict reader, the records by the fast path -------------


def test_octodns_layout_is_read_without_libyaml(tmp_path: Path) -> None:
    text = compare_zone.write_yaml(tmp_path / "big.example.com.yaml", 50).read_text()
    entries = read_strict(text)
    assert entries is not None
    simple = [value for _, _, value in entries if isinstance(value, Simple)]
    assert len(simple) == len(entries) == 53  # the apex, 50 names, ns1 and ns2
    assert assert_reads_alike(text)


def test_the_example_zone_is_read_without_libyaml() -> None:
    text = (ROOT / "zones" / "gw.example.com.yaml").read_text()
    assert assert_reads_alike(text)
    zone = parse_zone(text, "z", "gw.example.com.", serial=1)
    assert zone == parse_zone_with(text, "z", "gw.example.com.", 1, None, True,
                                      read_libyaml)  # fmt: skip


def test_one_odd_entry_is_read_by_libyaml_alone(tmp_path: Path) -> None:
    """A long TXT value folded over lines (as PyYAML dumps it) does not slow the others."""
    path = compare_zone.write_yaml(tmp_path / "big.example.com.yaml", 50)
    folded = (
        "dkim._domainkey:\n  type: TXT\n"
        "  value: v=DKIM1\\; k=rsa\\; p=MIIBIjANBgkqhkiG9w0BAQEFAAOC\n    AQ8AMIIBCgKCAQEAu5PZ\n"
    )
    text = path.read_text().replace("h000010:\n", folded + "h000010:\n")
    assert read_strict(text, entry_by_libyaml=False) is None
    entries = read_strict(text)
    assert entries is not None
    assert [key for key, _, value in entries if not isinstance(value, Simple)] == [
        "dkim._domainkey"
    ]
    assert assert_reads_alike(text)
    zone = parse_zone(text, "z", "big.example.com.", serial=1)
    txt = zone.nodes["dkim._domainkey.big.example.com."][RRType.TXT].rdatas
    assert txt == (TXT((b"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOC AQ8AMIIBCgKCAQEAu5PZ",)),)


def test_simple_types_are_the_string_valued_ones() -> None:
    assert set(SIMPLE_TYPES) == set(TEXT_PARSERS)


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_dotted_quads_are_strings_to_yaml(address: object) -> None:
    """``string`` takes a dotted quad for a string without asking the resolver."""
    text = str(address)
    assert plain_tag(text) == STR_TAG
    assert yaml.safe_load(f"a: {text}") == {"a": text}
    assert string(text) == text


# --- tricky texts: the strict reader reads them as libyaml does, or declines --------------------

#: (id, text, how it is read): "lines" by the strict reader line by line, "entry" with an
#: entry composed by libyaml on its own, "file" by libyaml as a whole.
TEXTS = [
    ("octodns", "---\n'':\n- ttl: 60\n  type: NS\n  values:\n  - ns1.x.test.\n"
                "www:\n  ttl: 300\n  type: A\n  value: 192.0.2.1\n", "lines"),
    ("indented-list", "a:\n  type: A\n  values:\n    - 192.0.2.1\n    - 192.0.2.2\n", "lines"),
    ("mixed-list-indent", "a:\n  type: A\n  values:\n  - 192.0.2.1\n    - 192.0.2.2\n", "entry"),
    ("four-spaces", "a:\n    type: A\n    value: 192.0.2.1\n", "lines"),
    ("comments", "# head\na: # key\n  type: A  # t\n\n  # inside\n  value: 1.2.3.4 #v\n", "lines"),
    ("no-final-newline", "a:\n  type: A\n  value: 192.0.2.1", "lines"),
    ("unsorted", "a:\n  value: 192.0.2.1\n  type: A\n", "lines"),
    ("quoted", "'a''b':\n  type: \"A\"\n  value: '192.0.2.1'\n"
               "\"c\":\n  type: A\n  value: \"x y\"\n", "lines"),
    ("quoted-escape", 'a:\n  type: A\n  value: "192.0.2.\\x31"\n', "entry"),
    ("numbers", "a:\n  ttl: 0300\n  type: A\n  value: 1_000\nb:\n  ttl: 0x1F\n  type: A\n"
                "  value: 1:30\n", "lines"),
    ("floats", "a:\n  ttl: 1.5\n  type: A\n  values: [.inf, -.Inf, .NaN, 1e3, 1.0e+3]\n", "lines"),
    ("negative", "a:\n  ttl: -1\n  type: A\n  value: -a\n", "lines"),
    ("booleans-nulls", "a:\n  type: A\n  values: [yes, No, on, OFF, y, n, null, ~, Null, true]\n",
     "lines"),
    ("null-type", "a:\n  type: NULL\n  value: ON\n", "lines"),
    ("string-tag", "a:\n  type: A\n  value: !!str 300\n", "entry"),
    ("custom-tag", "a: !include b.yaml\n", "file"),
    ("anchor-alias", "a: &x\n  type: A\n  value: 192.0.2.1\nb: *x\n", "file"),
    ("merge", "a: {<<: {type: A}, value: 192.0.2.1}\n", "entry"),
    ("merge-block", "a:\n  <<: {type: A}\n  value: 192.0.2.1\n", "entry"),
    ("quoted-merge", "a:\n  '<<': x\n", "lines"),
    ("dup-key", "a:\n  type: A\n  value: 192.0.2.1\na:\n  type: A\n  value: 192.0.2.2\n", "file"),
    ("dup-inner-key", "a:\n  type: A\n  type: AAAA\n", "file"),
    ("dup-flow-key", "a: {type: A, type: B}\n", "file"),
    ("block-scalar", "a:\n  type: TXT\n  value: |\n    text\n", "entry"),
    ("folded-scalar", "a:\n  type: TXT\n  value: >-\n    text\n", "entry"),
    ("multi-line-plain", "a:\n  type: TXT\n  value: one\n    two\n", "entry"),
    ("multi-line-plain-gap", "a:\n  type: TXT\n  value: one\n\n    two\n", "entry"),
    ("multi-line-quoted", "a:\n  type: TXT\n  value: 'one\n    two'\n", "entry"),
    ("two-documents", "a: 1\n---\nb: 2\n", "file"),
    ("document-end", "a: 1\n...\n", "file"),
    ("start-with-content", "--- a: b\n", "file"),
    ("marker-with-content", "x: 1\n--- a: b\n", "file"),
    ("end-with-space", "x: 1\n... \n", "file"),
    ("dashes-key", "---a: b\n", "lines"),
    ("dots-key", "...a: b\n", "lines"),
    ("directive", "%YAML 1.1\n---\na: 1\n", "file"),
    ("start-with-comment", "--- # zone\na:\n  type: A\n  value: 192.0.2.1\n", "lines"),
    ("empty-value", "a:\n  type: A\n  value:\n", "entry"),
    ("bare-key", "a:\nb: 1\n", "entry"),
    ("dash-alone", "a:\n-\n- x\n", "entry"),
    ("nested-dashes", "a:\n- - x\n", "entry"),
    ("complex-key", "? a\n: b\n", "file"),
    ("flow-in-flow", "a: {values: [x]}\n", "entry"),
    ("flow", "a: {type: A, value: 192.0.2.1, ttl: 5}\nb: [192.0.2.1, '192.0.2.2', \"x\"]\n"
             "c: []\nd: {}\ne: [-1, -.Inf, .NaN, 1e3, 'x, y']\n", "lines"),
    ("flow-spaces", "a: [ x , y ]\nb: { k: v }\n", "lines"),
    ("flow-trailing-comma", "a: [x, y,]\n", "entry"),
    ("flow-colon", "a: [2001:db8::1]\n", "entry"),
    ("flow-multi-line", "a: [x,\n  y]\n", "entry"),
    ("tab", "a:\n\ttype: A\n", "file"),
    ("tab-in-value", "a: b\tc\n", "file"),
    ("crlf", "a:\r\n  type: A\r\n", "lines"),
    ("lone-cr", "a:\r  type: A\n", "file"),
    ("cr-in-quotes", "a: 'x\ry'\n", "file"),
    ("non-ascii", "a: é\n", "file"),
    ("bom", "\ufeffa: b\n", "file"),
    ("control", "a: \x01\n", "file"),
    ("top-level-list", "- a\n", "file"),
    ("top-level-scalar", "just text\n", "file"),
    ("indented-top", "  a: b\n", "file"),
    ("indented-then-key", "  type: A\na:\n", "file"),
    ("empty", "", "file"),
    ("only-comments", "# nothing\n\n", "file"),
    ("bad-dedent", "a:\n    b: 1\n  c: 2\n", "file"),
    ("seq-then-key", "a:\n  - x\n  b: 1\n", "file"),
    ("key-after-indentless", "a:\n- x\nb: 1\n", "lines"),
    ("map-then-dash", "a:\n  k: v\n  - x\n", "file"),
    ("item-continuation", "a:\n- x\n  y\n", "entry"),
    ("compact-maps", "a:\n- type: A\n  value: 192.0.2.1\n-   type: AAAA\n    value: 2001:db8::1\n",
     "lines"),
    ("colon-first", "a: ::1\n", "entry"),
    ("compact-bad-indent", "a:\n- type: A\n   value: 192.0.2.1\n", "file"),
    ("compact-nested", "a:\n- octodns:\n    dnsfail: {soa: {ttl: 5}}\n  type: NS\n"
                       "  values:\n  - ns1.x.test.\n", "entry"),
    ("compact-nested-block", "a:\n- octodns:\n    dnsfail:\n      all_down: all\n  type: A\n"
                             "  values:\n  - 192.0.2.1\n", "lines"),
    ("null-dash-value", "a:\n- values:\n- x\n", "entry"),
    ("plain-specials", "a: ['a #b', \"c: d\"]\nb: x#y\nc: 'a: b'\nd: v=DKIM1\\; k=rsa\n"
                       "e: a:b\nf: -1\ng: -a\nh: a b  c\ni: a:b:c\nj: http://x/y?z=1&w=2\n",
     "lines"),
    ("plain-colon-end", "a: b:\n", "file"),
    ("plain-colon-space", "a: b: c\n", "file"),
    ("plain-space-colon", "a: b :c\n", "lines"),
    ("key-space-colon", "a : b\n", "entry"),
    ("key-no-space", "a:b\n", "file"),
    ("plain-indicators", "a: ,x\nb: [x]y\n", "file"),
    ("reserved", "a: @x\n", "file"),
    ("backtick", "a: `x\n", "file"),
    ("question", "a: ?x\n", "entry"),
    ("percent-in-plain", "a: x%y\n", "lines"),
    ("special-keys", "'': 1\n'*': 2\n'*.sub': 3\n1: 4\nyes: 5\n~: 6\nnull: 7\n", "lines"),
    ("timestamps", "a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\nc: [2001-12-14]\n", "lines"),
    ("impossible-date", "a:\n  type: TXT\n  value: 2001-02-30\n", "entry"),
    ("flow-hash", "a: [x#y]\n", "entry"),
    ("value-tag", "a: =\n", "file"),
    ("reserved-chars", "a: [!, &, '*']\n", "file"),
    ("long-ttl", "a:\n  ttl: 99999999999999999999\n  type: A\n  value: 192.0.2.1\n", "lines"),
    ("dotted-keys", "a.b.c:\n  type: A\n  value: 192.0.2.1\nA.B:\n  type: A\n  value: 1.2.3.4\n",
     "lines"),
    ("key-with-star", "a*b:\n  type: A\n  value: 192.0.2.1\n", "lines"),
    ("trailing-spaces", "a:  \n  type: A   \n  value: 192.0.2.1   \n", "lines"),
    ("comment-no-space", "a: b#c\n", "lines"),
    ("comment-after-quote", "a: 'b' # c\n", "lines"),
    ("text-after-quote", "a: 'b' c\n", "file"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "how"), [pytest.param(t, h, id=i) for i, t, h in TEXTS])
def test_strict_reader_reads_as_libyaml_does(text: str, how: str) -> None:
    assert assert_reads_alike(text) is (how != "file")
    by_lines = read_strict(text, entry_by_libyaml=False)
    assert (by_lines is not None) is (how == "lines")


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t, _ in TEXTS])
def test_tricky_texts_make_the_same_zone(text: str) -> None:
    assert_parses_alike(APEX + text if text.startswith(("a", "'", '"', "#")) else text)


# --- every table of test_load, by both routes ----------------------------------------------------

GOOD = [
    ("base", APEX + BASE),
    ("dynamic", APEX + DYNAMIC),
    ("dual", APEX + DUAL),
    ("values", APEX + "a:\n  ttl: 60\n  type: A\n  values:\n  - 192.0.2.1\n  - 192.0.2.2\n"),
    ("every-simple-type", APEX + textwrap.dedent("""\
        '':
        - type: ALIAS
          value: WWW.x.test.
        - type: TXT
          values:
          - v=spf1 -all
          - ''
        '*':
          type: A
          value: 192.0.2.7
        www:
        - type: A
          value: 192.0.2.1
        - type: AAAA
          values:
          - 2001:DB8::1
          - 2001:db8:0::2
        alias.deep:
          type: CNAME
          value: Target.Example.
        1.2:
          type: PTR
          value: host.example.
        sub:
          type: NS
          values:
          - ns.sub.x.test.
        ns.sub:
          type: A
          value: 192.0.2.53
        """)),
]  # fmt: skip

#: Records the fast path must hand over to the general rules, each with a problem.
FAST_BUT_BAD = [
    ("bad-ipv4", "a:\n  type: A\n  value: 192.0.2.256\n"),
    ("leading-zero", "a:\n  type: A\n  value: 192.0.2.01\n"),
    ("v6-in-a", "a:\n  type: A\n  value: '2001:db8::1'\n"),
    ("v4-in-aaaa", "a:\n  type: AAAA\n  value: 192.0.2.1\n"),
    ("dup-values", "a:\n  type: A\n  values:\n  - 192.0.2.1\n  - 192.0.2.1\n"),
    ("ttl-too-big", "a:\n  ttl: 2147483648\n  type: A\n  value: 192.0.2.1\n"),
    ("cname-values", "a:\n  type: CNAME\n  values:\n  - x.test.\n"),
    ("relative-target", "a:\n  type: CNAME\n  value: www\n"),
    ("ip-target", "a:\n  type: NS\n  value: 192.0.2.1\n"),
    ("txt-semicolon", "a:\n  type: TXT\n  value: a; b\n"),
    ("alias-not-apex", "a:\n  type: ALIAS\n  value: www.x.test.\n"),
    ("cname-and-a", "a:\n- type: A\n  value: 192.0.2.1\n- type: CNAME\n  value: x.test.\n"),
    ("same-type-twice", "a:\n- type: A\n  value: 192.0.2.1\n- type: A\n  value: 192.0.2.2\n"),
    ("bad-owner", "a..b:\n  type: A\n  value: 192.0.2.1\n"),
    ("at-owner", "'@':\n  type: A\n  value: 192.0.2.1\n"),
    ("outside", "x.example.:\n  type: A\n  value: 192.0.2.1\n"),
    ("long-label", "a" * 64 + ":\n  type: A\n  value: 192.0.2.1\n"),
    ("long-name", ".".join(["a" * 63] * 4) + ":\n  type: A\n  value: 192.0.2.1\n"),
    ("occluded", "sub:\n  type: NS\n  value: ns.example.\nx.sub:\n  type: TXT\n  value: t\n"),
    ("wildcard-ns", "'*':\n  type: NS\n  value: ns.example.\n"),
]


@pytest.mark.parametrize(
    "text",
    [pytest.param(APEX + b, id=i) for i, b, _ in BAD_RECORDS]
    + [pytest.param(APEX + b, id=i) for i, b in FAST_BUT_BAD]
    + [pytest.param(t, id=i) for i, t in GOOD]
    + [pytest.param(APEX + _dyn(p, r), id=i) for i, p, r, _ in BAD_DYNAMIC]
    + [pytest.param(APEX + _dyn(P2, R2, _knobs(k)), id=i) for i, k, _ in BAD_KNOBS],
)
def test_both_routes_agree(text: str) -> None:
    assert_parses_alike(text)


@pytest.mark.parametrize("body", [pytest.param(b, id=i) for i, b in FAST_BUT_BAD])
def test_fast_records_with_problems_still_report_them(body: str) -> None:
    result = outcome(APEX + body, read_entries)
    assert isinstance(result, list)
    assert result


def test_serial_follows_content_by_either_route() -> None:
    first = parse_zone(APEX + BASE, "z", ORIGIN, serial=10)
    same = parse_zone(APEX + "# a comment\n" + BASE, "z", ORIGIN, serial=20, previous=first)
    assert same.serial == 10  # reformatting is not a change
    changed = parse_zone(APEX + BASE.replace(".1\n", ".2\n"), "z", ORIGIN, serial=5,
                                previous=first)  # fmt: skip
    assert changed.serial == 11


# --- generated documents -------------------------------------------------------------------

#: Scalars of the strict subset, typed every way YAML types plain scalars.
SAFE = [
    "a", "A", "www", "x.test.", "192.0.2.1", "198.18.0.255", "2001:db8::1", "1:2:3:4:5:6:7:8",
    "300", "0300", "0x1F", "1_000", "1:20", "1.5", ".inf", ".NaN", "-1", "+1", "-a", "yes", "No",
    "on", "OFF", "y", "null", "~", "NULL", "true", "2001-12-14", "'q'", "'it''s'", "''", '"dq"',
    '""', "a b", "a #b", "a#b", "a:b", "a :b", "[]", "{}", "[a, 'b', \"c\"]", "{k: v, 'q': 1}",
    "v=spf1 -all", "v=DMARC1\\; p=reject", "x;y", "*.", "'*'", "'*.sub'", "AAAA", "CNAME", "NS",
    "TXT", "MX", "ALIAS", "PTR", "a ",
]  # fmt: skip
#: Scalars outside the subset, or not scalars at all: the strict reader must decline them.
TRICKY = [
    "2001-02-30", "=", "<<", "::1", '"a\\tb"', "a: b", "a:", ":a", "- a", "?a", "a,b", "[a]b",
    "!!str 1", "!x a", "&a x", "*a", "|", ">", "%x", "@x", "é", "a\tb", "...", "---", "#", "*",
    "[a, [b]]", "{a: [b]}", "'open", "a: b: c",
]  # fmt: skip
TOKENS = SAFE * 3 + TRICKY
KEYS = ["a", "b", "www", "''", "'*'", "type", "ttl", "value", "values", "octodns", "1", "yes",
        "~", "a b", '"q"', "x.y", "'<<'", "<<", "&k a", "? a", "a:b", "a :b"]  # fmt: skip
ADDRESSES = ["192.0.2.1", "192.0.2.2", "198.18.0.255", "2001:db8::1", "x.test.", "www", "v=1",
             "'192.0.2.3'", '"x y"', "300", "yes", "192.0.2.256", "01.2.3.4", "a\\;b", "a;b",
             "::1", "!!str x"]  # fmt: skip

scalar_nodes = st.sampled_from(TOKENS).map(lambda t: ("scalar", t))
record_nodes = st.builds(
    lambda ttl, rtype, values, listed: (
        "map",
        [*([("ttl", ("scalar", ttl))] if ttl is not None else []), ("type", ("scalar", rtype)),
         ("values", ("seq", [("scalar", v) for v in values])) if listed
         else ("value", ("scalar", values[0]))],
    ),
    st.none() | st.sampled_from(["300", "0", "0300", "1.5", "2147483648", "yes", "-1"]),
    st.sampled_from(["A", "AAAA", "CNAME", "NS", "PTR", "TXT", "ALIAS", "MX", "ON", "'A'"]),
    st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3),
    st.booleans(),
)
nodes = st.recursive(
    scalar_nodes | record_nodes,
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda items: ("seq", items))
    | st.lists(st.tuples(st.sampled_from(KEYS), inner), min_size=1, max_size=4).map(
        lambda pairs: ("map", pairs)
    ),
    max_leaves=12,
)
#: What a top-level key holds: mostly records, or lists of them, as zone files do.
entries = (
    record_nodes
    | st.lists(record_nodes, min_size=1, max_size=3).map(lambda items: ("seq", items))
    | nodes
)
layouts = st.fixed_dictionaries({
    "indent": st.sampled_from([2, 2, 2, 4, 1]),
    "indentless": st.booleans(),
    "comments": st.sampled_from([False, False, True]),
    "start": st.sampled_from(["", "---\n", "# head\n---\n", "--- # c\n"]),
    "newline": st.booleans(),
    "crlf": st.sampled_from([False, False, True]),
})  # fmt: skip


Node = tuple[str, object]


def block(node: Node, column: int, layout: dict[str, object]) -> list[str]:
    """The lines of a mapping or sequence whose keys or dashes are at ``column``."""
    kind, body = node
    assert isinstance(body, list)
    out: list[str] = []
    for item in body:
        if kind == "map":
            key, child = item
            out += attach(" " * column + f"{key}:", child, column, layout, under_key=True)
        elif item[0] == "map":  # a compact mapping: its first key on the dash line
            inner = block(item, column + 2, layout)
            out += [" " * column + "- " + inner[0][column + 2 :], *inner[1:]]
        else:
            out += attach(" " * column + "-", item, column, layout, under_key=False)
        if layout["comments"]:
            out.append(" " * column + "# between")
    return out


def attach(head: str, child: Node, column: int, layout: dict[str, object],
           under_key: bool) -> list[str]:  # fmt: skip
    """``head`` (``key:`` or ``-``) with its value ``child``, inline or on the lines below."""
    kind, body = child
    if kind == "scalar":
        return [f"{head} {body}"]
    step = int(str(layout["indent"]))
    at = column if kind == "seq" and under_key and layout["indentless"] else column + step
    return [head, *block(child, at, layout)]


def document(pairs: list[tuple[str, Node]], layout: dict[str, object]) -> str:
    text = str(layout["start"]) + "\n".join(block(("map", pairs), 0, layout))
    text = text + "\n" if layout["newline"] else text
    return text.replace("\n", "\r\n") if layout["crlf"] else text


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(KEYS[:12]), entries), min_size=1, max_size=5,
             unique_by=lambda pair: pair[0]) | st.lists(st.tuples(st.sampled_from(KEYS), nodes)),
    layouts,
)  # fmt: skip
def test_generated_documents_read_alike(
    pairs: list[tuple[str, Node]], layout: dict[str, object]
) -> None:
    text = document(pairs, layout)
    assert_reads_alike(text)
    assert_parses_alike(APEX + text if not text.startswith(("-", "#")) else text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a:", "  type: A", "  value: 192.0.2.1", "- x", "  - y",
                                 "    k: v", "b: 1", "# c", "", "  values:", "- type: A",
                                 "  ttl: 300", "'q':", "---", "  - 192.0.2.2", "--- a: b",
                                 "... x", "...", "- - x", "-", "a: b"]),
                max_size=12))  # fmt: skip
def test_shuffled_lines_read_alike(lines: list[str]) -> None:
    assert_reads_alike("\n".join(lines) + "\n")
