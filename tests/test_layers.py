"""The architecture's rules, checked on the source: a sans-IO core, one module per library.

DEVELOPERS.md fixes that dnslib is used in one module and geoip2 in one
module, and that parsing, answering, health and routing decisions are pure;
this reads every module's imports so a change cannot break that unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dnsfail"

#: Decision code: no event loop, sockets, HTTP or process control.
CORE = ["model", "errors", "config", "wire", "resolver", "health", "selection", "state",
        "handler", "geo", "explain", "overrides"]
IO = {"asyncio", "socket", "aiohttp", "uvloop", "subprocess", "selectors"}
#: Each third-party library and the one module allowed to import it.
OWNER = {"dnslib": "wire", "geoip2": "geo", "maxminddb": "geo", "prometheus_client": "metrics"}


def imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_modules_do_no_io(module: str) -> None:
    assert not imports(module) & IO


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_each_library_has_one_owner(module: str) -> None:
    for library in imports(module) & OWNER.keys():
        assert OWNER[library] == module, f"{module}.py imports {library}"
