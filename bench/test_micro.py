"""Micro-benchmarks of the three stages of check 448 on a real root: walk, hash, read the dpkg DB.

How to run it and what each row measures: bench/README.md, "Micro-benchmarks".
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from _native import Digest, HashStatus
from pkgdb import RootFS, dpkg

# A whole-root pass takes 0.1-2 s: a few rounds give a stable median without a long run.
ROUNDS = 5


def _pedantic(benchmark: Any, function: Any, *args: Any, rounds: int = ROUNDS) -> Any:
    return benchmark.pedantic(function, args=args, rounds=rounds, iterations=1, warmup_rounds=1)


def test_walker(benchmark: Any, impl: tuple[ModuleType, ModuleType], bench_root: Path) -> None:
    """Every entry of the root, lstat'ed, errors as data (what a walk-based check would pay)."""
    walker, _hasher = impl

    def walk() -> int:
        return sum(1 for _ in walker.walk(os.fsencode(bench_root), one_file_system=True))

    entries = _pedantic(benchmark, walk)
    benchmark.extra_info["entries"] = entries
    assert entries > 1000


def _hash_all(hasher: ModuleType, root: Path, requests: list[tuple[bytes, int]], jobs: int) -> int:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        results = hasher.hash_files(root_fd, requests, jobs=jobs)
    finally:
        os.close(root_fd)
    return sum(result.size for result in results if result.status is HashStatus.OK)


def test_hasher(
    benchmark: Any,
    impl: tuple[ModuleType, ModuleType],
    bench_root: Path,
    package_paths: list[bytes],
) -> None:
    """md5 of every dpkg-listed path (resolved via RootFS.resolve), default jobs: check 448's I/O."""
    _walker, hasher = impl
    requests = [(path, int(Digest.MD5)) for path in package_paths]
    hashed = _pedantic(benchmark, _hash_all, hasher, bench_root, requests, 0)
    benchmark.extra_info["files"] = len(requests)
    benchmark.extra_info["bytes"] = hashed
    assert hashed > 0


@pytest.mark.parametrize("jobs", [1, 2, 4, 8, 16], ids=lambda jobs: f"j{jobs}")
def test_hasher_jobs(
    benchmark: Any,
    impl: tuple[ModuleType, ModuleType],
    bench_root: Path,
    package_paths: list[bytes],
    jobs: int,
) -> None:
    """The same md5 pass with a fixed thread count: where extra threads stop paying."""
    _walker, hasher = impl
    requests = [(path, int(Digest.MD5)) for path in package_paths]
    _pedantic(benchmark, _hash_all, hasher, bench_root, requests, jobs, rounds=3)


def test_dpkg_reader(benchmark: Any, bench_root: Path) -> None:
    """status + every md5sums file + conffiles + filters, parsed into records.

    pkgdb is pure Python with no native twin, so this one is not parametrized over c/py.
    """

    def read() -> int:
        with RootFS(os.fsencode(bench_root)) as rootfs:
            return len(dpkg.read(rootfs).files)

    files = _pedantic(benchmark, read)
    benchmark.extra_info["files"] = files
    assert files > 1000
