"""hash_files(extents=...), on both implementations: a sparse file read in place from its extent."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import xxhash

import _native
from _native import Digest, Extents, HashStatus

Impl = tuple[ModuleType, ModuleType]
EVERY = Digest.MD5 | Digest.SHA1 | Digest.SHA256 | Digest.XXH3


@dataclass(frozen=True)
class Placed:
    root: Path
    root_fd: int
    source_fd: int
    data: dict[bytes, bytes]  # path -> the bytes its extent holds
    extents: Extents


def _sparse(root: Path, name: str, size: int) -> os.stat_result:
    fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    try:
        os.ftruncate(fd, size)
        return os.fstat(fd)
    finally:
        os.close(fd)


@pytest.fixture
def placed(tmp_path: Path) -> Iterator[Placed]:
    """A root of sparse files whose bytes lie, shuffled, in one `archive` file outside it
    (sizes around the hasher's buffer and lane sizes), and one ordinary file."""
    root = tmp_path / "root"
    root.mkdir()
    sizes = {b"one": 1, b"small": 100, b"lane": 64 * 1024 + 7, b"big": 3 * 1024 * 1024 + 1}
    archive = bytearray(os.urandom(512))
    data, by_inode = {}, {}
    for name, size in sizes.items():
        content = os.urandom(size)
        st = _sparse(root, os.fsdecode(name), size)
        by_inode[st.st_ino] = (len(archive), size)
        data[name] = content
        archive += content + os.urandom(1000)  # bytes after each extent must never be read
    (root / "plain").write_bytes(b"ordinary file\n")
    data[b"plain"] = b"ordinary file\n"
    (tmp_path / "archive").write_bytes(archive)
    source_fd = os.open(tmp_path / "archive", os.O_RDONLY)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    extents = Extents(
        os.stat(root).st_dev,
        {ino: (source_fd, offset, length) for ino, (offset, length) in by_inode.items()},
    )
    try:
        yield Placed(root, root_fd, source_fd, data, extents)
    finally:
        os.close(root_fd)
        os.close(source_fd)


def _check(result: _native.HashResult, content: bytes, flags: int) -> None:
    assert result.status is HashStatus.OK, result
    assert result.size == len(content)
    if flags & Digest.MD5:
        assert result.md5 == hashlib.md5(content).digest()
    if flags & Digest.SHA1:
        assert result.sha1 == hashlib.sha1(content).digest()
    if flags & Digest.SHA256:
        assert result.sha256 == hashlib.sha256(content).digest()
    if flags & Digest.XXH3:
        assert result.xxh3 == xxhash.xxh3_128(content).digest()
    assert result.head == content[:4]


@pytest.mark.parametrize("flags", [Digest.MD5, Digest.MD5 | Digest.XXH3, Digest.SHA256, EVERY])
def test_placed_files_hash_as_their_extent(impl: Impl, placed: Placed, flags: int) -> None:
    """MD5 alone goes through the multi-buffer lanes, the rest through the one-pass path."""
    _, hasher = impl
    names = sorted(placed.data)
    results = hasher.hash_files(
        placed.root_fd, [(name, flags) for name in names], extents=placed.extents, jobs=2
    )
    for name, result in zip(names, results, strict=True):
        _check(result, placed.data[name], flags)
    assert os.lseek(placed.source_fd, 0, os.SEEK_CUR) == 0  # the caller's offset is untouched


def test_content_search_reads_the_extent(impl: Impl, placed: Placed) -> None:
    _, hasher = impl
    marker = placed.data[b"big"][2_000_000:2_000_016]
    matcher = _native.matchers()["python" if hasher is _native.hasher_py else "cython"]([marker])
    (result,) = hasher.hash_files(
        placed.root_fd, [(b"big", Digest.CONTENT)], matcher=matcher, extents=placed.extents
    )
    assert result.scanned and result.hits == ((0, 2_000_000),)


def test_without_extents_a_sparse_file_is_its_zeros(impl: Impl, placed: Placed) -> None:
    _, hasher = impl
    (result,) = hasher.hash_files(placed.root_fd, [(b"lane", Digest.SHA256)])
    assert result.sha256 == hashlib.sha256(bytes(len(placed.data[b"lane"]))).digest()


def test_another_size_device_or_inode_reads_the_path(impl: Impl, placed: Placed) -> None:
    """An extent is trusted only for the very file it was recorded for."""
    _, hasher = impl
    zeros = hashlib.sha256(bytes(len(placed.data[b"lane"]))).digest()
    lane = os.lstat(placed.root / "lane")
    fd, offset, length = placed.extents.by_inode[lane.st_ino]
    for extents in (
        Extents(placed.extents.dev, {lane.st_ino: (fd, offset, length + 1)}),
        Extents(placed.extents.dev + 1, dict(placed.extents.by_inode)),
        Extents(placed.extents.dev, {lane.st_ino + 10_000_000: (fd, offset, length)}),
    ):
        (result,) = hasher.hash_files(placed.root_fd, [(b"lane", Digest.SHA256)], extents=extents)
        assert result.sha256 == zeros


def test_an_extent_past_the_end_of_its_file_is_an_error(
    impl: Impl, placed: Placed, tmp_path: Path
) -> None:
    """A short source (a truncated archive) fails the file: never a digest of fewer bytes."""
    _, hasher = impl
    short = tmp_path / "short"
    short.write_bytes(b"x" * 10)
    big = os.lstat(placed.root / "big")
    with open(short, "rb") as handle:
        extents = Extents(placed.extents.dev, {big.st_ino: (handle.fileno(), 0, big.st_size)})
        (result,) = hasher.hash_files(placed.root_fd, [(b"big", Digest.MD5)], extents=extents)
    assert result.status is HashStatus.ERROR


def test_extents_must_be_an_extents(impl: Impl, placed: Placed) -> None:
    _, hasher = impl
    with pytest.raises(TypeError):
        hasher.hash_files(placed.root_fd, [(b"one", Digest.MD5)], extents={1: (0, 0, 1)})


@pytest.mark.native_only
def test_implementations_agree_on_placed_files(placed: Placed) -> None:
    names = sorted(placed.data)
    runs = [
        hasher.hash_files(placed.root_fd, [(n, EVERY) for n in names], extents=placed.extents)
        for _, hasher in _native.implementations().values()
    ]
    assert runs[0] == runs[1]
