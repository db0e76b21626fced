"""Benchmark fixtures: the repository on sys.path, the root to measure, both native implementations."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # `pytest bench/` puts bench/ on sys.path, not the checkout that holds _native/ and pkgdb/.
    sys.path.insert(0, str(REPO))

import roots  # after the path above: _native and pkgdb live in the checkout

import _native

IMPLEMENTATIONS = _native.implementations()


@pytest.fixture(
    params=sorted(IMPLEMENTATIONS), ids=lambda name: {"cython": "c", "python": "py"}[name]
)
def impl(request: pytest.FixtureRequest) -> tuple[ModuleType, ModuleType]:
    """(walker, hasher) of each loaded implementation, as in tests/conftest.py."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture(scope="session")
def bench_root() -> Path:
    """`bookworm-apps` if built (`python3 bench/roots.py`), else `bookworm-minbase`, else skip."""
    root = roots.bench_root()
    if root is None:
        pytest.skip(
            f"no cached debootstrap root in {roots.CACHE}: run `python3 bench/roots.py` "
            "(or the tests marked debootstrap) first"
        )
    return root


@pytest.fixture(scope="session")
def package_paths(bench_root: Path) -> list[bytes]:
    """Every path dpkg lists for the root, resolved inside it: what check 448 hashes."""
    return roots.package_paths(bench_root)
