"""Response-rate limiting (RRL): BIND's model, one limit per source block for the whole server.

An authoritative server answers anyone, and UDP source addresses are not
proven: without a limit it reflects (and amplifies) floods at whoever is
spoofed.  Like BIND, Knot and NSD, the server limits how many identical
responses per second one client *block* (IPv4 /24, IPv6 /56) receives:

* ``settings``: the operator's knobs (rate per class, slip, window, prefixes,
  log-only, table size), each limit a named constant;
* ``account``: the pure part: which class a reply is, and BIND's credit/debt
  accounting of one bucket (no clock inside; ``now`` is an argument);
* ``table``: the fixed-size bucket table in shared memory, one for the main
  process and every ``--workers`` process;
* ``limiter``: the adapter ``dns.stages`` calls (``decide``/``slip``), with its
  counters and its "limit ... / stop limiting ..." log lines.
"""
