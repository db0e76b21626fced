"""The hasher, on both implementations: digests against hashlib, statuses, hard links, safety."""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# Shared tree builder, guard and privilege drop (pytest puts tests/ on sys.path).
from trees import as_nobody, make_tree, no_block  # noqa: F401 - autouse fixture

from _native import Digest, FileKind, HashResult, HashStatus, implementations

Impl = tuple[ModuleType, ModuleType]
ALL = Digest.MD5 | Digest.SHA1 | Digest.SHA256


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """make_tree() plus a 5 MB random file, and an O_DIRECTORY fd on its root."""
    make_tree(tmp_path)
    (tmp_path / "a/large").write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def expected(root: Path, path: bytes, flags: int) -> HashResult:
    """What hashing `path` must give, computed with os.lstat and hashlib only."""
    full = bytes(root) + b"/" + path
    st = os.lstat(full)
    data = Path(os.fsdecode(full)).read_bytes()
    return HashResult(
        path,
        HashStatus.OK,
        0,
        FileKind.REGULAR,
        st.st_mode,
        st.st_size,
        st.st_dev,
        st.st_ino,
        st.st_mtime_ns,
        st.st_ctime_ns,
        hashlib.md5(data).digest() if flags & Digest.MD5 else None,
        hashlib.sha1(data).digest() if flags & Digest.SHA1 else None,
        hashlib.sha256(data).digest() if flags & Digest.SHA256 else None,
        None,
        data[:4] if flags else None,  # the head (ELF magic sniffing) comes with any digest
    )


REGULAR = [b"a/file", b"a/empty", b"a/large", b"a/b/c/deep.txt", b"caf\xe9/na\xefve \n name"]


@pytest.mark.parametrize("flags", range(8), ids=lambda flags: str(Digest(flags)))
def test_digests_match_hashlib_for_every_flag_combination(
    impl: Impl, tree: tuple[Path, int], flags: int
) -> None:
    _, hasher = impl
    root, fd = tree
    results = hasher.hash_files(fd, [(path, flags) for path in REGULAR])
    assert results == [expected(root, path, flags) for path in REGULAR]


def test_empty_file_digests(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    [result] = hasher.hash_files(tree[1], [(b"a/empty", ALL)])
    assert result.md5 is not None and result.md5.hex() == "d41d8cd98f00b204e9800998ecf8427e"
    assert result.sha256 == hashlib.sha256(b"").digest()


def test_mixed_flags_per_path_and_jobs(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    root, fd = tree
    requests = [(path, flags) for path, flags in zip(itertools.cycle(REGULAR), range(1, 8))]
    want = [expected(root, path, flags) for path, flags in requests]
    for jobs in (0, 1, 3, 32):
        assert hasher.hash_files(fd, requests, jobs=jobs) == want


def test_non_regular_files_are_never_opened(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    root, fd = tree
    results = hasher.hash_files(fd, [(b"fifo", ALL), (b"null", ALL), (b"a/b", ALL)])
    assert [(r.status, r.kind) for r in results] == [
        (HashStatus.NOT_REGULAR, FileKind.FIFO),
        (HashStatus.NOT_REGULAR, FileKind.CHAR_DEVICE),
        (HashStatus.NOT_REGULAR, FileKind.DIRECTORY),
    ]
    assert results[0].mode == os.lstat(root / "fifo").st_mode
    assert all(r.md5 is None and r.errno == 0 for r in results)


@pytest.mark.parametrize("name", ["loop1", "dangling", "outside", "a/b/up"])
def test_symlinks_report_their_target(impl: Impl, tree: tuple[Path, int], name: str) -> None:
    _, hasher = impl
    root, fd = tree
    [result] = hasher.hash_files(fd, [(name.encode(), ALL)])
    st = os.lstat(root / name)
    assert result == HashResult(
        name.encode(),
        HashStatus.SYMLINK,
        0,
        FileKind.SYMLINK,
        st.st_mode,
        st.st_size,
        st.st_dev,
        st.st_ino,
        st.st_mtime_ns,
        st.st_ctime_ns,
        link_target=os.readlink(bytes(root / name)),
    )


def test_long_symlink_target(impl: Impl, tmp_path: Path) -> None:
    _, hasher = impl
    target = b"/".join([b"x" * 200] * 15)
    os.symlink(target, bytes(tmp_path) + b"/long")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert hasher.hash_files(fd, [(b"long", 0)])[0].link_target == target
    finally:
        os.close(fd)


def test_symlinked_parent_is_refused(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    # "outside" -> /etc and "a/b/up" -> ../../a: both would resolve, neither may be followed.
    results = hasher.hash_files(
        tree[1], [(b"outside/hostname", ALL), (b"a/b/up/file", ALL), (b"loop1/x", ALL)]
    )
    assert [(r.status, r.errno, r.kind) for r in results] == [
        (HashStatus.ERROR, errno.ELOOP, None)
    ] * 3


def test_missing_paths(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    results = hasher.hash_files(tree[1], [(b"gone", ALL), (b"a/file/below", ALL), (b"nodir/x", 0)])
    assert [(r.status, r.errno) for r in results] == [
        (HashStatus.MISSING, errno.ENOENT),
        (HashStatus.MISSING, errno.ENOTDIR),
        (HashStatus.MISSING, errno.ENOENT),
    ]
    assert all(r.kind is None and r.md5 is None for r in results)


def test_no_digest_still_stats(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    root, fd = tree
    [result] = hasher.hash_files(fd, [(b"a/large", Digest.NONE)])
    assert result == expected(root, b"a/large", 0)


def read_bytes_so_far() -> int:
    """Bytes this process has read with read(2), all threads (Linux /proc/self/io rchar)."""
    with open("/proc/self/io", "rb") as handle:
        return int(dict(line.split(b": ") for line in handle.read().splitlines())[b"rchar"])


def test_each_file_is_read_once(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    root, fd = tree
    os.link(root / "a/large", root / "large.link")
    size = (root / "a/large").stat().st_size
    requests = [
        (b"a/large", Digest.MD5),
        (b"large.link", Digest.SHA1 | Digest.SHA256),
        (b"a/large", Digest.SHA1),
    ]
    before = read_bytes_so_far()
    results = hasher.hash_files(fd, requests)
    read = read_bytes_so_far() - before
    assert size <= read < size + 256 * 1024, "a hard-linked inode must be read once for all digests"
    want = expected(root, b"a/large", ALL)
    assert [(r.md5, r.sha1, r.sha256) for r in results] == [
        (want.md5, None, None),
        (None, want.sha1, want.sha256),
        (None, want.sha1, None),
    ]
    assert results[1].path == b"large.link" and results[1].ino == want.ino


def test_hard_links_give_what_separate_hashing_gives(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    fd = tree[1]
    together = hasher.hash_files(fd, [(b"a/file", ALL), (b"a/file.hardlink", Digest.MD5)])
    apart = hasher.hash_files(fd, [(b"a/file", ALL)]) + hasher.hash_files(
        fd, [(b"a/file.hardlink", Digest.MD5)]
    )
    assert together == apart
    assert together[0].md5 == together[1].md5 is not None


def test_large_batch(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    root, fd = tree
    small = [p for p in REGULAR if p != b"a/large"] + [b"gone", b"fifo", b"dangling"]
    requests = [(path, Digest.MD5) for path in small] * 12_500  # 100k requests
    results = hasher.hash_files(fd, requests)
    assert len(results) == len(requests)
    assert results[: len(small)] * 12_500 == results
    assert results[0] == expected(root, small[0], Digest.MD5)


@pytest.mark.parametrize(
    "path, flags, error",
    [
        (b"", 1, ValueError),
        (b"/etc/passwd", 1, ValueError),
        (b"a/../a/file", 1, ValueError),
        (b"./a", 1, ValueError),
        (b"a//file", 1, ValueError),
        (b"a/", 1, ValueError),
        (b"a\0b", 1, ValueError),
        (b"a/file", 8, ValueError),
        (b"a/file", -1, ValueError),
        ("a/file", 1, TypeError),
    ],
)
def test_bad_requests_raise_before_any_io(
    impl: Impl, tree: tuple[Path, int], path: object, flags: int, error: type
) -> None:
    _, hasher = impl
    with pytest.raises(error):
        hasher.hash_files(tree[1], [(b"a/file", 1), (path, flags)])


def test_empty_request_list(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    assert hasher.hash_files(tree[1], []) == []


def test_root_is_not_modified(impl: Impl, tree: tuple[Path, int]) -> None:
    _, hasher = impl
    root, fd = tree
    before = os.stat(root / "a/large")
    hasher.hash_files(fd, [(b"a/large", ALL)])
    after = os.stat(root / "a/large")
    assert (after.st_atime_ns, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_atime_ns,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )


@pytest.mark.parametrize("name", sorted(implementations()))
def test_unreadable_file_and_directory_as_nobody(name: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534 (root itself is never denied)")
    root = Path(tempfile.mkdtemp(prefix="scan-root-hash-"))
    try:
        root.chmod(0o755)
        (root / "open").write_bytes(b"readable")
        (root / "open").chmod(0o644)
        (root / "secret").write_bytes(b"unreadable")
        (root / "secret").chmod(0o000)
        (root / "locked").mkdir(mode=0o755)
        (root / "locked/inside").write_bytes(b"")
        (root / "locked").chmod(0o000)
        hasher = implementations()[name][1]
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            results = as_nobody(
                lambda: hasher.hash_files(
                    fd, [(b"open", ALL), (b"secret", ALL), (b"locked/inside", ALL)]
                )
            )
        finally:
            os.close(fd)
        assert isinstance(results, list)
        assert results[0] == expected(root, b"open", ALL)
        assert (results[1].status, results[1].errno, results[1].kind) == (
            HashStatus.ERROR,
            errno.EACCES,
            FileKind.REGULAR,
        )
        assert results[1].size == len(b"unreadable") and results[1].md5 is None
        assert (results[2].status, results[2].errno, results[2].kind) == (
            HashStatus.ERROR,
            errno.EACCES,
            None,
        )
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)


@pytest.mark.native_only
def test_implementations_agree_on_a_real_tree() -> None:
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        walker = implementations()["python"][0]
        requests = [
            (b"usr/share/" + item.path, ALL if index % 3 else Digest.MD5)
            for index, item in enumerate(walker.walk("/usr/share"))
            if index % 7 == 0
        ][:3000]
        runs = [hasher.hash_files(fd, requests) for _, hasher in implementations().values()]
    finally:
        os.close(fd)
    assert runs[0] == runs[1]
    assert sum(result.status is HashStatus.OK for result in runs[0]) > 100
    assert all(stat.S_ISREG(r.mode) for r in runs[0] if r.status is HashStatus.OK)


@pytest.mark.native_only
def test_fallback_without_openat2_gives_the_same_results(tree: tuple[Path, int]) -> None:
    walker, hasher = implementations()["cython"]
    root, fd = tree
    requests = [(path, ALL) for path in REGULAR] + [
        (b"outside/hostname", ALL),
        (b"a/b/up/file", ALL),
        (b"a/file/below", ALL),
        (b"gone/x", ALL),
        (b"dangling", ALL),
        (b"a/b", ALL),
    ]
    with_openat2 = hasher.hash_files(fd, requests), list(walker.walk(str(root)))
    hasher._use_openat2(False)
    walker._use_openat2(False)
    try:
        without = hasher.hash_files(fd, requests), list(walker.walk(str(root)))
    finally:
        hasher._use_openat2(True)
        walker._use_openat2(True)
    assert without == with_openat2
    assert [(r.status, r.errno) for r in without[0][-6:-2]] == [
        (HashStatus.ERROR, errno.ELOOP),
        (HashStatus.ERROR, errno.ELOOP),
        (HashStatus.MISSING, errno.ENOTDIR),
        (HashStatus.MISSING, errno.ENOENT),
    ]
