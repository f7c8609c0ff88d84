"""One query's answers to dynamic records: where the client is, what its health view says.

This module owns ``Steering``, the resolver's ``DynamicAnswers`` for one
query: it runs ``geo.decide`` (which rule), then ``selection.select``
(which addresses, by health), and records each ``Step`` for ``explain``.
It reads health through ``HealthView`` (a ``state.Snapshot`` is one), so it
needs nothing from ``state``; pure: no I/O, no clock, no geoip2.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from dnsfail.dns.resolver import DynamicResult
from dnsfail.model import AAAA, A, DynamicRecord, ProbeSpec, RRset, RRType
from dnsfail.steering.geo import Decision, Locator, NoLocator, decide
from dnsfail.steering.selection import Selection, select

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HealthView(Protocol):
    """What selection reads of one generation's health (``state.Snapshot``)."""

    def is_up(self, spec: ProbeSpec) -> bool | None: ...

    def change_bound(self, spec: ProbeSpec) -> float: ...


@dataclass(frozen=True, slots=True)
class Step:
    """What one dynamic record decided for one query: for ``explain`` and logs."""

    record: DynamicRecord
    decision: Decision
    selection: Selection


@dataclass(slots=True)
class Steering:
    """One query's view for dynamic records: a snapshot and where the client is.

    This is the resolver's ``DynamicAnswers``.  ``address`` is the ECS address
    when the query carried ECS, else the packet's source; None means the
    client asked us not to use its address (ECS SOURCE PREFIX-LENGTH 0,
    RFC 7871 section 7.1.2).  ``steps`` collects decisions when set (explain).
    """

    snapshot: HealthView
    address: Address | None = None
    source_prefix: int | None = None
    locator: Locator = field(default_factory=NoLocator)
    steps: list[Step] | None = None

    def answer(self, record: DynamicRecord, owner: str) -> DynamicResult:
        snap = self.snapshot
        decision = decide(record, self.address, self.source_prefix, self.locator)
        chosen = select(record, decision.rule, snap.is_up, snap.change_bound)
        if self.steps is not None:
            self.steps.append(Step(record, decision, chosen))
        # Only a random (weighted) draw makes an answer uncacheable; an answer that
        # depends on the client carries its scope, and the handler caches it per client.
        cacheable = chosen.cacheable
        depends = any(not rule.is_catch_all or rule.nearest for rule in record.rules)
        if chosen.servfail:
            return DynamicResult(None, cacheable=cacheable, scope=decision.scope,
                                 client_dependent=depends)
        rdata = A if record.rtype == RRType.A else AAAA
        rrset = RRset(owner, record.rtype, chosen.ttl, tuple(rdata(a) for a in chosen.addresses))
        return DynamicResult(rrset, cacheable=cacheable, scope=decision.scope,
                             client_dependent=depends)
