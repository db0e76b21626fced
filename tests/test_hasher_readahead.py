"""The Cython hasher's read-ahead thread is only a hint: results are the same with it and without."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# Shared tree builder and guard (pytest puts tests/ on sys.path).
from trees import make_tree, no_block  # noqa: F401 - autouse fixture

from _native import Digest, HashStatus, implementations

pytestmark = pytest.mark.native_only

ALL = Digest.MD5 | Digest.SHA1 | Digest.SHA256


@pytest.fixture
def native() -> Iterator[ModuleType]:
    """The Cython hasher, its read-ahead hooks restored afterwards."""
    hasher = implementations()["cython"][1]
    readahead = hasher._use_readahead(True)
    probe = hasher._readahead_probe(True)
    simd = hasher._use_simd(True)
    yield hasher
    hasher._use_readahead(readahead)
    hasher._readahead_probe(probe)
    hasher._use_simd(simd)
    hasher._readahead_hold(-1)


def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (written back first: dirty pages stay)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int, list[tuple[bytes, int]]]]:
    """make_tree() plus 600 small files in 12 directories, 3 large ones (>= 1 MiB: the lanes'
    large-first queue) and a hard link; requests for every path, MD5-only and mixed."""
    make_tree(tmp_path)
    requests: list[tuple[bytes, int]] = []
    for d in range(12):
        (tmp_path / f"many/d{d}").mkdir(parents=True)
        for f in range(50):
            path = f"many/d{d}/f{f}"
            (tmp_path / path).write_bytes(os.urandom((d * 50 + f) * 37 % 9000))
            requests.append((path.encode(), ALL if f % 7 == 0 else Digest.MD5))
    for n, size in enumerate((1 << 20, 3 << 20, (5 << 20) + 77)):
        (tmp_path / f"big{n}").write_bytes(os.urandom(size))
        requests.append((f"big{n}".encode(), Digest.MD5))
    os.link(tmp_path / "big1", tmp_path / "many/big1.link")
    requests.append((b"many/big1.link", Digest.SHA256))
    for path in (
        b"a/file",
        b"a/file.hardlink",
        b"a/empty",
        b"a/b/c/deep.txt",
        b"caf\xe9/na\xefve \n name",
    ):
        requests.append((path, Digest.MD5))
    for path in (b"fifo", b"null", b"dangling", b"outside/hostname", b"a/b/up/file", b"gone", b"a"):
        requests.append((path, ALL))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd, requests
    os.close(fd)


def run(
    hasher: ModuleType, fd: int, requests: list[tuple[bytes, int]], readahead: bool, jobs: int
) -> list:
    hasher._use_readahead(readahead)
    return hasher.hash_files(fd, requests, jobs=jobs)


@pytest.mark.parametrize("simd", [True, False], ids=["lanes", "openssl"])
@pytest.mark.parametrize("jobs", [1, 2, 8])
def test_same_results_with_and_without_readahead(
    native: ModuleType, tree, simd: bool, jobs: int
) -> None:
    _root, fd, requests = tree
    native._use_simd(simd)
    native._readahead_probe(False)  # advise every file, cached or not
    without = run(native, fd, requests, False, jobs)
    assert native._readahead_stats() == (0, 0)
    # The prefetch runs whole before any read: with 8 workers on a loaded machine they could
    # otherwise claim every file before the prefetcher advised one (advised 0, a random red).
    native._readahead_hold(0)
    with_readahead = run(native, fd, requests, True, jobs)
    assert with_readahead == without
    assert native._readahead_stats()[1] > 0
    assert sum(r.status is HashStatus.OK for r in without) == 600 + 3 + 1 + 5
    # The twin is the referee of both.
    assert implementations()["python"][1].hash_files(fd, requests, jobs=jobs) == without


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def uncached(path: Path) -> bool:
    """Whether the file's first page is out of the page cache, asked of mincore(2), which (unlike
    a read, even an RWF_NOWAIT one) changes nothing."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        address = _libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vector = ctypes.create_string_buffer(1)
            if _libc.mincore(address, mmap.PAGESIZE, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return not vector.raw[0] & 1
        finally:
            _libc.munmap(address, mmap.PAGESIZE)
    finally:
        os.close(fd)


def test_cold_files_are_advised_and_warm_ones_only_probed(native: ModuleType, tree) -> None:
    """The prefetcher decides from the page cache alone, so the test fixes both: the cache state
    is checked with mincore(2) before each run, and _readahead_hold makes the prefetcher go
    through every file before any worker reads (else, warm, the workers may claim every file
    before the prefetch thread is first scheduled, and it probes nothing: the flake this once
    was)."""
    root, fd, requests = tree
    # The regular, non-empty files the hasher reads: none through a symlink (outside/ leads out).
    paths = [root / os.fsdecode(path) for path, _ in requests]
    files = [p for p in paths if p.resolve() == p and p.is_file() and p.stat().st_size > 0]
    evict(files)
    assert all(uncached(path) for path in files), "eviction did not take: the test cannot run"
    native._readahead_hold(0)
    cold = run(native, fd, requests, True, 2)
    probed, advised = native._readahead_stats()
    assert advised > 0 and probed >= advised
    assert [path for path in files if uncached(path)] == []
    warm = run(native, fd, requests, True, 2)
    probed, advised = native._readahead_stats()
    assert advised == 0 and 0 < probed < 600  # found cached: then one file in 32 is sampled
    native._readahead_hold(-1)
    assert warm == cold == run(native, fd, requests, False, 2)


@pytest.mark.parametrize("simd", [True, False], ids=["lanes", "openssl"])
def test_file_changed_between_prefetch_and_read(native: ModuleType, tree, simd: bool) -> None:
    """Removed after its prefetch: MISSING; replaced: ESTALE, as without read-ahead."""
    root, fd, requests = tree
    native._use_simd(simd)
    native._readahead_probe(False)
    native._readahead_hold(1.5)  # the prefetch runs to completion, then 1.5 s before any read

    def change() -> None:
        time.sleep(0.4)  # phase 1 (lstat) and the prefetch of ~600 files take milliseconds
        (root / "many/d3/f1").unlink()
        (root / "big2").unlink()
        (root / "new").write_bytes(b"replacement")
        os.rename(root / "new", root / "many/d5/f2")

    changer = threading.Thread(target=change)
    changer.start()
    try:
        results = run(native, fd, requests, True, 2)
    finally:
        changer.join()
    assert native._readahead_stats()[1] >= 600
    by_path = {r.path: r for r in results}
    assert (by_path[b"many/d3/f1"].status, by_path[b"many/d3/f1"].errno) == (
        HashStatus.MISSING,
        errno.ENOENT,
    )
    assert (by_path[b"big2"].status, by_path[b"big2"].errno) == (HashStatus.MISSING, errno.ENOENT)
    assert (by_path[b"many/d5/f2"].status, by_path[b"many/d5/f2"].errno) == (
        HashStatus.ERROR,
        errno.ESTALE,
    )
    assert by_path[b"many/d5/f2"].md5 is None
    native._readahead_hold(-1)
    untouched = [(p, f) for p, f in requests if p not in (b"many/d3/f1", b"big2", b"many/d5/f2")]
    expected = {r.path: r for r in run(native, fd, untouched, False, 2)}
    assert all(by_path[p] == expected[p] for p, _ in untouched)


@pytest.mark.parametrize("jobs", [1, 2, 8])
def test_same_results_on_a_real_tree(native: ModuleType, jobs: int) -> None:
    walker = implementations()["python"][0]
    requests = [
        (b"usr/share/" + item.path, ALL if index % 3 == 0 else Digest.MD5)
        for index, item in enumerate(walker.walk("/usr/share"))
        if index % 5 == 0
    ][:4000]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        native._readahead_probe(False)
        with_readahead = run(native, fd, requests, True, jobs)
        without = run(native, fd, requests, False, jobs)
    finally:
        os.close(fd)
    assert with_readahead == without
    assert sum(r.status is HashStatus.OK for r in without) > 100
