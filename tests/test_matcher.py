"""The multi-pattern matcher: every occurrence, in (end, pattern) order, identical on both cores."""

from __future__ import annotations

import random

import pytest

import _native
from _native import matcher_py

MATCHERS = _native.matchers()


@pytest.fixture(params=sorted(MATCHERS), ids=lambda name: {"cython": "c", "python": "py"}[name])
def matcher_class(request: pytest.FixtureRequest) -> type:
    return MATCHERS[request.param]


def naive(patterns: list[bytes], data: bytes) -> list[tuple[int, int]]:
    """Every (pattern, start) by brute force, in (end, pattern) order."""
    hits = []
    for index, pattern in enumerate(patterns):
        for start in range(len(data) - len(pattern) + 1):
            if data[start : start + len(pattern)] == pattern:
                hits.append((start + len(pattern), index, start))
    return [(index, start) for _end, index, start in sorted(hits)]


CASES = [
    ([b"he", b"she", b"his", b"hers"], b"ushers and his sheep; hershey"),
    ([b"a", b"aa", b"aaa"], b"aaaaa"),
    (
        [b"PRIVATE KEY-----", b"-----BEGIN "],
        b"x-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----",
    ),
    ([b"\x00\xff", b"\xff"], bytes([0, 255, 255, 0, 255])),
    ([b"stratum+tcp://", b"stratum+ssl://"], b"stratum+tcp://pool:3333 stratum+ssl://x"),
    ([b"abc"], b""),
    ([b"abc"], b"ab"),
]


@pytest.mark.parametrize(("patterns", "data"), CASES)
def test_finds_every_occurrence_in_order(
    matcher_class: type, patterns: list[bytes], data: bytes
) -> None:
    hits, total = matcher_class(patterns).find_all(data)
    assert hits == naive(patterns, data)
    assert total == len(hits)


def test_random_patterns_and_data_agree_with_brute_force(matcher_class: type) -> None:
    rng = random.Random(1729)
    for _ in range(200):
        alphabet = bytes(rng.sample(range(256), rng.randint(1, 4)))
        patterns = list(
            {bytes(rng.choices(alphabet, k=rng.randint(1, 5))) for _ in range(rng.randint(1, 8))}
        )
        data = bytes(rng.choices(alphabet, k=rng.randint(0, 300)))
        hits, total = matcher_class(patterns).find_all(data)
        assert hits == naive(patterns, data)
        assert total == len(hits)


def test_max_hits_caps_the_list_but_counts_all(matcher_class: type) -> None:
    hits, total = matcher_class([b"a", b"aa"]).find_all(b"a" * 100, max_hits=7)
    assert hits == naive([b"a", b"aa"], b"a" * 100)[:7]
    assert total == 100 + 99


@pytest.mark.parametrize("bad", [[], [b""], ["text"]])
def test_bad_patterns_raise(matcher_class: type, bad: list[object]) -> None:
    with pytest.raises(ValueError):
        matcher_class(bad)


def test_stream_finds_hits_across_chunk_boundaries() -> None:
    rng = random.Random(7)
    patterns = [b"PRIVATE KEY-----", b"stratum+tcp://", b"kk", b"k"]
    matcher = matcher_py.Matcher(patterns)
    data = b"".join(
        rng.choice([b"PRIVATE KEY-----", b"stratum+tcp://", b"k", b"x" * 7]) for _ in range(400)
    )
    for chunk_size in (1, 2, 3, 5, 16, 17, 64, 4096):
        stream = matcher_py.Stream(matcher, max_hits=10_000)
        for offset in range(0, len(data), chunk_size):
            stream.feed(data[offset : offset + chunk_size])
        assert stream.hits == naive(patterns, data)
        assert stream.total == len(stream.hits)


@pytest.mark.native_only
def test_native_and_twin_agree_on_real_files() -> None:
    patterns = [b"PRIVATE KEY-----", b"ELF", b"GLIBC_", b"\x00\x00\x00\x00", b"http://"]
    native, twin = MATCHERS["cython"](patterns), MATCHERS["python"](patterns)
    for path in ("/bin/ls", "/etc/services", "/usr/lib/os-release"):
        with open(path, "rb") as handle:
            data = handle.read()
        assert native.find_all(data, 5000) == twin.find_all(data, 5000)
