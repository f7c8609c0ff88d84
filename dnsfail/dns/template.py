"""Replies that differ only in the question: rendered once, then copied around each question.

A question that misses the reply caches and has one of ``dns.shape``'s
shapes (NXDOMAIN, NODATA, a wildcard answer, REFUSED) is answered from a
``Template``: the reply ``wire.render`` gives for a model question of that
shape (the zone's origin, or the wildcard's own owner), with its
compression pointers located.  The reply to the real question is the
template's header, the query's own question octets, the template's records
with every pointer moved by the difference in question length, and the OPT
record built from the query's EDNS facts (DO, NSID, the ECS option echoed
with scope 0).  No per-name state is kept: a flood of new names costs a
scan, a few set lookups and one concatenation each, and adds nothing to
any cache.

Why moving pointers is enough: ``render`` compresses a name against the
question only through a suffix they share.  ``dns.shape`` sends to the full
path every question one of whose ancestors below the shared part (the
origin, or the wildcard's closest encloser) is a name the reply writes, so
every pointer into the question targets a suffix at a fixed distance from
its end, and every pointer past it a record at a fixed distance from the
question's end; the wildcard owner itself, the one name equal to the whole
question, is pointer 12 in both.  A property test holds the result
byte-identical to the full path, letter case and ID aside, as the cached
paths are.

Part of the core: no I/O, no dnslib; it reads ``model``, ``resolver``,
``shape``, ``wire`` and the constants of ``query``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Final

from dnsfail.dns import wire
from dnsfail.dns.query import HEADER_LEN, NAME_LIMIT, TCP_LIMIT, UDP_PAYLOAD
from dnsfail.dns.replycache import ecs_sound
from dnsfail.dns.resolver import DynamicResult, find_zone, resolve, soa_authority
from dnsfail.dns.shape import (
    NXDOMAIN,
    REFUSED,
    WILDCARD,
    Shape,
    ZoneIndex,
    locate,
    rdata_names,
    settle,
    walk,
)
from dnsfail.dns.shape import SPECIAL as _SPECIAL_QTYPES
from dnsfail.dns.stats import QueryStats
from dnsfail.model import DynamicRecord, Message, Rcode, RRClass, RRType, Zone
from dnsfail.zonefile.packed import PackedStore, find_key

#: Templates kept per handler for the current zones.  Templates exist per zone shape and
#: per wildcard RRset, a number the zones fix, not the traffic; the bound only caps what a
#: zone with many wildcards can hold, and a shape past it takes the full path.
TEMPLATE_LIMIT = 4096
#: Parent names whose ``Lineage`` is kept (the memo starts again past it).  Real
#: floods vary the first label under a few parents; one that varies the parents too
#: (two random labels) empties it every ``PARENT_MEMO`` names and pays the walk, as before.
PARENT_MEMO = 4096
#: Re-pointed record sections kept per template, one per question length met (a question
#: is at most 255 octets, and a flood uses a few lengths): past it, each reply re-points.
BODY_MEMO = 64
#: ``Plan``s kept per handler (the memo starts again past it): one per parent name, qtype
#: and EDNS bytes met twice in a row under a memoised parent, a number the clients' kinds
#: of query fix (a flood varying the parent or the EDNS bytes makes none).
PLAN_MEMO = 4096
#: ``CasedPlans`` kept per handler (the memo starts again past it): one per parent name,
#: qtype and EDNS octets, folded to lower case and without the ECS address, met twice in
#: a row under a memoised parent: a number the clients' kinds of query fix, not their
#: letter cases or networks.
CASED_PLAN_MEMO = 4096

_POINTER = 0xC0
#: Types whose rdata ``wire.render`` compresses, and the offset of the first name in it.
_NAMED_RDATA = {RRType.NS: 0, RRType.CNAME: 0, RRType.PTR: 0, RRType.MX: 2, RRType.SOA: 0}
#: Label octets that ``query.labels_to_text`` writes as themselves (no ``\\DDD``).
_ESCAPED = re.compile(rb"[^!-\[\]-~]")
#: The same for one label, where a dot is written ``\\046`` too.
_LABEL_ESCAPED = re.compile(rb"[^!-\-/-\[\]-~]")
#: The separator and the octets of host names besides letters and digits: a name of only
#: these needs no regular expression (``isalnum`` after deleting them).
_COMMON = b".-_*"
_OPT_HEAD = b"\x00\x00\x29" + UDP_PAYLOAD.to_bytes(2, "big") + b"\x00\x00"
_IN = b"\x00\x01"
#: A form not made yet (``Templates.forms`` holds None for a shape the full path answers).
_UNMADE: Final = object()


def _opt(do: int | bool, ecs: bytes, nsid: bytes) -> bytes:
    """Our OPT record as ``wire.render`` writes it for rcode < 16 (RFC 6891 section
    6.1.2): DO echoed, the ECS option echoed with scope 0, then NSID."""
    options = b""
    if ecs:
        options = b"\x00\x08" + len(ecs).to_bytes(2, "big") + ecs
    if nsid:
        options += b"\x00\x03" + len(nsid).to_bytes(2, "big") + nsid
    return (_OPT_HEAD + (b"\x80\x00" if do else b"\x00\x00")
            + len(options).to_bytes(2, "big") + options)


class _NoDynamic:
    """The ``DynamicAnswers`` of a template's model question: ``dns.shape`` never picks a
    shape whose answer is dynamic."""

    def answer(self, record: DynamicRecord, owner: str) -> DynamicResult:
        raise AssertionError(f"a template met the dynamic record {owner}")


def qname_text(wire_name: bytes) -> str | None:
    """The text form ``query.labels_to_text`` gives a lower-case, uncompressed wire name,
    or None when it would escape octets (rare: the full path handles those)."""
    parts = []
    i = 0
    length = wire_name[0]
    while length:
        parts.append(wire_name[i + 1 : i + 1 + length])
        i += length + 1
        length = wire_name[i]
    if not parts:
        return "."
    text = b".".join(parts)
    if text.count(b".") != len(parts) - 1 or (
            not text.translate(None, _COMMON).isalnum() and _ESCAPED.search(text)):
        return None  # a label holds a dot, or an octet that is written \DDD
    return text.decode("ascii") + "."


def _pointers(reply: bytes, qend: int) -> list[tuple[int, int]]:
    """(offset, target) of every compression pointer in the records of a rendered reply."""
    out: list[tuple[int, int]] = []

    def name(i: int) -> int:
        while True:
            length = reply[i]
            if not length:
                return i + 1
            if length & _POINTER == _POINTER:
                out.append((i, (length & 0x3F) << 8 | reply[i + 1]))
                return i + 2
            i += length + 1

    count = sum(reply[k] << 8 | reply[k + 1] for k in (6, 8, 10))
    i = qend
    for _ in range(count):
        i = name(i)
        rtype = reply[i] << 8 | reply[i + 1]
        start, i = i + 10, i + 10 + (reply[i + 8] << 8 | reply[i + 9])
        skip = _NAMED_RDATA.get(RRType(rtype)) if rtype in RRType._value2member_map_ else None
        if skip is not None:
            after = name(start + skip)
            if rtype == RRType.SOA:
                name(after)
    return out


class Template:
    """One shape's reply, ready to take any question of that shape (see the module doc)."""

    __slots__ = ("bodies", "heads", "model", "pointers", "rcode", "records", "shared", "slots",
                 "wildcard")

    def __init__(self, message: Message, qname: str, qtype: int, shared: int) -> None:
        reply = wire.render((qname, qtype, RRClass.IN), message, edns=None, limit=TCP_LIMIT)
        qend = wire.skip_name(reply, HEADER_LEN) + 4
        #: The model question's wire length, and the first offset that moves with the
        #: question's length (the wildcard's ``*`` label stays at 12).
        self.model, self.shared = qend - HEADER_LEN - 4, HEADER_LEN + shared
        self.records = reply[qend:]
        self.pointers = [(at - qend, target) for at, target in _pointers(reply, qend)]
        self.rcode = int(message.rcode)
        arcount = reply[10] << 8 | reply[11]
        #: Header octets 2-11 by (RD, CD, EDNS): index RD | CD >> 3 | EDNS << 2.
        self.heads = tuple(
            bytes((reply[2] | (i & 1), reply[3] | (i & 2) << 3)) + reply[4:10]
            + (arcount + (i >> 2)).to_bytes(2, "big")
            for i in range(8)
        )
        self.bodies: dict[int, bytes] = {}
        #: The handler's counter slot by qtype (a template belongs to one handler).
        self.slots: dict[int, int] = {}
        #: A wildcard answer's ``"<owner> <qtype>"`` (``dns.stages.Key``), else None.
        self.wildcard: str | None = None

    def body(self, qlen: int) -> bytes:
        """The records for a question of ``qlen`` octets (its name's wire length)."""
        delta = qlen - self.model
        body = self.bodies.get(delta)
        if body is not None:
            return body
        parts: list[bytes] = []
        at, records = 0, self.records
        for offset, target in self.pointers:
            moved = target + delta if target >= self.shared else target
            parts += (records[at:offset], (0xC000 | moved).to_bytes(2, "big"))
            at = offset + 2
        parts.append(records[at:])
        body = b"".join(parts)
        if len(self.bodies) < BODY_MEMO:
            self.bodies[delta] = body
        return body


def _message(zones: Mapping[str, Zone], zone: Zone | None, kind: int, owner: str, qtype: int
             ) -> tuple[Message, str, int] | None:
    """The model question's message, name and shared suffix length, or None if the shape's
    reply would mention a name below its shared part (the full path answers those)."""
    if kind == REFUSED or zone is None:
        return resolve({}, ".", qtype, RRClass.IN, _NoDynamic()), ".", 0
    if kind != WILDCARD:
        rcode = Rcode.NXDOMAIN if kind == NXDOMAIN else Rcode.NOERROR
        return Message(rcode, True, authority=soa_authority(zone)), zone.origin, 0
    message = resolve(zones, owner, qtype, RRClass.IN, _NoDynamic())
    encloser = owner[2:]
    names = [r.name for r in message.additional + message.authority]
    names += [n for r in message.answer + message.additional + message.authority
              for n in rdata_names(r)]
    if (message.rcode != Rcode.NOERROR or message.authority or message.glue_required
            or [r.name for r in message.answer] != [owner]
            or any(n == owner or n.endswith("." + owner) or n.endswith("." + encloser)
                   for n in names)):
        return None
    return message, owner, 2


class Lineage:
    """What the questions under one parent name share (``Templates.answer``).

    ``suffix`` is the parent's text with a leading dot (the question's text is its first
    label and this), None when the parent's text would escape octets; ``index`` and
    ``origin`` are its zone's (None and "" outside our zones); ``encloser`` is what
    ``shape.walk`` found for the parent (None: a cut or a name the SOA writes on the
    way, so every question under it takes the full path); ``forms`` the template by
    qtype for a first label that names nothing (at most ``BODY_MEMO``).
    """

    __slots__ = ("encloser", "folded", "forms", "index", "origin", "pending", "rel", "suffix")

    def __init__(self, suffix: str | None) -> None:
        self.suffix = suffix
        #: What a child's ``zonefile.packed`` key is after its first label: the parent's
        #: text below the origin, with a leading dot (empty for the origin itself).
        self.rel = b""
        self.index: ZoneIndex | None = None
        self.origin = ""
        self.encloser: str | None = None
        self.forms: dict[int, Template | None] = {}
        #: The bytes after the first label of the last query answered under this parent
        #: (``Templates.sibling``: a plan is made when the next one's are the same).
        self.pending = b""
        #: The same octets folded to lower case, without an ECS address (``CasedPlans``).
        self.folded = b""


class Plan:
    """A template reply for every query whose octets after its first label are one key.

    A random-subdomain flood asks a new first label under one parent, in one kind of
    query: the octets after the first label (the parent name, qtype, qclass and the OPT
    record, ECS option included) repeat, and only the label and the ID change.  Made
    from a query that ``Templates.answer`` answered with a template for a first label
    that names nothing, the plan holds what every such query shares: the sets that say
    whether a new label names something after all (then the general path answers), the
    header by RD and CD, and the records and OPT by label length.  Since the key holds
    every octet but the header and the first label, the question's shape is known
    without a scan: a label of 1-63 octets before the key is a sound question.
    """

    __slots__ = ("after", "counts", "echo", "heads", "key", "label_limit", "lettered", "mask",
                 "opt", "packed", "qbase", "qrest", "rel", "rest", "size", "slot", "stops",
                 "suffix", "tails", "template")

    def __init__(self, lineage: Lineage, template: Template, data: bytes, qend: int,
                 first: int, opt: bytes, reply_len: int, limit: int, edns: bool,
                 slot: int) -> None:
        assert lineage.suffix is not None
        self.suffix = lineage.suffix
        self.rel = lineage.rel
        index = lineage.index
        self.stops: AbstractSet[str] = index.stops if index is not None else frozenset()
        self.rest: AbstractSet[str] = index.rest if index is not None else frozenset()
        self.packed: PackedStore | None = index.packed if index is not None else None
        self.template = template
        self.counts = data[4:HEADER_LEN]
        self.heads = tuple(template.heads[i | edns << 2] for i in range(4))
        #: The question ends at ``first + qrest``; its name's wire length is ``first + qbase``.
        self.qrest = qend - first
        self.qbase = qend - HEADER_LEN - 4 - first
        self.opt = opt
        #: The longest first label whose question and reply fit (NAME_LIMIT, the UDP limit).
        self.label_limit = min(63, NAME_LIMIT - self.qbase, limit - (reply_len - first))
        self.slot = slot
        #: What the stages after the lookup count a reply by (``dns.stages.Key``): a
        #: wildcard's ``"<owner> <qtype>"``, else None (the query's own bytes; rate
        #: limiting counts an NXDOMAIN by its zone's slot whatever the key).  Without it a
        #: wildcard's owner was walked for every new name of a flood.
        self.key: tuple[bytes, int, str] | None = (
            (b"", 0, template.wildcard) if template.wildcard is not None else None)
        #: The records and OPT after the question, by first label length.
        self.tails: dict[int, bytes] = {}
        #: For ``CasedPlans`` (``cased``): the query's length less its first label's, the
        #: octets from qtype to the ECS address (compared exactly when ``lettered``: they
        #: hold an octet ``lower`` folds), the mask of the bits past SOURCE PREFIX-LENGTH
        #: in the address's last octet, and what the reply holds after the echoed address.
        self.size, self.after, self.lettered, self.mask, self.echo = 0, b"", False, 0, b""

    def cased(self, data: bytes, qend: int, first: int, ecs: bytes, cut: int,
              echo: bytes) -> None:
        """Make this a plan of ``CasedPlans``: ``ecs`` the ECS option data of the query it
        is made from (empty: none), ``cut`` its address octets, ``echo`` what follows
        them in the reply (``opt`` then ends just before them)."""
        self.size = len(data) - first
        self.after = data[qend - 4 : len(data) - cut]
        self.lettered = self.after.lower() != self.after.upper()
        self.mask = 0xFF >> (ecs[2] & 7) if ecs and ecs[2] & 7 else 0
        self.echo = echo

    def fresh(self, label: bytes, zones: Mapping[str, Zone]) -> bool:
        """Whether the lower-case first ``label`` names nothing under the plan's parent, as
        ``Templates.sibling`` checks it inline (octets written ``\\DDD``, a name that
        exists, a cut or a name the SOA writes, a zone of ours)."""
        if not label.isalnum() and _LABEL_ESCAPED.search(label):
            return False
        qname = label.decode("ascii") + self.suffix
        if qname in self.stops or qname in self.rest or qname in zones:
            return False
        packed = self.packed
        return packed is None or find_key(packed.data, packed.slots, label + self.rel) < 0

    def tail(self, first: int) -> bytes:
        """What follows the question for a first label of ``first`` octets, memoised."""
        tail = self.template.body(first + self.qbase) + self.opt
        self.tails[first] = tail
        return tail


class CasedPlans:
    """``Plan``s for a flood in 0x20 letter case and with ECS from ever new networks.

    A public resolver randomises the letter case of every query (0x20) and sends each
    client's own ECS network, so the octets after a new first label never repeat and no
    ``Templates.plans`` entry forms.  These plans are found by those octets folded to
    lower case (ASCII letters only, as DNS compares names, RFC 4343 section 3) and
    without the ECS address at the end (``cut`` octets), as ``replycache.Fold`` finds a
    known question.  The reply is the plan's with the query's question copied in and its
    address echoed with SOURCE PREFIX-LENGTH, family and scope 0 as the query sent them
    (RFC 7871 section 7.2.1: an NXDOMAIN, NODATA or wildcard reply is the same for every
    network), the bytes the template path gives.  Made only from a query whose ECS option
    is its last; octets past the name that ``lower`` folds too (qtype 65-90, a payload
    size) are compared exactly (``Plan.after``).  At most ``CASED_PLAN_MEMO``.
    """

    __slots__ = ("cuts", "identity", "plans", "zones")

    def __init__(self, zones: Mapping[str, Zone], identity: str) -> None:
        self.zones = zones
        self.identity = identity
        self.plans: dict[bytes, Plan] = {}
        #: The numbers of ECS address octets cut off the keys (0: none): at most 17.
        self.cuts: list[int] = []

    def answer(self, data: bytes, zones: Mapping[str, Zone], identity: str
               ) -> tuple[bytes, int, tuple[bytes, int, str] | None] | None:
        """The reply to a UDP query from a plan, its slot and key (``Templates.sibling``'s),
        or None (then the general path answers)."""
        n = len(data)
        if zones is not self.zones or identity != self.identity or n <= HEADER_LEN:
            return None
        first = data[HEADER_LEN]
        start = HEADER_LEN + 1 + first
        plan = None
        cut = 0
        for cut in self.cuts:
            plan = self.plans.get(data[start : n - cut].lower())
            if plan is not None:
                break
        if (plan is None or n - first != plan.size or not first or first > plan.label_limit
                or data[2] & 0xF8 or data[4:HEADER_LEN] != plan.counts
                or (plan.lettered and data[first + plan.qrest - 4 : n - cut] != plan.after)
                or data[n - 1] & plan.mask
                or not plan.fresh(data[HEADER_LEN + 1 : start].lower(), zones)):
            return None  # a bit set past SOURCE PREFIX-LENGTH: FORMERR, from the full path
        tail = plan.tails.get(first)
        if tail is None:
            tail = plan.tail(first)
        return b"".join((data[:2], plan.heads[(data[2] & 1) | (data[3] & 0x10) >> 3],
                         data[HEADER_LEN : first + plan.qrest], tail, data[n - cut :],
                         plan.echo)), plan.slot, plan.key


    def remember(self, data: bytes, qend: int, first: int, lineage: Lineage, template: Template,
                 facts: tuple[bool, int, bool, bool, bytes], replied: tuple[bytes, int],
                 nsid: bytes) -> None:
        """Make the plan for this query's octets after its first label, folded and without
        the ECS address, when the last query answered under its parent had the same
        (``Lineage.folded``); ``nsid`` is what the reply's NSID option holds."""
        n, ecs = len(data), facts[4]
        cut = len(ecs) - 4 if ecs else 0
        if cut and data[n - cut - 8 : n - cut] != (b"\x00\x08" + len(ecs).to_bytes(2, "big")
                                                   + ecs[:4]):
            return  # an option after the ECS one: its address is not at the end
        folded = data[HEADER_LEN + 1 + first : n - cut].lower()
        if lineage.folded != folded:
            lineage.folded = folded
            return
        reply, slot = replied
        opt = reply[qend + len(template.body(qend - HEADER_LEN - 4)) :] if facts[0] else b""
        back = len(opt) - (4 + len(nsid) if nsid else 0)
        plan = Plan(lineage, template, data, qend, first, opt[: back - cut], len(reply),
                    facts[1], facts[0], slot)
        plan.cased(data, qend, first, ecs, cut, opt[back:])
        if len(self.plans) >= CASED_PLAN_MEMO:
            self.plans.clear()
        self.plans[folded] = plan
        if cut not in self.cuts:
            self.cuts.append(cut)


class Templates:
    """One handler's templates, for the zones of the snapshot it last answered from.

    ``answer`` takes a query that ``replycache.question_key`` scanned and
    returns its reply (but for the stages after the lookup) with its zone,
    qtype and rcode for the counters, or None when the question is not one
    of the shapes: then the caller takes the full path.  ``nsid`` is what an
    NSID option is answered with (RFC 5001 section 2.3), empty for none.
    """

    __slots__ = ("cased", "forms", "identity", "indexes", "lineages", "nsid", "opts", "plans",
                 "wildcard", "zones")

    def __init__(self, nsid: bytes, identity: str = "") -> None:
        self.nsid = nsid
        #: The handler identity ``nsid`` was made from (the handler rebuilds on a change).
        self.identity = identity
        self.zones: Mapping[str, Zone] = {}
        self.indexes: dict[str, ZoneIndex] = {}
        self.forms: dict[tuple[str, int, str, int], Template | None] = {}
        #: Parent names' ``Lineage``, by their lower-case wire form (``PARENT_MEMO``).
        self.lineages: dict[bytes, Lineage] = {}
        #: ``Plan``s by the octets after the first label (``PLAN_MEMO``).
        self.plans: dict[bytes, Plan] = {}
        #: ``Plan``s by those octets folded, without the ECS address (``CASED_PLAN_MEMO``).
        self.cased = CasedPlans(self.zones, identity)
        #: The OPT record without ECS, by DO | NSID << 1.
        self.opts = tuple(_opt(i & 1, b"", nsid if i >> 1 else b"") for i in range(4))
        #: The last reply's ``Template.wildcard``.
        self.wildcard: str | None = None

    def _use(self, zones: Mapping[str, Zone]) -> None:
        """Keep what still holds for a new zones mapping: what was made for zone objects
        that are still served."""
        self.zones = zones
        self.indexes = {o: ix for o, ix in self.indexes.items() if zones.get(o) is ix.zone}
        self.forms = {k: v for k, v in self.forms.items() if not k[0] or k[0] in self.indexes}
        self.lineages = {}
        self.plans = {}
        self.cased = CasedPlans(zones, self.identity)

    def sibling(self, data: bytes, zones: Mapping[str, Zone], identity: str,
                plan: Plan | None = None
                ) -> tuple[bytes, int, tuple[bytes, int] | tuple[bytes, int, str] | None] | None:
        """The reply to a UDP query from a ``Plan`` (a new first label under a parent, in a
        kind of query, already answered twice by a template), with its slot; or None.

        One frame, no scan: the octets after the first label find the plan, and the
        label is checked as ``answer`` checks it (octets written ``\\DDD``, a name that
        exists, a cut or a name the SOA writes, a zone of ours: then None, and the
        general path answers).  None too for ``zones`` or ``identity`` other than the
        plans were made for (``answer`` or the handler starts again).  ``plan``: the one
        the handler already found by those octets (a query no plan is for then costs it a
        lookup, not this call: the public-resolver mix's folds, after a flood left plans)."""
        if plan is None:
            if len(data) <= HEADER_LEN:
                return None
            plan = self.plans.get(data[HEADER_LEN + 1 + data[HEADER_LEN] :])
        if zones is not self.zones or identity != self.identity:
            return None
        first = data[HEADER_LEN]
        if (plan is None or not first or first > plan.label_limit or data[2] & 0xF8
                or data[4:HEADER_LEN] != plan.counts):
            return None
        label = data[HEADER_LEN + 1 : HEADER_LEN + 1 + first].lower()
        if not label.isalnum() and _LABEL_ESCAPED.search(label):
            return None
        qname = label.decode("ascii") + plan.suffix
        if qname in plan.stops or qname in plan.rest or qname in self.zones:
            return None
        packed = plan.packed
        if packed is not None and find_key(packed.data, packed.slots, label + plan.rel) >= 0:
            return None
        tail = plan.tails.get(first)
        if tail is None:
            tail = plan.tail(first)
        return b"".join((data[:2], plan.heads[(data[2] & 1) | (data[3] & 0x10) >> 3],
                         data[HEADER_LEN : first + plan.qrest], tail)), plan.slot, plan.key

    def answer(self, data: bytes, key: bytes, qend: int, zones: Mapping[str, Zone], tcp: bool,
               facts: tuple[bool, int, bool, bool, bytes], stats: QueryStats
               ) -> tuple[bytes, int] | None:
        """The reply to a scanned query (``key``, ``qend``: ``question_key``; ``facts``:
        ``key_edns``) if its question has a shape, with its slot in ``stats``.

        The question's parent name (all but its first label) is looked up in
        ``lineages``: what ``shape.walk`` found for it, and the template by qtype for
        a first label that names nothing, so a new name under a known parent costs
        a slice, a dict lookup and ``shape.walk_child``'s set lookups, inline.
        """
        qlen = qend - HEADER_LEN - 4
        if key[qlen + 2 : qlen + 4] != _IN or qlen > NAME_LIMIT:
            return None
        if zones is not self.zones:
            self._use(zones)
        qtype = key[qlen] << 8 | key[qlen + 1]
        first = key[0]
        if not first:
            return self._located(data, qend, qlen, qtype, ".", tcp, facts, stats)
        parent = key[first + 1 : qlen]
        lineage = self.lineages.get(parent)
        memoised = lineage is not None
        if lineage is None:
            lineage = self._lineage(parent)
        suffix = lineage.suffix
        label = key[1 : first + 1]
        if suffix is None or (not label.isalnum() and _LABEL_ESCAPED.search(label)):
            return None  # octets that are written \DDD: the full path
        qname = label.decode("ascii") + suffix
        if qname in zones:
            return self._located(data, qend, qlen, qtype, qname, tcp, facts, stats)
        index = lineage.index
        template: object
        if index is not None:
            if lineage.encloser is None or qtype in _SPECIAL_QTYPES:
                return None  # below a cut or a name the SOA writes; or no shape's qtype
            # ``walk_child`` inline, with the packed store asked by its own key
            if qname in index.stops:
                return None
            packed = index.packed
            if qname in index.rest or (packed is not None and find_key(
                    packed.data, packed.slots, label + lineage.rel) >= 0):
                # the name exists: its own shape, not the parent's
                shape = settle(index, qname, qtype, qname)
                if shape is None:
                    return None
                template = self._form(index.zone, shape, qtype)
                return self._reply(template, lineage.origin, data, qend, qlen, qtype, tcp,
                                   facts, stats)
        template = lineage.forms.get(qtype, _UNMADE)
        if template is _UNMADE:
            if index is not None:
                assert lineage.encloser is not None
                shape = settle(index, qname, qtype, lineage.encloser)
                template = self._form(index.zone, shape, qtype) if shape is not None else None
            else:
                template = self._form(None, (REFUSED, ""), qtype)
            if len(lineage.forms) < BODY_MEMO:
                lineage.forms[qtype] = template
        replied = self._reply(template, lineage.origin, data, qend, qlen, qtype, tcp, facts,
                              stats)
        if replied is not None and memoised and not tcp and isinstance(template, Template):
            self._plan(data, qend, first, lineage, template, facts, replied)
        return replied

    def _plan(self, data: bytes, qend: int, first: int, lineage: Lineage, template: Template,
              facts: tuple[bool, int, bool, bool, bytes], replied: tuple[bytes, int]) -> None:
        """Make the ``Plan`` for the octets after this query's first label when the last
        query answered under its parent had the same (``Lineage.pending``); else, when
        they were the same in another letter case and ECS address (``Lineage.folded``),
        the plan of ``CasedPlans``."""
        after = data[HEADER_LEN + 1 + first :]
        reply, slot = replied
        edns = facts[0]
        if lineage.pending == after:
            opt = reply[qend + len(template.body(qend - HEADER_LEN - 4)) :] if edns else b""
            if len(self.plans) >= PLAN_MEMO:
                self.plans.clear()
            self.plans[after] = Plan(lineage, template, data, qend, first, opt, len(reply),
                                     facts[1], edns, slot)
            return
        lineage.pending = after
        self.cased.remember(data, qend, first, lineage, template, facts, replied,
                            self.nsid if facts[3] else b"")

    def _lineage(self, parent: bytes) -> Lineage:
        """What every question under the lower-case wire name ``parent`` shares, memoised
        (at most ``PARENT_MEMO``, then the memo starts again)."""
        text = qname_text(parent)
        lineage = Lineage(None if text is None else "." + text if text != "." else ".")
        zone = find_zone(self.zones, text) if text is not None else None
        if zone is not None and text is not None:
            lineage.index = index = self._index(zone)
            lineage.origin = origin = zone.origin
            if text != origin:
                lineage.rel = ("." + text[: -len(origin) - 1]).encode("ascii")
            lineage.encloser = walk(index, text)
        if len(self.lineages) >= PARENT_MEMO:
            self.lineages.clear()
        self.lineages[parent] = lineage
        return lineage

    def _index(self, zone: Zone) -> ZoneIndex:
        index = self.indexes.get(zone.origin)
        if index is None or index.zone is not zone:
            index = self.indexes[zone.origin] = ZoneIndex(zone)
        return index

    def _located(self, data: bytes, qend: int, qlen: int, qtype: int, qname: str, tcp: bool,
                 facts: tuple[bool, int, bool, bool, bytes], stats: QueryStats
                 ) -> tuple[bytes, int] | None:
        """``answer`` for the root name and for a zone's own origin, without the memo."""
        zone, shape = locate(self.zones, self.indexes, qname, qtype)
        if shape is None:
            return None
        template = self._form(zone, shape, qtype)
        return self._reply(template, zone.origin if zone is not None else "", data, qend, qlen,
                           qtype, tcp, facts, stats)

    def _form(self, zone: Zone | None, shape: Shape, qtype: int) -> Template | None:
        """The template of ``shape`` in ``zone`` (None: no zone of ours), made on first use;
        None when the full path must make such replies, or past ``TEMPLATE_LIMIT``."""
        kind, owner = shape
        form_key = (zone.origin if zone is not None else "", kind, owner,
                    qtype if kind == WILDCARD else 0)
        template = self.forms.get(form_key, _UNMADE)
        if template is _UNMADE:
            if len(self.forms) >= TEMPLATE_LIMIT:
                return None
            made = _message(self.zones, zone, kind, owner, qtype)
            template = self.forms[form_key] = (
                Template(made[0], made[1], qtype, made[2]) if made is not None else None)
            if kind == WILDCARD and template is not None:
                template.wildcard = f"{owner} {qtype}"
        return template if isinstance(template, Template) else None

    def _reply(self, template: object, origin: str, data: bytes, qend: int, qlen: int,
               qtype: int, tcp: bool, facts: tuple[bool, int, bool, bool, bytes],
               stats: QueryStats) -> tuple[bytes, int] | None:
        """``template``'s reply to this query, or None (no template, a malformed ECS
        option, or a reply that would need truncation)."""
        if not isinstance(template, Template):
            return None  # a shape whose reply the full path must make
        edns, limit, do, nsid, ecs = facts
        if not edns:
            opt = b""
        elif not ecs:
            opt = self.opts[do | nsid << 1]
        elif ecs_sound(ecs):
            opt = _opt(do, ecs, self.nsid if nsid else b"")
        else:
            return None  # a malformed ECS option: FORMERR, from the full path
        head = template.heads[(data[2] & 1) | (data[3] & 0x10) >> 3 | edns << 2]
        body = template.bodies.get(qlen - template.model)  # ``body``'s memo, inline
        if body is None:
            body = template.body(qlen)
        reply = b"".join((data[:2], head, data[HEADER_LEN:qend], body, opt))
        if len(reply) > (TCP_LIMIT if tcp else limit):
            return None  # truncation: the full path decides what is dropped
        slot = template.slots.get(qtype)
        if slot is None:
            slot = stats.slot(origin, qtype, template.rcode)
            if len(template.slots) < BODY_MEMO:
                template.slots[qtype] = slot
        self.wildcard = template.wildcard
        return reply, slot
