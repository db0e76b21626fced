"""mypy sees concrete types, never Any, at the native and pkgdb seams and in every caller of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Every entry point `_native` exposes and every pkgdb reader's interface, as a caller uses them.
# strict (pyproject.toml) includes --warn-return-any: the functions returning a seam's result
# fail if it is Any; --disallow-any-expr fails on any expression of type Any in this snippet.
SNIPPET = """\
import _native
import pkgdb
from pkgdb import RootFS, dpkg, rpm, apk

root = RootFS("/")
reveal_type(_native.walk)
reveal_type(_native.walk(b"/", skip=(b"proc",), unchanged={}, matched=[]))
reveal_type(_native.hash_files)
reveal_type(_native.hash_files(3, [(b"a", 1)], matcher=_native.Matcher([b"x"])))
reveal_type(_native.default_jobs())
reveal_type(_native.Matcher([b"x"]))
reveal_type(_native.Matcher([b"x"]).find_all(b"xx"))
reveal_type(_native.start_prefetch(b"/", b"var/lib/dpkg/info", b".md5sums", budget=1))
reveal_type(_native.start_prefetch(b"/", b"a", b"b").stop())
reveal_type(_native.untar.parse_header(bytes(512), 0))
reveal_type(_native.untar.parse_pax(b"", 0))
reveal_type(_native.untar.parse_sparse(bytes(512), 0, False))
reveal_type(_native.remove_tree)
reveal_type(_native.implementations())
reveal_type(_native.untars())
reveal_type(pkgdb.READERS)
for reader in pkgdb.READERS:
    reveal_type(reader.read(root))
    reveal_type(reader.present(root))
    reveal_type(reader.MANAGER)
    reveal_type(reader.DATABASE_DIRS)
reveal_type(dpkg.read(root))
reveal_type(rpm.read(root))
reveal_type(apk.read(root))


def jobs() -> int:
    return _native.default_jobs()


def first_path() -> bytes:
    return _native.hash_files(3, [(b"a", 1)])[0].path


def files(reader: pkgdb.Reader) -> tuple[pkgdb.InstalledFile, ...]:
    return reader.read(root).files
"""

# What mypy must reveal, in order (module paths as mypy prints them, "builtins." left out).
EXPECTED = [
    (
        "def (root: str | bytes, *, skip: typing.Collection[bytes] =, one_file_system: bool =, "
        "unchanged: typing.Mapping[bytes, tuple[object, ...]] | None =, matched: list[bytes] | "
        "None =) -> typing.Iterator[_native.types.WalkEntry | _native.types.WalkError]"
    ),
    "typing.Iterator[_native.types.WalkEntry | _native.types.WalkError]",
    (
        "def (root_fd: int, requests: typing.Sequence[tuple[bytes, int]], *, jobs: int =, "
        "matcher: _native.interface.ContentMatcher | None =, capture: typing.Iterable[int] =, "
        "max_hits: int =, window_before: int =, window_after: int =, window_file_limit: int =, "
        "content_limit: int =, cpu_budget: _native.throttle.CpuBudget | None =, "
        "extents: _native.types.Extents | None =) -> list[_native.types.HashResult]"
    ),
    "list[_native.types.HashResult]",
    "int",
    "_native.interface.ContentMatcher",
    "tuple[list[tuple[int, int]], int]",
    "_native.types.Prefetching",
    "tuple[int, int]",
    "tuple[str, bytes, int, int, int, int, int, str]",
    "dict[str, str]",
    "tuple[list[tuple[int, int]], bool, int]",
    "def (path: str | bytes, *, threads: int =)",
    "dict[str, tuple[_native.interface.WalkerModule, _native.interface.HasherModule]]",
    "dict[str, _native.interface.UntarModule]",
    "tuple[pkgdb.reader.Reader, ...]",
    "pkgdb.records.PackageDB",
    "bool",
    "str",
    "tuple[bytes, ...]",
    "pkgdb.dpkg.DpkgDB",
    "pkgdb.rpm.RpmDB",
    "pkgdb.records.PackageDB",
]

# A line of the packages that calls into a seam: the native entry points, the tar parsers bound
# from `_native.untar`, and the pkgdb readers (through READERS or a reader module).
SEAM_CALL = re.compile(
    r"_native\.(walk|hash_files|default_jobs|Matcher|start_prefetch|untar|remove_tree)\b"
    r"|\buntar\.parse_|\bparse_(header|pax|sparse)\("
    r"|\breader\.(read|present|MANAGER|DATABASE_DIRS)\b|\b(dpkg|rpm|apk)\.read\(|\bREADERS\b"
)
_LOCATED = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): (?P<level>error|note): (?P<text>.*)$")


def _mypy(cwd: Path, cache: Path, *targets: str) -> tuple[int, list[re.Match[str]]]:
    """Run mypy strict with --disallow-any-expr (the config's strict flags, its own cache)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--strict",
            "--warn-return-any",
            "--disallow-any-expr",
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            "--show-absolute-path",
            *targets,
        ],
        cwd=cwd,
        env=dict(os.environ, MYPYPATH=str(cwd)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr or done.stdout
    located = [m for m in map(_LOCATED.match, done.stdout.splitlines()) if m]
    return done.returncode, located


def _revealed(located: list[re.Match[str]], path: Path) -> tuple[list[str], list[str]]:
    """(revealed types, other messages) mypy gave for `path`."""
    types: list[str] = []
    others: list[str] = []
    for match in located:
        if Path(match["path"]) != path:
            continue
        found = re.fullmatch(r'Revealed type is "(.*)"', match["text"])
        if found:
            types.append(found[1].replace("builtins.", ""))  # older mypy spells it out
        else:
            others.append(f"{match['line']}: {match['text']}")
    return types, others


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[re.Match[str]]]:
    """One mypy run over the snippet and the three packages (cache in tmp: a cold run, ~5 s)."""
    work = tmp_path_factory.mktemp("seams")
    snippet = work / "seams_snippet.py"
    snippet.write_text(SNIPPET)
    packages = (str(REPO / package) for package in ("_native", "pkgdb", "scanner"))
    _code, located = _mypy(REPO, work / "cache", str(snippet), *packages)
    return snippet, located


def test_every_seam_reveals_a_concrete_type(checked: tuple[Path, list[re.Match[str]]]) -> None:
    snippet, located = checked
    types, others = _revealed(located, snippet)
    assert others == []  # no Any expression, no Any returned, no error at all
    assert [t for t in types if "Any" in t] == []
    assert types == EXPECTED


def test_no_caller_of_a_seam_sees_any(checked: tuple[Path, list[re.Match[str]]]) -> None:
    """--disallow-any-expr over scanner/, pkgdb/ and _native/: none of its complaints (there are
    others, JSON and YAML are Any) is on a line that calls a seam."""
    _snippet, located = checked
    calls = [
        f"{path.relative_to(REPO)}:{number}"
        for package in ("scanner", "pkgdb")
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SEAM_CALL.search(line)
    ]
    assert len(calls) >= 15, calls  # the pattern still finds the callers it is meant to
    on_seams = [
        f"{Path(m['path']).relative_to(REPO)}:{m['line']}: {m['text']}"
        for m in located
        if m["level"] == "error"
        and Path(m["path"]).is_relative_to(REPO)
        and SEAM_CALL.search(Path(m["path"]).read_text().splitlines()[int(m["line"]) - 1])
    ]
    assert on_seams == []


def test_the_check_fails_on_an_any_seam(tmp_path: Path) -> None:
    """The check has teeth: the selector as it was (modules typed ModuleType) gives Any."""
    package = tmp_path / "oldnative"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from types import ModuleType\n"
        "from . import twin\n"
        "walker: ModuleType = twin\n"
        "walk = walker.walk\n"
    )
    (package / "twin.py").write_text("def walk(root: bytes) -> list[bytes]:\n    return [root]\n")
    snippet = tmp_path / "use.py"
    snippet.write_text(
        "import oldnative\n"
        "reveal_type(oldnative.walk(b'/'))\n"
        "def paths() -> list[bytes]:\n"
        "    return oldnative.walk(b'/')\n"
    )
    code, located = _mypy(tmp_path, tmp_path / "cache", str(snippet))
    types, others = _revealed(located, snippet)
    assert code == 1
    assert types == ["Any"]
    assert any("Returning Any from function declared to return" in o for o in others)
    assert any('Expression has type "Any"' in o for o in others)
