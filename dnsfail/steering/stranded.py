"""Would a drain leave a record with nothing healthy to answer?  (``dnsfail drain`` asks.)

Draining every pool of a record used to pass without a word: the name quietly
fell to its backup values or all-down policy (issue 17).  Before a drain is
published, :func:`stranded` compares the answers' zones now with the zones
under the prospective override set: a record the drain touches that has a
healthy pool value now and none after is *stranded*, and the drain is refused
unless forced (``--force``, ``"force": true``).  A record already without a
healthy value is not the drain's doing (draining a dead site stays allowed).

"Healthy" is what ``steering.selection`` would answer with: a value forced
UP, one without a health check, or an obeyed one whose target is up or not
yet probed (selection serves unknown targets as up).  Every pool counts, not
only those a rule reaches: the check errs towards allowing the drain.

Pure: zones, a health lookup and matches in; names out.  Core: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from dnsfail.model import DynamicRecord, ProbeSpec, Status, Zone
from dnsfail.steering.overrides import Match, OverrideError


class WouldStrand(OverrideError):
    """A drain refused because it would leave ``records`` without a healthy pool value."""

    def __init__(self, selector: str, records: list[str]) -> None:
        super().__init__(
            f"draining {selector} would leave {', '.join(records)} with no healthy pool "
            "value (answers would fall to the backup values or the all-down policy); "
            "force it to drain anyway")
        self.records = records


def has_healthy_value(record: DynamicRecord, is_up: Callable[[ProbeSpec], bool | None]) -> bool:
    """True if some pool value of ``record`` would be answered (selection's notion of up)."""
    for pool in record.pools.values():
        for value in pool.values:
            if value.status is Status.UP:
                return True
            if value.status is Status.DOWN:
                continue
            if value.probe is None or is_up(value.probe) is not False:
                return True
    return False


def stranded(
    before: Mapping[str, Zone],
    after: Mapping[str, Zone],
    is_up: Callable[[ProbeSpec], bool | None],
    touched: Iterable[Match],
) -> list[str]:
    """The records of ``touched`` healthy under ``before`` and without a healthy pool value
    under ``after`` (the zones with the prospective overrides applied), as ``NAME TYPE``,
    in configuration order, each once."""
    out: list[str] = []
    seen: set[tuple[str, str, int]] = set()
    for m in touched:
        key = (m.zone, m.record.name, int(m.record.rtype))
        if key in seen:
            continue
        seen.add(key)
        name = (m.record.name, m.record.rtype)
        old = before[m.zone].dynamic.get(name) if m.zone in before else None
        new = after[m.zone].dynamic.get(name) if m.zone in after else None
        if new is None or has_healthy_value(new, is_up):
            continue
        if old is None or has_healthy_value(old, is_up):
            out.append(f"{m.record.name} {m.record.rtype.name}")
    return out
