"""Multi-buffer MD5 (the SIMD lanes of the native hasher): digests and heads equal hashlib's.

Every test runs on both implementations where that makes sense (the Python twin must agree);
the ones that switch the native kernel, lane buffer or SIMD on/off are native_only.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from trees import no_block  # noqa: F401 - autouse fixture

from _native import Digest, HashResult, HashStatus, implementations

Impl = tuple[ModuleType, ModuleType]
MD5 = int(Digest.MD5)
NATIVE = implementations().get("cython")
NATIVE_HASHER = NATIVE[1] if NATIVE is not None else None
# The native lane buffer (the Python twin has none: its lengths are just more lengths).
LANE = getattr(NATIVE_HASHER, "LANE_BUFFER_SIZE", 64 * 1024)
KERNELS = ["none"] + (NATIVE_HASHER._md5_kernels() if NATIVE_HASHER is not None else [])


@pytest.fixture
def restore_native() -> Iterator[None]:
    """Put the native kernel and lane buffer back after a test that changed them."""
    if NATIVE_HASHER is None:
        yield
        return
    kernel = NATIVE_HASHER._md5_kernel()
    size = NATIVE_HASHER._lane_buffer_size()
    yield
    NATIVE_HASHER._md5_kernel(kernel)
    NATIVE_HASHER._lane_buffer_size(size)


def data(length: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(length)


def write_files(root: Path, lengths: list[int]) -> list[tuple[bytes, bytes]]:
    """One file per length, in a few directories; [(relative path, content)]."""
    made = []
    for i, length in enumerate(lengths):
        directory = root / f"d{i % 7}"
        directory.mkdir(exist_ok=True)
        content = data(length, i)
        (directory / f"f{i}-{length}").write_bytes(content)
        made.append((f"d{i % 7}/f{i}-{length}".encode(), content))
    return made


def hash_all(
    hasher: ModuleType, root: Path, requests: list[tuple[bytes, int]], jobs: int
) -> list[HashResult]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        results: list[HashResult] = hasher.hash_files(fd, requests, jobs=jobs)
        return results
    finally:
        os.close(fd)


def check(results: list[HashResult], made: list[tuple[bytes, bytes]]) -> None:
    for result, (path, content) in zip(results, made, strict=True):
        assert result.path == path
        assert result.status is HashStatus.OK, result
        assert result.md5 == hashlib.md5(content).digest(), (path, len(content))
        assert result.head == content[:4]
        assert result.size == len(content)
        assert result.sha1 is None and result.sha256 is None


def boundary_lengths(limit: int) -> list[int]:
    """0..300 and, up to `limit`, every length within 9 of a multiple of 64 (55/56 included)."""
    lengths = set(range(301))
    for block in range(64, limit + 1, 64):
        lengths.update(range(block - 9, block + 2))
    return sorted(lengths)


@pytest.mark.parametrize("jobs", [1, 2, 16])
def test_every_length_through_the_padding_boundaries(impl: Impl, tmp_path: Path, jobs: int) -> None:
    _, hasher = impl
    made = write_files(tmp_path, boundary_lengths(2048))
    check(hash_all(hasher, tmp_path, [(path, MD5) for path, _ in made], jobs), made)


@pytest.mark.parametrize("jobs", [1, 2, 16])
def test_lengths_around_the_lane_buffer(impl: Impl, tmp_path: Path, jobs: int) -> None:
    _, hasher = impl
    lengths = [
        n * LANE + delta for n in (1, 2, 3) for delta in (-65, -64, -56, -55, -1, 0, 1, 55, 56, 64)
    ]
    made = write_files(tmp_path, lengths)
    check(hash_all(hasher, tmp_path, [(path, MD5) for path, _ in made], jobs), made)


@pytest.mark.parametrize("jobs", [1, 2, 16])
def test_many_small_and_a_few_large_files_in_one_batch(
    impl: Impl, tmp_path: Path, jobs: int
) -> None:
    # Large files refill their lanes many times while small ones come and go: lanes finish at
    # different rounds, and the large ones are read first (1 MiB and over).
    rng = random.Random(7)
    lengths = [rng.randrange(0, 20000) for _ in range(400)]
    for position, large in ((3, 5 * 1024 * 1024), (150, 5 * 1024 * 1024 + 57), (399, 1024 * 1024)):
        lengths.insert(position, large)
    made = write_files(tmp_path, lengths)
    check(hash_all(impl[1], tmp_path, [(path, MD5) for path, _ in made], jobs), made)


@pytest.mark.parametrize("jobs", [1, 2, 16])
def test_errors_interleaved_with_lanes(impl: Impl, tmp_path: Path, jobs: int) -> None:
    _, hasher = impl
    made = write_files(tmp_path, [i * 97 for i in range(60)])
    os.mkfifo(tmp_path / "fifo")
    os.symlink("d0", tmp_path / "link")
    os.link(tmp_path / made[5][0].decode(), tmp_path / "hardlink")
    requests: list[tuple[bytes, int]] = []
    for i, (path, _) in enumerate(made):
        requests.append((path, MD5))
        extra = [b"missing", b"fifo", b"link", b"d1", b"d3/nope", b"link/x", b"hardlink"][i % 7]
        requests.append((extra, MD5))
    results = hash_all(hasher, tmp_path, requests, jobs)
    check(results[0::2], made)
    statuses = {
        b"missing": HashStatus.MISSING,
        b"d3/nope": HashStatus.MISSING,
        b"fifo": HashStatus.NOT_REGULAR,
        b"d1": HashStatus.NOT_REGULAR,
        b"link": HashStatus.SYMLINK,
        b"link/x": HashStatus.ERROR,  # a symlinked parent: ELOOP, never followed
        b"hardlink": HashStatus.OK,
    }
    for result in results[1::2]:
        assert result.status is statuses[result.path], result
        if result.path == b"hardlink":
            assert result.md5 == hashlib.md5(made[5][1]).digest()
        else:
            assert result.md5 is None and result.head is None


def test_md5_only_and_multi_digest_requests_in_one_batch(impl: Impl, tmp_path: Path) -> None:
    # MD5-only files go through the lanes, the others through the one-pass OpenSSL path.
    _, hasher = impl
    made = write_files(tmp_path, [i * 1000 + 3 for i in range(50)])
    flags = [MD5 if i % 3 else int(Digest.MD5 | Digest.SHA256) for i in range(len(made))]
    results = hash_all(hasher, tmp_path, [(p, f) for (p, _), f in zip(made, flags)], 2)
    for result, (_, content), flag in zip(results, made, flags, strict=True):
        assert result.md5 == hashlib.md5(content).digest()
        assert result.sha256 == (hashlib.sha256(content).digest() if flag != MD5 else None)
        assert result.head == content[:4]


@pytest.mark.native_only
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("lane_buffer", [64, 192, 4096, 64 * 1024])
def test_every_kernel_and_lane_buffer_agree_with_hashlib(
    tmp_path: Path, restore_native: None, kernel: str, lane_buffer: int
) -> None:
    assert NATIVE_HASHER is not None
    NATIVE_HASHER._md5_kernel(kernel)
    NATIVE_HASHER._lane_buffer_size(lane_buffer)
    lengths = boundary_lengths(1024) + [
        lane_buffer - 1,
        lane_buffer,
        lane_buffer + 1,
        3 * lane_buffer + 55,
    ]
    lengths += [200_000, 1024 * 1024 + 1]
    made = write_files(tmp_path, lengths)
    for jobs in (1, 2):
        check(hash_all(NATIVE_HASHER, tmp_path, [(path, MD5) for path, _ in made], jobs), made)


@pytest.mark.native_only
def test_scalar_path_gives_identical_results(tmp_path: Path, restore_native: None) -> None:
    assert NATIVE_HASHER is not None
    made = write_files(tmp_path, boundary_lengths(700) + [LANE + 1, 2 * 1024 * 1024])
    os.mkfifo(tmp_path / "fifo")
    requests = [(path, MD5) for path, _ in made] + [(b"fifo", MD5), (b"missing", MD5)]
    was = NATIVE_HASHER._use_simd(True)
    simd = hash_all(NATIVE_HASHER, tmp_path, requests, 2)
    assert NATIVE_HASHER._use_simd(False) is (NATIVE_HASHER._md5_kernels() != [])
    assert NATIVE_HASHER._md5_kernel() == "none"
    scalar = hash_all(NATIVE_HASHER, tmp_path, requests, 2)
    assert NATIVE_HASHER._use_simd(was) is False
    assert simd == scalar
    check(scalar[: len(made)], made)


@pytest.mark.native_only
def test_kernel_hooks_reject_what_cannot_run(restore_native: None) -> None:
    assert NATIVE_HASHER is not None
    with pytest.raises(ValueError, match="unknown MD5 kernel"):
        NATIVE_HASHER._md5_kernel("sse9")
    with pytest.raises(ValueError, match="multiple of 64"):
        NATIVE_HASHER._lane_buffer_size(1000)
    assert NATIVE_HASHER._md5_kernel() in KERNELS
