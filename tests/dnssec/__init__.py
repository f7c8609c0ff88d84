"""dnspython's validator needs ``cryptography``; this dnspython asks for a newer one than
the one installed, which has everything its DNSSEC code uses: tell it so, before its
``dns.dnssec`` is imported (and reload it if something imported it first)."""

import importlib
import sys

import dns._features

dns._features.force("dnssec", True)
if "dns.dnssec" in sys.modules:
    importlib.reload(sys.modules["dns.dnssec"])
