"""The pure part of rate limiting: a reply's class, and BIND's accounting of one bucket.

Classes (BIND ``rrl.c`` response types; Knot's ``rrl`` module is alike):

========  ==========================================  ==============================
class     a reply that is                             counted per block and
========  ==========================================  ==============================
answer    NOERROR with answer records                 qname and qtype (wildcard
                                                      answers: the wildcard owner)
nodata    NOERROR, no answer, authoritative (or no    qname (BIND: NODATA carries no
          authority records)                          qtype, so all qtypes are one)
nxdomain  NXDOMAIN                                    zone: every nonexistent name
                                                      under a zone is ONE class, so a
                                                      random-subdomain flood is one
referral  NOERROR, no answer, not authoritative,      delegation point (the owner of
          NS in authority                             the authority section)
error     any other rcode (SERVFAIL, FORMERR,         zone ("" for names not ours:
          REFUSED, NOTIMP, BADCOOKIE...)              every REFUSED is one class)
========  ==========================================  ==============================

Accounting (BIND ``debit_rrl_entry``): a bucket holds a balance of
responses.  Each second credits ``rate``, up to ``rate`` (so a quiet block
may burst one second's worth); each response debits one.  A response that
leaves the balance negative is limited; the debt is floored at ``-window *
rate``, so a block flooding without pause stays limited, and one that goes
quiet is forgiven within ``window`` seconds.  Of the limited responses the
first, and then every ``slip``-th, slip (sent truncated); the others are
dropped.

The balance is kept as the time it will be full again, ``tat`` (the
"theoretical arrival time" of the generic cell rate algorithm, RFC 2475's
token bucket in one number): balance = ``rate * (1 - (tat - now))`` when
``tat > now``, else full.  A debit adds ``1/rate`` to ``tat``; a reply passes
while ``tat - now <= 1``; the floor is ``tat - now <= 1 + window``.  One
float per bucket, no credit arithmetic on the way: a reply that passes costs
a compare and an add.  Time is a float (seconds), where BIND counts whole
seconds: the same limit without a burst at each second's edge.  BIND resets
a bucket idle for more than ``window`` seconds; here its debt is repaid at
``rate`` a second, so the deepest debt is gone after ``window`` seconds and
the full burst is back one second later.
"""

from __future__ import annotations

from dnsfail.dns.query import question_end

#: Reply classes.
ANSWER, NODATA, NXDOMAIN, REFERRAL, ERROR = 0, 1, 2, 3, 4
CLASS_NAMES = ("answer", "nodata", "nxdomain", "referral", "error")
#: What BIND's log lines call each class ("limit NXDOMAIN responses to ...").
CLASS_WORDS = ("", "NODATA ", "NXDOMAIN ", "referral ", "error ")
#: Decisions, as ``dns.stages``: PASS, SLIP, DROP.
PASS, SLIP, DROP = 0, 1, 2
#: Compression pointers followed when reading a name in a reply: more is a loop.
MAX_POINTERS = 16


def classify(reply: bytes) -> int:
    """The class of a reply, from its header alone (RFC 1035 4.1.1; RFC 2308 for NODATA
    and NXDOMAIN; a referral is a non-authoritative NOERROR with NS in authority, RFC 1034
    4.3.2 step 3b).  An empty NOERROR header that is neither authoritative nor a referral
    is an error: its rcode is extended (BADVERS, RFC 6891 section 6.1.3) or it answers no
    question, and keyed by qname it would let random names pass unlimited."""
    rcode = reply[3] & 0x0F
    if rcode == 3:
        return NXDOMAIN
    if rcode:
        return ERROR
    if reply[6] or reply[7]:
        return ANSWER
    if reply[2] & 0x04:
        return NODATA
    return REFERRAL if reply[8] or reply[9] else ERROR


def debit(tat: float, slips: int, now: float, rate: int, window: int,
          slip: int) -> tuple[float, int, int]:
    """One response against a bucket: ``(tat, slips, decision)`` after it.

    ``slips`` counts limited responses since the last slip; it restarts when
    the bucket is full.  ``tat`` ahead of a clock that went back (another
    process wrote it) is only debt, never credit.
    """
    if tat < now:
        tat, slips = now, 0
    tat += 1 / rate
    if tat - now <= 1:
        return tat, slips, PASS
    return limited(tat, slips, now, window, slip)


def limited(tat: float, slips: int, now: float, window: int, slip: int) -> tuple[float, int, int]:
    """The rest of :func:`debit` for a response over the limit: the floor, slip or drop."""
    if tat - now > 1 + window:
        tat = now + 1 + window
    if slip:
        slips += 1
        if slips == 1:
            if slips >= slip:
                slips = 0
            return tat, slips, SLIP
        if slips >= slip:
            slips = 0
    return tat, slips, DROP


def balance(tat: float, now: float, rate: int) -> float:
    """The responses a bucket could still pass at ``now`` (BIND's ``responses``)."""
    return rate * (1 - (tat - now)) if tat > now else rate


def name_at(message: bytes, offset: int) -> bytes | None:
    """The wire-format name at ``offset``, pointers followed, in lower case; None if bad."""
    out = []
    jumps = 0
    try:
        while True:
            length = message[offset]
            if length == 0:
                out.append(b"\0")
                return b"".join(out).lower()
            if length & 0xC0 == 0xC0:
                jumps += 1
                if jumps > MAX_POINTERS:
                    return None
                offset = (length & 0x3F) << 8 | message[offset + 1]
                continue
            if length > 63:
                return None
            out.append(message[offset:offset + length + 1])
            offset += length + 1
    except IndexError:
        return None


def qname_end(message: bytes) -> int:
    """Offset of the root octet ending the question's name, -1 if it cannot be read.  The
    labels are walked: a label may hold a zero octet (RFC 2181 section 11), so the first
    zero after the header need not end the name."""
    end = question_end(message)
    return end - 5 if end is not None else -1


def delegation(reply: bytes) -> bytes | None:
    """The delegation point of a referral: the owner of its first authority record."""
    end = qname_end(reply)
    return name_at(reply, end + 5) if end >= 0 else None


def name_text(wire: bytes) -> str:
    """A wire-format name as text, for log lines only."""
    labels, i = [], 0
    while i < len(wire) and wire[i]:
        raw = wire[i + 1:i + 1 + wire[i]]
        labels.append("".join(chr(c) if 0x21 <= c <= 0x7E and c not in (0x2E, 0x5C)
                              else f"\\{c:03d}" for c in raw))
        i += wire[i] + 1
    return ".".join(labels) + "." if labels else "."
