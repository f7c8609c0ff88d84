"""Write small, real MaxMind DB (.mmdb) files for tests, shaped like MaxMind's own.

The files are IPv6 trees with IPv4 networks stored at ``::/96`` (as
MaxMind's databases do), so one file answers both families through
``geoip2.database.Reader``.  Each entry is inserted on its own, so
mmdb-writer never merges two entries: ``traits.network`` reports exactly the
inserted network (adjacent entries with equal records stay separate leaves).
A lookup in a gap reports the largest empty block around the address.

Entries map a network to ``(continent, country, subdivision, (lat, lon))``,
any part None::

    {"192.0.2.0/24": ("EU", "DE", None, (52.5, 13.4)),
     "2001:db8:1::/48": ("NA", "US", "CA", (37.4, -122.1))}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]  # no stubs published

Entry = tuple[str | None, str | None, str | None, tuple[float, float] | None]

#: Client networks of the test world, as (continent, country, subdivision, (lat, lon)).
WORLD: dict[str, Entry] = {
    "192.0.2.0/24": ("EU", "DE", "BE", (52.5, 13.4)),  # Berlin
    "192.0.3.0/24": ("EU", "FR", None, (48.86, 2.35)),  # Paris
    "203.0.113.0/24": ("AS", "JP", None, (35.68, 139.69)),  # Tokyo
    "198.18.0.0/15": ("NA", "US", "CA", (37.4, -122.1)),  # Mountain View
    "198.20.0.0/16": ("NA", "US", "TX", (30.27, -97.74)),  # Austin
    "2001:db8:1::/48": ("NA", "US", "CA", (37.4, -122.1)),
    "2001:db8:2::/48": ("EU", "GB", "ENG", (51.5, -0.13)),  # London
    "2001:db8:3::/48": ("EU", None, None, None),  # a continent and nothing else
}


CONTINENTS = {
    "AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe",
    "NA": "North America", "OC": "Oceania", "SA": "South America",
}


def country_record(entry: Entry) -> dict[str, Any]:
    """A GeoIP2-Country record: continent and country only."""
    continent, country, _, _ = entry
    record: dict[str, Any] = {}
    if continent is not None:
        record["continent"] = {"code": continent, "names": {"en": CONTINENTS.get(continent, "?")}}
    if country is not None:
        record["country"] = {"iso_code": country, "names": {"en": country}}
        record["registered_country"] = {"iso_code": country, "names": {"en": country}}
    return record


def city_record(entry: Entry) -> dict[str, Any]:
    """A GeoIP2-City record: the Country fields plus subdivisions and location."""
    _, _, subdivision, location = entry
    record = country_record(entry)
    if subdivision is not None:
        record["subdivisions"] = [{"iso_code": subdivision, "names": {"en": subdivision}}]
    if location is not None:
        record["location"] = {"latitude": location[0], "longitude": location[1],
                              "accuracy_radius": 100}
    return record


def write_db(path: object, database_type: str, records: Mapping[str, dict[str, Any]],
             ip_version: int = 6) -> None:
    """Write ``records`` (network -> record) as a database of ``database_type``."""
    writer = MMDBWriter(ip_version=ip_version, database_type=database_type, languages=["en"],
                        description="dnsfail test data", ipv4_compatible=ip_version == 6)
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))


def write_country_db(path: object, entries: Mapping[str, Entry],
                     database_type: str = "GeoIP2-Country") -> None:
    write_db(path, database_type, {n: country_record(e) for n, e in entries.items()})


def write_city_db(path: object, entries: Mapping[str, Entry],
                  database_type: str = "GeoIP2-City") -> None:
    write_db(path, database_type, {n: city_record(e) for n, e in entries.items()})
