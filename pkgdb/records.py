"""Typed, frozen records every package-manifest reader yields, and the error hierarchy."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DigestAlgorithm",
    "InstalledFile",
    "Package",
    "PkgDBError",
    "PkgDBProblem",
]


class DigestAlgorithm(enum.Enum):
    """What the manifest's digest is a digest of; values are hashlib names."""

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package as its manager records it."""

    manager: str  # "dpkg", "rpm", "apk"
    name: str
    version: str  # the manager's full version string (dpkg: with epoch, e.g. "1:2.3-4")
    arch: str | None = None
    epoch: int | None = None
    release: str | None = None
    file_count: int = 0


@dataclass(frozen=True, slots=True)
class InstalledFile:
    """One file a package installed, with the digest its manager recorded.

    `path` is bytes relative to the root with no leading slash, exactly as the manifest spells it
    (it may pass through symlinked directories such as `bin -> usr/bin`). `digest` is raw bytes,
    or None when the manifest records none (dpkg `newconffile`, a package without md5sums).
    """

    path: bytes
    package: str
    version: str
    manager: str
    digest: bytes | None
    algorithm: DigestAlgorithm | None
    is_config: bool = False
    mode: int | None = None  # None: this manager records no mode (dpkg)
    size: int | None = None  # None: this manager records no size (dpkg, apk)


@dataclass(frozen=True, slots=True)
class PkgDBProblem:
    """Something in a package database that could not be read; the reader goes on."""

    manager: str
    source: bytes  # the DB file concerned, relative to the root
    message: str


class PkgDBError(Exception):
    """A package database exists but cannot be read at all."""
