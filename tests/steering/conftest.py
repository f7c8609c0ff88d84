"""The test world's databases, written once per module: test_geo and test_mmdb both read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mmdb import WORLD, write_city_db, write_country_db


@pytest.fixture(scope="module")
def city_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("geo") / "city.mmdb"
    write_city_db(path, WORLD)
    return path


@pytest.fixture(scope="module")
def country_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("geo") / "country.mmdb"
    write_country_db(path, WORLD)
    return path
