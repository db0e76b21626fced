"""The walls between the packages hold: forbidden import directions and cycles, found with `ast`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("scanner", "pkgdb", "_native", "vulndb")

# (importer, imported): no module under the first may import anything under the second. Every
# import counts, a function-local one too: hiding an import in a function hides no dependency.
FORBIDDEN = (
    # The library parts never import the scanner (docs: STYLE.md, "walls that must hold").
    ("pkgdb", "scanner"),
    ("_native", "scanner"),
    ("_native", "pkgdb"),
    # Records never import the checks that make them; writers get all they need in the report.
    ("scanner.report", "scanner.checks"),
    ("scanner.output", "scanner.checks"),
    ("scanner.output", "scanner.policy"),
    ("scanner.output", "scanner.scan"),
    # A policy declares custom checks and the checks package runs them: checks import no policy.
    ("scanner.checks", "scanner.policy"),
    # The scanning core is what the console and the defender are built on, never the reverse.
    ("scanner", "console"),
    ("scanner", "defender"),
    ("scanner", "scanner.console"),
    ("scanner", "scanner.defender"),
    ("pkgdb", "console"),
    ("pkgdb", "defender"),
    # Advisory data and version comparison (issue 17) are a library the console and the
    # defender build on; the package readers know nothing of vulnerabilities.
    ("vulndb", "console"),
    ("vulndb", "defender"),
    ("pkgdb", "vulndb"),
)


def module_name(repo: Path, path: Path) -> tuple[str, bool]:
    """("scanner.checks.base", False) for scanner/checks/base.py; True for a package's __init__."""
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported(repo: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute name) of everything a module imports, anywhere in it; `from a import b`
    gives both `a` and `a.b` (b may be a submodule)."""
    name, is_package = module_name(repo, path)
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            if node.module:
                yield node.lineno, prefix
            for alias in node.names:
                yield node.lineno, f"{prefix}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            # importlib.import_module("scanner.checks") / __import__(...) with a literal name:
            # an import by another spelling (a computed name cannot be judged statically).
            called = node.func
            name_called = (
                called.id
                if isinstance(called, ast.Name)
                else called.attr
                if isinstance(called, ast.Attribute)
                else ""
            )
            first = node.args[0]
            if (
                name_called in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                target = first.value
                if target.startswith("."):
                    dots = len(target) - len(target.lstrip("."))
                    parts = package.split(".")
                    target = ".".join([*parts[: len(parts) - (dots - 1)], target.lstrip(".")])
                yield node.lineno, target


def sources(repo: Path) -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((repo / package).rglob("*.py"))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(repo: Path, forbidden: tuple[tuple[str, str], ...] = FORBIDDEN) -> list[str]:
    """Every import that crosses a wall, as "path:line: importer imports imported"."""
    found = []
    for path in sources(repo):
        name, _ = module_name(repo, path)
        for line, target in imported(repo, path):
            for importer, banned in forbidden:
                if _under(name, importer) and _under(target, banned):
                    where = path.relative_to(repo)
                    found.append(
                        f"{where}:{line}: {name} imports {target} ({importer} -/-> {banned})"
                    )
    return sorted(set(found))


def cycles(repo: Path) -> list[list[str]]:
    """Cycles between the scanner's parts (scanner.X: a subpackage or a module), largest first."""
    edges: dict[str, set[str]] = {}
    for path in sorted((repo / "scanner").rglob("*.py")):
        name, _ = module_name(repo, path)
        source = ".".join(name.split(".")[:2])
        for _line, target in imported(repo, path):
            if _under(target, "scanner") and target != "scanner":
                part = ".".join(target.split(".")[:2])
                if part != source:
                    edges.setdefault(source, set()).add(part)
    # Tarjan's strongly connected components, iteration bounded by the number of parts.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return sorted(found, key=len, reverse=True)


def test_no_import_crosses_a_wall() -> None:
    assert violations(REPO) == []


def test_the_scanners_parts_import_each_other_without_a_cycle() -> None:
    assert cycles(REPO) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # What the tree held before the walls: sarif's function-local import of the registry.
        (
            {
                "scanner/__init__.py": "",
                "scanner/output/__init__.py": "",
                "scanner/output/sarif.py": "def f():\n    from ..checks import BUILTIN_CHECKS\n",
            },
            ["scanner/output/sarif.py:2: scanner.output.sarif imports scanner.checks"],
        ),
        # The custom check's runner imported from the policy package.
        (
            {
                "scanner/checks/__init__.py": "",
                "scanner/checks/custom.py": "from ..policy.runner import run_custom_check\n",
            },
            ["scanner/checks/custom.py:1: scanner.checks.custom imports scanner.policy.runner"],
        ),
        # Spelled absolutely, or as `from .. import checks`.
        (
            {"scanner/report.py": "import scanner.checks.base\n"},
            ["scanner/report.py:1: scanner.report imports scanner.checks.base"],
        ),
        (
            {"scanner/output/table.py": "from .. import checks\n"},
            ["scanner/output/table.py:1: scanner.output.table imports scanner.checks"],
        ),
        # By another spelling: importlib with a literal name, absolute or relative.
        (
            {
                "scanner/output/sarif.py": "import importlib\nR = importlib.import_module('scanner.checks')\n"
            },
            ["scanner/output/sarif.py:2: scanner.output.sarif imports scanner.checks"],
        ),
        (
            {"scanner/checks/custom.py": "R = __import__('scanner.policy.runner')\n"},
            ["scanner/checks/custom.py:1: scanner.checks.custom imports scanner.policy.runner"],
        ),
        (
            {
                "scanner/output/json_format.py": "import importlib\nimportlib.import_module('..checks', 'scanner.output')\n"
            },
            ["scanner/output/json_format.py:2: scanner.output.json_format imports scanner.checks"],
        ),
        # A future package the core must never lean on.
        (
            {"scanner/scan.py": "import defender.agent\n"},
            ["scanner/scan.py:1: scanner.scan imports defender.agent"],
        ),
        (
            {"pkgdb/dpkg.py": "from scanner.report import Problem\n"},
            ["pkgdb/dpkg.py:1: pkgdb.dpkg imports scanner.report"],
        ),
        # Allowed: a look-alike name, and the policy reading the checks' spec type.
        ({"scanner/output/checksum.py": "import scanner.checksums\n"}, []),
        ({"scanner/policy/model.py": "from ..checks.custom.spec import CustomCheckSpec\n"}, []),
    ],
)
def test_a_crossing_is_found(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    found = violations(_tree(tmp_path, files))
    assert [line.partition(" (")[0] for line in found][:1] == expected[:1]
    assert bool(found) == bool(expected)


def test_a_cycle_is_found_even_through_a_function_local_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "scanner/policy/loader.py": "def ids():\n    from ..checks import BUILTIN_CHECKS\n",
            "scanner/checks/__init__.py": "from ..policy.model import CustomCheckSpec\n",
            "scanner/report.py": "",
        },
    )
    assert cycles(root) == [["scanner.checks", "scanner.policy"]]
