"""Record values: one parser per record type, from a string or a located mapping.

Owns the per-type value parsers and their tables (``TEXT_PARSERS`` for the
types whose every value is one string, shared by the located path and the
fast path so they cannot disagree; ``PARSERS`` for all), the IP address
rules, and the size rules of RDLENGTH and of one RRset in one message.

Imports ``model``, ``wiresize``, ``located`` and ``names``.  It must not import
``records`` or anything above it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence

from dnsfail.model import AAAA, CAA, CNAME, MX, NS, PTR, SRV, TXT, A, Opaque, Rdata
from dnsfail.zonefile.located import Scope, YMap, YNode
from dnsfail.zonefile.names import host_problem, target_name
from dnsfail.zonefile.wiresize import (
    MAX_RDATA,
    RR_OVERHEAD,
    RRSET_BUDGET,
    rdata_length,
    rrset_length,
)

_CAA_TAG_RE = re.compile(r"^[a-zA-Z0-9]{1,15}$")


#: octoDNS rejects a ``;`` right after a word character: it must be written ``\;``.
_UNESCAPED_SEMICOLON_RE = re.compile(r"\w;")


#: An IPv4 address as ``str(IPv4Address)`` writes it: four decimal octets, no leading zeros.
#: Text that matches is valid and already normal, so ``ipaddress`` need not parse it.
IPV4_TEXT_RE = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                           r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")  # fmt: skip


def _ip_text(text: str, version: int) -> str | None:
    """``text`` as an IP address of the given family, normalised (RFC 5952 for IPv6); or None."""
    if version == 4 and IPV4_TEXT_RE.fullmatch(text):
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(address) if address.version == version else None


def parse_address(scope: Scope, node: YNode, version: int, what: str = "value") -> str | None:
    """An IP address of the given family, normalised (RFC 5952 text for IPv6)."""
    text = scope.string(node, what)
    if text is None:
        return None
    address = _ip_text(text, version)
    if address is None:
        scope.error(node.line, f"{text!r} is not a valid IPv{version} address")
    return address


# Rdata from one string value, or the reason it is invalid.  The general path (located nodes)
# and the fast path (``records.simple_record``) both call these, so they cannot disagree.


def _text_a(text: str) -> Rdata | str:
    if IPV4_TEXT_RE.fullmatch(text):
        return A(text)  # the common case: valid and normal already
    address = _ip_text(text, 4)
    return A(address) if address else f"{text!r} is not a valid IPv4 address"


def _text_aaaa(text: str) -> Rdata | str:
    address = _ip_text(text, 6)
    return AAAA(address) if address else f"{text!r} is not a valid IPv6 address"


def _text_cname(text: str) -> Rdata | str:
    target = text.lower()
    return host_problem(target, False) or CNAME(target)


def _text_ns(text: str) -> Rdata | str:
    target = text.lower()
    return host_problem(target, False) or NS(target)


def _text_ptr(text: str) -> Rdata | str:
    target = text.lower()
    return host_problem(target, False) or PTR(target)


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


def rrset_problem(rtype: str, rdatas: Sequence[Rdata]) -> str | None:
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
TEXT_PARSERS: Mapping[str, Callable[[str], Rdata | str]] = {
    "A": _text_a,
    "AAAA": _text_aaaa,
    "ALIAS": _text_cname,
    "CNAME": _text_cname,
    "NS": _text_ns,
    "PTR": _text_ptr,
    "TXT": _text_txt,
}


_ValueParser = Callable[[Scope, YNode], Rdata | None]


def _string_value(parse: Callable[[str], Rdata | str]) -> _ValueParser:
    """The located form of a ``_text_*`` parser: a string node, its problem at its line."""

    def parser(scope: Scope, node: YNode) -> Rdata | None:
        text = scope.string(node, "value")
        if text is None:
            return None
        result = parse(text)
        if isinstance(result, str):
            scope.error(node.line, result)
            return None
        return result

    return parser


def _fields(scope: Scope, node: YNode, rtype: str, allowed: frozenset[str]) -> YMap | None:
    return scope.mapping(node, f"{rtype} value", allowed)


def _required(scope: Scope, value: YMap, key: str, rtype: str) -> YNode | None:
    node = value.get(key)
    if node is None:
        scope.error(value.line, f"missing {key!r} in {rtype} value")
    return node


def _parse_mx(scope: Scope, node: YNode) -> Rdata | None:
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
    exchange = target_name(scope, exch_node, exch_key, allow_root=True) if exch_node else None
    if preference is None or exchange is None:
        return None
    return MX(preference, exchange)


def _parse_srv(scope: Scope, node: YNode) -> Rdata | None:
    """SRV fields per RFC 2782; target ``.`` means "no such service"."""
    value = _fields(scope, node, "SRV", frozenset({"priority", "weight", "port", "target"}))
    if value is None:
        return None
    numbers: list[int | None] = []
    for key in ("priority", "weight", "port"):
        field_node = _required(scope, value, key, "SRV")
        numbers.append(scope.integer(field_node, key, 0, 65535) if field_node else None)
    target_node = _required(scope, value, "target", "SRV")
    target = target_name(scope, target_node, "target", allow_root=True) if target_node else None
    priority, weight, port = numbers
    if priority is None or weight is None or port is None or target is None:
        return None
    return SRV(priority, weight, port, target)


def _parse_caa(scope: Scope, node: YNode) -> Rdata | None:
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


#: DS digest lengths in octets by digest type (RFC 4034 5.1.4 SHA-1, RFC 4509 SHA-256,
#: RFC 6605 SHA-384), as octoDNS's strict validator checks them; other types any length.
DS_DIGEST_LENGTHS = {1: 20, 2: 32, 4: 48}
#: octoDNS's deprecated DS field names, and the current field each stands for
#: (``DsValue.__init__``: flags is the key tag, protocol the algorithm, algorithm the
#: digest type, public_key the digest).
_DS_LEGACY = {"flags": "key_tag", "protocol": "algorithm", "algorithm": "digest_type",
              "public_key": "digest"}
_DS_LIMITS = {"key_tag": 65535, "algorithm": 255, "digest_type": 255}


def _parse_ds(scope: Scope, node: YNode) -> Rdata | None:
    """DS (RFC 4034 section 5.1) as octoDNS writes it: ``key_tag``, ``algorithm``,
    ``digest_type``, ``digest`` (hex), or its legacy ``flags``/``protocol``/``algorithm``/
    ``public_key`` naming the same four fields; kept as its wire RDATA."""
    value = _fields(scope, node, "DS", frozenset({*_DS_LIMITS, "digest", *_DS_LEGACY}))
    if value is None:
        return None
    legacy = "flags" in value.entries or "public_key" in value.entries
    names = {v: k for k, v in _DS_LEGACY.items()} if legacy else {k: k for k in (
        *_DS_LIMITS, "digest")}
    numbers: dict[str, int | None] = {}
    for field, top in _DS_LIMITS.items():
        key = names[field]
        found = _required(scope, value, key, "DS")
        numbers[field] = scope.integer(found, key, 0, top) if found else None
    digest_key = names["digest"]
    digest_node = _required(scope, value, digest_key, "DS")
    text = scope.string(digest_node, digest_key) if digest_node else None
    digest = None
    if text is not None and digest_node is not None:
        try:
            digest = bytes.fromhex(text) if text and " " not in text else None
        except ValueError:
            digest = None
        if digest is None:
            scope.error(digest_node.line, f"DS {digest_key} {text!r} is not hexadecimal")
    key_tag, algorithm, digest_type = (numbers[f] for f in _DS_LIMITS)
    if key_tag is None or algorithm is None or digest_type is None or digest is None:
        return None
    want = DS_DIGEST_LENGTHS.get(digest_type)
    if want is not None and len(digest) != want:
        assert digest_node is not None
        scope.error(digest_node.line, f"DS digest type {digest_type} takes {want} octets "
                    f"({2 * want} hex digits), not {len(digest)}")
        return None
    return Opaque(key_tag.to_bytes(2, "big") + bytes((algorithm, digest_type)) + digest)


PARSERS: Mapping[str, _ValueParser] = {
    **{rtype: _string_value(parse) for rtype, parse in TEXT_PARSERS.items()},
    "CAA": _parse_caa,
    "DS": _parse_ds,
    "MX": _parse_mx,
    "SRV": _parse_srv,
}


def show_rdata(rdata: Rdata) -> str:
    """How a duplicate value is quoted: the single field, or the fields."""
    if isinstance(rdata, Opaque):  # a DS: key tag, algorithm, digest type, digest
        data = rdata.data
        return repr(f"{data[0] << 8 | data[1]} {data[2]} {data[3]} {data[4:].hex()}")
    fields = [getattr(rdata, slot) for slot in type(rdata).__slots__]
    if len(fields) == 1:
        only = fields[0]
        if isinstance(only, tuple):
            return repr(b"".join(only).decode("ascii"))
        return repr(only)
    return repr(" ".join(str(f) for f in fields))
