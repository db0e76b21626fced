"""vulndb's version sort keys (what the advisory store compares with memcmp) order exactly as
compare() does, which tests/test_vulndb_versions.py checks against dpkg and rpm themselves."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_vulndb_versions import dpkg_versions, rpm_versions

from vulndb.versions import InvalidVersion, Manager, compare, sort_key

EDGES = [
    "1.0", "1.0~", "1.0~~", "1.0~rc1", "1.0a", "1.0.0", "1.0-0", "1:1.0", "0:1.0", "1.0^",
    "1.0^1", "1.0.1", "1.01", "1.1", "1.0-1~", "1.0-1", "1.0-1.1", "a", "~", "1.0_1", "1_0",
    "10", "1.0-1.el8", "2:1.0", "1:1.0-1", "1.0-1^", "1.0-1.el8_9.1", "0", "00", "1.0+b1",
    "1.0+dfsg-1", "1.0~dfsg-1", "1.0-1+deb12u1", "1.0-1+deb12u10", "1.0.a", "1.0..1", "1.0-A",
]  # fmt: skip


def sign(value: int) -> int:
    return (value > 0) - (value < 0)


def key_order(manager: Manager, a: str, b: str) -> int:
    one, two = sort_key(manager, a), sort_key(manager, b)
    assert one is not None and two is not None
    return sign((one > two) - (one < two))


def valid(manager: Manager, versions: list[str]) -> list[str]:
    out = []
    for version in versions:
        try:
            compare(manager, version, version)
        except InvalidVersion:
            continue
        out.append(version)
    return out


@pytest.mark.parametrize("manager", [Manager.DPKG, Manager.RPM])
def test_keys_order_real_versions_as_compare(manager: Manager, shared_fixtures: Path) -> None:
    real = (
        dpkg_versions(shared_fixtures) if manager is Manager.DPKG else rpm_versions(shared_fixtures)
    )
    versions = valid(manager, real + EDGES)
    assert len(versions) > 200
    rng = random.Random(5)
    pairs = list(itertools.product(valid(manager, EDGES), repeat=2))
    pairs += [(rng.choice(versions), rng.choice(versions)) for _ in range(30_000)]
    disagreements = [
        (a, b) for a, b in pairs if key_order(manager, a, b) != sign(compare(manager, a, b))
    ]
    assert disagreements == []
    # equal versions (leading zeros, rpm's separators) have equal keys: a store finds them alike
    equal = [(a, b) for a, b in pairs if compare(manager, a, b) == 0]
    assert equal and all(sort_key(manager, a) == sort_key(manager, b) for a, b in equal)


ALPHABET = "019a~^.:-+_A"


@settings(max_examples=3000, deadline=None)
@given(st.text(ALPHABET, min_size=1, max_size=12), st.text(ALPHABET, min_size=1, max_size=12))
def test_keys_order_generated_versions_as_compare(a: str, b: str) -> None:
    for manager in (Manager.DPKG, Manager.RPM):
        try:
            expected = sign(compare(manager, a, b))
        except InvalidVersion:
            with pytest.raises(InvalidVersion):
                sort_key(manager, a)
                sort_key(manager, b)
            continue
        assert key_order(manager, a, b) == expected, (manager, a, b)


def test_apk_has_no_key() -> None:
    assert sort_key(Manager.APK, "1.0-r0") is None
