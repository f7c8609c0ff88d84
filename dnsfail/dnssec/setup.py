"""``--dnssec-keys DIR``: the key directory read into the signed path (``path.SignedPath``).

Every zone with a key in the directory is signed; a key for a zone not served
is ignored (with a warning from the caller), so one directory can serve
several instances with different zone sets.  Reading the files is the only
I/O, done at start and at each reload (off the event loop, by the caller):
``reread`` reads the directory again and returns what ``SignedPath.replace``
takes, keeping the signer (and its cached signatures) of every zone whose keys
did not change; a directory that cannot be read raises KeyFileError, and the
caller keeps serving with the keys it had.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dnsfail.dnssec.answer import SignedZone, signed_zone
from dnsfail.dnssec.keys import Key, load_keys
from dnsfail.dnssec.path import SignedPath


def load_signed(directory: str, flood_budget: int | None = None) -> SignedPath:
    """The signed path for the keys in ``directory``; KeyFileError if any is unusable.
    ``flood_budget``: flood denial's (``flood``), None for compact denial always."""
    keys = load_keys(directory)
    return SignedPath({zone: signed_zone(zone, found) for zone, found in keys.items()},
                      flood_budget=flood_budget)


def _identity(keys: tuple[Key, ...]) -> tuple[tuple[int, int, bytes], ...]:
    return tuple(sorted((k.algorithm, k.tag, k.rdata) for k in keys))


def reread(directory: str, current: Mapping[str, SignedZone]) -> dict[str, SignedZone]:
    """The signed zones for the keys now in ``directory``: a zone whose keys are the same
    (algorithm, tag, public key) keeps its ``SignedZone``; KeyFileError if any file is
    unusable (nothing is changed then)."""
    out = {}
    for zone, found in load_keys(directory).items():
        kept = current.get(zone)
        same = kept is not None and _identity(kept.signer.keys) == _identity(found)
        out[zone] = kept if same and kept is not None else signed_zone(zone, found)
    return out


def key_tags(signed: object) -> dict[str, list[int]]:
    """The key tags of each signed zone of ``signed`` (a ``SignedPath``), for the log."""
    assert isinstance(signed, SignedPath)
    return {o: [k.tag for k in z.signer.keys] for o, z in sorted(signed.zones.items())}


def rekey(signed: object, directory: str) -> tuple[Callable[[], None], dict[str, list[int]]]:
    """``reread`` for the signed path ``signed`` (a ``SignedPath``): what puts the keys
    read into it, and the key tags of the zones whose keys that changes (none for a zone
    whose keys are gone); KeyFileError as ``reread``."""
    assert isinstance(signed, SignedPath)
    fresh = reread(directory, signed.zones)
    changed = {o: [k.tag for k in fresh[o].signer.keys] if o in fresh else []
               for o in sorted(fresh.keys() | signed.zones.keys())
               if fresh.get(o) is not signed.zones.get(o)}
    return (lambda: signed.replace(fresh)), changed
