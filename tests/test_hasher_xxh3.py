"""Digest.XXH3 on both hashers: xxh3-128 of the content, from the same single read as the rest."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import xxhash
from trees import no_block  # noqa: F401 - autouse fixture

import _native
from _native import Digest, HashStatus

Impl = tuple[ModuleType, ModuleType]
XXH3 = int(Digest.XXH3)
SIZES = {
    "empty": 0,
    "small": 3,
    "one-block": 240,  # xxh3's short-input paths end at 240 bytes
    "buffer": 128 * 1024,  # exactly one read of either hasher
    "multi-chunk": 5 * 128 * 1024 + 77,
    "big": 9 * 1024 * 1024 + 1,
}


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, int, dict[bytes, bytes]]]:
    contents = {name.encode(): os.urandom(size) for name, size in SIZES.items()}
    for name, data in contents.items():
        (tmp_path / name.decode()).write_bytes(data)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd, contents
    os.close(fd)


@pytest.mark.parametrize("name", list(SIZES))
def test_xxh3_equals_xxhash(
    impl: Impl, files: tuple[Path, int, dict[bytes, bytes]], name: str
) -> None:
    _, hasher = impl
    _, fd, contents = files
    [result] = hasher.hash_files(fd, [(name.encode(), XXH3)])
    assert result.status is HashStatus.OK
    assert result.xxh3 == xxhash.xxh3_128(contents[name.encode()]).digest()
    assert result.md5 is None and result.sha1 is None and result.sha256 is None


@pytest.mark.parametrize("extra", [0, Digest.MD5, Digest.MD5 | Digest.SHA1 | Digest.SHA256])
def test_xxh3_with_other_digests_in_one_request(
    impl: Impl, files: tuple[Path, int, dict[bytes, bytes]], extra: int
) -> None:
    _, hasher = impl
    _, fd, contents = files
    requests = [(path, XXH3 | int(extra)) for path in contents]
    for (path, _flags), result in zip(requests, hasher.hash_files(fd, requests), strict=True):
        data = contents[path]
        assert result.xxh3 == xxhash.xxh3_128(data).digest()
        assert result.md5 == (hashlib.md5(data).digest() if extra & Digest.MD5 else None)
        assert result.sha256 == (hashlib.sha256(data).digest() if extra & Digest.SHA256 else None)


def test_xxh3_only_for_the_paths_that_ask(
    impl: Impl, files: tuple[Path, int, dict[bytes, bytes]]
) -> None:
    """Hard links share one read; only the path that asked gets the digest back."""
    _, hasher = impl
    root, fd, contents = files
    os.link(root / "small", root / "small-link")
    with_xxh3, without = hasher.hash_files(fd, [(b"small", XXH3), (b"small-link", int(Digest.MD5))])
    assert with_xxh3.xxh3 == xxhash.xxh3_128(contents[b"small"]).digest()
    assert with_xxh3.md5 is None
    assert without.xxh3 is None and without.md5 == hashlib.md5(contents[b"small"]).digest()


def test_xxh3_with_content_matching(impl: Impl, tmp_path: Path) -> None:
    _, hasher = impl
    matcher_class = _native.matchers()[
        next(key for key, (_w, h) in _native.implementations().items() if h is hasher)
    ]
    data = b"a" * 200_000 + b"MARKER" + b"b" * 100
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        [result] = hasher.hash_files(
            fd, [(b"f", XXH3 | int(Digest.CONTENT))], matcher=matcher_class([b"MARKER"])
        )
    finally:
        os.close(fd)
    assert result.xxh3 == xxhash.xxh3_128(data).digest()
    assert result.scanned and result.hits == ((0, 200_000),)


@pytest.mark.native_only
def test_xxh3_in_every_md5_lane_kernel(files: tuple[Path, int, dict[bytes, bytes]]) -> None:
    """MD5 + XXH3 files stay in the multi-buffer MD5 lanes: both digests right on each kernel."""
    from _native import _hasher  # type: ignore[attr-defined]

    _, fd, contents = files
    requests = [(path, XXH3 | int(Digest.MD5)) for path in contents] * 3  # more than one round
    previous = _hasher._md5_kernel()
    try:
        for kernel in ["none", *_hasher._md5_kernels()]:
            _hasher._md5_kernel(kernel)
            for (path, _flags), result in zip(
                requests, _hasher.hash_files(fd, requests, jobs=2), strict=True
            ):
                assert result.md5 == hashlib.md5(contents[path]).digest(), kernel
                assert result.xxh3 == xxhash.xxh3_128(contents[path]).digest(), kernel
    finally:
        _hasher._md5_kernel(previous)
