"""What a webhook receives: the generic JSON body, the Slack-compatible one, and the URL rules.

``--webhook URL`` posts the generic body; ``--webhook slack+https://...``
posts ``{"text": ...}``, which Slack's incoming webhooks (and Mattermost's,
Rocket.Chat's, Discord's ``/slack`` endpoints) accept.  The one-line text
is the same in both.  A webhook URL is a secret (Slack's carries its token
in the path): logs and status show only :func:`redact`'s form.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dnsfail.events.log import KINDS, Event
from dnsfail.logs import iso

#: The prefix that selects the Slack-compatible body.
SLACK = "slack+"


@dataclass(frozen=True, slots=True)
class Target:
    """One ``--webhook``: where to POST and which body."""

    url: str
    #: ``json`` or ``slack``.
    format: str
    #: The event kinds it gets (``--webhook-events``).
    kinds: frozenset[str] = frozenset(KINDS)

    @property
    def shown(self) -> str:
        return redact(self.url)


def parse_target(text: str) -> Target:
    """``[slack+]http(s)://host[:port]/path``; ValueError with the reason (never the URL's
    secret parts) for anything else."""
    fmt, url = ("slack", text[len(SLACK):]) if text.startswith(SLACK) else ("json", text)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError(f"webhook {redact(url)}: not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook {redact(url)}: not an http:// or https:// URL "
                         "(prefix slack+ for a Slack-compatible body)")
    return Target(url, fmt)


def redact(url: str) -> str:
    """``scheme://host[:port]/...``: no user, password, path or query (they hold tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or '?'}://{host}{port}/..."


def parse_kinds(text: str) -> frozenset[str]:
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = sorted(kinds - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown event kind(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(KINDS)}")
    return kinds


def summary(event: Event, identity: str) -> str:
    """One line a person reads in a chat channel or a pager."""
    d = event.data
    head = f"dnsfail {identity}:"
    if event.kind == "transition":
        users = ", ".join(d.get("used_by", [])[:5])
        return (f"{head} target {d['target']} is {str(d['to']).upper()} (was {d['from']}): "
                f"{d.get('detail', '')}" + (f"; serves {users}" if users else ""))
    if event.kind == "drain":
        verb = "drained" if d.get("state") == "down" else "forced up"
        return (f"{head} {d['selector']} {verb} until {iso(float(d['expires']))} by "
                f"{d.get('by') or '?'}: {d.get('reason', '')}")
    if event.kind == "undrain":
        return f"{head} {d['selector']} undrained by {d.get('undrain_by') or '?'}"
    if event.kind == "expired":
        return f"{head} override {d['selector']} expired (set by {d.get('by') or '?'})"
    if event.kind == "reload":
        if d.get("ok"):
            return f"{head} reload ok, config generation {d.get('config_generation')}"
        problems = list(d.get("problems", []))
        first = f": {problems[0]}" if problems else ""
        return f"{head} reload REJECTED, {len(problems)} problem(s){first}"
    return f"{head} {event.kind}"


def body(target: Target, event: Event, identity: str) -> dict[str, Any]:
    text = summary(event, identity)
    if target.format == "slack":
        return {"text": text}
    return {"source": "dnsfail", "identity": identity, "text": text, "event": event.to_json()}
