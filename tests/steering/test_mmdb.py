"""MaxMind databases as a Locator: real .mmdb files (tests/mmdb.py) -> placements and gaps,
lookups cached, files replaced in place and hot reloaded."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from dnsfail.errors import DnsfailError
from dnsfail.steering.geo import Placement
from dnsfail.steering.mmdb import GeoError, MaxMindLocator
from tests.mmdb import WORLD, Entry, city_record, write_city_db, write_country_db, write_db
from tests.steering.test_geo import STATIC

CITY_CASES = [
    ("192.0.2.77", Placement("EU", "DE", "BE", 52.5, 13.4, ip_network("192.0.2.0/24"))),
    ("192.0.3.1", Placement("EU", "FR", None, 48.86, 2.35, ip_network("192.0.3.0/24"))),
    ("198.19.255.255", Placement("NA", "US", "CA", 37.4, -122.1, ip_network("198.18.0.0/15"))),
    ("2001:db8:1:ff::1", Placement("NA", "US", "CA", 37.4, -122.1, ip_network("2001:db8:1::/48"))),
    ("2001:db8:2::", Placement("EU", "GB", "ENG", 51.5, -0.13, ip_network("2001:db8:2::/48"))),
    ("2001:db8:3::9", Placement("EU", None, None, None, None, ip_network("2001:db8:3::/48"))),
]


@pytest.mark.parametrize(("address", "expected"), CITY_CASES)
def test_city_database_places_both_families(
    city_path: Path, address: str, expected: Placement
) -> None:
    locator = MaxMindLocator(str(city_path))
    assert locator.database_type == "GeoIP2-City"
    assert locator.locate(ip_address(address)) == expected
    assert locator.gap(ip_address(address)) is None


@pytest.mark.parametrize(("address", "expected"), CITY_CASES)
def test_country_database_has_no_subdivision_or_location(
    country_path: Path, address: str, expected: Placement
) -> None:
    locator = MaxMindLocator(str(country_path))
    got = locator.locate(ip_address(address))
    assert got == Placement(expected.continent, expected.country, None, None, None,
                            expected.network)


@pytest.mark.parametrize(
    ("address", "gap"),
    [
        ("192.0.4.1", "192.0.4.0/22"),  # next to 192.0.2.0/24 and 192.0.3.0/24
        ("10.0.0.1", "0.0.0.0/1"),
        ("100.64.0.1", "0.0.0.0/1"),
        ("128.0.0.1", "128.0.0.0/2"),
        ("2001:db8:4::1", "2001:db8:4::/46"),
        ("fe80::1", "8000::/1"),
    ],
)
def test_not_found_is_none_with_the_empty_block_around_it(
    city_path: Path, address: str, gap: str
) -> None:
    locator = MaxMindLocator(str(city_path))
    assert locator.locate(ip_address(address)) is None
    assert locator.gap(ip_address(address)) == ip_network(gap)
    # The static table knows the same networks, so it finds the same gaps.
    assert STATIC.locate(ip_address(address)) is None
    assert STATIC.gap(ip_address(address)) == ip_network(gap)


@pytest.mark.parametrize("database_type", ["GeoLite2-City", "DBIP-City-Lite", "GeoIP2-Enterprise"])
def test_city_shaped_database_types(tmp_path: Path, database_type: str) -> None:
    path = tmp_path / "db.mmdb"
    write_city_db(path, WORLD, database_type=database_type)
    got = MaxMindLocator(str(path)).locate(ip_address("192.0.2.1"))
    assert got is not None
    assert (got.codes()[0], got.latitude) == ("EU-DE-BE", 52.5)


@pytest.mark.parametrize("database_type", ["GeoLite2-Country", "DBIP-Country-Lite"])
def test_country_database_types(tmp_path: Path, database_type: str) -> None:
    path = tmp_path / "db.mmdb"
    write_country_db(path, WORLD, database_type=database_type)
    got = MaxMindLocator(str(path)).locate(ip_address("2001:db8:2::1"))
    assert got is not None
    assert got.codes() == ("EU-GB", "EU")


def test_ipv4_only_database_knows_no_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "v4.mmdb"
    write_db(path, "GeoLite2-Country", {"192.0.2.0/24": city_record(WORLD["192.0.2.0/24"])},
             ip_version=4)
    locator = MaxMindLocator(str(path))
    assert locator.locate(ip_address("192.0.2.9")) is not None
    assert locator.locate(ip_address("2001:db8::1")) is None
    assert locator.gap(ip_address("2001:db8::1")) == ip_network("::/0")


def test_lookups_are_cached(city_path: Path) -> None:
    locator = MaxMindLocator(str(city_path))
    first = locator.locate(ip_address("192.0.2.1"))
    assert first is not None
    assert locator.locate(ip_address("192.0.2.1")) is first


def test_private_copy_survives_an_in_place_overwrite(tmp_path: Path) -> None:
    """``cp new.mmdb db.mmdb`` truncates the file a reader would have memory-mapped."""
    path = tmp_path / "db.mmdb"
    write_city_db(path, WORLD)
    locator = MaxMindLocator(str(path))
    path.write_bytes(b"")
    assert locator.locate(ip_address("192.0.2.1")) is not None
    assert locator.locate(ip_address("203.0.113.5")) is not None  # not cached before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read GeoIP database"),
        (b"", "not a valid MaxMind DB"),
        (b"\x00" * 4096, "not a valid MaxMind DB"),
        ("truncated", "not a valid MaxMind DB"),
        ("asn", "has no locations"),
        ("tree", "search tree is corrupt"),  # opens, but the root node points nowhere
    ],
)
def test_unusable_files_raise_geo_error(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "db.mmdb"
    if content == "truncated":
        write_city_db(path, WORLD)
        path.write_bytes(path.read_bytes()[:-40])
    elif content == "tree":
        write_city_db(path, WORLD)
        path.write_bytes(b"\xff" * 12 + path.read_bytes()[12:])
    elif content == "asn":
        write_db(path, "GeoLite2-ASN", {"192.0.2.0/24": {"autonomous_system_number": 64500}})
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(GeoError, match=message) as info:
        MaxMindLocator(str(path))
    assert str(path) in str(info.value)


def test_geo_error_is_a_dnsfail_error() -> None:

    assert issubclass(GeoError, DnsfailError)


# --- hot reload ----------------------------------------------------------------------------------


def rewrite(path: Path, entries: Mapping[str, Entry], bump: int) -> None:
    """Overwrite in place and move the mtime on, so a same-size file is still seen as new."""
    write_city_db(path, entries)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


def test_refresh_reloads_changed_file_and_keeps_old_data_when_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "db.mmdb"
    write_city_db(path, {"192.0.2.0/24": ("EU", "DE", None, None)})
    locator = MaxMindLocator(str(path))
    client = ip_address("192.0.2.1")
    assert locator.refresh() is False  # unchanged

    rewrite(path, {"192.0.2.0/24": ("EU", "FR", None, None)}, bump=1)
    assert locator.refresh() is True
    placed = locator.locate(client)
    assert placed is not None
    assert placed.country == "FR"  # the cache went with the old file
    assert locator.refresh() is False

    caplog.set_level(logging.ERROR, logger="dnsfail.steering.mmdb")
    path.write_bytes(b"not a database")
    assert locator.refresh() is False
    assert locator.refresh() is False
    placed = locator.locate(client)
    assert placed is not None
    assert placed.country == "FR"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping the loaded GeoIP2-City" in errors[0].getMessage()

    path.unlink()
    assert locator.refresh() is False
    assert locator.locate(ip_address("192.0.2.200")) is not None  # still served from the copy

    rewrite(path, {"192.0.2.0/24": ("NA", "US", "CA", None)}, bump=2)
    assert locator.refresh() is True
    placed = locator.locate(client)
    assert placed is not None
    assert placed.codes()[0] == "NA-US-CA"
    locator.close()
