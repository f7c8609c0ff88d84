"""DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018), and the UDP size cap.

A capability in one folder, behind the ``dns.stages.Cookies`` protocol:

* ``cookie``: the pure logic: the COOKIE option read off a query, the RFC 9018
  server cookie made and judged (version, reserved, timestamp, SipHash-2-4);
* ``reply``: the reply's bytes changed: the option added to the OPT, the
  truncated, FORMERR and BADCOOKIE replies;
* ``stage``: the stage itself (``CookieStage``), its policy and counters;
* ``settings``: the secrets and limits, and how the secret file reads;
* ``siphash``: the one owner of the SipHash library.
"""
