"""src/ holds the product only: no path of the machine it was written on, no test data, no test helper.

The documents' vectors live in tests/support/examples.py; whatever only tests need lives in tests/support/.
A path such as the repository's own absolute path, `/work/` or the home directory, written into src, would
work here and nowhere else, so none is allowed in any file of the package (code, docstrings, comments).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "userstream"


def _this_machines_paths() -> set[str]:
    """The repository's absolute path and the folder holding it, `/work/` (where it is developed) and the
    home directory: whichever of them is more than `/`."""
    candidates = (ROOT, ROOT.parent, Path("/work"), Path.home())
    return {f"{path}/" for path in candidates if path != Path(path.anchor)}


def _package_files() -> list[Path]:
    files = sorted(path for path in PACKAGE.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    assert PACKAGE / "errors.py" in files
    return files


def test_no_file_of_the_package_names_a_path_of_this_machine() -> None:
    needles = _this_machines_paths()
    found = [
        f"{path.relative_to(ROOT)}:{number}: {needle}"
        for path in _package_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for needle in needles
        if needle in line
    ]
    assert found == []


def test_the_documents_vectors_are_test_data() -> None:
    assert importlib.util.find_spec("userstream.protocol.examples") is None
    assert (ROOT / "tests" / "support" / "examples.py").is_file()


def test_no_module_of_the_package_imports_the_tests_helpers() -> None:
    imports_support = re.compile(r"^\s*(from|import)\s+support\b", re.MULTILINE)
    found = [
        str(path.relative_to(ROOT))
        for path in _package_files()
        if path.suffix == ".py" and imports_support.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
