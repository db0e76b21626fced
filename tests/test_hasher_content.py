"""Digest.CONTENT: the matcher runs in the hasher's one read; hits and windows vs brute force."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from trees import make_tree, no_block  # noqa: F401 - autouse fixture

import _native
from _native import Digest, HashResult, HashStatus, implementations

Impl = tuple[ModuleType, ModuleType]
CONTENT = int(Digest.CONTENT)
BUFFER = 128 * 1024  # both hashers' read size
PATTERNS = [b"-----BEGIN ", b"PRIVATE KEY-----", b"stratum+tcp://", b"xmrig", b"KEY"]
MAX_WINDOWS = 8


def matcher_for(hasher: ModuleType, patterns: list[bytes]) -> object:
    """The Matcher class that goes with `hasher` (native DFA or the find-based twin)."""
    name = "cython" if hasher.__name__ == "_native._hasher" else "python"
    return _native.matchers()[name](patterns)


def reference_hits(data: bytes, patterns: list[bytes]) -> list[tuple[int, int]]:
    """Every (pattern, start) by plain search, overlaps included, in (end, pattern) order."""
    found = []
    for index, pattern in enumerate(patterns):
        start = data.find(pattern)
        while start >= 0:
            found.append((start + len(pattern), index, start))
            start = data.find(pattern, start + 1)
    return [(index, start) for _end, index, start in sorted(found)]


def reference_windows(
    data: bytes, hits: list[tuple[int, int]], capture: set[int], before: int, after: int
) -> tuple[tuple[int, bytes], ...]:
    """Windows as runs of covered bytes: merging overlapping/adjacent spans by construction."""
    mask = bytearray(len(data))
    for index, start in hits:
        if index in capture:
            low, high = max(0, start - before), min(len(data), start + after)
            mask[low:high] = b"\x01" * (high - low)
    runs = [(m.start(), m.end()) for m in re.finditer(rb"\x01+", bytes(mask))]
    return tuple((low, data[low:high]) for low, high in runs[:MAX_WINDOWS])


def expect(
    data: bytes,
    patterns: list[bytes] = PATTERNS,
    capture: set[int] = frozenset({0, 1}),  # type: ignore[assignment]
    max_hits: int = 64,
    before: int = 256,
    after: int = 65536,
    window_file_limit: int = 8 << 20,
) -> tuple[bool, tuple[tuple[int, int], ...], int, tuple[tuple[int, bytes], ...]]:
    """(scanned, hits, hit_total, windows) that a CONTENT request must give for `data`."""
    hits = reference_hits(data, patterns)
    windows: tuple[tuple[int, bytes], ...] = ()
    if len(data) <= window_file_limit:
        windows = reference_windows(data, hits[:max_hits], set(capture), before, after)
    return True, tuple(hits[:max_hits]), len(hits), windows


def content_of(result: HashResult) -> tuple[object, ...]:
    return result.scanned, result.hits, result.hit_total, result.windows


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def noise(length: int, seed: int = 0) -> bytearray:
    """Random lowercase-free bytes: none of PATTERNS can occur by chance."""
    rng = random.Random(seed)
    return bytearray(rng.choice(b"0123456789.,;: \n\x00\xff") for _ in range(length))


def place(length: int, markers: list[tuple[int, bytes]], seed: int = 0) -> bytes:
    data = noise(length, seed) if length <= 1 << 20 else bytearray(b"\x00" * length)
    for offset, marker in markers:
        data[offset : offset + len(marker)] = marker
    return bytes(data[:length])


KEY = b"-----BEGIN RSA PRIVATE KEY-----"
LAYOUTS = {
    "offset-0": lambda: place(5000, [(0, KEY)]),
    "at-eof": lambda: place(5000, [(5000 - len(KEY), KEY)]),
    "only-marker": lambda: KEY,
    "straddles-read": lambda: place(3 * BUFFER, [(BUFFER - 5, KEY), (2 * BUFFER - 1, b"xmrig")]),
    "window-crosses-reads": lambda: place(
        3 * BUFFER + 7, [(BUFFER + 100, KEY), (2 * BUFFER + 9, KEY)]
    ),
    "empty": lambda: b"",
    "no-hit": lambda: place(BUFFER + 1, []),
    "overlapping-patterns": lambda: place(400, [(10, b"PRIVATE KEY-----KEY-----BEGIN ")]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("jobs", [1, 4])
def test_hits_and_windows_match_brute_force(
    impl: Impl, root: tuple[Path, int], layout: str, jobs: int
) -> None:
    _, hasher = impl
    path, fd = root
    data: bytes = LAYOUTS[layout]()  # type: ignore[no-untyped-call]
    (path / "f").write_bytes(data)
    flags = CONTENT | Digest.SHA256
    [result] = hasher.hash_files(
        fd, [(b"f", flags)], jobs=jobs, matcher=matcher_for(hasher, PATTERNS), capture={0, 1}
    )
    assert result.status is HashStatus.OK
    assert content_of(result) == expect(data)
    assert result.sha256 == hashlib.sha256(data).digest()
    assert result.head == data[:4] and result.md5 is None
    if layout != "no-hit" and layout != "empty":
        assert result.hits


@pytest.mark.parametrize("delta", [-1, 0, 1])
@pytest.mark.parametrize("limit", [300_000, 8 << 20])
def test_window_file_limit_boundary(
    impl: Impl, root: tuple[Path, int], delta: int, limit: int
) -> None:
    _, hasher = impl
    path, fd = root
    size = limit + delta
    data = place(size, [(size // 2, KEY), (size - 20, b"xmrig")])
    (path / "f").write_bytes(data)
    kwargs = {} if limit == 8 << 20 else {"window_file_limit": limit}
    [result] = hasher.hash_files(
        fd,
        [(b"f", CONTENT | Digest.MD5)],
        matcher=matcher_for(hasher, PATTERNS),
        capture={0, 3},
        **kwargs,
    )
    assert content_of(result) == expect(data, capture={0, 3}, window_file_limit=limit)
    assert bool(result.windows) == (size <= limit)
    assert result.md5 == hashlib.md5(data).digest()


@pytest.mark.parametrize("max_hits", [0, 1, 64, 5000])
def test_many_hits_are_capped_and_counted(
    impl: Impl, root: tuple[Path, int], max_hits: int
) -> None:
    _, hasher = impl
    path, fd = root
    # 3000 "KEY" hits, 1000 "PRIVATE KEY-----", across several reads.
    data = (b"..PRIVATE KEY-----.KEY.KEY" + b"." * 300) * 1000
    (path / "f").write_bytes(data)
    [result] = hasher.hash_files(
        fd,
        [(b"f", CONTENT)],
        matcher=matcher_for(hasher, PATTERNS),
        capture={1},
        max_hits=max_hits,
        window_before=10,
        window_after=20,
    )
    want = expect(data, capture={1}, max_hits=max_hits, before=10, after=20)
    assert content_of(result) == want
    assert result.hit_total == 4000 and len(result.hits) == min(max_hits, 4000)


@pytest.mark.parametrize(
    ("offsets", "before", "after", "windows"),
    [
        ([100, 150], 50, 80, [(50, 230)]),  # overlapping
        ([100, 200], 20, 80, [(80, 280)]),  # adjacent: [80, 180) + [180, 280)
        ([100, 201], 20, 80, [(80, 180), (181, 281)]),  # one byte apart: two windows
        ([1000, 100], 200, 5000, [(0, 6000)]),  # clipped at 0 and merged
        ([990], 10, 1000, [(980, 1024)]),  # clipped at EOF
    ],
)
def test_windows_merge_and_clip(
    impl: Impl,
    root: tuple[Path, int],
    offsets: list[int],
    before: int,
    after: int,
    windows: list[tuple[int, int]],
) -> None:
    _, hasher = impl
    path, fd = root
    size = 1024 if max(offsets) < 1000 else 8000
    data = place(size, [(offset, b"xmrig") for offset in offsets])
    (path / "f").write_bytes(data)
    [result] = hasher.hash_files(
        fd,
        [(b"f", CONTENT)],
        matcher=matcher_for(hasher, PATTERNS),
        capture={3},
        window_before=before,
        window_after=after,
    )
    assert result.windows == tuple((low, data[low:high]) for low, high in windows)
    assert content_of(result) == expect(data, capture={3}, before=before, after=after)


def test_at_most_eight_windows_first_by_offset(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    # 20 captured hits far apart, plus uncaptured ones that must not make windows.
    markers = [(1000 + 5000 * i, KEY) for i in range(20)] + [
        (500 + 5000 * i, b"xmrig") for i in range(20)
    ]
    data = place(110_000, markers)
    (path / "f").write_bytes(data)
    [result] = hasher.hash_files(
        fd,
        [(b"f", CONTENT)],
        matcher=matcher_for(hasher, PATTERNS),
        capture={0},
        window_before=16,
        window_after=64,
    )
    assert [offset for offset, _ in result.windows] == [984 + 5000 * i for i in range(8)]
    assert all(window == data[offset : offset + 80] for offset, window in result.windows)
    assert content_of(result) == expect(data, capture={0}, before=16, after=64)


def _bytes_read() -> int:
    """rchar of this process (/proc/self/io): every byte read() returned, page cache or not."""
    with open("/proc/self/io", "rb") as handle:
        for line in handle:
            if line.startswith(b"rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_file_wanted_only_for_content_over_the_limit_is_not_read(
    impl: Impl, root: tuple[Path, int]
) -> None:
    """Nothing would use its bytes: its lstat size says it is skipped; with a digest it is read."""
    _, hasher = impl
    path, fd = root
    size = 32 << 20
    with open(path / "big", "wb") as handle:
        handle.write(b"xmrig")
        handle.truncate(size)  # sparse: cheap to make, still `size` bytes to read
    matcher = matcher_for(hasher, PATTERNS)
    before = _bytes_read()
    [skipped] = hasher.hash_files(fd, [(b"big", CONTENT)], matcher=matcher, content_limit=1 << 20)
    unread = _bytes_read() - before
    assert skipped.status is HashStatus.OK and skipped.size == size
    assert (skipped.scanned, skipped.hits, skipped.xxh3, skipped.md5) == (False, (), None, None)
    assert unread < 1 << 20
    before = _bytes_read()
    [digested] = hasher.hash_files(
        fd, [(b"big", CONTENT | Digest.XXH3)], matcher=matcher, content_limit=1 << 20
    )
    assert _bytes_read() - before >= size  # what the first call did not do, this one did
    assert not digested.scanned and digested.xxh3 is not None
    [searched] = hasher.hash_files(fd, [(b"big", CONTENT)], matcher=matcher, content_limit=size)
    assert searched.scanned and searched.hits == ((PATTERNS.index(b"xmrig"), 0),)


def test_content_limit_skips_matching_but_not_digests(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    data = place(200_000, [(10, KEY)])
    (path / "f").write_bytes(data)
    matcher = matcher_for(hasher, PATTERNS)
    flags = CONTENT | Digest.MD5 | Digest.SHA1
    [over] = hasher.hash_files(fd, [(b"f", flags)], matcher=matcher, content_limit=len(data) - 1)
    [at] = hasher.hash_files(fd, [(b"f", flags)], matcher=matcher, content_limit=len(data))
    assert (over.scanned, over.hits, over.hit_total, over.windows) == (False, (), 0, ())
    assert over.status is HashStatus.OK and over.size == len(data)
    for result in (over, at):
        assert result.md5 == hashlib.md5(data).digest()
        assert result.sha1 == hashlib.sha1(data).digest()
    assert content_of(at) == expect(data, capture=set())


def test_content_without_digests(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    data = place(70_000, [(6, KEY)])
    (path / "f").write_bytes(data)
    [result] = hasher.hash_files(
        fd, [(b"f", CONTENT)], matcher=matcher_for(hasher, PATTERNS), capture={0}
    )
    assert (result.md5, result.sha1, result.sha256) == (None, None, None)
    assert result.head == data[:4] and result.status is HashStatus.OK
    assert content_of(result) == expect(data, capture={0})


def test_content_with_md5_among_md5_only_files(impl: Impl, root: tuple[Path, int]) -> None:
    """MD5 + CONTENT takes the one-pass path, MD5 alone the SIMD lanes: both digests right."""
    _, hasher = impl
    path, fd = root
    made = []
    for i in range(60):
        data = place(1000 + 3000 * i, [(i * 7, KEY)], seed=i)
        (path / f"f{i}").write_bytes(data)
        made.append((f"f{i}".encode(), data))
    requests = [
        (name, CONTENT | Digest.MD5 if i % 2 else Digest.MD5) for i, (name, _) in enumerate(made)
    ]
    matcher = matcher_for(hasher, PATTERNS)
    results = hasher.hash_files(fd, requests, jobs=2, matcher=matcher, capture={0})
    for (name, flags), (_, data), result in zip(requests, made, results, strict=True):
        assert result.md5 == hashlib.md5(data).digest()
        if flags & CONTENT:
            assert content_of(result) == expect(data, capture={0})
        else:
            assert content_of(result) == (False, (), 0, ())
    if hasattr(hasher, "_use_simd"):
        previous = hasher._use_simd(False)
        try:
            assert hasher.hash_files(fd, requests, jobs=2, matcher=matcher, capture={0}) == results
        finally:
            hasher._use_simd(previous)


def read_bytes_so_far() -> int:
    with open("/proc/self/io", "rb") as handle:
        return int(dict(line.split(b": ") for line in handle.read().splitlines())[b"rchar"])


def test_hard_linked_pair_is_read_once(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    data = place(600_000, [(BUFFER - 3, KEY), (500_000, b"stratum+tcp://x")])
    (path / "a").write_bytes(data)
    os.link(path / "a", path / "b")
    requests = [(b"a", Digest.MD5), (b"b", CONTENT | Digest.SHA256), (b"a", CONTENT)]
    before = read_bytes_so_far()
    results = hasher.hash_files(fd, requests, matcher=matcher_for(hasher, PATTERNS), capture={0, 2})
    read = read_bytes_so_far() - before
    assert len(data) <= read < len(data) + 256 * 1024, "one read for every digest and the matcher"
    want = expect(data, capture={0, 2})
    assert content_of(results[0]) == (False, (), 0, ())  # MD5 only: no content results
    assert results[0].md5 == hashlib.md5(data).digest()
    assert content_of(results[1]) == want and results[1].sha256 == hashlib.sha256(data).digest()
    assert content_of(results[2]) == want and results[2].md5 is None
    apart = [
        hasher.hash_files(fd, [request], matcher=matcher_for(hasher, PATTERNS), capture={0, 2})[0]
        for request in requests
    ]
    assert apart == results


def test_special_entries_are_never_opened(impl: Impl, tmp_path: Path) -> None:
    _, hasher = impl
    make_tree(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = [b"gone", b"fifo", b"null", b"a/b", b"dangling", b"loop1", b"outside/hostname"]
        matcher = matcher_for(hasher, PATTERNS)
        with_content = hasher.hash_files(
            fd, [(name, CONTENT | Digest.MD5) for name in names], matcher=matcher, capture={0}
        )
        plain = hasher.hash_files(fd, [(name, Digest.MD5) for name in names])
    finally:
        os.close(fd)
    assert with_content == plain
    assert [(r.status, r.errno) for r in with_content] == [
        (HashStatus.MISSING, errno.ENOENT),
        (HashStatus.NOT_REGULAR, 0),
        (HashStatus.NOT_REGULAR, 0),
        (HashStatus.NOT_REGULAR, 0),
        (HashStatus.SYMLINK, 0),
        (HashStatus.SYMLINK, 0),
        (HashStatus.ERROR, errno.ELOOP),
    ]
    assert not any(r.scanned for r in with_content)


def test_non_utf8_path(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    name = b"caf\xe9/na\xefve \n key"
    os.mkdir(bytes(path) + b"/caf\xe9")
    data = b"junk " + KEY + b"\nMIIE...\n"
    with open(bytes(path) + b"/" + name, "wb") as handle:
        handle.write(data)
    [result] = hasher.hash_files(
        fd, [(name, CONTENT | Digest.SHA1)], matcher=matcher_for(hasher, PATTERNS), capture={0}
    )
    assert result.path == name and result.sha1 == hashlib.sha1(data).digest()
    assert content_of(result) == expect(data, capture={0})


def test_random_files_agree_with_brute_force(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    rng = random.Random(426)
    patterns = [bytes(rng.choice(b"ab") for _ in range(rng.randint(1, 6))) for _ in range(6)]
    made = []
    for i in range(25):
        data = bytes(rng.choice(b"abc") for _ in range(rng.choice([0, 1, 50, 3000, BUFFER + 5])))
        (path / f"r{i}").write_bytes(data)
        made.append((f"r{i}".encode(), data))
    results = hasher.hash_files(
        fd,
        [(name, CONTENT) for name, _ in made],
        matcher=matcher_for(hasher, patterns),
        capture={0, 3},
        max_hits=500,
        window_before=7,
        window_after=9,
    )
    for (_, data), result in zip(made, results, strict=True):
        want = expect(data, patterns, capture={0, 3}, max_hits=500, before=7, after=9)
        assert content_of(result) == want


def test_bad_content_arguments_raise(impl: Impl, root: tuple[Path, int]) -> None:
    _, hasher = impl
    path, fd = root
    (path / "f").write_bytes(b"x")
    own = matcher_for(hasher, PATTERNS)
    other = (
        next(cls for cls in _native.matchers().values() if not isinstance(own, cls))(PATTERNS)
        if len(_native.matchers()) == 2
        else object()
    )
    with pytest.raises(TypeError):
        hasher.hash_files(fd, [(b"f", CONTENT)], matcher=other)
    with pytest.raises(ValueError):
        hasher.hash_files(fd, [(b"f", CONTENT)])  # CONTENT needs a matcher
    with pytest.raises(ValueError):
        hasher.hash_files(fd, [(b"f", CONTENT)], matcher=own, capture={len(PATTERNS)})
    with pytest.raises(ValueError):
        hasher.hash_files(fd, [(b"f", CONTENT)], matcher=own, max_hits=-1)
    with pytest.raises(ValueError):
        hasher.hash_files(fd, [(b"f", 32)], matcher=own)
    # Without CONTENT requests the matcher is simply unused.
    [result] = hasher.hash_files(fd, [(b"f", Digest.MD5)], matcher=own)
    assert not result.scanned


@pytest.mark.native_only
def test_implementations_agree_on_a_real_tree() -> None:
    walker = implementations()["python"][0]
    requests = []
    for index, entry in enumerate(walker.walk("/usr/lib")):
        if stat.S_ISREG(entry.mode) and index % 3 == 0:
            flags = CONTENT | (Digest.SHA256 if index % 2 else Digest.MD5)
            requests.append((b"usr/lib/" + entry.path, flags))
        if len(requests) == 2000:
            break
    patterns = [b"GLIBC_", b"ELF", b"PRIVATE KEY-----", b"\x00\x00\x00\x00", b"http://"]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        runs = [
            hasher.hash_files(
                fd,
                requests,
                matcher=matcher_for(hasher, patterns),
                capture={0, 1, 2},  # "ELF" at offset 1: early, so stored
                max_hits=100,
                window_before=32,
                window_after=512,
                window_file_limit=1 << 20,
                content_limit=16 << 20,
            )
            for _, hasher in implementations().values()
        ]
    finally:
        os.close(fd)
    assert runs[0] == runs[1]
    scanned = [r for r in runs[0] if r.scanned]
    assert len(scanned) > 1000
    assert sum(bool(r.windows) for r in scanned) > 10
    assert sum(r.hit_total > len(r.hits) for r in scanned) > 10
