""""Why this answer?": the decision behind one answer, as text, from the server's own code.

``explain`` builds the query the client would send, answers it through
``Handler.answer`` (the same call the server makes) with a recorder for the
dynamic-record decisions, and prints where the client was placed and by
which network, the rule that matched, each pool tried with the health of
each value, the fallback taken, and the final answer with its TTL and ECS
scope.  Pure: it reads a snapshot and formats; the CLI (``cli.explain``) and
the control API (``GET /v1/explain``) supply the snapshot.

Core: imports only the model, the state and the rest of ``dns``; no I/O,
nothing from serve, control or cli.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import astuple
from typing import Protocol

from dnsfail.dns.query import UDP_PAYLOAD, ClientSubnet, Edns, Query
from dnsfail.model import Message, PoolValue, ProbeSpec, RRset, RRType, Status
from dnsfail.state import Snapshot
from dnsfail.steering.answers import Step


class Answerer(Protocol):
    """What ``explain`` needs of the server: the decision for a parsed query.

    ``dns.handler.Handler`` is one; naming only this keeps explain (and the
    control port, which hands a handler over) free of the handler's module.
    """

    def answer(self, snap: Snapshot, query: Query, client: str,
               steps: list[Step] | None = None) -> Message: ...


def client_subnet(cidr: str) -> ClientSubnet:
    """An ECS option as a resolver would send it for ``cidr`` (RFC 7871 section 6)."""
    network = ipaddress.ip_network(cidr, strict=False)
    return ClientSubnet(4 if network.version == 6 else 1, network.prefixlen, 0, network)


def _rrset_lines(rrsets: tuple[RRset, ...]) -> list[str]:
    lines = []
    for rrset in rrsets:
        for rdata in rrset.rdatas:
            fields = " ".join(
                f.decode(errors="replace") if isinstance(f, bytes) else str(f)
                for f in _flatten(astuple(rdata))
            )
            lines.append(f"  {rrset.name} {rrset.ttl} IN {rrset.rtype.name} {fields}")
    return lines


def _flatten(values: tuple[object, ...]) -> list[object]:
    out: list[object] = []
    for value in values:
        out.extend(_flatten(value) if isinstance(value, tuple) else [value])
    return out


#: What an NS set's node says of a target's votes (``cluster.quorum.describe``), or None.
Votes = Callable[[ProbeSpec], str | None]


def _value_state(snap: Snapshot, value: PoolValue, votes: Votes | None = None) -> str:
    if value.status is not Status.OBEY:
        return (f"{value.status.name} (status: {value.status.value}, forced by the zone file "
                "or an operator drain)")
    if value.probe is None:
        return "UP (not health-checked)"
    health = snap.health.get(value.probe)
    if health is None or health.last is None:
        return f"UNKNOWN (no probe result yet; {value.probe.label})"
    last = health.last
    said = votes(value.probe) if votes is not None else None
    if said is not None:
        return (f"{said}; own probe {value.probe.label} {value.probe.protocol.value}: "
                f"{last.detail} in {last.latency * 1000:.0f} ms")
    return (f"{health.state.name} ({value.probe.label} {value.probe.protocol.value}; last: "
            f"{last.detail} in {last.latency * 1000:.0f} ms; "
            f"{health.failures} failure(s), {health.successes} success(es) in a row)")


def _step_lines(snap: Snapshot, step: Step, votes: Votes | None = None) -> list[str]:
    record, decision, chosen = step.record, step.decision, step.selection
    rule = decision.rule
    lines = [
        f"record {record.name} {record.rtype.name}: dynamic, ttl {record.ttl}, "
        f"all_down {record.all_down.value}, ttl_floor {record.ttl_floor}",
        f"  placement: {decision.why}",
        f"  rule {decision.index + 1}: "
        + (f"geos {list(rule.geos)} " if rule.geos else "")
        + (f"subnets {[str(n) for n in rule.subnets]} " if rule.subnets else "")
        + ("catch-all " if rule.is_catch_all else "")
        + f"-> pools {', '.join(rule.pools)}",
    ]
    shown: set[str] = set()
    for part in chosen.reason.split(" -> "):
        how, _, name = part.partition(" ")
        name = name.split(":")[0]
        pool = record.pools.get(name) if how in ("pool", "fallback") else None
        if pool is None or name in shown:
            continue
        shown.add(name)
        lines.append(f"  {how} {name}" + (f" (fallback {pool.fallback})" if pool.fallback else ""))
        lines.extend(f"    {v.value:<39} {_value_state(snap, v, votes)}" for v in pool.values)
    lines.append(f"  decision: {chosen.reason}")
    answered = ", ".join(chosen.addresses) or "nothing"
    lines.append(f"  answer: {'SERVFAIL' if chosen.servfail else answered}, ttl {chosen.ttl}, "
                 f"ECS scope /{decision.scope}")
    return lines


def explain(
    handler: Answerer,
    snap: Snapshot,
    qname: str,
    qtype: str = "A",
    client: str = "",
    ecs: str | None = None,
    votes: Votes | None = None,
) -> str:
    """The decision for ``qname``/``qtype`` asked by ``client`` (and ECS ``ecs``), as text."""
    name = qname.lower() if qname.endswith(".") else qname.lower() + "."
    rtype = RRType[qtype.upper()]
    subnet = client_subnet(ecs) if ecs else None
    edns = Edns(UDP_PAYLOAD, 0, False, subnet) if subnet else None
    query = Query(0, name, int(rtype), 1, edns)
    steps: list[Step] = []
    message: Message = handler.answer(snap, query, client, steps)
    where = (f"client {client}" if client else "no client address") + (
        f", ECS {ecs}" if ecs else "")
    lines = [f"query {name} {rtype.name} from {where} (snapshot generation {snap.generation})"]
    for step in steps:
        lines.extend(_step_lines(snap, step, votes))
    if not steps:
        lines.append("no health-checked record decided this answer")
    flags = "AA" if message.aa else "no AA"
    lines.append(f"reply: {message.rcode.name}, {flags}, ECS scope /{message.scope}")
    for title, section in (("answer", message.answer), ("authority", message.authority),
                           ("additional", message.additional)):
        if section:
            lines.append(f"{title}:")
            lines.extend(_rrset_lines(section))
    return "\n".join(lines)
