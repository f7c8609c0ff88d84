"""``--dnssec-keys DIR``: the key directory read into the signed path (``path.SignedPath``).

Every zone with a key in the directory is signed; a key for a zone not served
is ignored (with a warning from the caller), so one directory can serve
several instances with different zone sets.  Reading the files is the only
I/O, done once at start (off the event loop, by the caller).
"""

from __future__ import annotations

from dnsfail.dnssec.answer import signed_zone
from dnsfail.dnssec.keys import load_keys
from dnsfail.dnssec.path import SignedPath


def load_signed(directory: str) -> SignedPath:
    """The signed path for the keys in ``directory``; KeyFileError if any is unusable."""
    keys = load_keys(directory)
    return SignedPath({zone: signed_zone(zone, found) for zone, found in keys.items()})
