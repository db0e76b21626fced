"""tests/ and bench/ never import each other: what both need lives in testsupport/; the scanner,
pkgdb/ and _native/ never import the console (imports flow console -> scanner). An AST scan."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Each directory with the directories whose modules it must not import (testsupport imports
# neither: it is below both).
WALLS = {
    "tests": ("bench",),
    "bench": ("tests",),
    "testsupport": ("tests", "bench"),
    # The console depends on the scanner, never the reverse: a defender's image installs the
    # scanner without the console's web dependencies (console/entry.py dispatches the command).
    "scanner": ("console", "defender", "taskdef"),
    "pkgdb": ("console", "defender", "taskdef"),
    "_native": ("console", "defender", "taskdef"),
    # The defender runs in its own image, without the console's web dependencies.
    "defender": ("console", "taskdef"),
    "taskdef": ("console", "defender"),
    # The advisory database is a library of its own: never the console or the defender.
    "vulndb": ("console", "defender"),
}


def _modules(directory: str) -> set[str]:
    """The names a module of `directory` is imported by once that directory is on sys.path."""
    folder = REPO / directory
    names = {path.stem for path in folder.glob("*.py") if path.stem != "conftest"}
    names |= {path.parent.name for path in folder.glob("*/__init__.py")}
    return names | {directory}  # `import tests.x` / `from bench import y`


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            # importlib.import_module("roots"), __import__("roots"): the same crossing, spelled
            # at run time.
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in {"importlib.import_module", "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def _path_additions(tree: ast.AST) -> list[str]:
    """The source of every `sys.path.insert/append(...)`'s arguments: a way around the walls."""
    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"insert", "append", "extend"}
        and ast.unparse(node.func.value) == "sys.path"
    ]


def breaches(directory: str, sources: dict[str, str] | None = None) -> list[str]:
    """Each import or sys.path addition in `directory`'s files that crosses one of its walls.

    `sources` (name -> text) replaces reading the files: the test of this scan itself.
    """
    if sources is None:
        sources = {
            str(path.relative_to(REPO)): path.read_text()
            for path in sorted((REPO / directory).rglob("*.py"))
        }
    found = []
    for name, text in sources.items():
        tree = ast.parse(text, name)
        for other in WALLS[directory]:
            # A module name both sides define (conftest) is not a crossing; the others are.
            foreign = _modules(other) - _modules(directory)
            found += [f"{name}: imports {other}'s {module}" for module in _imports(tree) & foreign]
            found += [
                f"{name}: {call}"
                for call in _path_additions(tree)
                if f'"{other}"' in call or f"'{other}'" in call
            ]
    return found


@pytest.mark.parametrize("directory", sorted(WALLS))
def test_no_import_crosses_the_walls(directory: str) -> None:
    assert breaches(directory) == []


@pytest.mark.parametrize(
    ("directory", "text"),
    [
        ("tests", "import roots\n"),
        ("tests", "from whole_process import Run\n"),
        ("tests", "import sys\nsys.path.insert(0, str(HERE.parent / 'bench'))\n"),
        ("bench", "from findings_tree import build\n"),
        ("bench", "import tests.findings_tree\n"),
        ("bench", 'import sys\nsys.path.append(str(HERE.parent / "tests"))\n'),
        ("testsupport", "import debroot\n"),
        ("tests", "import importlib\nscale = importlib.import_module('scale_roots')\n"),
        ("bench", "child = __import__('child')\n"),
        ("scanner", "from console.store import store_report\n"),
        ("scanner", "import console\n"),
        ("pkgdb", "import console.models\n"),
        ("_native", "x = __import__('console')\n"),
        ("vulndb", "from console.models import Image\n"),
        ("vulndb", "import defender\n"),
    ],
)
def test_the_scan_sees_a_crossing(directory: str, text: str) -> None:
    assert breaches(directory, {"made.py": text}) != []


def test_the_scan_lets_shared_builders_through() -> None:
    text = "import imagebuilder\nimport rootcache\nimport pytest\n"
    assert breaches("tests", {"made.py": text}) == []
    assert breaches("bench", {"made.py": text}) == []
