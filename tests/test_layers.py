"""The architecture's rules, checked on the source: rooms, layers, one owner per library.

Every rule reads the imports of every module by their *full* dotted name
(``from dnsfail.serve.probe import Prober`` is ``dnsfail.serve.probe``, not
``dnsfail``), at module level and inside functions alike, so that a lazy
import cannot hide a forbidden edge.  The rules are the layout the README's
Design section describes:

* the core (``model``, ``errors``, ``zonefile``, ``dns``, ``steering``,
  ``state``) does no I/O and imports nothing outside the core but ``logs``;
* ``control`` never imports ``serve``: it talks to a ``ControlPort``;
* the command-line client (``cli.ctl``) imports no server module;
* each third-party library has one owning module;
* no import cycles, and no module, class or function past its size.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dnsfail"

#: Decision code: no event loop, sockets, HTTP, metrics library or process control.
CORE = ("dnsfail.model", "dnsfail.errors", "dnsfail.zonefile", "dnsfail.dns", "dnsfail.steering",
        "dnsfail.state",
        # The cluster's decisions; its adapters (node, exchange, daemon, options) are not core.
        "dnsfail.cluster.quorum", "dnsfail.cluster.drainset", "dnsfail.cluster.messages",
        "dnsfail.cluster.epoch", "dnsfail.cluster.settings")
IO = ("asyncio", "socket", "aiohttp", "uvloop", "subprocess", "selectors", "prometheus_client",
      "multiprocessing")
#: Shared modules the core may use: log formatting and the rate-limited error line.
SHARED = ("dnsfail.logs",)
#: Each third-party library and the one module allowed to import it.
OWNER = {
    "dnslib": "dnsfail.dns.reference",
    "geoip2": "dnsfail.steering.mmdb",
    "maxminddb": "dnsfail.steering.mmdb",
    "prometheus_client": "dnsfail.control.metrics",
    "cryptography": "dnsfail.dnssec.crypto",
    "siphashc": "dnsfail.cookies.siphash",
}
#: Modules a CLI client command may import: no server, no aiohttp.
CLIENT = "dnsfail.cli.ctl"
SERVER = ("dnsfail.serve", "dnsfail.control.api", "dnsfail.dns", "dnsfail.zonefile", "aiohttp")
MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports(module: str, source: str | None = None) -> set[str]:
    """Every module ``module`` imports, by full name, at any depth of its code.

    ``from a import b`` gives ``a.b`` where that is a module of ours, else ``a``.
    ``source`` stands in for the module's file (the test of the rules uses it).
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in MODULES else base)
    return names


def internal(module: str) -> set[str]:
    return {name for name in imports(module) if name in MODULES and name != module}


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, CORE + SHARED)])
def test_core_does_no_io_and_stays_in_the_core(module: str) -> None:
    found = imports(module)
    assert not {n for n in found if within(n, IO)}, f"{module} does I/O"
    outside = {n for n in internal(module) if not within(n, CORE + SHARED)}
    assert not outside, f"{module} (core) imports {sorted(outside)}"


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "dnsfail.control")])
def test_control_never_imports_serve(module: str) -> None:
    assert not {n for n in internal(module) if within(n, "dnsfail.serve")}


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "dnsfail.events")])
def test_events_import_neither_serve_nor_control(module: str) -> None:
    """The history and the webhooks are told things; they reach into nothing."""
    assert not {n for n in internal(module) if within(n, ("dnsfail.serve", "dnsfail.control"))}
    if module in ("dnsfail.events.log", "dnsfail.events.payload"):
        assert not {n for n in imports(module) if within(n, IO)}, f"{module} does I/O"


#: How dnsfail fits a host (state path, sd_notify): a leaf the CLI and the daemon share.
HOST = "dnsfail.host"


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, HOST)])
def test_host_is_a_leaf(module: str) -> None:
    assert not {n for n in internal(module) if not within(n, HOST)}


def closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for name in imports(current):
            if name not in seen:
                seen.add(name)
                if name in MODULES:
                    todo.append(name)
    return seen


def test_cli_client_imports_no_server_module() -> None:
    reached = {n for n in closure(CLIENT) if within(n, SERVER)}
    assert not reached, f"{CLIENT} reaches {sorted(reached)}"


@pytest.mark.parametrize("module", list(MODULES))
def test_each_library_has_one_owner(module: str) -> None:
    for name in imports(module):
        library = name.split(".")[0]
        if library in OWNER:
            assert OWNER[library] == module, f"{module} imports {library}"


def cycles() -> Iterator[list[str]]:
    graph = {m: internal(m) for m in MODULES}
    # A package's __init__ re-exporting its own modules is not a cycle of design.
    for m, edges in graph.items():
        graph[m] = {e for e in edges if not (MODULES[e].name == "__init__.py"
                                             and within(m, e))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> Iterator[list[str]]:
        state[m] = 1
        stack.append(m)
        for e in sorted(graph[m]):
            if state.get(e) == 1:
                yield [*stack[stack.index(e):], e]
            elif e not in state:
                yield from visit(e)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            yield from visit(m)


def test_no_import_cycles() -> None:
    assert list(cycles()) == []


@pytest.mark.parametrize("module", list(MODULES))
def test_sizes(module: str) -> None:
    text = MODULES[module].read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{module}: {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        span = (node.end_lineno or node.lineno) - node.lineno + 1
        if isinstance(node, ast.ClassDef):
            assert span <= MAX_CLASS_LINES, f"{module}: class {node.name} has {span} lines"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert span <= MAX_FUNCTION_LINES, f"{module}: {node.name}() has {span} lines"


def test_check_does_not_import_the_server() -> None:
    """``dnsfail check`` on a 100k-record zone must stay well under 3 s: importing aiohttp,
    the control API and the daemon cost a third of that, for nothing check uses (and
    geoip2 and the control client's urllib.request another 120 ms, without --geoip)."""
    code = (
        "import sys\n"
        "from dnsfail.cli.main import main\n"
        f"assert main(['check', {str(ROOT / 'zones')!r}]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m in ('aiohttp', 'geoip2', 'urllib.request')"
        " or m.startswith(('dnsfail.serve', 'dnsfail.control')))\n"
        "print('LOADED', loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout


@pytest.mark.parametrize(
    ("module", "source", "forbidden"),
    [
        ("dnsfail.steering.health", "from dnsfail.serve.probe import Prober\n",
         "dnsfail.serve.probe"),
        ("dnsfail.steering.health", "def f():\n    from dnsfail.serve import app\n",
         "dnsfail.serve.app"),
        ("dnsfail.dns.handler", "import asyncio\n", "asyncio"),
        ("dnsfail.dns.resolver", "from ..serve.server import UdpListener\n",
         "dnsfail.serve.server"),
        ("dnsfail.control.metrics", "from dnsfail.serve import app\n", "dnsfail.serve.app"),
    ],
)
def test_the_rules_see_what_they_guard(module: str, source: str, forbidden: str) -> None:
    """The reader is not blind: a forbidden import, lazy or relative, is seen by full name
    (the old reader kept only the first part of a dotted name and saw ``dnsfail``)."""
    assert forbidden in imports(module, source)
