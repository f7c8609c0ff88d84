"""``dnsfail status --cluster``: one row per instance of the NS set, from their own status.

Stdlib only, like ``cli.ctl``: asks the named instance for ``/v1/status``,
then every peer URL its ``cluster`` object lists, with the same token, and
prints whether each answered, its epoch, whether it is degraded, and the
targets whose state differs from the most common one.
"""

from __future__ import annotations

import argparse
import collections
import json
from typing import Any

Request = Any  # ctl.request, passed in to keep one HTTP client


def rows(statuses: dict[str, dict[str, Any] | str]) -> list[dict[str, Any]]:
    """Per URL: instance, reachable, epoch, degraded, the targets it disagrees on."""
    states: dict[str, dict[str, str]] = {}
    for url, s in statuses.items():
        if isinstance(s, dict):
            states[url] = {t["target"]: t["state"] for t in s.get("targets", [])}
    common: dict[str, str] = {}
    for target in sorted({t for per in states.values() for t in per}):
        counts = collections.Counter(per.get(target, "?") for per in states.values())
        common[target] = counts.most_common(1)[0][0]
    out: list[dict[str, Any]] = []
    for url, s in statuses.items():
        if not isinstance(s, dict):
            out.append({"url": url, "instance": None, "reachable": False, "epoch": None,
                        "degraded": None, "disagree": [], "error": s})
            continue
        cluster = s.get("cluster") or {}
        mine = states[url]
        disagree = sorted(t for t, state in common.items() if mine.get(t, "?") != state)
        out.append({"url": url, "instance": s.get("identity"), "reachable": True,
                    "epoch": cluster.get("epoch"), "degraded": cluster.get("degraded"),
                    "disagree": [f"{t}={mine.get(t, '?')}" for t in disagree]})
    return out


def run(args: argparse.Namespace, request: Request, base_url: Any, error: type[Exception]) -> int:
    code, first = request(args, "GET", "/v1/status")
    if code != 200 or not isinstance(first, dict):
        raise error(f"server answered {code}")
    cluster = first.get("cluster")
    if not isinstance(cluster, dict):
        raise error("this instance runs without --peer: no NS set to show")
    here = base_url(args.control)
    statuses: dict[str, dict[str, Any] | str] = {here: first}
    for peer in cluster.get("peers", []):
        url = peer["url"]
        if url in statuses or url in cluster.get("self_urls", []):
            continue
        asked = argparse.Namespace(**{**vars(args), "control": url})
        try:
            code, payload = request(asked, "GET", "/v1/status")
            statuses[url] = payload if code == 200 else f"HTTP {code}"
        except error as exc:
            statuses[url] = str(exc).split(":")[-1].strip() or "unreachable"
    table = rows(statuses)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        head = ["INSTANCE", "URL", "REACHABLE", "EPOCH", "DEGRADED", "DISAGREES ON"]
        lines = [head] + [[
            r["instance"] or "?", r["url"], "yes" if r["reachable"] else f"no ({r['error']})",
            r["epoch"] or "-", "-" if r["degraded"] is None else ("yes" if r["degraded"] else "no"),
            ", ".join(r["disagree"]) or "-"] for r in table]
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        for row in lines:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        epochs = {r["epoch"] for r in table if r["reachable"]}
        answered = sum(1 for r in table if r["reachable"])
        verdict = "agree" if len(epochs) == 1 and answered == len(table) else "DISAGREE"
        print(f"{answered}/{len(table)} instances answered; epochs {verdict}")
    epochs = {r["epoch"] for r in table}
    return 0 if len(epochs) == 1 and all(r["reachable"] for r in table) else 1
