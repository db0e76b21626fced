"""Exact version comparison for dpkg, rpm and apk, each as its own package manager does it."""

from __future__ import annotations

import enum

from . import apk, dpkg, rpm
from ._common import MAX_VERSION_LENGTH, InvalidVersion


class Manager(enum.Enum):
    """The package managers whose version order we know; values match pkgdb's Package.manager."""

    DPKG = "dpkg"
    RPM = "rpm"
    APK = "apk"


_COMPARE = {Manager.DPKG: dpkg.compare, Manager.RPM: rpm.compare, Manager.APK: apk.compare}


_SORT_KEYS = {Manager.DPKG: dpkg.sort_key, Manager.RPM: rpm.sort_key}


def sort_key(manager: Manager, version: str) -> bytes | None:
    """Bytes ordered as `manager` orders versions (equal versions, equal keys), so that a
    database can hold them and compare with memcmp; None for apk, whose order (tokens that
    may be invalid part way) no such key is proven to follow: compare() decides there.
    InvalidVersion as compare()."""
    make = _SORT_KEYS.get(manager)
    return None if make is None else make(version)


def compare(manager: Manager, a: str, b: str) -> int:
    """-1, 0 or 1 as `manager` orders versions `a` and `b`; InvalidVersion if it would refuse one.

    rpm versions are `[epoch:]version[-release]` strings; dpkg's carry their epoch and revision.
    """
    return _COMPARE[manager](a, b)


__all__ = [
    "MAX_VERSION_LENGTH",
    "InvalidVersion",
    "Manager",
    "apk",
    "compare",
    "dpkg",
    "rpm",
    "sort_key",
]
