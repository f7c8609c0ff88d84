"""MaxMind DB files (GeoIP2/GeoLite2, DB-IP lite) as a ``geo.Locator``.

The only module that imports geoip2 and maxminddb.  It owns opening a
private copy of the file, the lookups (cached per database generation) and
the hot reload (:meth:`MaxMindLocator.refresh`, the only thing that touches
the disk after start-up).  The decision a placement feeds is ``geo.decide``;
nothing here imports asyncio or sockets.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_network

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb

from dnsfail.errors import DnsfailError
from dnsfail.steering.geo import IPAddress, IPNetwork, Placement

log = logging.getLogger(__name__)

#: Lookups remembered per open database (address -> result), least recently used out first.
CACHE_LIMIT = 65_536


class GeoError(DnsfailError):
    """A GeoIP database cannot be used: missing, unreadable, corrupt or of the wrong kind."""


#: What one database lookup found: the placement, or the gap around an unplaced address.
Located = tuple[Placement | None, IPNetwork | None]


@dataclass(frozen=True, slots=True)
class _Opened:
    """One generation of an open database; replaced whole by :meth:`MaxMindLocator.refresh`."""

    reader: geoip2.database.Reader
    #: Which geoip2 method reads it: "city", "country" or "enterprise".
    method: str
    database_type: str
    ip_version: int
    #: (mtime_ns, size, inode) of the file this generation was read from.
    signature: tuple[int, int, int]
    cache: OrderedDict[IPAddress, Located]


#: Addresses looked up once when a file is opened, to catch a broken search tree early.
_PROBES: tuple[IPAddress, ...] = (
    IPv4Address("1.1.1.1"), IPv4Address("8.8.8.8"), IPv6Address("2001:4860:4860::8888"),
)

#: What a lookup in a damaged file raises (a bad tree, or a record geoip2 cannot model).
_LOOKUP_ERRORS = (maxminddb.InvalidDatabaseError, ValueError, TypeError, KeyError, AttributeError)


def _signature(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _method_for(database_type: str) -> str | None:
    """The geoip2 reader method for a database type, None if it carries no locations.

    geoip2 itself matches by substring ("City" in "GeoLite2-City", in
    "DBIP-City-Lite"), and so do we; Enterprise has City's shape but its own
    method.
    """
    if "Enterprise" in database_type:
        return "enterprise"
    if "City" in database_type:
        return "city"
    if "Country" in database_type:
        return "country"
    return None


def _open(path: str) -> _Opened:
    """Open a private copy of ``path`` and check that it can answer lookups.

    The copy is why an operator may overwrite the file in place (``cp new
    old``): the reader memory-maps its file, and truncating a mapped file
    under a running process kills it with SIGBUS.  The copy is unlinked once
    open, so it disappears with the reader.  A file that opens but whose
    search tree is broken fails the probe lookups here rather than at query
    time.
    """
    try:
        signature = _signature(path)
        fd, copy = tempfile.mkstemp(prefix="dnsfail-geoip-", suffix=".mmdb")
        try:
            with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
                shutil.copyfileobj(src, dst)
            reader = geoip2.database.Reader(copy, locales=["en"])
        finally:
            os.unlink(copy)
    except OSError as exc:
        raise GeoError(f"{path}: cannot read GeoIP database: {exc.strerror or exc}") from exc
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoError(f"{path}: not a valid MaxMind DB (.mmdb) file: {exc}") from exc
    meta = reader.metadata()
    method = _method_for(meta.database_type)
    if method is None:
        reader.close()
        raise GeoError(
            f"{path}: database type {meta.database_type!r} has no locations "
            "(need a Country or City database, e.g. GeoLite2-City or DBIP-Country-Lite)"
        )
    opened = _Opened(reader, method, meta.database_type, meta.ip_version, signature, OrderedDict())
    for probe in _PROBES:
        try:
            _read(opened, probe)
        except _LOOKUP_ERRORS as exc:
            reader.close()
            raise GeoError(f"{path}: corrupt MaxMind DB: {exc}") from exc
    return opened


def _read(opened: _Opened, address: IPAddress) -> Located:
    """One uncached lookup; database errors propagate (the caller decides what they mean)."""
    if address.version == 6 and opened.ip_version == 4:
        # An IPv4-only database knows no IPv6 address at all.
        return None, ip_network((address, 0), strict=False)
    reader = opened.reader
    try:
        model: geoip2.models.Country
        if opened.method == "city":
            model = reader.city(address)
        elif opened.method == "enterprise":
            model = reader.enterprise(address)
        else:
            model = reader.country(address)
    except geoip2.errors.AddressNotFoundError as exc:
        gap = exc.network
        if gap is None or gap.version != address.version:
            return None, None
        return None, gap
    network = model.traits.network
    if network is None or network.version != address.version:
        network = ip_network(address)  # cannot happen with geoip2 >= 4.8; claim only the address
    subdivision: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    if isinstance(model, geoip2.models.City):
        if model.subdivisions:
            subdivision = model.subdivisions[0].iso_code
        latitude, longitude = model.location.latitude, model.location.longitude
    placement = Placement(
        continent=model.continent.code,
        country=model.country.iso_code,
        subdivision=subdivision,
        latitude=latitude,
        longitude=longitude,
        network=network,
    )
    return placement, None


class MaxMindLocator:
    """Placements from a MaxMind DB file: GeoIP2/GeoLite2 or DB-IP lite, Country or City.

    Only ``country`` (where the client is) is used, never
    ``registered_country``: an anycast block registered in one country says
    nothing about where its users sit, and the catch-all is a better answer
    than a wrong continent.  Lookups are remembered per address (bounded
    LRU, emptied on reload), since resolvers send the same ECS prefixes over
    and over.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened = _open(path)
        #: Signature of a file that failed to load, so a broken file is reported once.
        self._failed: tuple[int, int, int] | None = None

    @property
    def database_type(self) -> str:
        return self._opened.database_type

    def locate(self, address: IPAddress) -> Placement | None:
        return self._lookup(address)[0]

    def gap(self, address: IPAddress) -> IPNetwork | None:
        return self._lookup(address)[1]

    def _lookup(self, address: IPAddress) -> Located:
        opened = self._opened  # one generation for the whole lookup, even if refresh() swaps
        cache = opened.cache
        hit = cache.get(address)
        if hit is not None:
            cache.move_to_end(address)
            return hit
        try:
            result = _read(opened, address)
        except _LOOKUP_ERRORS as exc:
            # Never fail a query over the database: treat the client as unplaced, scope unknown.
            log.error("GeoIP lookup of %s in %s failed: %s", address, self.path, exc)
            return None, None
        cache[address] = result
        if len(cache) > CACHE_LIMIT:
            cache.popitem(last=False)
        return result

    def refresh(self) -> bool:
        """Reload the database if its file changed (mtime, size or inode); True if reloaded.

        A new file that cannot be used is logged once and the loaded data
        keeps serving: a bad download must not turn geo steering off.  Safe to
        call from a worker thread (``asyncio.to_thread``): the swap is one
        attribute assignment, and the old reader is closed by garbage
        collection once no lookup still holds it.
        """
        try:
            signature = _signature(self.path)
        except OSError as exc:
            marker = (-1, -1, -1)
            if self._failed != marker:
                log.error("GeoIP database %s: %s; keeping the loaded copy", self.path,
                          exc.strerror or exc)
                self._failed = marker
            return False
        if signature in (self._opened.signature, self._failed):
            return False
        try:
            opened = _open(self.path)
        except GeoError as exc:
            log.error("%s; keeping the loaded %s", exc, self._opened.database_type)
            self._failed = signature
            return False
        self._opened = opened
        self._failed = None
        log.info("GeoIP database %s reloaded (%s)", self.path, opened.database_type)
        return True

    def close(self) -> None:
        self._opened.reader.close()
