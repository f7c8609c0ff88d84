"""The architecture's rules, checked on the source: a sans-IO core, one module per library.

DEVELOPERS.md fixes that dnslib is used in one module and geoip2 in one
module, and that parsing, answering, health and routing decisions are pure;
this reads every module's imports so a change cannot break that unnoticed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dnsfail"

#: Decision code: no event loop, sockets, HTTP or process control.
CORE = ["model", "errors", "config", "query", "wire", "resolver", "health", "selection", "state",
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


def test_check_does_not_import_the_server() -> None:
    """``dnsfail check`` on a 100k-record zone must stay well under 3 s: importing aiohttp,
    the control API and the daemon cost a third of that, for nothing check uses."""
    code = (
        "import sys\n"
        "from dnsfail.cli import main\n"
        f"assert main(['check', {str(PACKAGE.parent / 'zones')!r}]) == 0\n"
        "loaded = sorted(m for m in ('aiohttp', 'dnsfail.app', 'dnsfail.control', "
        "'dnsfail.workers') if m in sys.modules)\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=PACKAGE.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
