"""Zone files in octoDNS's YamlProvider format -> validated, immutable ``model.Zone`` objects.

This package owns reading configuration.  It imports ``yaml``, ``model`` and
``errors``, nothing of the server (no event loop, sockets or HTTP), and does
no I/O beyond reading the files it is given: ``dnsfail check``, startup and
reload all run ``load_zones``, so what ``check`` accepts is exactly what the
server will serve.  Callers import from the package (this file), never from its modules,
so the modules can move without rippling out.

How it reads a file (one module per step):

1. YAML is *composed* into located nodes (``located``: ``YMap``/``YSeq``/
   ``YScalar``), so every key, value and list item knows its line.  Parse
   errors, duplicate keys and unsupported tags become problems rather than
   exceptions (``libyaml``).  Files in octoDNS's own layout are read by a
   strict reader of that subset of YAML instead of libyaml (``strict``),
   with the same result, several times faster.
2. Each key of the top-level mapping is an owner name relative to the zone
   (``names``); it holds one record mapping or a list of them.  Every record
   is checked on its own (``records``: type, TTL, values parsed by ``rdata``),
   then the records are checked together (``rules``: CNAME exclusivity,
   delegations, ALIAS), then dynamic records (``dynamic``) and the SOA
   (``soa``).  The common plain record (``ttl``, ``type``, ``value(s)`` of a
   string-valued type) is checked straight from its strings; anything
   doubtful about it goes through the located checks, which word every problem.
3. Every problem is collected as ``errors.Problem`` and raised together as one
   ``ConfigError``; nothing is built unless the whole file is clean, so a
   reload is all-or-nothing (``load``).  ``files`` finds and reads the files,
   ``wiresize`` counts what a reply would carry.

Modules import downwards only: located -> names -> rdata -> records ->
rules, soa, dynamic -> load; libyaml sits on located, strict on libyaml and
rdata, and only load uses the two readers.

Where octoDNS defines a rule (value shapes, ``\\;`` in TXT, dynamic-record
validation, healthcheck defaults) it is followed, so one file serves both.
dnsfail-only knobs live under ``octodns: {dnsfail: ...}``, a namespace
octoDNS passes through untouched.
"""

from dnsfail.zonefile.files import discover
from dnsfail.zonefile.load import load_zones, parse_zone

__all__ = ["discover", "load_zones", "parse_zone"]
