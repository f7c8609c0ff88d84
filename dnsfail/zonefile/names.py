"""Owner and target names: RFC 1035 section 2.3.4 and RFC 1123 host-name rules.

Owns turning a record key into an absolute owner name (``owner_name``), the
relative label problems quote (``relative``), zone membership (``within``),
and the check of a target host name (``host_problem``, ``target_name``).

Imports ``located`` only (for ``Scope``).  It must not import ``rdata`` or
anything above it: they all use it.
"""

from __future__ import annotations

import ipaddress
import re

from dnsfail.zonefile.located import Scope, YNode

_LABEL_RE = re.compile(r"^[a-z0-9_-]+$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]+(?<!-)$")


def relative(name: str, origin: str) -> str:
    """``api.gw.example.com.`` -> ``api``; the apex is ``@`` as in master files."""
    if name == origin:
        return "@"
    return name[: -len(origin) - 1]


def within(name: str, ancestor: str) -> bool:
    """Whether ``name`` is ``ancestor`` or below it (both absolute)."""
    return ancestor == "." or name == ancestor or name.endswith("." + ancestor)


def name_problem(name: str) -> str | None:
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


def owner_name(key: str, origin: str) -> tuple[str | None, str | None]:
    """A record key -> (absolute owner name, None) or (None, reason)."""
    if _PLAIN_OWNER_RE.fullmatch(key) and len(key) + len(origin) + 2 <= 255:
        return f"{key}.{origin}", None  # what the general rules below give, quicker
    lowered = key.lower()
    if lowered == "@":
        return None, "invalid name '@', use '' for the apex (octoDNS)"
    if lowered.endswith("."):
        if not within(lowered, origin):
            return None, f"{key!r} is outside the zone {origin}"
        name = lowered
    else:
        name = f"{lowered}.{origin}" if lowered else origin
    reason = name_problem(name)
    return (None, reason) if reason else (name, None)


def host_problem(target: str, allow_root: bool) -> str | None:
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


def target_name(scope: Scope, node: YNode, what: str, *, allow_root: bool = False) -> str | None:
    text = scope.string(node, what)
    if text is None:
        return None
    reason = host_problem(text.lower(), allow_root)
    if reason:
        scope.error(node.line, reason)
        return None
    return text.lower()
