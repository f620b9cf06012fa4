"""The house's structural rules (issue 14, docs/architecture.md "The floors"), checked on the source.

No import circle among the package's modules, counting every import (a lazy one inside a function, or one
under TYPE_CHECKING, too); the sideways rules: the client and the protocol core never import serve or the
gateway, serve never imports the client, the protocol core imports nothing above it; and no src file is
over the ~600 lines a file of one job keeps to.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "userstream"


def _modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("userstream"):
            module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in MODULES else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("userstream"))
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_the_walk_sees_the_whole_package() -> None:
    assert "userstream.protocol.registry" in MODULES
    assert "userstream.protocol.registry" in GRAPH["userstream.client.runtimes"]
    assert len(MODULES) > 100


def test_no_import_circle() -> None:
    order = list(graphlib.TopologicalSorter(GRAPH).static_order())  # raises CycleError naming a circle
    assert sorted(order) == sorted(set(MODULES) | {t for targets in GRAPH.values() for t in targets})


def test_a_planted_circle_is_found() -> None:
    planted = {name: set(targets) for name, targets in GRAPH.items()}
    planted["userstream.errors"].add("userstream.client.connection")
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(planted).static_order())


def _importers(package: str, of: tuple[str, ...]) -> dict[str, set[str]]:
    return {
        name: {target for target in targets if target.startswith(of)}
        for name, targets in GRAPH.items()
        if name.startswith(package) and any(target.startswith(of) for target in targets)
    }


def test_the_client_and_the_protocol_core_never_import_serve_or_the_gateway() -> None:
    above = ("userstream.server", "userstream.gateway")
    assert _importers("userstream.client", above) == {}
    assert _importers("userstream.protocol", above) == {}
    assert _importers("userstream.sinks", above) == {}


def test_serve_never_imports_the_client_and_the_protocol_core_imports_nothing_above_it() -> None:
    assert _importers("userstream.server", ("userstream.client",)) == {}
    runtime = (
        "userstream.client",
        "userstream.sinks",
        "userstream.ops",
        "userstream.state",
        "userstream.sync",
    )
    assert _importers("userstream.protocol", runtime) == {}


def test_no_source_file_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(SRC)): count
        for path in PACKAGE.rglob("*.py")
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert long == {}


def _queue_puts(path: Path) -> set[str]:
    """The receivers of `put`/`put_nowait`/`put_all_nowait` calls in `path` whose text ends in "queue"."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"put", "put_nowait", "put_all_nowait"}
            and ast.unparse(node.func.value).endswith("queue")
        ):
            found.add(ast.unparse(node.func))
    return found


def test_only_the_intake_puts_into_the_client_queue() -> None:
    """One entrance to the client's queue (client/intake.py): no other module of the client puts into its
    event queue itself (the queue's own `put` waits on its `put_nowait`)."""
    putters = {
        str(path.relative_to(PACKAGE)): puts
        for path in (PACKAGE / "client").rglob("*.py")
        if (puts := _queue_puts(path)) and path.name != "queue.py"
    }
    assert putters == {"client/intake.py": {"self.queue.put", "self.queue.put_all_nowait"}}
