"""errors.py's docstring is the whole truth about the package's exceptions.

Every exception class defined anywhere in src/userstream is found by importing every module, and the
drawing in errors.py's docstring must name exactly that set: each error under `UserStreamError` with its
bases as drawn (the parent in the tree, a second base as "also ..."), each private signal in its own list
and outside the root, each in the module the drawing names. A new exception without a place in the
drawing, or one that moved, fails here.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

import userstream
from userstream import errors
from userstream.errors import UserStreamError
from userstream.server import LedgerNotKeptError

# A drawn class: the tree's bars and connector, the name, the module (path under userstream/), the text.
_CLASS_LINE = re.compile(
    r"^    (?P<bars>(?:[│ ]   )*)(?:[├└]── )?(?P<name>_?[A-Z]\w*)\s+(?P<module>\S+\.py)\s+(?P<text>.*)$"
)
_ALSO = re.compile(r"\(also (?P<names>[\w, ]+)\)")


@dataclass(frozen=True)
class Drawn:
    name: str
    module: str  # "client/transport.py"
    bases: frozenset[str]  # the parent in the tree and the "also" ones; empty for the root and the signals


def _blocks() -> tuple[list[str], list[str]]:
    """The tree's lines and the private signals' lines of errors.py's docstring."""
    doc = errors.__doc__
    assert doc is not None
    blocks = [part.split("\n\n", 1)[0].splitlines() for part in doc.split("::\n\n")[1:]]
    assert len(blocks) == 2, "errors.py's docstring draws two blocks: the tree, then the private signals"
    return blocks[0], blocks[1]


def _drawn_tree() -> list[Drawn]:
    tree, _ = _blocks()
    drawn: list[Drawn] = []
    path: list[str] = []  # the names from the root down to the current depth
    for line in tree:
        match = _CLASS_LINE.match(line)
        if match is None:
            assert re.fullmatch(r"    [│ ]*\s+\S.*", line), line  # a description's continuation
            continue
        depth = len(match["bars"]) // 4 + (0 if line[4:].startswith(match["name"]) else 1)
        del path[depth:]
        also = _ALSO.search(match["text"])
        bases = {path[-1]} if path else set()
        if also is not None:
            bases |= {name.strip() for name in also["names"].split(",")}
        drawn.append(Drawn(match["name"], match["module"], frozenset(bases)))
        path.append(match["name"])
    return drawn


def _drawn_signals() -> list[Drawn]:
    _, signals = _blocks()
    drawn = []
    for line in signals:
        match = _CLASS_LINE.match(line)
        if match is not None:
            assert not match["bars"], line
            drawn.append(Drawn(match["name"], match["module"], frozenset()))
    return drawn


def _defined() -> dict[str, type[BaseException]]:
    """Every exception class defined at the top level of a module of the package, by name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(userstream.__path__, "userstream."):
        if info.name == "userstream.__main__":  # runs the CLI when imported
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                assert name not in found, f"two exception classes named {name}: make the drawing say which"
                found[name] = obj
    return found


def _module_path(cls: type) -> str:
    parts = cls.__module__.split(".")[1:]
    module = importlib.import_module(cls.__module__)
    if module.__file__ is not None and module.__file__.endswith("__init__.py"):
        parts.append("__init__")
    return "/".join(parts) + ".py"


def test_the_drawing_names_every_exception_class_of_the_package_exactly_once() -> None:
    names = [drawn.name for drawn in (*_drawn_tree(), *_drawn_signals())]
    assert len(names) == len(set(names)), names
    assert set(names) == set(_defined())


def test_every_error_is_drawn_under_the_root_with_its_bases_and_module() -> None:
    defined = _defined()
    tree = _drawn_tree()
    assert tree[0] == Drawn("UserStreamError", "errors.py", frozenset())
    for drawn in tree:
        cls = defined[drawn.name]
        assert issubclass(cls, UserStreamError), drawn.name
        assert (drawn.name, _module_path(cls)) == (drawn.name, drawn.module)
        if cls is not UserStreamError:
            assert (drawn.name, {base.__name__ for base in cls.__bases__}) == (drawn.name, drawn.bases)


def test_the_private_signals_are_not_errors_and_are_listed_where_they_live() -> None:
    defined = _defined()
    signals = _drawn_signals()
    assert {drawn.name for drawn in signals} == {"QueueClosed", "_Stop", "_WriteTimeoutError"}
    for drawn in signals:
        cls = defined[drawn.name]
        assert not issubclass(cls, UserStreamError), drawn.name
        assert cls.__bases__ == (Exception,), drawn.name
        assert (drawn.name, _module_path(cls)) == (drawn.name, drawn.module)


def test_every_public_exception_class_is_a_userstream_error() -> None:
    signals = {drawn.name for drawn in _drawn_signals()}
    public = {
        name: cls for name, cls in _defined().items() if not name.startswith("_") and name not in signals
    }
    assert public
    assert [name for name, cls in sorted(public.items()) if not issubclass(cls, UserStreamError)] == []


def test_no_exception_class_hides_in_a_function_or_a_class() -> None:
    """The walk above sees a module's top level only, so an exception class must be defined there."""
    builtin = {
        name
        for name, obj in vars(builtins).items()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    }
    exceptions = set(_defined()) | builtin
    hidden = []
    for path in sorted(Path(userstream.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and id(node) not in top:
                bases = {
                    base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                    for base in node.bases
                }
                if bases & exceptions or any(re.search(r"(Error|Exception)$", base) for base in bases):
                    hidden.append(f"{path.name}: {node.name}")
    assert hidden == []


def test_errors_py_exports_what_it_defines() -> None:
    defined_here = sorted(name for name, cls in _defined().items() if cls.__module__ == "userstream.errors")
    assert sorted(errors.__all__) == defined_here
    assert all(getattr(userstream, name) is getattr(errors, name) for name in errors.__all__)


def test_reading_a_ledger_never_kept_is_a_configuration_error_drawn_in_the_tree() -> None:
    drawn = {item.name: item for item in _drawn_tree()}["LedgerNotKeptError"]
    assert drawn == Drawn(
        "LedgerNotKeptError", "server/run.py", frozenset({"ConfigurationError", "RuntimeError"})
    )
    assert LedgerNotKeptError.__bases__ == (errors.ConfigurationError, RuntimeError)
